"""The text front end of an ONNX export: raw strings → the numbers the ONNX core reads.

ONNX has no string ops that reproduce TensorFlow's (``StaticRegexReplace``,
``StringSplitV2``, ``StringNGrams``, hash-table lookups), so an ONNX export keeps
only the numeric core and ships this small, NumPy-only pre-processor beside it.  It
reproduces, exactly, the front end of each track's SavedModel:

* `KerasTfidfFrontEnd` — the MLP's keras-io ``TextVectorization(ngrams=…,
  output_mode="tf_idf")`` / `baselines.tfidf_vectorizer.SparseTfidf`: ASCII
  lower-casing (``tf.strings.lower`` without an encoding), the default punctuation
  strip, split on ASCII whitespace, n-grams joined by one space, vocabulary lookup
  with every unknown n-gram counted in column 0 (``[UNK]``; left out with
  ``drop_oov``), value = count × idf (float32, as the graph multiplies);
* `KerasIdsFrontEnd` — the encoder's ``TextVectorization(output_mode="int",
  output_sequence_length=T)``: the same standardisation and split, ids (0 padding,
  1 ``[UNK]``), the first T tokens kept, zero-padded at the end;
* `SklearnTfidfFrontEnd` — the SVM's scikit-learn ``TfidfVectorizer``: Python
  ``str.lower``, ``re.findall(r"(?u)\\b\\w\\w+\\b")``, word n-grams, unknown terms
  dropped, (sublinear) tf × idf, l1/l2 row norm, computed in float64 like
  scikit-learn and handed to the core as float32.

Keras strings are handled as UTF-8 bytes, as TensorFlow does (its lower-casing and
punctuation class are ASCII, its whitespace set is " \\t\\n\\v\\f\\r"), so a non-ASCII
letter or a no-break space behaves here as it does in the graph.

TF-IDF front ends return a `SparseBatch` (COO rows/cols/values, rows in order,
columns ascending within a row); the ids front end an int64 array [n, T].  Each
saves itself as ``frontend.json`` (settings) + ``vocabulary.json.gz`` (terms in column
/ id order) + ``idf.npz``; `load_frontend(directory)` reads any of them back.
`StringsFrontEnd` is the absence of one: the self-contained linear graph
(`mlbench.serving.onnx_graph`) reads the strings itself.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

FRONTEND_FILE = "frontend.json"
#: gzip-compressed JSON and a compressed .npz: an int8 model's folder is mostly its int8
#: weights, and plain files would add ~3% to it (older folders' vocabulary.json / idf.npy
#: are still read)
VOCABULARY_FILE = "vocabulary.json.gz"
IDF_FILE = "idf.npz"
_LEGACY_VOCABULARY_FILE = "vocabulary.json"
_LEGACY_IDF_FILE = "idf.npy"

#: Keras's default ``lower_and_strip_punctuation`` class (ASCII only), on bytes
_KERAS_STRIP = re.compile(rb'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
#: what ``tf.strings.split(x)`` (no separator) splits on: ASCII whitespace only
_TF_WHITESPACE = re.compile(rb"[ \t\n\v\f\r]+")
#: scikit-learn's default token pattern
_SKLEARN_TOKEN = re.compile(r"(?u)\b\w\w+\b")


# -- shared pieces ------------------------------------------------------------------------------
@dataclass
class SparseBatch:
    """TF-IDF rows of a batch in COO form: what the ONNX core of a TF-IDF track reads.

    rows, cols: int64 [nnz]; values: float32 [nnz]; `n_docs` rows and `n_features`
    columns.  Rows are in order and columns ascend within a row.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    n_docs: int
    n_features: int

    def to_dense(self) -> np.ndarray:
        """float32 [n_docs, n_features] (small batches and tests only)."""
        out = np.zeros((self.n_docs, self.n_features), dtype=np.float32)
        out[self.rows, self.cols] = self.values
        return out

    def to_scipy(self):
        """The same rows as a `scipy.sparse.csr_matrix` [n_docs, n_features]."""
        from scipy import sparse

        return sparse.csr_matrix((self.values, (self.rows, self.cols)),
                                 shape=(self.n_docs, self.n_features))

    def feeds(self) -> dict[str, np.ndarray]:
        """The ONNX core's inputs: rows, cols, values and n_docs (int64 scalar)."""
        return {"rows": self.rows, "cols": self.cols, "values": self.values,
                "n_docs": np.asarray(self.n_docs, dtype=np.int64)}


def _word_ngrams(tokens: Sequence, widths: Iterable[int], sep) -> list:
    """All windows of each width, widths in the order given (``tf.strings.ngrams`` and
    scikit-learn's ``_word_ngrams`` agree on this; shorter sequences give none)."""
    out: list = []
    for w in widths:
        if w == 1:
            out.extend(tokens)
        else:
            out.extend(sep.join(tokens[i : i + w]) for i in range(len(tokens) - w + 1))
    return out


def keras_tokens(text: str) -> list[bytes]:
    """Keras ``lower_and_strip_punctuation`` + whitespace split of one text, as bytes."""
    data = str(text).encode("utf-8").lower()  # bytes.lower(): ASCII only, like tf.strings.lower
    data = _KERAS_STRIP.sub(b"", data)
    return [t for t in _TF_WHITESPACE.split(data) if t]


def _to_json_term(term: bytes) -> str:
    return term.decode("utf-8", "surrogateescape")


def _from_json_term(term: str) -> bytes:
    return term.encode("utf-8", "surrogateescape")


def _coo(per_doc: list[tuple[np.ndarray, np.ndarray]], n_features: int) -> SparseBatch:
    """Per-document (cols, values) → one `SparseBatch`."""
    lengths = np.array([len(c) for c, _ in per_doc], dtype=np.int64)
    rows = np.repeat(np.arange(len(per_doc), dtype=np.int64), lengths)
    cols = np.concatenate([c for c, _ in per_doc]) if per_doc else np.zeros(0, np.int64)
    values = np.concatenate([v for _, v in per_doc]) if per_doc else np.zeros(0, np.float32)
    return SparseBatch(rows, cols.astype(np.int64), values.astype(np.float32), len(per_doc),
                       n_features)


class FrontEnd(Protocol):
    """What `OnnxArtifact` needs: texts → the core's feeds, and saving beside the model."""

    kind: str

    def feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]: ...

    def save(self, directory: Path) -> None: ...


def _write(directory: Path, kind: str, config: dict, vocabulary: list[str],
           idf: np.ndarray | None) -> None:
    directory = Path(directory)
    (directory / FRONTEND_FILE).write_text(json.dumps({"kind": kind, **config}, indent=1),
                                           encoding="utf-8")
    with gzip.GzipFile(directory / VOCABULARY_FILE, "wb", mtime=0) as f:  # mtime 0: same bytes each time
        f.write(json.dumps(vocabulary).encode("utf-8"))
    if idf is not None:
        np.savez_compressed(directory / IDF_FILE, idf=idf)


# -- Keras TextVectorization: TF-IDF (the MLP) -------------------------------------------------
class KerasTfidfFrontEnd:
    """keras-io ``TextVectorization(output_mode="tf_idf", ngrams=…)`` in NumPy.

    `vocabulary` [V] is in column order with column 0 the OOV entry ("[UNK]");
    `idf` float32 [V]; `ngrams` the n-gram widths (keras-io: (1, 2)).
    """

    kind = "keras_tfidf"

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray, *, ngrams: Sequence[int] = (1, 2),
                 drop_oov: bool = False):
        self.vocabulary = [str(t) for t in vocabulary]
        self.idf = np.asarray(idf, dtype=np.float32)
        if self.idf.shape != (len(self.vocabulary),):
            raise ValueError(f"idf has shape {self.idf.shape} for {len(self.vocabulary)} terms")
        self.ngrams = tuple(int(n) for n in ngrams)
        self.drop_oov = bool(drop_oov)
        self.lookup = {_from_json_term(t): j for j, t in enumerate(self.vocabulary) if j > 0}

    @property
    def n_features(self) -> int:
        return len(self.vocabulary)

    def terms(self, text: str) -> list[bytes]:
        return _word_ngrams(keras_tokens(text), self.ngrams, b" ")

    def _row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(self.lookup.get(t, 0) for t in self.terms(text))
        if self.drop_oov:
            counts.pop(0, None)
        cols = np.array(sorted(counts), dtype=np.int64)
        n = np.array([counts[c] for c in cols], dtype=np.float32)
        return cols, n * self.idf[cols]  # float32 × float32, as the graph multiplies

    def transform(self, texts: Sequence[str]) -> SparseBatch:
        return _coo([self._row(t) for t in texts], self.n_features)

    def feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.transform(texts).feeds()

    def save(self, directory: Path) -> None:
        _write(directory, self.kind, {"ngrams": list(self.ngrams), "drop_oov": self.drop_oov,
                                      "n_features": self.n_features}, self.vocabulary, self.idf)

    @classmethod
    def load(cls, directory: Path, config: dict) -> "KerasTfidfFrontEnd":
        return cls(_read_vocabulary(directory), _read_idf(directory),
                   ngrams=config["ngrams"], drop_oov=config.get("drop_oov", False))


# -- Keras TextVectorization: ids (the encoder) ------------------------------------------------
class KerasIdsFrontEnd:
    """``TextVectorization(output_mode="int", output_sequence_length=T)`` in NumPy.

    `vocabulary` is in id order: 0 the padding entry (""), 1 the OOV one ("[UNK]").
    Output: int64 [n, T], the first T token ids, zero-padded at the end.
    """

    kind = "keras_ids"

    def __init__(self, vocabulary: Sequence[str], *, sequence_length: int):
        self.vocabulary = [str(t) for t in vocabulary]
        self.sequence_length = int(sequence_length)
        if self.sequence_length < 1:
            raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
        self.lookup = {_from_json_term(t): j for j, t in enumerate(self.vocabulary) if j > 1}

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.sequence_length), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = [self.lookup.get(t, 1) for t in keras_tokens(text)[: self.sequence_length]]
            out[i, : len(ids)] = ids
        return out

    def feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return {"token_ids": self.transform(texts)}

    def save(self, directory: Path) -> None:
        _write(directory, self.kind, {"sequence_length": self.sequence_length}, self.vocabulary, None)

    @classmethod
    def load(cls, directory: Path, config: dict) -> "KerasIdsFrontEnd":
        return cls(_read_vocabulary(directory), sequence_length=config["sequence_length"])


# -- scikit-learn TfidfVectorizer (the SVM) ----------------------------------------------------
class SklearnTfidfFrontEnd:
    """scikit-learn ``TfidfVectorizer.transform`` (default word analyzer) in NumPy.

    `vocabulary` [V] in column order, `idf` [V] (float64 as fitted).  Values are
    computed in float64, as scikit-learn does, then cast to float32 for the core.
    """

    kind = "sklearn_tfidf"

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray, *, ngram_range: Sequence[int] = (1, 1),
                 sublinear_tf: bool = False, norm: str | None = "l2", lowercase: bool = True,
                 binary: bool = False):
        self.vocabulary = [str(t) for t in vocabulary]
        self.idf = np.asarray(idf, dtype=np.float64)
        if self.idf.shape != (len(self.vocabulary),):
            raise ValueError(f"idf has shape {self.idf.shape} for {len(self.vocabulary)} terms")
        if norm not in ("l1", "l2", None):
            raise ValueError(f"norm must be 'l1', 'l2' or None, got {norm!r}")
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.sublinear_tf, self.norm = bool(sublinear_tf), norm
        self.lowercase, self.binary = bool(lowercase), bool(binary)
        self.lookup = {t: j for j, t in enumerate(self.vocabulary)}

    @property
    def n_features(self) -> int:
        return len(self.vocabulary)

    def terms(self, text: str) -> list[str]:
        text = str(text)
        tokens = _SKLEARN_TOKEN.findall(text.lower() if self.lowercase else text)
        lo, hi = self.ngram_range
        return _word_ngrams(tokens, range(lo, hi + 1), " ")

    def _row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(j for j in map(self.lookup.get, self.terms(text)) if j is not None)
        cols = np.array(sorted(counts), dtype=np.int64)
        tf_ = np.array([counts[c] for c in cols], dtype=np.float64)
        if self.binary:
            tf_ = np.ones_like(tf_)
        elif self.sublinear_tf:
            tf_ = 1.0 + np.log(tf_)
        values = tf_ * self.idf[cols]
        if self.norm == "l2" and len(values):
            values = values / np.sqrt(np.sum(values * values))
        elif self.norm == "l1" and len(values):
            values = values / np.sum(np.abs(values))
        return cols, values

    def transform(self, texts: Sequence[str]) -> SparseBatch:
        return _coo([self._row(t) for t in texts], self.n_features)

    def transform64(self, texts: Sequence[str]):
        """float64 `scipy.sparse.csr_matrix` [n, V]: scikit-learn's own precision."""
        from scipy import sparse

        parts = [self._row(t) for t in texts]
        lengths = np.array([len(c) for c, _ in parts], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        cols = np.concatenate([c for c, _ in parts]) if parts else np.zeros(0, np.int64)
        vals = np.concatenate([v for _, v in parts]) if parts else np.zeros(0)
        return sparse.csr_matrix((vals, cols, indptr), shape=(len(texts), self.n_features))

    def feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.transform(texts).feeds()

    def save(self, directory: Path) -> None:
        _write(directory, self.kind,
               {"ngram_range": list(self.ngram_range), "sublinear_tf": self.sublinear_tf,
                "norm": self.norm, "lowercase": self.lowercase, "binary": self.binary,
                "token_pattern": _SKLEARN_TOKEN.pattern, "n_features": self.n_features},
               self.vocabulary, self.idf)

    @classmethod
    def load(cls, directory: Path, config: dict) -> "SklearnTfidfFrontEnd":
        return cls(_read_vocabulary(directory), _read_idf(directory),
                   ngram_range=config["ngram_range"], sublinear_tf=config["sublinear_tf"],
                   norm=config["norm"], lowercase=config["lowercase"], binary=config["binary"])


# -- no front end: the ONNX graph reads the strings itself ---------------------------------------
class StringsFrontEnd:
    """For an ONNX model that takes the raw strings (``texts`` string [N]) itself: the
    self-contained linear graph (`mlbench.serving.onnx_graph.linear_text_graph`)."""

    kind = "strings"

    def feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return {"texts": np.array([str(t) for t in texts], dtype=object)}

    def save(self, directory: Path) -> None:
        (Path(directory) / FRONTEND_FILE).write_text(json.dumps({"kind": self.kind}, indent=1),
                                                    encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, config: dict) -> "StringsFrontEnd":
        return cls()


# -- reading back --------------------------------------------------------------------------------
_KINDS = {c.kind: c for c in (KerasTfidfFrontEnd, KerasIdsFrontEnd, SklearnTfidfFrontEnd, StringsFrontEnd)}


def _read_vocabulary(directory: Path) -> list[str]:
    path = Path(directory) / VOCABULARY_FILE
    if not path.exists() and (Path(directory) / _LEGACY_VOCABULARY_FILE).exists():
        return json.loads((Path(directory) / _LEGACY_VOCABULARY_FILE).read_text(encoding="utf-8"))
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def _read_idf(directory: Path) -> np.ndarray:
    path = Path(directory) / IDF_FILE
    if not path.exists() and (Path(directory) / _LEGACY_IDF_FILE).exists():
        return np.load(Path(directory) / _LEGACY_IDF_FILE)
    with np.load(path) as data:
        return data["idf"]


def load_frontend(directory: str | Path) -> FrontEnd:
    """The front end saved in `directory` (``frontend.json`` names its kind)."""
    from mlbench.errors import InputError

    directory = Path(directory)
    path = directory / FRONTEND_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: text front end settings not found") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    kind = config.get("kind")
    if kind not in _KINDS:
        raise InputError(f"{path}: unknown front end kind {kind!r}; expected one of {sorted(_KINDS)}")
    try:
        return _KINDS[kind].load(directory, config)
    except (OSError, EOFError, KeyError, ValueError) as err:
        raise InputError(f"{directory}: cannot read the {kind} front end ({err})") from None
