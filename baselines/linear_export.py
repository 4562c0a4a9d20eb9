"""A fitted scikit-learn TF-IDF + linear model as a TensorFlow graph (raw strings → logits).

Any linear track (the SVM, a logistic regression, …) exports through `LinearTextModel`:
the fitted `TfidfVectorizer`'s vocabulary, idf weights, sublinear tf, norm and
n-gram range plus the per-label weights [V, L] and bias [L] move into a `tf.Module`
whose ``__call__(texts: tf.string[B]) -> float32[B, L]`` reproduces
``vectorizer.transform`` followed by ``X @ W + b`` — tokenisation included.

Tokenisation: scikit-learn vs TensorFlow (RE2), case by case
-------------------------------------------------------------
scikit-learn lower-cases with Python's ``str.lower`` and takes the tokens
``re.findall(r"(?u)\\b\\w\\w+\\b", text)``: the maximal runs of two or more Python
word characters.  TensorFlow has no ``findall``; the graph replaces every maximal run
of non-word characters by one space, splits on spaces and keeps tokens of two or
more characters, which is the same set of tokens in the same order.  Where the two
engines differ, and how each difference is closed:

1. ``\\w`` — Python's is Unicode (letters, digits of every script, ``_``); RE2's
   ``\\w`` is ASCII only, and RE2's ``\\pL``/``\\pN`` follow a newer Unicode version
   than Python 3.11's ``unicodedata`` (thousands of code points Python calls
   unassigned).  Closed: the word class is not written as ``\\w`` but enumerated
   from Python's own ``re`` over all code points when exporting, and handed to RE2 as
   an explicit class of ranges (`mlbench.serving.word_class.python_word_class`).  So non-ASCII letters
   ("café", "Straße", Greek, CJK), non-ASCII digits ("٣٤") and ``_`` count exactly as
   in scikit-learn.
2. ``\\b`` — RE2's word boundary is ASCII; the graph never uses it (maximal runs of
   the class above are what Python's Unicode ``\\b`` delimits).
3. Lower-casing — ``tf.strings.lower(encoding="utf-8")`` (ICU) follows an older
   Unicode than Python's ``str.lower`` (e.g. U+2C2F, U+A7C0, the Vithkuqi letters
   U+10570…) and drops U+0000.  Closed: every code point is lower-cased by both
   engines when exporting; each one that differs is first rewritten to Python's
   lower-case form (or, when both forms are non-word characters, to a space, which
   tokenises the same) before ICU lower-cases the rest (`lowercase_fixups`).  Both
   full mappings agree on the expanding case U+0130 "İ" → "i̇" and on the
   context-dependent Greek final sigma ("ΟΔΟΣ" → "οδος").
4. Apostrophes and punctuation — non-word in both: "don't" → "don" ("t" is one
   character, dropped in both); "U.S." → no token; "under_score" is one token.
5. Invalid UTF-8 — a Python ``str`` cannot hold it, so scikit-learn never sees it;
   the graph's regex ops reject such input (an InvalidArgument error), as a
   serving-time check should.

What stays uncovered: Final-sigma context and ICU's case properties follow the
TensorFlow build's Unicode version, and the fix-ups are computed for the Python and
TensorFlow that export (both recorded in mlbench.json).  Vectorizer options the
graph does not reproduce (a custom analyzer, tokenizer, preprocessor or token
pattern, ``strip_accents``, stop words) raise ValueError at export rather than
export a model that silently disagrees.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Sequence

import numpy as np

from mlbench.serving.word_class import MAX_CODE_POINT, python_word_class, python_word_mask, re2_char

DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"


def _all_characters() -> list[str]:
    """Every code point except the surrogates (which a UTF-8 string cannot hold)."""
    return [chr(c) for c in range(MAX_CODE_POINT + 1) if not 0xD800 <= c <= 0xDFFF]


@functools.lru_cache(maxsize=1)
def lowercase_fixups() -> tuple[tuple[str, str], ...]:
    """(character, replacement) pairs applied before ``tf.strings.lower`` so that the
    graph lower-cases every code point as Python's ``str.lower`` does (see case 3).

    Raises RuntimeError for a code point whose difference cannot be closed.
    """
    import tensorflow as tf

    chars = _all_characters()
    tf_lower = tf.strings.lower(tf.constant(chars), encoding="utf-8").numpy()
    word = python_word_mask()
    fixups = []
    for ch, got in zip(chars, tf_lower):
        want = ch.lower()
        if got.decode("utf-8") == want:
            continue
        stable = tf.strings.lower(tf.constant(want), encoding="utf-8").numpy().decode("utf-8")
        if want and stable == want and "\x00" not in want:
            fixups.append((ch, want))
        elif not word[ord(ch)] and not any(word[ord(w)] for w in want):
            fixups.append((ch, " "))  # non-word before and after: a separator either way
        else:
            raise RuntimeError(f"cannot match Python's lower-casing of U+{ord(ch):04X} in TensorFlow")
    return tuple(fixups)


def _regex_literal(ch: str) -> str:
    return re2_char(ord(ch))


def check_vectorizer(vectorizer: Any) -> None:
    """ValueError unless the graph reproduces `vectorizer` exactly (see the module docstring)."""
    if not hasattr(vectorizer, "vocabulary_"):
        raise ValueError("the vectorizer is not fitted")
    problems = []
    if getattr(vectorizer, "analyzer", "word") != "word":
        problems.append(f"analyzer={vectorizer.analyzer!r}")
    for name in ("tokenizer", "preprocessor", "stop_words", "strip_accents"):
        if getattr(vectorizer, name, None) is not None:
            problems.append(f"{name}={getattr(vectorizer, name)!r}")
    if getattr(vectorizer, "token_pattern", DEFAULT_TOKEN_PATTERN) != DEFAULT_TOKEN_PATTERN:
        problems.append(f"token_pattern={vectorizer.token_pattern!r}")
    if getattr(vectorizer, "norm", "l2") not in ("l1", "l2", None):
        problems.append(f"norm={vectorizer.norm!r}")
    if getattr(vectorizer, "input", "content") != "content":
        problems.append(f"input={vectorizer.input!r}")
    if problems:
        raise ValueError("cannot export this TfidfVectorizer as a TensorFlow graph: "
                         + ", ".join(problems) + " (only the default word analyzer is supported)")


def linear_weights(model: Any, n_features: int, block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(W [V, k], b [k]) with ``model.decision_function(X) == X @ W + b`` (k ≥ 1 columns).

    Reads ``coef_``/``intercept_`` (of the model, or of each one-vs-rest estimator);
    a model without them is probed through `decision_function` on identity rows,
    which is exact for any linear model.
    """
    estimators = getattr(model, "estimators_", None)
    if hasattr(model, "coef_"):
        coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
        bias = np.broadcast_to(np.asarray(model.intercept_, dtype=np.float64), (coef.shape[0],))
        return coef.T.copy(), np.array(bias)
    if estimators is not None and all(hasattr(e, "coef_") for e in estimators):
        # a large model's estimators may keep coef_ as CSR (`linear_track.compact_coef`)
        coef = np.vstack([np.asarray(e.coef_.toarray() if hasattr(e.coef_, "toarray") else e.coef_,
                                     dtype=np.float64).reshape(1, -1) for e in estimators])
        bias = np.array([float(np.ravel(e.intercept_)[0]) for e in estimators])
        return coef.T.copy(), bias
    from scipy import sparse

    b = np.atleast_1d(np.asarray(model.decision_function(sparse.csr_matrix((1, n_features))),
                                 dtype=np.float64)).reshape(-1)
    rows = []
    for start in range(0, n_features, block):
        stop = min(n_features, start + block)
        eye = sparse.eye(stop - start, n_features, k=start, format="csr")
        out = np.asarray(model.decision_function(eye), dtype=np.float64).reshape(stop - start, -1)
        rows.append(out - b)
    return np.vstack(rows), b


def _module_class():
    import tensorflow as tf

    class LinearTextModel(tf.Module):
        """texts [B] → TF-IDF (as scikit-learn computes it) → ``X @ W + b`` [B, L]."""

        def __init__(self, vocabulary: Sequence[str], idf: np.ndarray, weights: np.ndarray,
                     bias: np.ndarray, *, ngram_range: tuple[int, int], sublinear_tf: bool,
                     norm: str | None, lowercase: bool, binary: bool = False):
            super().__init__(name="linear_text_model")
            n_features = len(vocabulary)
            if weights.shape[0] != n_features or idf.shape != (n_features,):
                raise ValueError(f"weights {weights.shape} / idf {idf.shape} do not match "
                                 f"{n_features} vocabulary entries")
            self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
            self.sublinear_tf, self.norm = bool(sublinear_tf), norm
            self.lowercase, self.binary = bool(lowercase), bool(binary)
            self.n_features = n_features
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(list(vocabulary), dtype=tf.string),
                    tf.range(n_features, dtype=tf.int64)),
                default_value=-1)
            self.idf = tf.Variable(np.asarray(idf, np.float32), trainable=False, name="idf")
            self.weights = tf.Variable(np.asarray(weights, np.float32), trainable=False, name="weights")
            self.bias = tf.Variable(np.asarray(bias, np.float32).reshape(-1), trainable=False,
                                    name="bias")
            self.fixups = lowercase_fixups() if self.lowercase else ()
            self.separator = "[^" + python_word_class()[1:]  # complement of Python's \w
            self.separator += "+"

        def lower(self, texts):
            """[B] strings lower-cased as Python's ``str.lower`` would (up to separators)."""
            x = texts
            for ch, replacement in self.fixups:
                x = tf.strings.regex_replace(x, _regex_literal(ch), replacement)
            return tf.strings.lower(x, encoding="utf-8")

        def tokens(self, texts):
            """Ragged [B, None] tokens, as scikit-learn's analyzer splits them (no n-grams)."""
            x = self.lower(texts) if self.lowercase else texts
            x = tf.strings.regex_replace(x, self.separator, " ")
            words = tf.strings.split(x, sep=" ")
            return tf.ragged.boolean_mask(words, tf.strings.length(words, unit="UTF8_CHAR") >= 2)

        def terms(self, texts):
            """Ragged [B, None] uni…n-grams joined by one space (scikit-learn's feature names)."""
            words = self.tokens(texts)
            lo, hi = self.ngram_range
            return tf.strings.ngrams(words, ngram_width=list(range(lo, hi + 1)), separator=" ")

        def tfidf(self, texts, *, with_names: bool = False):
            """The TF-IDF rows as coordinates: (rows [nnz], cols [nnz], values [nnz], names),
            names [nnz] the n-gram of each entry (None unless `with_names`)."""
            terms = self.terms(texts)
            words = terms.flat_values
            cols = self.table.lookup(words)
            rows = tf.cast(terms.value_rowids(), tf.int64)
            known = cols >= 0
            rows, cols = tf.boolean_mask(rows, known), tf.boolean_mask(cols, known)
            n = tf.constant(self.n_features, tf.int64)
            keys, index, counts = tf.unique_with_counts(rows * n + cols)
            names = None
            if with_names:  # each entry's n-gram: its first occurrence in the text
                first = tf.math.unsorted_segment_min(tf.range(tf.shape(index)[0]), index, tf.shape(keys)[0])
                names = tf.gather(tf.boolean_mask(words, known), first)
            rows, cols = keys // n, keys % n
            tf_ = tf.cast(counts, tf.float32)
            if self.binary:
                tf_ = tf.ones_like(tf_)
            elif self.sublinear_tf:
                tf_ = 1.0 + tf.math.log(tf_)
            values = tf_ * tf.gather(self.idf, cols)
            batch = tf.shape(texts, out_type=tf.int64)[0]
            if self.norm == "l2":
                norms = tf.sqrt(tf.math.unsorted_segment_sum(values * values, rows, batch))
            elif self.norm == "l1":
                norms = tf.math.unsorted_segment_sum(tf.abs(values), rows, batch)
            else:
                norms = None
            if norms is not None:  # every stored row has a value > 0, so its norm is > 0
                values = values / tf.gather(norms, rows)
            return rows, cols, values, names

        def __call__(self, texts):
            rows, cols, values, _ = self.tfidf(texts)
            batch = tf.shape(texts, out_type=tf.int64)[0]
            contrib = values[:, None] * tf.gather(self.weights, cols)
            return tf.math.unsorted_segment_sum(contrib, rows, batch) + self.bias

        def attribution_parts(self, text):
            """`mlbench.explain.graph` parts of one document: its n-grams [n], TF-IDF values
            [n], the zero baseline and ``f(p [m, n]) = p @ W[n-grams] + b`` (linear, so one
            integration step is exact: ``x_j · W[j, l]``)."""
            _, cols, values, names = self.tfidf(tf.reshape(text, [1]), with_names=True)
            weights = tf.gather(self.weights, cols)  # [n, L]

            def f(path):
                return tf.matmul(path, weights) + self.bias

            return names, values, tf.zeros_like(values), f

    return LinearTextModel


def linear_text_model(vectorizer: Any, weights: np.ndarray, bias: np.ndarray):
    """A `LinearTextModel` from a fitted `TfidfVectorizer` and weights [V, L], bias [L].

    The logits equal ``vectorizer.transform(texts) @ weights + bias`` (float32).
    """
    check_vectorizer(vectorizer)
    vocab = vectorizer.vocabulary_
    names = [""] * len(vocab)
    for term, j in vocab.items():
        names[j] = term
    idf = np.asarray(vectorizer.idf_, np.float64) if getattr(vectorizer, "use_idf", True) \
        else np.ones(len(names))
    return _module_class()(
        names, idf, np.asarray(weights), np.asarray(bias),
        ngram_range=tuple(vectorizer.ngram_range), sublinear_tf=bool(vectorizer.sublinear_tf),
        norm=vectorizer.norm, lowercase=bool(vectorizer.lowercase),
        binary=bool(getattr(vectorizer, "binary", False)))


def export_linear_text_model(directory, vectorizer: Any, weights: np.ndarray, bias: np.ndarray,
                             label_names: Sequence[str], *, track: str,
                             thresholds: np.ndarray | None = None, metadata: dict | None = None):
    """Export ``sigmoid(tfidf(texts) @ weights + bias)`` as a raw-string SavedModel.

    `weights` [V, L] and `bias` [L] are logits (fold any score scale in first).
    """
    from mlbench.serving.export import export_raw_string_model

    module = linear_text_model(vectorizer, weights, bias)
    meta = {"vocabulary": module.n_features, "ngram_range": list(module.ngram_range),
            "sublinear_tf": module.sublinear_tf, "norm": module.norm,
            "tokenizer": {"python": sys.version.split()[0], "token_pattern": DEFAULT_TOKEN_PATTERN,
                          "lowercase_fixups": len(module.fixups)},
            **(metadata or {})}
    return export_raw_string_model(directory, [module], label_names, track=track,
                                   thresholds=thresholds, metadata=meta,
                                   explainer=linear_explainer(module))


def linear_explainer(module: Any, top_n: int | None = None):
    """The in-graph explainer of a `LinearTextModel` (`mlbench.explain.graph`): exact
    attributions ``x_j · W[j, l]`` in logit units, which sum to ``logit − bias``."""
    from mlbench.explain.graph import TOP_N, GraphExplainer

    return GraphExplainer(module.attribution_parts, steps=1, top_n=top_n or TOP_N,
                          method="exact: TF-IDF value x weight",
                          baseline="the all-zero TF-IDF vector (the bias is not attributed)",
                          features="TF-IDF n-grams")
