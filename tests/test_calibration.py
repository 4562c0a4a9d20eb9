"""Calibration maps (Platt / isotonic / temperature) and calibration metrics.

Every figure is checked against an independent reference on the same arrays: a
plain NumPy loop, scikit-learn (`brier_score_loss`, `log_loss`, `IsotonicRegression`)
or scipy's optimiser on the stated objective.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, log_loss

from mlbench.errors import InputError
from mlbench.evaluation.calibration import (
    CANDIDATES, EPS, PLATT_PRIOR, Calibration, calibration_layer, cross_fitted_calibrated,
    fit_calibration, select_calibration)
from mlbench.evaluation.metrics import calibration_metrics


def overconfident(n: int, L: int, seed: int = 0, power: float = 3.0):
    """Labels with a long-tailed prevalence and scores sigmoid(power * true logit):
    a well-ranked but over-confident model, like an SVM's sigmoid(margin)."""
    rng = np.random.default_rng(seed)
    prev = np.concatenate([[0.35, 0.25, 0.12, 0.08], np.geomspace(0.04, 0.001, L - 4)])
    y = rng.random((n, L)) < prev
    logit = np.where(y, 1.5, -1.5) + rng.normal(0.0, 1.2, (n, L)) + np.log(prev / (1 - prev))
    return y.astype(np.int8), 1.0 / (1.0 + np.exp(-power * logit))


# ----------------------------------------------------------------------------- metrics
def loop_ece(y: np.ndarray, s: np.ndarray, bins: int) -> float:
    """Guo et al. ECE by a plain loop over pairs, right-closed bins (bin 0 holds 0)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total, buckets = 0, [[] for _ in range(bins)]
    for yi, si in zip(y.ravel(), s.ravel()):
        m = 0
        while m < bins - 1 and not si <= edges[m + 1]:
            m += 1
        buckets[m].append((yi, si))
        total += 1
    return sum(len(b) / total * abs(np.mean([p[0] for p in b]) - np.mean([p[1] for p in b]))
               for b in buckets if b)


def loop_top_k(y: np.ndarray, s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ys, ss = [], []
    for row_y, row_s in zip(y, s):
        idx = sorted(range(len(row_s)), key=lambda j: (-row_s[j], j))[:k]
        ys.extend(row_y[idx])
        ss.extend(row_s[idx])
    return np.array(ys), np.array(ss)


def test_calibration_metrics_match_sklearn_and_a_loop_reference():
    y, s = overconfident(300, 12, seed=1)
    s[0, :3] = [0.0, 1.0, 1.0 / 15]  # edge values: exact 0, exact 1, a bin edge
    s[1, :2] = 0.5  # a tie inside the top 5
    m = calibration_metrics(y, s, bins=15, top_k=5)
    assert m["brier"] == pytest.approx(brier_score_loss(y.ravel(), s.ravel()), abs=1e-12)
    clipped = np.clip(s, 1e-7, 1 - 1e-7).ravel()
    assert m["log_loss"] == pytest.approx(log_loss(y.ravel(), clipped, labels=[0, 1]), rel=1e-9)
    assert m["ece"] == pytest.approx(loop_ece(y, s, 15), abs=1e-12)
    yt, st = loop_top_k(y, s, 5)
    assert m["ece_top5"] == pytest.approx(loop_ece(yt, st, 15), abs=1e-12)
    rel = m["reliability"]
    assert sum(rel["count"]) == y.size and len(rel["count"]) == 15
    assert sum(m["reliability_top5"]["count"]) == 300 * 5
    # per-bin data reproduce the ECE
    ece = sum(c / y.size * abs(f - ms) for c, f, ms in zip(rel["count"], rel["frequency"], rel["mean_score"]) if c)
    assert ece == pytest.approx(m["ece"], abs=1e-12)
    json.dumps(m)  # JSON-ready (empty bins are None)


def test_perfectly_calibrated_scores_have_small_ece_and_a_constant_has_zero_resolution():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, (4000, 10))
    y = (rng.random(p.shape) < p).astype(np.int8)
    assert calibration_metrics(y, p)["ece"] < 0.01
    assert calibration_metrics(y, np.clip(p * 3, 0, 1))["ece"] > 0.1


# ----------------------------------------------------------------------------- fitting
def platt_objective(params, y, s, prior=PLATT_PRIOR, prior_b=0.0, center=(1.0, 0.0)):
    a, b = params
    n_pos = y.sum()
    t = np.where(y != 0, (n_pos + 1) / (n_pos + 2), 1 / (len(y) - n_pos + 2))
    c = np.clip(s, EPS, 1 - EPS)
    u = a * (np.log(c) - np.log1p(-c)) + b
    return (np.sum(np.logaddexp(0, u) - t * u) + 0.5 * prior * (a - center[0]) ** 2
            + 0.5 * prior_b * (b - center[1]) ** 2)


@pytest.mark.parametrize("shrink", [0.0, 10.0])
def test_platt_is_the_optimum_of_the_stated_objective_for_every_label(shrink):
    y, s = overconfident(800, 10, seed=2)
    y[:, 9] = 0  # no positive at all
    y[:, 8] = 0
    y[:2, 8] = 1  # two positives
    cal = fit_calibration(y, s, method="platt", shrink=shrink)
    assert cal.kinds == ["platt"] * 10
    center, prior, prior_b = (1.0, 0.0), PLATT_PRIOR, 0.0
    if shrink:  # the pooled map every label is shrunk towards: one Platt fit of all pairs
        ys, ss = y.reshape(-1), s.reshape(-1)
        pooled = minimize(platt_objective, x0=[1.0, 0.0], args=(ys, ss), method="BFGS",
                          options={"gtol": 1e-8})
        center, prior, prior_b = tuple(pooled.x), shrink, shrink
    for l in range(10):
        args = (y[:, l], s[:, l], prior, prior_b, center)
        ref = minimize(platt_objective, x0=[1.0, 0.0], args=args, method="BFGS", options={"gtol": 1e-10})
        got = platt_objective([cal.a[l], cal.b[l]], *args)
        assert got <= ref.fun + 1e-6, l
        np.testing.assert_allclose([cal.a[l], cal.b[l]], ref.x, atol=2e-3)
    out = cal.apply(s)
    # the no-positive label never reaches 0 or 1, and stays low
    assert np.all(out[:, 9] < 0.05) and np.all(out[:, 9] > 0) and np.isfinite(cal.a).all()
    assert np.all(np.diff(out[np.argsort(s[:, 0]), 0]) >= -1e-12)  # monotone: ranking kept
    if shrink:  # the rare labels stay near the pooled map, the frequent one moves away
        assert abs(cal.a[9] - center[0]) < abs(cal.a[0] - center[0]) + 0.05


def test_temperature_minimises_the_mean_cross_entropy():
    y, s = overconfident(500, 8, seed=4)
    cal = fit_calibration(y, s, method="temperature")
    c = np.clip(s, EPS, 1 - EPS)
    z = np.log(c) - np.log1p(-c)
    loss = lambda T: np.mean(np.logaddexp(0, z / T) - y * z / T)  # noqa: E731
    ref = minimize_scalar(loss, bounds=(0.05, 50), method="bounded", options={"xatol": 1e-9})
    assert cal.temperature == pytest.approx(ref.x, rel=1e-4)
    assert cal.temperature > 1.5  # the generator is over-confident by a factor ~3
    assert set(cal.kinds) == {"temperature"}


def test_isotonic_only_where_enough_positives_and_equal_to_sklearn():
    y, s = overconfident(1000, 12, seed=5)
    n_pos = y.sum(axis=0)
    cal = fit_calibration(y, s, method="isotonic", min_isotonic_positives=20)
    for l in range(12):
        expected = "isotonic" if (n_pos[l] >= 20 and len(y) - n_pos[l] >= 20) else "platt"
        assert cal.kinds[l] == expected, (l, n_pos[l])
    assert "isotonic" in cal.kinds and "platt" in cal.kinds
    rng = np.random.default_rng(0)
    s_new = np.clip(s[:200] + rng.normal(0, 0.05, (200, 12)), 0, 1)  # includes out-of-range
    out = cal.apply(s_new)
    for l in np.flatnonzero(np.array(cal.kinds) == "isotonic"):
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s[:, l], y[:, l])
        np.testing.assert_allclose(out[:, l], iso.predict(s_new[:, l]), atol=1e-12)
    assert [d.split("(")[0] for d in cal.describe()] == cal.kinds


def test_auto_picks_per_label_and_calibration_halves_held_out_ece():
    y, s = overconfident(3000, 15, seed=6)
    val, test = slice(0, 1500), slice(1500, None)
    cal = fit_calibration(y[val], s[val])  # nothing fitted on test
    n_pos = y[val].sum(axis=0)
    assert all(k == "platt" for k, n in zip(cal.kinds, n_pos) if n < 20)
    raw = calibration_metrics(y[test], s[test])
    after = calibration_metrics(y[test], cal.apply(s[test]))
    assert after["ece_top5"] <= 0.5 * raw["ece_top5"]
    assert after["log_loss"] < raw["log_loss"] and after["brier"] < raw["brier"]


def test_cross_fitted_scores_come_from_maps_fitted_on_the_other_folds():
    y, s = overconfident(400, 6, seed=7)
    oof = cross_fitted_calibrated(y, s, folds=4, seed=3, method="platt")
    order = np.random.default_rng(3).permutation(400)
    fold = np.array_split(order, 4)[1]
    rest = np.setdiff1d(order, fold)
    ref = fit_calibration(y[rest], s[rest], method="platt").apply(s[fold])
    np.testing.assert_allclose(oof[fold], ref, atol=1e-12)
    in_sample = fit_calibration(y, s, method="platt").apply(s)
    assert not np.allclose(oof, in_sample)
    assert oof.shape == s.shape and np.all((oof >= 0) & (oof <= 1))


# ----------------------------------------------------------------------------- TF + JSON
def test_select_takes_the_lowest_out_of_fold_ece_and_identity_keeps_raw_scores():
    """The choice is the lowest out-of-fold top-5 ECE on validation, recomputed here with
    `cross_fitted_calibrated` + `calibration_metrics`; an over-confident model gets a map
    that at least halves it; ``identity`` returns the raw scores."""
    rng = np.random.default_rng(3)
    p = rng.beta(0.3, 3.0, (1500, 12))
    y_cal = (rng.random(p.shape) < p).astype(np.int8)  # scores ARE the probabilities
    y_over, s_over = overconfident(1500, 12, seed=4)
    for y, s in ((y_cal, p), (y_over, s_over)):
        cal, oof = select_calibration(y, s, seed=0)
        assert list(oof) == list(CANDIDATES)
        for m in CANDIDATES:
            q = s if m == "identity" else cross_fitted_calibrated(y, s, 5, 0, method=m)
            assert oof[m] == pytest.approx(calibration_metrics(y, q)["ece_top5"], abs=1e-12)
        assert cal.method == min(oof, key=oof.get)
    assert cal.method != "identity" and oof[cal.method] < 0.5 * oof["identity"]  # the over-confident one
    cal, oof = select_calibration(y_cal, p, candidates=("identity",))
    assert cal.method == "identity" and set(cal.kinds) == {"identity"} and list(oof) == ["identity"]
    np.testing.assert_allclose(cal.apply(p), np.clip(p, EPS, 1 - EPS), atol=1e-12)
    with pytest.raises(InputError, match="candidates"):
        select_calibration(y_cal, p, candidates=("bogus",))


@pytest.mark.parametrize("method", ["auto", "platt", "isotonic", "temperature", "identity"])
def test_tf_layer_matches_apply(method, tmp_path):
    tf = pytest.importorskip("tensorflow")
    y, s = overconfident(1000, 10, seed=8)
    cal = fit_calibration(y, s, method=method)
    rng = np.random.default_rng(1)
    probe = np.concatenate([s[:300], rng.uniform(0, 1, (100, 10)),
                            np.zeros((1, 10)), np.ones((1, 10))]).astype(np.float32)
    layer = calibration_layer(cal)
    np.testing.assert_allclose(layer(tf.constant(probe)).numpy(), cal.apply(probe), atol=1e-6, rtol=0)
    if method == "isotonic":  # the map survives a SavedModel round trip
        module = tf.Module()
        module.calibrate = layer
        tf.saved_model.save(module, str(tmp_path / "m"))
        loaded = tf.saved_model.load(str(tmp_path / "m"))
        np.testing.assert_allclose(loaded.calibrate(tf.constant(probe)).numpy(), cal.apply(probe),
                                   atol=1e-6, rtol=0)


def test_json_round_trip_and_bad_files():
    y, s = overconfident(600, 8, seed=9)
    cal = fit_calibration(y, s)
    text = json.dumps(cal.to_json())
    back = Calibration.from_json(text)
    np.testing.assert_array_equal(back.apply(s), cal.apply(s))
    assert back.describe() == cal.describe()
    with pytest.raises(InputError, match="cal.json: missing field 'kinds'"):
        Calibration.from_json({"format": "mlbench.calibration/1", "a": [], "b": []}, source="cal.json")
    with pytest.raises(InputError, match="field 'format'"):
        Calibration.from_json({"kinds": []})


def test_bad_input_names_the_field_and_cell():
    y, s = overconfident(50, 4, seed=10)
    bad = s.copy()
    bad[3, 2] = 1.5
    with pytest.raises(InputError, match="s_val: scores must be in \\[0, 1\\], got 1.5 at row 3, label 2"):
        fit_calibration(y, bad)
    y2 = y.copy()
    y2[4, 1] = 2
    with pytest.raises(InputError, match="y_val: expected 0/1 values, got 2 at row 4, label 1"):
        fit_calibration(y2, s)
    with pytest.raises(InputError, match="y_val: expected shape"):
        fit_calibration(y[:, :3], s)
    with pytest.raises(InputError, match="method"):
        fit_calibration(y, s, method="beta")
    with pytest.raises(InputError, match="scores: expected 4 label columns"):
        fit_calibration(y, s).apply(s[:, :3])
