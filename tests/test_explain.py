"""Explanations: exact linear attributions (SVM) and integrated gradients (MLP, encoder).

SVM attributions must sum exactly (1e-6) to margin - bias; integrated gradients must be
complete (sum to f(x) - f(baseline)) within 2% at the stated steps (MLP 256, encoder
64; for |f(x) - f(baseline)| < 0.5 logit the 2% is taken of 0.5), and the functions
they differentiate must reproduce the tracks' own logits.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from baselines.svm import LinearSVMTrack  # noqa: E402
from mlbench.data.synthetic import synthetic_corpus  # noqa: E402
from mlbench.explain import LinearExplainer, completeness_gap, explain, integrated_gradients  # noqa: E402
from mlbench.explain.tracks import (  # noqa: E402
    ENCODER_STEPS, MLP_STEPS, encoder_attribution_fn, mlp_attribution_fn, predicted_labels)
from mlbench.labels import LabelSpace  # noqa: E402
from mlbench.tracks import TrainSettings  # noqa: E402

TOLERANCE = 0.02  # relative completeness error allowed at the stated steps


@pytest.fixture(scope="module")
def corpus():
    return synthetic_corpus(400, seed=11, vocab_size=1500, n_labels=8, median_words=40)


@pytest.fixture(scope="module")
def labels(corpus):
    # one extra label with no training document: the SVM gives it a constant margin
    base = LabelSpace.from_training_labels(corpus.train.labels)
    return LabelSpace([*base.names, "zz_never"], [*base.train_counts, 0])


def test_integrated_gradients_is_exact_on_a_quadratic():
    import tensorflow as tf

    w = np.array([0.5, -2.0, 3.0], np.float32)
    f = lambda x: tf.reduce_sum(w * x * x, axis=-1)  # noqa: E731
    x, base = np.array([1.0, 2.0, -1.5], np.float32), np.zeros(3, np.float32)
    att = integrated_gradients(f, x, base, steps=8)
    np.testing.assert_allclose(att, w * x * x, rtol=1e-6)  # trapezoid is exact on a linear gradient
    total, delta = completeness_gap(f, x, base, att)
    assert total == pytest.approx(delta, rel=1e-6)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(f, x, base, steps=0)


def test_svm_attributions_sum_exactly_to_margin_minus_bias(corpus, labels):
    track = LinearSVMTrack(TrainSettings(seed=0))
    track.fit(corpus.train, corpus.val, labels)
    texts = corpus.test.texts[:25]
    margins = track.decision_function(texts)
    explainer = LinearExplainer(track)
    for text, att, m in zip(texts, explainer.explain(texts), margins):
        np.testing.assert_allclose(att.values.sum(axis=0), m - att.bias, atol=1e-6, rtol=0)
        np.testing.assert_allclose(att.margin, m, atol=1e-6, rtol=0)
        assert att.values.shape == (len(att.features), len(labels))
        assert all(f.split()[0] in text.lower() for f in att.features)  # real n-grams of the text
    never = labels.names.index("zz_never")
    assert explainer.bias[never] == -1.0 and np.all(explainer.explain(texts[:1])[0].values[:, never] == 0)

    out = explain(track, texts[:5], top_n=4)
    scores = track.predict_scores(texts[:5])
    for row, doc, picked in zip(out, scores, predicted_labels(scores)):
        assert list(row) == [labels.names[l] for l in picked]
        for pairs in row.values():
            assert len(pairs) <= 4
            mags = [abs(w) for _, w in pairs]
            assert mags == sorted(mags, reverse=True)


def _relative_gap(total: float, delta: float) -> float:
    return abs(total - delta) / max(abs(delta), 0.5)


def test_mlp_integrated_gradients_are_complete(corpus, labels):
    from baselines.tfidf_mlp import TfidfMLPTrack

    track = TfidfMLPTrack(TrainSettings(seed=0, quick=True, verbose=0, epochs=3))
    track.fit(corpus.train, corpus.val, labels)
    texts = corpus.test.texts[:4]
    logits = track.predict_logits(texts)
    for text, row in zip(texts, logits):
        feats, x, fn = mlp_attribution_fn(track, text)
        assert len(feats) == x.size > 0
        for label in np.argsort(-row)[:2]:
            f = fn(int(label))
            # the dense re-written network is the track's own function
            assert float(f(x[None])[0]) == pytest.approx(float(row[label]), abs=1e-4)
            att = integrated_gradients(f, x, np.zeros_like(x), steps=MLP_STEPS)
            total, delta = completeness_gap(f, x, np.zeros_like(x), att)
            assert _relative_gap(total, delta) <= TOLERANCE, (total, delta)
    out = explain(track, texts[:2], top_n=5)
    assert len(out) == 2 and all(len(pairs) <= 5 for row in out for pairs in row.values())


def test_encoder_integrated_gradients_are_complete(corpus, labels):
    from transformers_track.encoder import EncoderTrack

    track = EncoderTrack(TrainSettings(seed=0, quick=True, verbose=0, epochs=1))
    track.fit(corpus.train, corpus.val, labels)
    texts = corpus.test.texts[:3]
    logits = track.predict_logits(texts)
    for text, row in zip(texts, logits):
        tokens, x, base, fn = encoder_attribution_fn(track, text)
        assert x.shape == base.shape and x.shape[0] == len(tokens)
        label = int(np.argmax(row))
        f = fn(label)
        assert float(f(x[None])[0]) == pytest.approx(float(row[label]), abs=1e-4)
        att = integrated_gradients(f, x, base, steps=ENCODER_STEPS)
        total, delta = completeness_gap(f, x, base, att)
        assert _relative_gap(total, delta) <= TOLERANCE, (total, delta)
    out = explain(track, texts[:1], top_n=3)
    assert all(tok in texts[0].lower() or tok == "[UNK]" for pairs in out[0].values() for tok, _ in pairs)


def test_unsupported_track_is_a_clear_error(labels):
    class Fake:
        def __init__(self):
            self.labels = labels

        def predict_scores(self, texts):
            return np.full((len(texts), len(labels)), 0.7)

    with pytest.raises(TypeError, match="no explainer for a Fake track"):
        explain(Fake(), ["some text"])
