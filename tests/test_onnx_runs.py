"""ONNX from the exports a real run writes (issue 21), and the self-contained linear graph.

* a quick ``run_all.py`` (mlp, svm, encoder, fastText; calibration on, as every run) on a
  synthetic corpus: every folder named ``*_savedmodel`` is a SavedModel that TF
  Serving's session loader runs, fastText's export is ``fasttext_model/``;
* ``mlbench export-onnx`` (float and int8) works from each calibrated export; float
  scores match the SavedModel's, ``probabilities`` match it within the bound the
  calibration map's slope gives, ``labels`` are the saved best rule; int8 agrees on the
  decisions and the int8 MLP folder is at most ¼ of its SavedModel;
* the svm's ONNX model is one graph from raw strings that plain onnxruntime runs in a
  process that cannot import this package;
* that graph's tokenisation equals scikit-learn's on tricky strings (the one documented
  difference: lower-casing of U+0130 and Greek final sigma) and on the Reuters test split.

Skipped without the optional extra (onnx, onnxruntime, tf2onnx).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from corpus_files import write_corpus_csv

#: every test reads one quick `run_all` run: CI only (`-m "not slow"` leaves them out)
pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}
ONNX_TRACKS = ("mlp", "svm", "encoder")
TRICKY = [
    "", "   ", "Oil PRICES rose, after OPEC's cut.", "ÉCOLE école Straße STRASSE naïve",
    "no\u00a0break\u2003em\u3000ideographic", "tab\tsep\nnew\rline\x0bvt\x0cff", "a\x1cb\x1dc\x1ee\x1ff",
    "next\u0085line", "under_score e-mail U.S. don't 3.5% (trade) [unk] [UNK]", "οδος ǅemal ٣٤",
    "zero\u200bwidth", "“quoted” «guillemets» —dash— …", "x" * 300,
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The run folder of ``run_all.py --quick`` over four tracks on a synthetic CSV."""
    from mlbench.data.synthetic import synthetic_corpus

    root = tmp_path_factory.mktemp("onnx_run")
    corpus = synthetic_corpus(1500, seed=5, n_labels=10, vocab_size=5000, median_words=60)
    data = write_corpus_csv(corpus, root / "synthetic.csv")
    proc = subprocess.run([sys.executable, "run_all.py", "--dataset", str(data), "--label-sep", "|",
                           "--models", "mlp,svm,encoder,fasttext", "--quick", "--bootstrap", "0",
                           "--no-report", "--out", str(root / "runs")],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def texts(run_dir) -> list[str]:
    """The run's test documents (the CSV's last 150 rows) plus tricky strings."""
    rows = list(csv.reader((run_dir.parent.parent / "synthetic.csv").open(encoding="utf-8")))[1:]
    return [r[0] for r in rows[-150:]] + TRICKY


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> dict[tuple[str, bool], Path]:
    """{(track, int8): ONNX folder} made with the command line from the run's exports."""
    from mlbench_cli import main

    root = tmp_path_factory.mktemp("onnx_out")
    out = {}
    for track in ONNX_TRACKS:
        for int8 in (False, True):
            folder = root / f"{track}{'_int8' if int8 else ''}"
            assert main(["export-onnx", "--model", str(run_dir / f"{track}_savedmodel"), "--out", str(folder),
                         *(["--int8"] if int8 else [])]) == 0
            out[track, int8] = folder
    return out


def test_every_savedmodel_folder_is_a_savedmodel_and_fasttext_is_named_for_what_it_is(run_dir):
    from mlbench.serving.artifacts import load_artifact
    from mlbench.serving.export import session_run

    folders = sorted(p for p in run_dir.rglob("*_savedmodel") if p.is_dir())
    assert {p.name for p in folders} == {f"{t}_savedmodel" for t in ONNX_TRACKS}
    for folder in folders:  # what `saved_model_cli run --tag_set serve` does
        out = session_run(folder, ["oil prices"])
        assert out["scores"].shape[0] == 1 and "probabilities" in out
    record = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert record["models"]["fasttext"]["export_dir"] == "fasttext_model"
    fasttext = run_dir / "fasttext_model"
    assert (fasttext / "model.bin").exists() and not (fasttext / "saved_model.pb").exists()
    artifact = load_artifact(fasttext)
    assert artifact.predict(["oil prices"]).shape == (1, len(artifact.labels))
    assert artifact.has_calibration  # calibration.json beside the .bin


@pytest.mark.parametrize("track", ONNX_TRACKS)
def test_float_onnx_matches_the_calibrated_savedmodel(run_dir, exported, texts, track):
    from mlbench.serving.calibrated import read_calibration
    from mlbench.serving.export import ExportedModel
    from mlbench.serving.onnx_artifact import OnnxArtifact

    saved = ExportedModel(run_dir / f"{track}_savedmodel")
    onnx_model = OnnxArtifact(exported[track, False])
    assert onnx_model.has_calibration and saved.has_calibration
    assert onnx_model.labels == saved.labels
    np.testing.assert_allclose(onnx_model.threshold(), saved.threshold())
    got, want = onnx_model.outputs(texts, batch_size=37), saved.predict(texts)  # uneven batches
    # float32 graphs computing the same sums in another order: ~1e-6 apart, 1e-4 leaves room
    np.testing.assert_allclose(got["scores"], want, rtol=0, atol=1e-4)
    # probabilities: the same float64 map of scores that differ by ≤ 1e-4, so they differ by at
    # most what the map does between the two scores (isotonic maps can be steep), plus float32
    # rounding of the outputs (≤ 1e-6)
    cal = read_calibration(saved.directory)
    bound = np.abs(cal.apply(np.clip(got["scores"], 0, 1)) - cal.apply(np.clip(want, 0, 1))) + 1e-6
    assert np.all(np.abs(got["probabilities"] - saved.probabilities(texts)) <= bound)
    np.testing.assert_array_equal(onnx_model.probabilities(texts, batch_size=37), got["probabilities"])
    # labels: the saved best rule on the graph's own scores (the SavedModel's `decisions` rule)
    cut = np.broadcast_to(np.asarray(saved.threshold(), np.float32), want.shape)
    np.testing.assert_array_equal(got["labels"], (got["scores"] >= cut).astype(np.int32))
    assert np.mean(got["labels"] == saved.decide(texts)) > 0.999  # differ only where a score sits on a cut


@pytest.mark.parametrize("track", ONNX_TRACKS)
def test_int8_onnx_agrees_on_the_decisions(run_dir, exported, texts, track):
    from mlbench.serving.export import ExportedModel
    from mlbench.serving.onnx_artifact import OnnxArtifact

    saved = ExportedModel(run_dir / f"{track}_savedmodel")
    got = OnnxArtifact(exported[track, True]).outputs(texts)
    want = saved.predict(texts)
    # int8 kernels and rounding differ between CPUs: a generous bound that still catches a
    # wrong scale or a missing layer (those move scores by O(1))
    assert np.max(np.abs(got["scores"] - want)) < 0.25
    assert np.mean(got["labels"] == saved.decide(texts)) >= 0.97
    assert "probabilities" in got


def test_int8_mlp_folder_is_at_most_a_quarter_of_its_savedmodel(run_dir, exported):
    from mlbench.sizes import directory_size

    ratio = directory_size(exported["mlp", True]) / directory_size(run_dir / "mlp_savedmodel")
    assert ratio <= 0.25, ratio


def test_svm_onnx_is_one_graph_that_plain_onnxruntime_runs(run_dir, exported, texts, tmp_path):
    """model.onnx alone, in a process where neither mlbench nor TensorFlow can be imported."""
    from mlbench.serving.onnx_artifact import OnnxArtifact

    folder = exported["svm", False]
    meta = json.loads((folder / "mlbench.json").read_text(encoding="utf-8"))
    assert meta["self_contained"] and meta["inputs"] == ["texts"]
    assert {"scores", "probabilities", "labels"} <= set(meta["outputs"])
    np.save(tmp_path / "texts.npy", np.array(texts, dtype=object), allow_pickle=True)
    script = (
        "import sys\n"
        "for name in ('mlbench', 'baselines', 'tensorflow', 'keras'):\n    sys.modules[name] = None  # unimportable\n"
        "import numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(folder / 'model.onnx')!r}, providers=['CPUExecutionProvider'])\n"
        f"x = np.load({str(tmp_path / 'texts.npy')!r}, allow_pickle=True)\n"
        "out = dict(zip([o.name for o in s.get_outputs()], s.run(None, {'texts': x})))\n"
        f"np.savez({str(tmp_path / 'out.npz')!r}, **out)\n")
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plain = np.load(tmp_path / "out.npz")
    ours = OnnxArtifact(folder).outputs(texts, batch_size=len(texts))
    for name in ("scores", "probabilities"):  # same graph, same batch, another process: 1e-6
        np.testing.assert_allclose(plain[name], ours[name], rtol=0, atol=1e-6)
    cut = np.broadcast_to(np.asarray(OnnxArtifact(folder).threshold(), np.float32), ours["scores"].shape)
    clear = np.abs(ours["scores"] - cut) > 1e-6  # decisions of scores not sitting on a cut
    np.testing.assert_array_equal(plain["labels"][clear], ours["labels"][clear])


# -- the graph's tokenisation against scikit-learn -------------------------------------------------
def _graph_vs_sklearn(train: list[str], texts: list[str], **vectorizer_options):
    """(ONNX logits, scikit-learn logits) [len(texts), 3] of a TfidfVectorizer fitted on
    `train` with random weights, through `linear_text_graph`."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from mlbench.serving.word_class import python_word_class
    from mlbench.serving.onnx_graph import linear_text_graph

    vec = TfidfVectorizer(**vectorizer_options).fit(train)
    vocabulary = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
    rng = np.random.default_rng(0)
    weights, bias = rng.normal(size=(len(vocabulary), 3)), rng.normal(size=3)
    model = linear_text_graph(vocabulary, vec.idf_, weights, bias, word_class=python_word_class(),
                              ngram_range=vec.ngram_range, sublinear_tf=vec.sublinear_tf, norm=vec.norm)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(["logits"], {"texts": np.array(texts[i:i + 256], dtype=object)})[0]
                          for i in range(0, len(texts), 256)])
    return got, vec.transform(texts) @ weights + bias


def test_graph_tokenises_like_scikit_learn_on_tricky_strings():
    # float32 graph vs float64 scikit-learn on logits of size ~3: 1e-5
    train = TRICKY + ["straße strasse école ecole naïve naive οδος οδοσ istanbul stanbul ٣٤ under_score",
                      "oil prices trade cut after opec quoted guillemets dash zero width"]
    got, want = _graph_vs_sklearn(train, TRICKY, ngram_range=(1, 2), sublinear_tf=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # the documented difference: onnxruntime lower-cases one code point to one (glibc), Python
    # by Unicode's full and context rules ("İ" → "i̇", a final "Σ" → "ς")
    got, want = _graph_vs_sklearn(train, ["İstanbul", "ΟΔΟΣ"], ngram_range=(1, 2), sublinear_tf=True)
    assert np.all(np.abs(got - want).max(axis=1) > 1e-3)


@pytest.mark.slow
def test_graph_matches_scikit_learn_on_reuters(reuters_dir):
    """Unigrams + bigrams, sublinear tf, min_df 2 on the 3,019 Reuters test documents."""
    from mlbench.data import load_corpus

    corpus = load_corpus("reuters", data_dir=reuters_dir)
    got, want = _graph_vs_sklearn(list(corpus.train.texts), list(corpus.test.texts),
                                  ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    assert got.shape == (3019, 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)  # float32 sums of ≤ a few hundred terms
