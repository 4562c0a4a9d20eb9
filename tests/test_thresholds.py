"""Validation-tuned decision rules: optimality, fallbacks, JSON round trip."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mlbench.errors import InputError
from mlbench.evaluation.metrics import evaluate, per_label_f1
from mlbench.evaluation.thresholds import (
    DecisionRule,
    fit_decision_rules,
    fit_global_threshold,
    fit_per_label_thresholds,
    fit_scutfbr_thresholds,
    load_thresholds,
    save_thresholds,
)


def _val(seed: int = 0, n: int = 400, L: int = 15, dtype=np.float64):
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.02, 0.3, size=L)
    y = (rng.random((n, L)) < rates).astype(np.int8)
    y[:, 0] = 0  # no positives
    y[:, 1] = 0
    y[3, 1] = 1  # one positive -> falls back with min_positives=2
    # label-dependent calibration so per-label thresholds differ
    shift = rng.uniform(-0.3, 0.2, size=L)
    s = np.clip(0.35 * y + rng.random((n, L)) * 0.6 + shift, 0, 1).astype(dtype)
    return y, s


def _brute_best_f1(y_col: np.ndarray, s_col: np.ndarray) -> float:
    """Best F1 over every distinct score used as threshold (plain loop)."""
    y_col = y_col.astype(bool)
    best = 0.0
    for t in np.unique(s_col):
        pred = s_col >= t
        tp = np.sum(pred & y_col)
        best = max(best, 2 * tp / (pred.sum() + y_col.sum()))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_threshold_beats_fixed(seed: int) -> None:
    y, s = _val(seed)
    g = fit_global_threshold(y, s)
    assert 0.0 <= g <= 1.0
    f1_g = evaluate(y, s, threshold=g)["f1_micro"]
    assert f1_g >= evaluate(y, s, threshold=0.5)["f1_micro"]
    for t in np.linspace(0.05, 0.95, 91):  # optimal over the whole default grid
        assert f1_g >= evaluate(y, s, threshold=t)["f1_micro"] - 1e-12
    # a user grid is honoured exactly
    assert fit_global_threshold(y, s, grid=[0.2, 0.4]) in (0.2, 0.4)


def test_global_ties_go_to_default() -> None:
    y = np.array([[1, 0], [0, 0]])
    s = np.array([[0.9, 0.1], [0.2, 0.1]])
    # every threshold in (0.2, 0.9] is perfect: 0.5 is both in the grid and closest
    assert fit_global_threshold(y, s) == pytest.approx(0.5)
    assert fit_global_threshold(y, s, default=0.7) == pytest.approx(0.7)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_per_label_is_optimal_and_beats_global(seed: int, dtype) -> None:
    y, s = _val(seed, dtype=dtype)
    g = fit_global_threshold(y, s)
    thr, fell = fit_per_label_thresholds(y, s, fallback=g, min_positives=2)
    assert thr.shape == (y.shape[1],) and fell.dtype == bool
    f1_per = per_label_f1(y, s >= thr)
    f1_glob = per_label_f1(y, s >= g)
    ok = ~fell
    assert np.all(f1_per[ok] >= f1_glob[ok] - 1e-12)
    for c in np.flatnonzero(ok):  # exactly the best achievable F1 for the label
        assert f1_per[c] == pytest.approx(_brute_best_f1(y[:, c], s[:, c]), abs=1e-12)
    # the thresholds keep working after a cast to the scores' dtype
    thr_cast = thr.astype(dtype)
    assert np.array_equal(s >= thr_cast, s >= thr)


def test_fallback_mask() -> None:
    y, s = _val(4)
    counts = y.sum(axis=0)
    thr, fell = fit_per_label_thresholds(y, s, fallback=0.42, min_positives=2)
    assert np.array_equal(fell, counts < 2)
    assert fell[0] and fell[1]
    assert np.all(thr[fell] == 0.42)
    _, fell5 = fit_per_label_thresholds(y, s, fallback=0.42, min_positives=30)
    assert np.array_equal(fell5, counts < 30)


def test_per_label_ties_prefer_fallback_and_midpoints() -> None:
    # label 0: perfectly separable, fallback inside the gap -> fallback itself
    # label 1: separable, gap (0.6, 0.8] excludes fallback 0.5 -> midpoint 0.7
    y = np.array([[1, 1], [1, 1], [0, 0], [0, 0]])
    s = np.array([[0.9, 0.9], [0.8, 0.8], [0.3, 0.6], [0.1, 0.55]])
    thr, fell = fit_per_label_thresholds(y, s, fallback=0.5)
    assert not fell.any()
    assert thr[0] == 0.5
    assert thr[1] == pytest.approx(0.7)
    # tied scores are never split
    y2 = np.array([[1], [0], [1], [0]])
    s2 = np.array([[0.7], [0.7], [0.2], [0.2]])
    t2, _ = fit_per_label_thresholds(y2, s2, fallback=0.5)
    assert f1_score(y2[:, 0], (s2[:, 0] >= t2[0]).astype(int)) == pytest.approx(
        _brute_best_f1(y2[:, 0], s2[:, 0])
    )


def test_fit_decision_rules_and_json_round_trip(tmp_path) -> None:
    y, s = _val(5)
    rules = fit_decision_rules(y, s, default=0.5)
    assert set(rules) == {"fixed", "global", "per_label", "scutfbr"}
    assert rules["fixed"].thresholds == 0.5
    assert isinstance(rules["global"].thresholds, float)
    per = rules["per_label"]
    assert per.thresholds.shape == (y.shape[1],)
    assert per.fallback_labels == [0, 1]
    assert np.all(per.thresholds[[0, 1]] == rules["global"].thresholds)
    assert np.array_equal(per.predict(s), (s >= per.thresholds).astype(np.int8))

    names = [f"label_{i}" for i in range(y.shape[1])]
    path = tmp_path / "thresholds.json"
    save_thresholds(path, rules, names, best_rule="per_label")
    assert json.loads(path.read_text())["best_rule"] == "per_label"
    with pytest.raises(ValueError):
        save_thresholds(tmp_path / "x.json", rules, names, best_rule="nope")
    back = load_thresholds(path, label_names=names)
    assert set(back) == set(rules)
    for k in rules:
        assert back[k].name == rules[k].name
        assert back[k].fallback_labels == rules[k].fallback_labels
        np.testing.assert_array_equal(
            back[k].threshold_array(len(names)), rules[k].threshold_array(len(names))
        )
    assert DecisionRule.from_json(per.to_json()).to_json() == per.to_json()

    with pytest.raises(InputError):
        load_thresholds(path, label_names=names[::-1])
    with pytest.raises(ValueError):
        save_thresholds(path, rules, names[:-1])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        load_thresholds(bad)
    with pytest.raises(InputError):
        load_thresholds(tmp_path / "missing.json")


def test_fast_on_large_validation_split() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((20_000, 150)) < 0.02).astype(np.int8)
    s = rng.random((20_000, 150)).astype(np.float32)
    t0 = time.perf_counter()
    fit_decision_rules(y, s)
    assert time.perf_counter() - t0 < 15.0


# -- scutfbr -------------------------------------------------------------------------------


def test_scutfbr_hand_computed_single_fold() -> None:
    """One fold: SCut where its F1 beats fbr, else the label's top score (FBR.1)."""
    s_col = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    s = np.stack([s_col, s_col, s_col, [0.9, 0.6, 0.55, 0.4, 0.1]], axis=1)
    y = np.array([
        [1, 0, 0, 1],
        [0, 0, 0, 1],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 1, 0, 0],
    ])
    thr, fell = fit_scutfbr_thresholds(y, s, fallback=0.5, fbr_grid=[0.4], folds=1)
    # label 0: perfect cut between 0.8 and 0.9, F1 = 1 > 0.4; 0.5 is outside (0.8, 0.9] -> midpoint
    assert thr[0] == pytest.approx(0.85)
    # label 1: its only positive is scored lowest; best F1 predicts all, 2/(1+5) = 1/3 <= 0.4
    assert thr[1] == pytest.approx(0.9)
    # label 2: no validation positive -> the fallback, flagged
    assert thr[2] == 0.5 and fell.tolist() == [False, False, True, False]
    # label 3: perfect cut between 0.55 and 0.6; the fallback 0.5 is not in (0.55, 0.6]
    assert thr[3] == pytest.approx(0.575)
    # with fbr 0.3 label 1 keeps its SCut (predict all: any threshold <= 0.1; 0.1 itself)
    thr2, _ = fit_scutfbr_thresholds(y, s, fallback=0.5, fbr_grid=[0.3], folds=1)
    assert thr2[1] == pytest.approx(0.1)


def _reference_scutfbr(y, s, fallback, fbr_grid, folds, seed):
    """Plain per-label loops over LibMultiLabel's procedure (same fold permutations)."""
    rng = np.random.default_rng(seed)
    n, L = s.shape
    fbr = list(fbr_grid)

    def bounds(m):
        return [(int(f * m / folds), int((f + 1) * m / folds)) for f in range(folds)]

    def inner(yy, ss, perm):
        out = np.zeros((len(fbr), L))
        for lo, hi in bounds(len(yy)):
            rows = perm[lo:hi]
            for c in range(L):
                yc, sc = yy[rows, c:c + 1], ss[rows, c:c + 1]
                t, _ = fit_per_label_thresholds(yc, sc, fallback=fallback, min_positives=1)
                f = f1_score(yc[:, 0], (sc[:, 0] >= t[0]).astype(int), zero_division=0)
                for i, b in enumerate(fbr):
                    out[i, c] += t[0] if f > b else sc[:, 0].max()
        return out / folds

    outer_perm = rng.permutation(n)
    f_sum = np.zeros((len(fbr), L))
    for lo, hi in bounds(n):
        held, rest = outer_perm[lo:hi], np.concatenate([outer_perm[:lo], outer_perm[hi:]])
        thr = inner(y[rest], s[rest], rng.permutation(len(rest)))
        for i in range(len(fbr)):
            for c in range(L):
                f_sum[i, c] += f1_score(y[held, c], (s[held, c] >= thr[i, c]).astype(int),
                                        zero_division=0)
    final = inner(y, s, rng.permutation(n))
    out = np.full(L, fallback)
    for c in range(L):
        if y[:, c].sum() == 0:
            continue
        col = f_sum[:, c]
        i = max(i for i in range(len(fbr)) if col[i] == col.max()) if col.max() > 0 else 0
        out[c] = final[i, c]
    return out


@pytest.mark.parametrize("seed", [0, 4])
def test_scutfbr_matches_a_plain_loop_reference(seed: int) -> None:
    y, s = _val(seed, n=120, L=8)
    thr, fell = fit_scutfbr_thresholds(y, s, fallback=0.45, seed=seed)
    ref = _reference_scutfbr(y != 0, s, 0.45, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], 3, seed)
    np.testing.assert_allclose(thr, ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fell, y.sum(axis=0) == 0)
    # deterministic for a seed
    np.testing.assert_array_equal(thr, fit_scutfbr_thresholds(y, s, fallback=0.45, seed=seed)[0])


def test_scutfbr_is_conservative_on_rare_noise_labels() -> None:
    """Rare labels the model cannot see: per-label cuts overfit the few validation
    positives and flood fresh documents with false positives; SCutFBR does not."""
    rng = np.random.default_rng(7)

    def draw(n):
        y = np.zeros((n, 20), dtype=np.int8)
        y[rng.choice(n, size=(3, 20)), np.arange(20)] = 1  # ~3 positives per label
        return y, rng.random((n, 20))  # scores carry no signal

    y_val, s_val = draw(600)
    y_new, s_new = draw(600)
    g = fit_global_threshold(y_val, s_val)
    per, _ = fit_per_label_thresholds(y_val, s_val, fallback=g)
    fbr, _ = fit_scutfbr_thresholds(y_val, s_val, fallback=g)
    fp_per = int(((s_new >= per) & (y_new == 0)).sum())
    fp_fbr = int(((s_new >= fbr) & (y_new == 0)).sum())
    assert fp_fbr < fp_per / 4


def test_scutfbr_in_decision_rules_and_json() -> None:
    y, s = _val(2)
    rules = fit_decision_rules(y, s)
    r = rules["scutfbr"]
    assert r.thresholds.shape == (y.shape[1],)
    assert r.fallback_labels == [0]  # label 0 has no positive; label 1 has one
    assert r.thresholds[0] == rules["global"].thresholds
    assert DecisionRule.from_json(r.to_json()).to_json() == r.to_json()
    with pytest.raises(ValueError, match="fbr_grid"):
        fit_scutfbr_thresholds(y, s, fallback=0.5, fbr_grid=[])


def test_choose_rules_per_objective_on_cross_fitted_validation_only() -> None:
    from mlbench.evaluation.selection import choose_rules
    from mlbench.evaluation.scoring import best_rule

    results = {
        "fixed": {"val_cv": {"f1_micro": 0.80, "f1_macro": 0.30}, "test": {"f1_micro": 0.99}},
        "global": {"val_cv": {"f1_micro": 0.85, "f1_macro": 0.40}, "test": {"f1_micro": 0.10}},
        "per_label": {"val_cv": {"f1_micro": 0.84, "f1_macro": 0.50}},
        "scutfbr": {"val_cv": {"f1_micro": 0.85, "f1_macro": 0.55}},
    }
    # micro: global and scutfbr tie at 0.85 -> the simpler (earlier) rule; test is never read
    assert choose_rules(results) == {"micro": "global", "macro": "scutfbr"}
    assert best_rule(results) == "global"
    # ties follow the reading order of the rules, not the dict order
    tied = {"scutfbr": {"val_cv": {"f1_micro": 0.5, "f1_macro": 0.5}},
            "fixed": {"val_cv": {"f1_micro": 0.5, "f1_macro": None}}}
    assert choose_rules(tied) == {"micro": "fixed", "macro": "scutfbr"}
    with pytest.raises(ValueError):
        choose_rules({})
