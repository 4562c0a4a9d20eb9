"""ONNX export (float and int8) with the text front end beside it.

* the Python front end gives the graph's features exactly: ids equal, TF-IDF values
  within 1e-6 (tiny synthetic models with tricky strings; the real Reuters test split);
* ONNX float scores equal the SavedModel's within 1e-4, for the MLP, the SVM and the
  encoder; int8 agrees on the top label and is about a quarter of the size;
* `OnnxArtifact` answers like the other artifacts (labels, predict, threshold) and
  `load_artifact`-style folder checks hold.

Skipped without the optional extra (onnx, onnxruntime, tf2onnx).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

tf = pytest.importorskip("tensorflow")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from mlbench.data.synthetic import synthetic_corpus  # noqa: E402
from mlbench.errors import InputError  # noqa: E402
from mlbench.labels import LabelSpace  # noqa: E402
from mlbench.serving.onnx_artifact import OnnxArtifact, is_onnx_folder  # noqa: E402
from mlbench.serving.onnx_export import export_onnx  # noqa: E402
from mlbench.serving.text_frontend import (  # noqa: E402
    KerasIdsFrontEnd, KerasTfidfFrontEnd, SklearnTfidfFrontEnd, SparseBatch, load_frontend)
from mlbench.tracks import TrainSettings  # noqa: E402

TRACKS = ("mlp", "svm", "encoder")
#: the same, the Keras tracks marked slow: the fast lane (`-m "not slow"`) fits only the SVM
TRACK_PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n != "svm" else n for n in TRACKS]

#: strings where Python and TensorFlow could disagree: Unicode case, non-ASCII
#: whitespace (not a separator for tf.strings.split), control characters, punctuation
TRICKY = [
    "", "   ", "Oil PRICES rose, after OPEC's cut.", "ÉCOLE école Straße STRASSE naïve İstanbul",
    "no\u00a0break\u2003em\u3000ideographic", "tab\tsep\nnew\rline\x0bvt\x0cff", "a\x1cb\x1dc\x1ee\x1ff",
    "next\u0085line", "under_score e-mail U.S. don't 3.5% (trade) [unk] [UNK]", "ΟΔΟΣ οδος ǅemal ٣٤",
    "zero\u200bwidth", "“quoted” «guillemets» —dash— …", "x" * 300,
]


def sorted_coo(rows, cols, values):
    order = np.lexsort((cols, rows))
    return rows[order], cols[order], values[order]


def assert_same_sparse(got: SparseBatch, want_indices: np.ndarray, want_values: np.ndarray) -> None:
    """COO rows/cols identical, values within 1e-6."""
    g = sorted_coo(got.rows, got.cols, got.values)
    w = sorted_coo(want_indices[:, 0].astype(np.int64), want_indices[:, 1].astype(np.int64), want_values)
    np.testing.assert_array_equal(g[0], w[0])
    np.testing.assert_array_equal(g[1], w[1])
    np.testing.assert_allclose(g[2], w[2], rtol=0, atol=1e-6)


# -- tiny models --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus():
    return synthetic_corpus(400, seed=0, n_labels=8, vocab_size=2000, median_words=30)


class _Fits(dict):
    """{track: (track, SavedModel dir, ONNX float dir, ONNX int8 dir)}, each fitted and
    exported on first use: the fast lane (`-m "not slow"`) touches only the SVM."""

    def __init__(self, corpus, root: Path):
        super().__init__()
        self.corpus, self.root = corpus, root
        self.labels = LabelSpace.from_training_labels(corpus.train.labels)

    def __missing__(self, name: str):
        from baselines.svm import LinearSVMTrack
        from baselines.tfidf_mlp import TfidfMLPTrack
        from mlbench.evaluation.thresholds import DecisionRule, save_thresholds
        from transformers_track.encoder import EncoderTrack

        corpus, root, labels = self.corpus, self.root, self.labels
        track = {
            "mlp": lambda: TfidfMLPTrack(TrainSettings(quick=True, epochs=2, verbose=0, seed=0), hidden=(64, 32)),
            "svm": lambda: LinearSVMTrack(TrainSettings(quick=True, seed=0)),
            "encoder": lambda: EncoderTrack(TrainSettings(quick=True, epochs=1, verbose=0, seed=0)),
        }[name]()
        track.fit(corpus.train, corpus.val, labels)
        saved = track.export(root / f"{name}_savedmodel")
        per_label = np.linspace(0.3, 0.6, len(labels))
        save_thresholds(saved / "thresholds.json",
                        {"fixed": DecisionRule("fixed", 0.5), "per_label": DecisionRule("per_label", per_label)},
                        labels.names, best_rule="per_label")
        # the SVM through its numeric core + Python front end (`python_frontend`): the
        # self-contained graph it gets by default is tested in tests/test_onnx_runs.py
        fp = export_onnx(saved, root / f"{name}_onnx", probe=corpus.val.texts[:20], python_frontend=True)
        q8 = export_onnx(saved, root / f"{name}_onnx_int8", int8=True, python_frontend=True)
        self[name] = (track, saved, fp, q8)
        return self[name]


class _SavedModelScores(dict):
    """{track: its SavedModel's scores of `texts`}, computed on first use."""

    def __init__(self, fitted: _Fits, texts: list[str]):
        super().__init__()
        self.fitted, self.texts = fitted, texts

    def __missing__(self, name: str) -> np.ndarray:
        from mlbench.serving.export import ExportedModel

        self[name] = ExportedModel(self.fitted[name][1]).predict(self.texts)
        return self[name]


@pytest.fixture(scope="module")
def fitted(corpus, tmp_path_factory) -> _Fits:
    return _Fits(corpus, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def savedmodel_scores(fitted, corpus):
    texts = list(corpus.test.texts) + TRICKY
    return texts, _SavedModelScores(fitted, texts)


# -- front end == graph ---------------------------------------------------------------------------
@pytest.mark.slow
def test_mlp_frontend_matches_the_graph_features(fitted, corpus):
    track, _, folder, _ = fitted["mlp"]
    frontend = load_frontend(folder)
    assert isinstance(frontend, KerasTfidfFrontEnd)
    texts = list(corpus.test.texts) + TRICKY
    want = track.vectorizer(tf.constant(texts))  # SparseTfidf: the layer inside the SavedModel
    got = frontend.transform(texts)
    assert got.n_features == int(want.dense_shape[1]) and got.n_docs == len(texts)
    assert_same_sparse(got, want.indices.numpy(), want.values.numpy())


@pytest.mark.slow
def test_encoder_frontend_matches_the_graph_ids(fitted, corpus):
    track, _, folder, _ = fitted["encoder"]
    frontend = load_frontend(folder)
    assert isinstance(frontend, KerasIdsFrontEnd) and frontend.sequence_length == track.seq_len
    long_text = " ".join(corpus.train.texts[:5])  # longer than T: truncated like the layer
    texts = list(corpus.test.texts) + TRICKY + [long_text]
    want = track.vectorizer(tf.constant(texts)).numpy()
    np.testing.assert_array_equal(frontend.transform(texts), want)
    assert (want == 1).any() and (want == 0).any()  # OOV and padding were exercised


def test_svm_frontend_matches_scikit_learn(fitted, corpus):
    track, _, folder, _ = fitted["svm"]
    frontend = load_frontend(folder)
    assert isinstance(frontend, SklearnTfidfFrontEnd)
    texts = list(corpus.test.texts) + TRICKY
    want = track.vectorizer.transform(texts).tocsr()
    got = frontend.transform64(texts)
    want.sort_indices()
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    # the idf comes out of the SavedModel, which stores it as float32: ~1e-8 from float64
    np.testing.assert_allclose(got.data, want.data, rtol=0, atol=1e-7)
    np.testing.assert_allclose(frontend.transform(texts).to_dense(), want.toarray(), atol=1e-6)


# -- ONNX == SavedModel ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", TRACK_PARAMS)
def test_onnx_float_scores_match_the_savedmodel(fitted, savedmodel_scores, name):
    texts, reference = savedmodel_scores
    got = OnnxArtifact(fitted[name][2]).predict(texts, batch_size=37)  # uneven batches
    assert got.shape == reference[name].shape and got.dtype == np.float32
    np.testing.assert_allclose(got, reference[name], rtol=0, atol=1e-4)
    parity = json.loads((fitted[name][2] / "mlbench.json").read_text())["parity"]
    assert parity["max_abs_score_diff"] <= 1e-4 and parity["probe_texts"] > 20


@pytest.mark.parametrize("name", TRACK_PARAMS)
def test_onnx_int8_agrees_on_the_top_label_and_is_smaller(fitted, savedmodel_scores, name):
    texts, reference = savedmodel_scores
    _, _, float_dir, int8_dir = fitted[name]
    got = OnnxArtifact(int8_dir).predict(texts)
    agreement = np.mean(np.argmax(got, 1) == np.argmax(reference[name], 1))
    assert agreement >= 0.95, agreement
    # int8 kernels differ between CPUs. With 7-bit weights (reduce_range) the export avoids
    # the int16 saturation of non-VNNI u8s8 kernels: max |int8 - float| measured 0.0097 for
    # the encoder on an AVX2-only EPYC (0.127 with 8-bit weights); 0.1 leaves 10x headroom
    assert np.max(np.abs(got - reference[name])) < 0.1
    ratio = (int8_dir / "model.onnx").stat().st_size / (float_dir / "model.onnx").stat().st_size
    # the MLP and SVM are almost all first-layer weights: int8 ≈ ¼; the tiny encoder
    # keeps float LayerNorm/bias/attention pieces
    assert ratio < (0.3 if name != "encoder" else 0.6), ratio


# -- the artifact -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_onnx_artifact_interface(fitted):
    from mlbench.serving.export import ExportedModel

    _, saved, folder, int8_dir = fitted["mlp"]
    meta = json.loads((folder / "mlbench.json").read_text())
    assert meta["format"] == "onnx" and meta["int8"] is False and meta["track"] == "mlp"
    assert json.loads((int8_dir / "mlbench.json").read_text())["int8"] is True
    assert is_onnx_folder(folder) and not is_onnx_folder(saved)
    artifact, reference = OnnxArtifact(folder), ExportedModel(saved)
    assert artifact.labels == reference.labels
    np.testing.assert_allclose(artifact.threshold(), reference.threshold())  # best rule: per_label
    assert np.ndim(artifact.threshold()) == 1
    assert artifact.threshold("fixed") == 0.5
    assert artifact.predict([]).shape == (0, len(artifact.labels))
    assert artifact.predict(["", "   "]).shape == (2, len(artifact.labels))
    with pytest.raises(InputError):
        OnnxArtifact(saved)  # a SavedModel folder is not an ONNX export


@pytest.mark.slow
def test_uncalibrated_onnx_has_labels_but_no_probabilities(fitted, savedmodel_scores):
    """An export without calibration.json: no ``probabilities`` output, a clear error for
    them, and ``labels`` = the saved best rule (per_label here) on the graph's scores."""
    texts, _ = savedmodel_scores
    artifact = OnnxArtifact(fitted["mlp"][2])
    assert not artifact.has_calibration and "probabilities" not in artifact.output_names
    with pytest.raises(InputError, match="without calibration"):
        artifact.probabilities(texts[:2])
    out = artifact.outputs(texts)
    np.testing.assert_array_equal(out["labels"], (out["scores"] >= artifact.threshold().astype(np.float32)))


@pytest.mark.slow
def test_a_track_without_an_onnx_core_is_refused_naming_those_with_one(fitted, tmp_path):
    """The exporter asks the track registry (`Track.onnx_core`), not a list of names."""
    import shutil

    copy = tmp_path / "ensemble_savedmodel"
    shutil.copytree(fitted["mlp"][1], copy)
    meta = json.loads((copy / "mlbench.json").read_text())
    (copy / "mlbench.json").write_text(json.dumps({**meta, "track": "ensemble"}))
    with pytest.raises(InputError, match=r"no ONNX export for track 'ensemble' \(tracks with one: mlp, svm"):
        export_onnx(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_token_id_core_is_rebuilt_by_the_track_from_the_recorded_architecture(fitted, tmp_path):
    """The encoder track rebuilds its classifier from mlbench.json's "architecture"
    (`Track.onnx_keras_model`; serving imports no track); an export written before that
    record was kept gets the same architecture read off its weights, and converts as well."""
    import shutil

    from mlbench.tracks import get_track_class
    from transformers_track.encoder import _architecture_from_shapes

    _, saved, _, _ = fitted["encoder"]
    meta = json.loads((saved / "mlbench.json").read_text())
    n_labels = len(json.loads((saved / "labels.json").read_text()))
    model = get_track_class(meta["track"]).onnx_keras_model(meta, n_labels, {})
    assert _architecture_from_shapes({}, {w.path: tuple(w.shape) for w in model.weights}) == meta["architecture"]

    old = tmp_path / "old_encoder_savedmodel"
    shutil.copytree(saved, old)
    (old / "mlbench.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "architecture"}))
    out = export_onnx(old, tmp_path / "old_onnx")
    assert json.loads((out / "mlbench.json").read_text())["parity"]["max_abs_score_diff"] <= 1e-4


def test_export_refuses_a_used_folder_and_unknown_tracks(fitted, tmp_path):
    _, saved, _, _ = fitted["svm"]
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("keep me")
    with pytest.raises(FileExistsError):
        export_onnx(saved, used)
    assert (used / "x").read_text() == "keep me"
    with pytest.raises(InputError):
        export_onnx(tmp_path / "missing", tmp_path / "out")


# -- the front end on the real Reuters test split -----------------------------------------------------
@pytest.mark.slow
def test_frontends_match_tensorflow_and_sklearn_on_reuters(reuters_dir):
    """keras-io TF-IDF, encoder ids and scikit-learn TF-IDF of the 3,019 test documents.

    The Keras layers get their vocabulary from a scikit-learn fit on the training split
    instead of ``adapt`` (~25 s each here): what is under test is the graph's
    standardisation, split, n-grams, lookup, OOV, weighting and padding, on real text.
    """
    import keras
    from sklearn.feature_extraction.text import TfidfVectorizer

    from baselines.tfidf_vectorizer import SparseTfidf
    from mlbench.data import load_corpus

    corpus = load_corpus("reuters", data_dir=reuters_dir)
    train, test = list(corpus.train.texts), list(corpus.test.texts)
    assert len(test) > 3000

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(train)
    terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)

    # MLP: SparseTfidf (the layer inside the exported MLP), OOV column 0
    idf = np.concatenate([[1.5], vectorizer.idf_]).astype(np.float32)
    sparse = SparseTfidf(terms, idf, ngrams=2)
    want = sparse(tf.constant(test))
    tfidf = KerasTfidfFrontEnd(["[UNK]", *terms], idf, ngrams=(1, 2))
    assert_same_sparse(tfidf.transform(test), want.indices.numpy(), want.values.numpy())
    assert np.any(want.indices.numpy()[:, 1] == 0)  # unknown n-grams were counted

    # encoder: int ids, OOV 1, padding 0, truncated to T
    words = [t for t in terms if " " not in t][:20000]
    layer = keras.layers.TextVectorization(vocabulary=words, output_mode="int", output_sequence_length=128)
    ids = KerasIdsFrontEnd(layer.get_vocabulary(), sequence_length=128)
    want_ids = layer(tf.constant(test)).numpy()
    np.testing.assert_array_equal(ids.transform(test), want_ids)
    assert (want_ids[:, -1] > 0).any() and (want_ids == 0).any() and (want_ids == 1).any()

    # SVM: scikit-learn's own TfidfVectorizer
    svm = SklearnTfidfFrontEnd(terms, vectorizer.idf_, ngram_range=(1, 2), sublinear_tf=True)
    want_sk = vectorizer.transform(test)
    want_sk.sort_indices()
    got = svm.transform64(test)
    np.testing.assert_array_equal(got.indptr, want_sk.indptr)
    np.testing.assert_array_equal(got.indices, want_sk.indices)
    np.testing.assert_allclose(got.data, want_sk.data, rtol=0, atol=1e-12)
