"""The ensemble track: weights from validation only, on the simplex, export parity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from baselines.ensemble import EnsembleTrack, savedmodel_members, simplex_grid
from baselines.svm import BalancedLinearSVMTrack, LinearSVMTrack
from mlbench.data.corpus import Split
from mlbench.errors import InputError
from mlbench.labels import LabelSpace
from mlbench.tracks import Track, TrainSettings, get_track_class

REPO = Path(__file__).resolve().parents[1]
KEYWORDS = {"crude oil": "barrel", "grain": "wheat", "money/fx": "dollar", "ship": "tanker"}
FILLER = ["the", "market", "said", "today", "barrel", "wheat", "prices", "week"]


def toy_split(n: int, seed: int) -> Split:
    """Each label's keyword appears in 80% of its documents, plus distracting filler."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        ls = tuple(sorted(set(rng.choice(list(KEYWORDS), size=rng.integers(1, 3)))))
        words = [KEYWORDS[l] for l in ls if rng.random() < 0.8] + list(rng.choice(FILLER, size=5))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(ls)
    return Split(texts, labels)


@pytest.fixture(scope="module")
def data() -> tuple[Split, Split, Split, LabelSpace]:
    train, val, test = toy_split(200, 0), toy_split(120, 1), toy_split(60, 2)
    return train, val, test, LabelSpace.from_training_labels(train.labels)


@pytest.fixture(scope="module")
def svms(data) -> dict[str, Track]:
    train, val, _, labels = data
    members: dict[str, Track] = {"svm": LinearSVMTrack(C=0.05), "svm_balanced": BalancedLinearSVMTrack(C=0.05)}
    for m in members.values():
        m.fit(train, val, labels)
    return members


def test_simplex_grid_rows_sum_to_one():
    grid = simplex_grid(3, 0.1)
    assert grid.shape == (66, 3)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all() and len({tuple(r) for r in grid}) == 66
    with pytest.raises(ValueError, match="step must divide 1"):
        simplex_grid(2, 0.3)


def test_weights_sum_to_one_and_describe_shows_the_search(data, svms):
    train, val, _, labels = data
    ens = EnsembleTrack(TrainSettings(seed=0), svms)
    assert ens.fit(train, val, labels) == {}
    assert set(ens.weights) == set(svms)
    assert sum(ens.weights.values()) == pytest.approx(1.0)
    d = ens.describe()
    assert d["members"] == list(svms) and d["weights"] == ens.weights and d["grid_size"] == 11
    scores = [t["val_cv"] for t in d["top_weights"]]
    assert scores == sorted(scores, reverse=True) and d["top_weights"][0]["weights"] == ens.weights
    assert 0 < d["nested_val_cv"]["f1_micro"] <= 1 and len(d["nested_val_cv"]["fold_weights"]) == 5
    s = ens.predict_scores(val.texts)
    w = np.array([ens.weights[n] for n in svms])
    want = sum(wi * svms[n].predict_scores(val.texts).astype(np.float64) for wi, n in zip(w, svms))
    np.testing.assert_allclose(s, want, atol=1e-6)
    assert s.shape == (len(val), len(labels)) and s.dtype == np.float32


def test_weights_never_see_test_but_follow_validation_labels(data, svms):
    train, val, test, labels = data
    rng = np.random.default_rng(5)

    def search(y_val: np.ndarray) -> list[dict]:
        """The ranked weight vectors with their cross-fitted validation scores."""
        ens = EnsembleTrack(TrainSettings(seed=0), svms, nested_estimate=False)
        s_val = {n: m.predict_scores(val.texts) for n, m in svms.items()}
        return ens.fit_from_scores(s_val, y_val).describe()["top_weights"]

    y_val = labels.encode(val.labels)
    base = search(y_val)
    # fit reads train and val only: with the test labels shuffled the search is identical
    shuffled = Split(test.texts, [test.labels[i] for i in rng.permutation(len(test))])
    assert shuffled.labels != test.labels
    for _ in (test, shuffled):
        ens = EnsembleTrack(TrainSettings(seed=0), svms, nested_estimate=False)
        ens.fit(train, val, labels)
        assert ens.describe()["top_weights"] == base
    # ... while the validation labels do drive it (so this test can fail)
    assert any(search(y_val[rng.permutation(len(y_val))]) != base for _ in range(3))


def test_one_member_ensemble_equals_that_member(data, svms):
    train, val, test, labels = data
    ens = EnsembleTrack(TrainSettings(seed=0), {"svm": svms["svm"]})
    ens.fit(train, val, labels)
    assert ens.weights == {"svm": 1.0} and ens.describe()["nested_val_cv"] is None
    np.testing.assert_array_equal(ens.predict_scores(test.texts), svms["svm"].predict_scores(test.texts))


class _FastTextLike(Track):
    name = "fake"
    export_format = "fasttext"

    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict:
        return {}

    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        return np.zeros((len(texts), 4), dtype=np.float32)


def test_clear_errors_and_member_rules(data, svms):
    with pytest.raises(ValueError, match="needs members"):
        EnsembleTrack(TrainSettings())
    with pytest.raises(ValueError, match="at most 4 members"):
        EnsembleTrack(TrainSettings(), {str(i): svms["svm"] for i in range(5)})
    with pytest.raises(ValueError, match="must export a SavedModel; fake"):
        EnsembleTrack(TrainSettings(), {"svm": svms["svm"], "fake": _FastTextLike()})
    assert list(savedmodel_members({"svm": svms["svm"], "fake": _FastTextLike()})) == ["svm"]
    ens = EnsembleTrack(TrainSettings(), svms)
    with pytest.raises(RuntimeError, match="fit the track"):
        ens.predict_scores(["x"])
    with pytest.raises(ValueError, match="exactly the members"):
        ens.fit_from_scores({"svm": np.zeros((3, 4))}, np.zeros((3, 4)))
    with pytest.raises(InputError, match="must be one of"):
        EnsembleTrack(TrainSettings(), svms, objective="accuracy")
    cls = get_track_class("ensemble")
    assert cls is EnsembleTrack and cls.needs_members is True


class _NoExport(Track):
    """A SavedModel-format track whose export is unsupported (the base `export` → None)."""

    name = "noexport"

    def __init__(self, inner: Track):
        super().__init__()
        self.inner, self.labels = inner, inner.labels

    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict:
        return {}

    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.predict_scores(texts)


def test_export_of_a_member_without_savedmodel_names_it(data, svms, tmp_path):
    train, val, _, labels = data
    members = {"svm": svms["svm"], "plain": _NoExport(svms["svm_balanced"])}
    ens = EnsembleTrack(TrainSettings(seed=0), members, nested_estimate=False)
    ens.fit(train, val, labels)
    ens.weights = {"svm": 0.5, "plain": 0.5}  # both used, so both must export
    with pytest.raises(ValueError, match="'plain' has no SavedModel export"):
        ens.export(tmp_path / "ens")


@pytest.mark.slow
def test_exported_ensemble_matches_in_process_scores_in_a_fresh_process(data, tmp_path):
    from baselines.tfidf_mlp import TfidfMLPTrack

    train, val, test, labels = data
    members = {
        "mlp_a": TfidfMLPTrack(TrainSettings(epochs=1, verbose=0, seed=1), hidden=(32,), patience=2),
        "mlp_b": TfidfMLPTrack(TrainSettings(epochs=1, verbose=0, seed=2), hidden=(16, 8), patience=2),
    }
    for m in members.values():
        m.fit(train, val, labels)
    ens = EnsembleTrack(TrainSettings(seed=0), members, nested_estimate=False)
    ens.fit(train, val, labels)
    ens.weights = {"mlp_a": 0.3, "mlp_b": 0.7}  # parity of the graph needs both members in it
    given = {"mlp_a": members["mlp_a"].export(tmp_path / "mlp_a")}  # mlp_b: exported by the ensemble
    out = ens.export(tmp_path / "ens", thresholds=np.full(len(labels), 0.4), member_exports=given)
    meta = json.loads((out / "mlbench.json").read_text())
    assert meta["members"] == ["mlp_a", "mlp_b"] and meta["weights"] == ens.weights
    assert json.loads((out / "labels.json").read_text()) == labels.names

    texts = test.texts + ["", "words never seen qqqq"]
    want = ens.predict_scores(texts)
    # the run calibrates every export: the ensemble's graph takes it like any other
    from mlbench.evaluation.calibration import Calibration
    from mlbench.serving.calibrated import add_calibration

    n = len(labels)
    cal = Calibration(["platt"] * n, np.linspace(0.5, 2.0, n), np.linspace(-1.0, 1.0, n))
    add_calibration(out, cal)
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    script = (
        "import json, shutil, sys, numpy as np\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        f"shutil.rmtree({str(tmp_path / 'mlp_a')!r})  # the ensemble must not need its members' folders\n"
        "from mlbench.serving.artifacts import load_artifact\n"
        "from mlbench.serving.export import session_run\n"
        f"texts = json.load(open({str(tmp_path / 'texts.json')!r}))\n"
        f"m = load_artifact({str(out)!r})\n"
        f"np.save({str(tmp_path / 'scores.npy')!r}, m.predict(texts))\n"
        f"np.save({str(tmp_path / 'v1.npy')!r}, session_run({str(out)!r}, texts)['scores'])\n"
        f"np.save({str(tmp_path / 'labels.npy')!r}, m.decide(texts))\n"
        f"np.save({str(tmp_path / 'probs.npy')!r}, session_run({str(out)!r}, texts)['probabilities'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "scores.npy")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "v1.npy"), want, atol=1e-5)  # TF Serving's loader
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), (got >= 0.4).astype(np.int32))
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), cal.apply(want), atol=1e-5)
