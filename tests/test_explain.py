"""Explanations: exact linear attributions (SVM) and integrated gradients (MLP, encoder),
computed by each track's in-graph explainer (`mlbench.explain.graph`) — the same graph
its export serves as the ``explain`` signature.

SVM attributions must equal ``tfidf_j · W[j, l]`` computed with scikit-learn's
vectorizer and sum to logit - bias (1e-5, float32); integrated gradients must be
complete (sum to f(x) - f(baseline)) within 2% at the stated steps (MLP 256, encoder
64; for |f(x) - f(baseline)| < 0.5 logit the 2% is taken of 0.5), and the function
they differentiate must reproduce the track's own logits.  `predict --explain` and
the export path are checked at the end.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from baselines.svm import LinearSVMTrack  # noqa: E402
from mlbench.data.synthetic import synthetic_corpus  # noqa: E402
from mlbench.explain import completeness_gap, explain, explainer_of, integrated_gradients  # noqa: E402
from mlbench.explain.graph import pad_labels  # noqa: E402
from mlbench.explain.tracks import predicted_labels  # noqa: E402
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


@pytest.fixture(scope="module")
def svm(corpus, labels):
    track = LinearSVMTrack(TrainSettings(seed=0))
    track.fit(corpus.train, corpus.val, labels)
    return track


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


def test_svm_attributions_are_weight_times_feature(svm, corpus, labels):
    texts = corpus.test.texts[:12]
    weights, bias = svm.logit_weights()  # [V, L], [L]: score_scale · (W, b)
    x = svm.vectorizer.transform(texts)  # scikit-learn's own TF-IDF
    names = svm.vectorizer.get_feature_names_out()
    never = labels.names.index("zz_never")
    wanted = [[0, 1, 2, never] for _ in texts]
    out = explainer_of(svm, top_n=50).run(texts, wanted)
    margins = svm.decision_function(texts) * float(svm.score_scale)
    for i in range(len(texts)):
        row = x[i]
        ref = {str(names[j]): float(v) * weights[j] for j, v in zip(row.indices, row.data)}  # name -> [L]
        for k, label in enumerate(wanted[i]):
            # the sum over all features is the logit minus the bias, exactly (float32)
            assert out["total"][i, k] == pytest.approx(margins[i, label] - bias[label], abs=1e-5)
            assert out["logit"][i, k] == pytest.approx(margins[i, label], abs=1e-5)
            got = {t.decode(): float(w) for t, w in zip(out["tokens"][i, k], out["weights"][i, k]) if t}
            if label == never:  # constant margin: nothing to attribute
                assert all(w == 0 for w in got.values())
                continue
            assert got and set(got) <= set(ref)
            for token, w in got.items():
                assert w == pytest.approx(ref[token][label], abs=1e-5)
            top = sorted((abs(v[label]) for v in ref.values()), reverse=True)[:len(got)]
            np.testing.assert_allclose(sorted((abs(w) for w in got.values()), reverse=True), top, atol=1e-5)

    out = explain(svm, texts[:5], top_n=4)
    scores = svm.predict_scores(texts[:5])
    for row, picked in zip(out, predicted_labels(scores)):
        assert list(row) == [labels.names[l] for l in picked]
        for pairs in row.values():
            assert len(pairs) <= 4
            mags = [abs(w) for _, w in pairs]
            assert mags == sorted(mags, reverse=True)


def _relative_gap(total: float, delta: float) -> float:
    return abs(total - delta) / max(abs(delta), 0.5)


def _complete_and_faithful(track, texts, picked) -> dict:
    out = explainer_of(track).run(texts, picked)
    logits = track.predict_logits(texts)
    for i, row in enumerate(picked):
        for k, label in enumerate(row):
            # the function differentiated is the track's own
            assert out["logit"][i, k] == pytest.approx(float(logits[i, label]), abs=1e-4)
            assert _relative_gap(float(out["total"][i, k]), float(out["delta"][i, k])) <= TOLERANCE, \
                (out["total"][i, k], out["delta"][i, k])
    return out


@pytest.mark.slow
def test_mlp_integrated_gradients_are_complete(corpus, labels):
    from baselines.tfidf_mlp import IG_STEPS, TfidfMLPTrack

    assert IG_STEPS == 256
    track = TfidfMLPTrack(TrainSettings(seed=0, quick=True, verbose=0, epochs=3))
    track.fit(corpus.train, corpus.val, labels)
    texts = corpus.test.texts[:4]
    top2 = [list(map(int, np.argsort(-row)[:2])) for row in track.predict_logits(texts)]
    out = _complete_and_faithful(track, texts, top2)
    vocab = set(track.dense_vectorizer.get_vocabulary())
    assert all(t.decode() in vocab for t in out["tokens"].ravel() if t)
    got = explain(track, texts[:2], top_n=5)
    assert len(got) == 2 and all(len(pairs) <= 5 for row in got for pairs in row.values())


@pytest.mark.slow
def test_encoder_integrated_gradients_are_complete(corpus, labels):
    from transformers_track.encoder import IG_STEPS, EncoderTrack

    assert IG_STEPS == 64
    track = EncoderTrack(TrainSettings(seed=0, quick=True, verbose=0, epochs=1))
    track.fit(corpus.train, corpus.val, labels)
    texts = corpus.test.texts[:3]
    top1 = [[int(np.argmax(row))] for row in track.predict_logits(texts)]
    _complete_and_faithful(track, texts, top1)
    out = explain(track, texts[:1], top_n=3)
    assert all(tok in texts[0].lower() or tok == "[UNK]" for pairs in out[0].values() for tok, _ in pairs)


def test_padding_rows_come_back_empty(svm, corpus):
    labels = [[0, -1], [1, 2]]
    assert pad_labels([[0], [1, 2]]).tolist() == labels
    out = explainer_of(svm).run(corpus.test.texts[:2], labels)
    assert out["tokens"].shape == (2, 2, 10)
    assert not any(out["tokens"][0, 1]) and not out["weights"][0, 1].any() and out["total"][0, 1] == 0
    assert out["total"][1, 0] != 0 and out["total"][1, 1] != 0


def test_unsupported_track_is_a_clear_error(labels):
    class Fake:
        def __init__(self):
            self.labels = labels

        def predict_scores(self, texts):
            return np.full((len(texts), len(labels)), 0.7)

    with pytest.raises(TypeError, match="no explainer for a Fake track"):
        explain(Fake(), ["some text"])


# --------------------------------------------------------------------------- from an export
def test_export_explains_like_the_track_and_predict_prints_it(svm, corpus, labels, tmp_path, capsys):
    from mlbench.serving.artifacts import load_artifact
    from mlbench.serving.export import session_run
    from mlbench_cli import main

    export_dir = svm.export(tmp_path / "svm_savedmodel", thresholds=np.full(len(labels), 0.5))
    meta = json.loads((export_dir / "mlbench.json").read_text(encoding="utf-8"))
    assert "explain" in meta["signatures"] and meta["explain"]["steps"] == 1
    texts = list(corpus.test.texts[:3])
    scores = svm.predict_scores(texts)
    picked = predicted_labels(scores, 0.5)
    got, want = load_artifact(export_dir).explain(texts, picked), explain(svm, texts)
    for g, w in zip(got, want):
        assert list(g) == list(w)
        for label in g:
            assert [t for t, _ in g[label]] == [t for t, _ in w[label]]
            np.testing.assert_allclose([v for _, v in g[label]], [v for _, v in w[label]], atol=1e-6)
    v1 = session_run(export_dir, texts, signature="explain", labels=pad_labels(picked))  # TF Serving's loader
    first = got[0][labels.names[picked[0][0]]]
    assert [t.decode() for t in v1["tokens"][0, 0] if t][:len(first)] == [t for t, _ in first]

    assert main(["predict", "--model", str(export_dir), "--explain", "--top-k", "2", texts[0]]) == 0
    printed = capsys.readouterr().out
    why = [line for line in printed.splitlines() if line.startswith("    why ")]
    assert len(why) == len(picked[0])
    label = labels.names[picked[0][0]]
    token, weight = first[0]
    assert why[0].startswith(f"    why {label}: {token} {weight:+.3f}")


def test_predict_explain_on_an_export_without_it_is_one_clear_line(tmp_path, capsys):
    import keras
    import tensorflow as tf

    from mlbench.serving.export import export_raw_string_model
    from mlbench_cli import main

    vec = keras.layers.TextVectorization(output_mode="multi_hot")
    vec.adapt(tf.constant(["oil crude", "grain wheat"]))
    dense = keras.layers.Dense(2)
    dense.build((None, vec.vocabulary_size()))
    export_dir = export_raw_string_model(tmp_path / "toy", [vec, dense], ["a", "b"], track="toy")
    assert main(["predict", "--model", str(export_dir), "--top-k", "1", "oil"]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(export_dir), "--explain", "oil"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no explanations" in err[0] and str(export_dir) in err[0]
