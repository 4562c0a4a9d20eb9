"""The SVM's TF graph export (`baselines.linear_export`) against scikit-learn itself.

* tokenisation: the graph's terms equal `TfidfVectorizer.build_analyzer()` on every
  documented case where Python's regex and RE2 differ (non-ASCII letters and digits,
  underscores, apostrophes, lower-casing Python and ICU disagree on, NUL, final sigma,
  dotted İ), and exhaustively: Python's ``\\w`` class and lower-casing over all code points;
* weights: the coefficient path equals probing `decision_function`;
* Reuters: the exported SavedModel's scores equal `LinearSVMTrack.predict_scores` on
  all 3,019 test documents to 1e-5 (tf.saved_model.load and the v1 session loader);
* unsupported vectorizer options and bad thresholds fail loudly.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

tf = pytest.importorskip("tensorflow")
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402

from baselines.linear_export import (  # noqa: E402
    _all_characters, linear_text_model, linear_weights, python_word_class, python_word_mask)
from mlbench.serving.export import decision_thresholds  # noqa: E402

#: each case where the engines differ (see the linear_export docstring), by name
TOKENISATION_CASES = {
    "non_ascii_letters": "Café CAFÉ naïve Straße STRASSE ẞ Ærø",
    "greek_final_sigma": "ΟΔΟΣ ΟΔΟΣ. οδός Σ ΣΑ ΑΣ-ΒΣ",
    "dotted_capital_i": "İstanbul İİ ıi",
    "non_ascii_digits": "٣٤ ١٢٣ 12 x1 ½ Ⅻ ²²",
    "underscores": "under_score _a a_ __ snake_case_name",
    "apostrophes": "don't it's O'Neil rock’n’roll l'été",
    "punctuation": "U.S. e-mail (x) 12.5% a/b c&d #tag @user",
    "cjk_and_emoji": "中文文本 日本語 한국어 emoji😀😀 ok👍",
    "python_vs_icu_lowercase": "ⰟⰟ ꟀꟀ 𐕰𐕱 Ꟑx",  # letters ICU (older Unicode) does not lower
    "control_characters": "tab\tnew\nline\x00nul\x00 ok\u00a0nbsp\u2028sep",
    "combining_marks": "cafe\u0301 n\u0303o",  # U+0301 is not \\w in Python: splits the word
    "empty": "",
}


@pytest.fixture(scope="module")
def fitted_vectorizer() -> TfidfVectorizer:
    texts = list(TOKENISATION_CASES.values()) + ["plain english words for the vocabulary"]
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)


@pytest.mark.parametrize("case", sorted(TOKENISATION_CASES))
def test_graph_terms_equal_scikit_learn_analyzer(case, fitted_vectorizer):
    text = TOKENISATION_CASES[case]
    module = linear_text_model(fitted_vectorizer, np.zeros((len(fitted_vectorizer.vocabulary_), 1)),
                               np.zeros(1))
    got = [t.decode("utf-8") for t in module.terms(tf.constant([text])).to_list()[0]]
    assert sorted(got) == sorted(fitted_vectorizer.build_analyzer()(text))


def test_word_class_is_pythons_w_over_every_code_point():
    chars = _all_characters()
    re2 = tf.strings.regex_full_match(tf.constant(chars), python_word_class()).numpy()
    python = np.array([bool(re.fullmatch(r"(?u)\w", c)) for c in chars])
    assert np.array_equal(re2, python)
    assert python_word_mask()[[ord(c) for c in chars]].sum() == python.sum()


def test_graph_lowercasing_is_pythons_over_every_code_point(fitted_vectorizer):
    """Per code point, the graph's lower-casing equals ``str.lower`` except where it maps a
    non-word character to a space (a separator either way)."""
    module = linear_text_model(fitted_vectorizer, np.zeros((len(fitted_vectorizer.vocabulary_), 1)),
                               np.zeros(1))
    chars = _all_characters()
    got = module.lower(tf.constant(chars)).numpy()
    word = python_word_mask()
    bad = [c for c, g in zip(chars, got) if g.decode("utf-8") != c.lower()
           and not (g == b" " and not word[ord(c)] and not any(word[ord(w)] for w in c.lower()))]
    assert not bad, [f"U+{ord(c):04X}" for c in bad[:20]]


def test_coefficients_equal_probing_the_decision_function():
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(["oil", "wheat", "bank", "rate", "corn", "yen"], size=6))
             for _ in range(60)]
    y = rng.integers(0, 2, size=(60, 3))
    vec = TfidfVectorizer().fit(texts)
    x = vec.transform(texts)
    model = OneVsRestClassifier(LinearSVC(random_state=0)).fit(x, y)
    w, b = linear_weights(model, x.shape[1])

    class Opaque:  # no coef_: forces the probing path
        def decision_function(self, m):
            return model.decision_function(m)

    w2, b2 = linear_weights(Opaque(), x.shape[1], block=4)
    np.testing.assert_allclose(w2, w, atol=1e-12)
    np.testing.assert_allclose(b2, b, atol=1e-12)
    np.testing.assert_allclose(x @ w + b, model.decision_function(x), atol=1e-12)


@pytest.mark.parametrize("option", [{"stop_words": "english"}, {"strip_accents": "unicode"},
                                    {"token_pattern": r"\b\w+\b"}, {"analyzer": "char"},
                                    {"tokenizer": str.split, "token_pattern": None}])
def test_unsupported_vectorizer_options_refuse_to_export(option):
    vec = TfidfVectorizer(**option).fit(["some words here", "more words there"])
    with pytest.raises(ValueError, match="cannot export this TfidfVectorizer"):
        linear_text_model(vec, np.zeros((len(vec.vocabulary_), 1)), np.zeros(1))


def test_decision_thresholds_are_checked():
    np.testing.assert_array_equal(decision_thresholds(None, 3), np.full(3, 0.5, np.float32))
    np.testing.assert_array_equal(decision_thresholds(0.3, 2), np.full(2, 0.3, np.float32))
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        decision_thresholds(np.zeros(2), 3)
    with pytest.raises(ValueError, match="finite"):
        decision_thresholds(np.array([0.5, np.nan]), 2)


@pytest.mark.slow
def test_svm_export_matches_predict_scores_on_reuters_test(reuters_dir, tmp_path):
    from baselines.svm import LinearSVMTrack
    from mlbench.data import load_corpus
    from mlbench.labels import LabelSpace
    from mlbench.serving.export import ExportedModel, session_run
    from mlbench.tracks import TrainSettings

    corpus = load_corpus("reuters", data_dir=reuters_dir)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    track = LinearSVMTrack(TrainSettings(seed=0))
    track.fit(corpus.train, corpus.val, labels)
    texts = corpus.test.texts
    want = track.predict_scores(texts)
    exported = track.export(tmp_path / "svm")
    got = ExportedModel(exported).predict(texts)
    assert got.shape == want.shape == (len(texts), len(labels))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    v1 = session_run(exported, texts[:500])["scores"]
    np.testing.assert_allclose(v1, want[:500], rtol=0, atol=1e-5)
