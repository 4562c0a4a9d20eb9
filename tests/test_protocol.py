"""The cross-fitted protocol (`mlbench.protocol`): out-of-fold scores come from models that
never saw their rows, the refit sees exactly train+val, test labels choose nothing, a
killed cross-fit resumes at its fold, and `--protocol holdout` is the train/validation
computation it always was."""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pytest

from mlbench.data.corpus import Split
from mlbench.tracks import Track, TrainSettings


class SpyTrack(Track):
    """A label-prior model that logs what each fit read and counts scored texts it saw."""

    name = "spy_protocol"
    cheap_fit = True
    stochastic = False
    search_space = {"shift": [0.0, 0.05]}
    fits: list[dict] = []  # every fit: its train and val texts
    leaks = 0  # texts scored by a model that trained or validated on them
    fail_at: int | None = None  # raise in this fit (1-based), as a kill would

    def fit(self, train: Split, val: Split, labels) -> dict:
        SpyTrack.fits.append({"train": list(train.texts), "val": list(val.texts)})
        if SpyTrack.fail_at is not None and len(SpyTrack.fits) == SpyTrack.fail_at:
            raise KeyboardInterrupt("killed")
        self.labels = labels
        self.seen = set(train.texts) | set(val.texts)
        shift = float(self.settings.options.get("shift", 0.0))
        self.prior = np.clip(labels.encode(train.labels).mean(axis=0) + shift, 0.0, 1.0)
        return {"val_loss": [1.0, 0.5, 0.7]} if len(val) else {}

    def predict_scores(self, texts) -> np.ndarray:
        SpyTrack.leaks += sum(t in self.seen for t in texts)
        # the prior, nudged per text (a stable hash) so that rows differ
        noise = np.array([[zlib.crc32(f"{t}|{j}".encode()) % 1000 / 1e4 for j in range(len(self.prior))]
                          for t in texts]).reshape(len(texts), len(self.prior))
        return np.clip(self.prior[None, :] + noise, 0.0, 1.0).astype(np.float32)


class SpyValidatingTrack(SpyTrack):
    """The spy as a track that reads validation (Keras early stopping)."""

    name = "spy_protocol_val"
    fits_on_validation = True


@pytest.fixture(autouse=True)
def spies_registered(monkeypatch):
    """The spies join the registry for this file's tests only (a registration at import
    would make every later registry-wide test, e.g. the track contract, fit them too)."""
    from mlbench import tracks

    monkeypatch.setitem(tracks._REGISTRY, "spy_protocol", "test_protocol:SpyTrack")
    monkeypatch.setitem(tracks._REGISTRY, "spy_protocol_val", "test_protocol:SpyValidatingTrack")


@pytest.fixture
def corpus():
    from mlbench.data.synthetic import synthetic_corpus

    return synthetic_corpus(400, seed=5, vocab_size=2000, n_labels=8, median_words=30)


@pytest.fixture(autouse=True)
def clean_spy():
    SpyTrack.fits, SpyTrack.leaks, SpyTrack.fail_at = [], 0, None
    yield
    SpyTrack.fits, SpyTrack.leaks, SpyTrack.fail_at = [], 0, None


def _setup(corpus, k=5):
    from mlbench.labels import LabelSpace
    from mlbench.protocol import make_folds, pool_split

    labels = LabelSpace.from_training_labels(corpus.train.labels)
    pool = pool_split(corpus)
    return labels, pool, make_folds(labels.encode(pool.labels), k, seed=42)


def test_folds_partition_train_plus_val(corpus):
    labels, pool, folds = _setup(corpus)
    assert len(pool) == len(corpus.train) + len(corpus.val)
    assert pool.texts == corpus.train.texts + corpus.val.texts
    rows = np.concatenate(folds)
    assert np.array_equal(np.sort(rows), np.arange(len(pool)))  # each row in exactly one fold


@pytest.mark.parametrize("name", ["spy_protocol", "spy_protocol_val"])
def test_out_of_fold_scores_come_from_models_that_never_saw_the_row(corpus, name):
    from mlbench.protocol import cross_fit

    labels, pool, folds = _setup(corpus)
    fit = cross_fit(name, TrainSettings(seed=1), pool, labels, folds, tune=True, objective="micro")
    assert np.array_equal(fit.rows, np.arange(len(pool))) and fit.oof.shape == (len(pool), len(labels))
    # every fold fit: none of its training or validation rows is in the fold it scores
    fold_fits = SpyTrack.fits[:-1]  # the last fit is the refit
    for f in fold_fits:
        read = set(f["train"]) | set(f["val"])
        held = [i for i, fold in enumerate(folds) if not read & {pool.texts[j] for j in fold}]
        assert len(held) == 1  # exactly one fold unseen: the one it scored
        if name == "spy_protocol_val":
            assert f["val"] and not set(f["val"]) & set(f["train"])  # an inner slice of its own rows
    assert SpyTrack.leaks == 0
    # the check can fail: a model scoring its own training rows is counted
    track = SpyTrack(TrainSettings())
    track.fit(pool.subset(range(10)), pool.subset([]), labels)
    track.predict_scores(pool.texts[:3])
    assert SpyTrack.leaks == 3


@pytest.mark.parametrize("name", ["spy_protocol", "spy_protocol_val"])
def test_the_refit_is_trained_on_exactly_train_plus_val(corpus, name):
    from mlbench.protocol import cross_fit

    labels, pool, folds = _setup(corpus)
    fit = cross_fit(name, TrainSettings(seed=1), pool, labels, folds, tune=False, objective="micro")
    refit = SpyTrack.fits[-1]
    assert sorted(refit["train"]) == sorted(corpus.train.texts + corpus.val.texts)
    assert refit["val"] == []  # nothing held back, nothing read as validation
    assert fit.track.refit_on["rows"] == len(pool)
    # a track that reads validation refits for its folds' median best epoch (2 in the spy's history)
    assert fit.track.refit_on["epochs"] == (2 if name == "spy_protocol_val" else None)
    assert len(SpyTrack.fits) == len(folds) + 1


def test_search_screens_points_on_fewer_folds_then_all_folds_for_the_chosen_one(corpus, monkeypatch):
    import mlbench.protocol as protocol

    monkeypatch.setattr(protocol, "SCREEN_DOCS", 1)  # one fold is enough to screen
    labels, pool, folds = _setup(corpus)
    fit = protocol.cross_fit("spy_protocol", TrainSettings(seed=1), pool, labels, folds, tune=True,
                             objective="micro")
    assert fit.search["evaluation"].startswith("out-of-fold on 1 of 5 folds")
    assert len(fit.search["grid"]) == 2
    # 2 points × 1 screening fold, the 4 other folds of the chosen point, one refit
    assert len(SpyTrack.fits) == 2 + 4 + 1


def test_a_killed_cross_fit_resumes_at_its_fold(corpus, tmp_path):
    from mlbench.protocol import cross_fit

    labels, pool, folds = _setup(corpus)
    SpyTrack.fail_at = 4  # killed while fitting fold 4 (index 3)
    with pytest.raises(KeyboardInterrupt):
        cross_fit("spy_protocol", TrainSettings(seed=1), pool, labels, folds, tune=False, objective="micro",
                  cache=tmp_path)
    assert len(list(tmp_path.glob("*/fold*.npz"))) == 3  # folds 1-3 kept
    SpyTrack.fits, SpyTrack.fail_at = [], None
    resumed = cross_fit("spy_protocol", TrainSettings(seed=1), pool, labels, folds, tune=False,
                        objective="micro", cache=tmp_path)
    assert len(SpyTrack.fits) == 2 + 1  # folds 4 and 5, then the refit
    held_now = [set(pool.texts) - set(f["train"]) for f in SpyTrack.fits[:2]]
    assert held_now == [{pool.texts[j] for j in folds[i]} for i in (3, 4)]
    SpyTrack.fits = []
    again = cross_fit("spy_protocol", TrainSettings(seed=1), pool, labels, folds, tune=False,
                      objective="micro")  # no cache: every fold fitted afresh
    np.testing.assert_allclose(resumed.oof, again.oof, atol=0)  # the same model: identical scores


def _run(corpus, tmp_path, monkeypatch, **cfg):
    import mlbench.experiment as experiment
    from mlbench.config import RunConfig

    monkeypatch.setattr(experiment, "load_data", lambda _cfg: corpus)
    config = RunConfig(dataset="synthetic", out=tmp_path, bootstrap=0, report=False, seed=3,
                       n_jobs=1, **cfg)
    return experiment.run_experiment(config)


@pytest.mark.slow
def test_shuffling_test_labels_changes_no_choice(corpus, tmp_path, monkeypatch):
    """Search points, decision rules, thresholds, calibration and ensemble weights are
    the same when the test labels are permuted; the test metrics are not."""
    rng = np.random.default_rng(0)
    shuffled = dataclasses.replace(corpus, test=Split(corpus.test.texts,
                                                      [corpus.test.labels[i] for i in rng.permutation(len(corpus.test))]))
    models = ["svm", "svm_balanced", "ensemble"]
    _, a = _run(corpus, tmp_path / "a", monkeypatch, models=models)
    _, b = _run(shuffled, tmp_path / "b", monkeypatch, models=models)
    assert list(a.models) == models
    for v in models:
        ma, mb = a.models[v], b.models[v]
        assert ma.protocol == "cv" and ma.fitted_on["rows"] == len(corpus.train) + len(corpus.val)
        assert ma.chosen_rule == mb.chosen_rule
        assert getattr(ma.search, "chosen", None) == getattr(mb.search, "chosen", None)
        assert getattr(ma.search, "scores", None) == getattr(mb.search, "scores", None)
        for rule in ma.rules:
            assert ma.rules[rule].threshold == mb.rules[rule].threshold
            assert ma.rules[rule].val_cv == mb.rules[rule].val_cv  # out-of-fold metrics
        assert getattr(ma.calibration, "method", None) == getattr(mb.calibration, "method", None)
        assert ma.describe.get("weights") == mb.describe.get("weights")
    assert a.best == b.best
    assert any(a.models[v].rules[r].test != b.models[v].rules[r].test for v in models for r in a.models[v].rules)


@pytest.mark.slow
def test_holdout_protocol_is_the_train_validation_computation(corpus, tmp_path, monkeypatch):
    """`--protocol holdout`: the SVM is fitted on train only, its rules on validation
    scores only, and the record's test metrics are those of that computation (1e-6)."""
    from mlbench.evaluation.metrics import FrequencyGroups, evaluate
    from mlbench.evaluation.scoring import cross_fitted_predictions
    from mlbench.evaluation.thresholds import fit_decision_rules
    from mlbench.labels import LabelSpace
    from baselines.svm import LinearSVMTrack

    run_dir, record = _run(corpus, tmp_path, monkeypatch, models=["svm"], protocol="holdout", tune=False)
    model = record.models["svm"]
    assert model.protocol == "holdout" and model.fitted_on["rows"] == len(corpus.val)
    assert not (run_dir / "folds").exists()
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    track = LinearSVMTrack(TrainSettings(seed=3, n_jobs=1))
    track.fit(corpus.train, corpus.val, labels)
    y_val, y_test = labels.encode(corpus.val.labels), labels.encode(corpus.test.labels)
    s_val, s_test = track.predict_scores(corpus.val.texts), track.predict_scores(corpus.test.texts)
    rules = fit_decision_rules(y_val, s_val, default=0.5, seed=3)
    oof = cross_fitted_predictions(y_val, s_val)
    groups = FrequencyGroups(head_min=35, tail_max=8)
    for name, rule in rules.items():
        want = evaluate(y_test, s_test, threshold=rule.thresholds, train_counts=labels.train_counts,
                        groups=groups)
        got = model.rules[name].test
        for key in ("f1_micro", "f1_macro", "precision_micro", "recall_macro", "hamming_loss"):
            assert got[key] == pytest.approx(want[key], abs=1e-6)  # same process, same BLAS: exact
        cv = evaluate(y_val, oof[name].astype(np.float32), threshold=0.5)
        assert model.rules[name].val_cv["f1_micro"] == pytest.approx(cv["f1_micro"], abs=1e-6)


def test_protocol_options_are_checked(tmp_path):
    from mlbench.config import RunConfig
    from mlbench.errors import InputError

    with pytest.raises(InputError, match="--protocol"):
        RunConfig(dataset="reuters", out=tmp_path, protocol="kfold").validate()
    with pytest.raises(InputError, match="--folds"):
        RunConfig(dataset="reuters", out=tmp_path, folds=1).validate()
    with pytest.raises(InputError, match="unknown model"):
        RunConfig(dataset="reuters", out=tmp_path, cv_tracks=["nope"]).validate()


def test_the_report_names_each_variants_protocol():
    from mlbench.record import ModelResult
    from reports.html import protocol_text

    cv = ModelResult("svm", "linear", protocol="cv", fitted_on={"split": "out-of-fold train+val", "rows": 7770,
                                                                "folds": 5, "refit_rows": 7770})
    assert protocol_text(cv) == "cv: 5-fold out-of-fold scores of 7,770 train+val docs, refit on 7,770"
    holdout = ModelResult("svm", "linear", protocol="holdout", fitted_on={"rows": 1000})
    assert protocol_text(holdout) == "holdout: validation (1,000 docs)"
    # a record from before the protocol existed
    assert protocol_text(ModelResult("svm", "linear")) == "holdout: validation"


@pytest.mark.slow
def test_an_expensive_keras_track_can_be_cross_fitted(corpus):
    """--cv-tracks encoder: fold fits early-stop on an inner slice, the refit reads no
    validation and trains the folds' median best epoch."""
    from mlbench.protocol import cross_fit

    labels, pool, folds = _setup(corpus, k=2)
    fit = cross_fit("encoder", TrainSettings(seed=1, quick=True, verbose=0), pool, labels, folds,
                    tune=False, objective="micro")
    assert fit.oof.shape == (len(pool), len(labels)) and np.all((fit.oof >= 0) & (fit.oof <= 1))
    best = [int(np.argmin(h["val_loss"])) + 1 for h in fit.histories]
    assert fit.track.refit_on == {"rows": len(pool), "epochs": int(np.median(best))}
    assert fit.track.predict_scores(corpus.test.texts).shape == (len(corpus.test), len(labels))


def test_quick_runs_cross_fit_on_two_folds_unless_told(tmp_path):
    from mlbench.config import RunConfig

    assert RunConfig(dataset="reuters", out=tmp_path).cv_folds == 5
    assert RunConfig(dataset="reuters", out=tmp_path, quick=True).cv_folds == 2
    assert RunConfig(dataset="reuters", out=tmp_path, quick=True, folds=4).cv_folds == 4
