"""Paired-bootstrap intervals: exact point estimates, coverage, shrinkage, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlbench.evaluation.bootstrap import (
    BOOTSTRAP_KEYS,
    METHOD_SENTENCE,
    bootstrap_cis,
    not_worse_than_best,
    resample_weights,
    weighted_metrics,
    _cells,
)
from mlbench.evaluation.metrics import evaluate
from mlbench.record import TEST_METRICS


def _data(n: int, L: int = 12, seed: int = 0, noise: float = 0.6):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, L)) < np.linspace(0.4, 0.03, L)).astype(np.int8)
    s = np.clip(0.45 * y + rng.random((n, L)) * noise, 0, 1)
    return y, s


def test_unit_weights_reproduce_evaluate_exactly() -> None:
    y, s = _data(300)
    pred = (s >= 0.5).astype(np.int8)
    ref = evaluate(y, s, threshold=0.5)
    got = weighted_metrics(_cells(y, pred, s), np.ones((1, len(y))))
    assert set(got) == set(BOOTSTRAP_KEYS)
    assert set(BOOTSTRAP_KEYS) == {m.key for m in TEST_METRICS} - {"roc_auc_micro"}
    for key in BOOTSTRAP_KEYS:
        if key in ("f1_samples", "p_at_1", "p_at_3", "p_at_5"):
            # means of per-document fractions: a dot product sums in another order than np.mean
            assert got[key][0] == pytest.approx(ref[key], rel=0, abs=1e-12), key
        else:  # ratios of integer counts: bit-identical
            assert got[key][0] == ref[key], key


def test_weights_equal_an_explicit_resample() -> None:
    """A weight row is the same as evaluating the resampled documents themselves."""
    y, s = _data(80, seed=3)
    pred = (s >= 0.5).astype(np.int8)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, len(y), size=len(y))
    w = np.bincount(idx, minlength=len(y))[None, :].astype(float)
    got = weighted_metrics(_cells(y, pred, s), w)
    ref = evaluate(y[idx], s[idx], threshold=0.5)
    for key in BOOTSTRAP_KEYS:
        assert got[key][0] == pytest.approx(ref[key], abs=1e-12), key
    # multinomial rows: each resample has n documents
    assert (resample_weights(50, 7, np.random.default_rng(0)).sum(axis=1) == 50).all()


def test_intervals_contain_the_point_estimate_and_shrink_with_documents() -> None:
    y, s = _data(400, seed=1)
    pred = (s >= 0.5).astype(np.int8)
    ref = evaluate(y, s, threshold=0.5)
    small = bootstrap_cis(y, pred, s, n_resamples=1000, seed=0)
    for key, (lo, hi) in small.items():
        assert lo <= ref[key] <= hi, key
        assert lo < hi, key
    y4, s4 = _data(6400, seed=1)
    big = bootstrap_cis(y4, (s4 >= 0.5).astype(np.int8), s4, n_resamples=1000, seed=0)
    for key in ("f1_micro", "f1_macro", "hamming_loss", "subset_accuracy", "p_at_1"):
        width_small = small[key][1] - small[key][0]
        width_big = big[key][1] - big[key][0]
        assert width_big < 0.5 * width_small, key  # 16x the documents: ~1/4 the width
    # seeded: the same seed gives the same intervals, another seed other ones
    assert bootstrap_cis(y, pred, s, seed=0) == small
    assert bootstrap_cis(y, pred, s, seed=1) != small
    assert "p_at_1" not in bootstrap_cis(y, pred, None, n_resamples=10)


def test_not_worse_than_best() -> None:
    y, s = _data(1500, seed=2)
    good = (s >= 0.6).astype(np.int8)  # the best cut of these synthetic scores
    close = good.copy()
    close[:3] = 0  # three documents lose their predictions: a tiny difference
    bad = (s >= 0.85).astype(np.int8)  # F1 0.51 vs 0.86, Hamming 0.14 vs 0.05
    preds = {"good": good, "close": close, "bad": bad}
    out = not_worse_than_best(preds, y, metric="f1_micro", n_resamples=1000, seed=0)
    assert out == {"good": True, "close": True, "bad": False}
    assert not_worse_than_best({"a": good}, y, metric="f1_macro") == {"a": True}
    # identical predictions are never worse than each other
    assert not_worse_than_best({"a": good, "b": good.copy()}, y, metric="f1_macro") == {"a": True, "b": True}
    # lower is better for the Hamming loss: the bad model still loses
    assert not_worse_than_best(preds, y, metric="hamming_loss")["bad"] is False
    # a best named by the caller (chosen on validation) is used as given
    flipped = not_worse_than_best(preds, y, metric="f1_micro", best="bad")
    assert flipped == {"good": True, "close": True, "bad": True}
    with pytest.raises(ValueError):
        not_worse_than_best(preds, y, metric="p_at_1")
    assert "paired bootstrap" in METHOD_SENTENCE


def test_thousand_resamples_on_reuters_sized_test_split_take_seconds() -> None:
    y, s = _data(3000, L=90, seed=4)
    pred = (s >= 0.5).astype(np.int8)
    t0 = time.perf_counter()
    cis = bootstrap_cis(y, pred, s, n_resamples=1000, seed=0)
    not_worse_than_best({"a": pred, "b": (s >= 0.6).astype(np.int8)}, y, metric="f1_macro")
    seconds = time.perf_counter() - t0
    assert len(cis) == len(BOOTSTRAP_KEYS)
    assert seconds < 20.0  # a few seconds here; the bound leaves room for a loaded CI core
