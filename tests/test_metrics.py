"""`mlbench.evaluation.metrics.evaluate` against scikit-learn on random multi-label arrays."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    hamming_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mlbench.evaluation.metrics import (
    FrequencyGroups,
    evaluate,
    label_groups,
    per_label_f1,
    predict_labels,
)

TOL = 1e-9


def _random_case(seed: int, n: int = 300, L: int = 20, *, empty_cols: int = 3):
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.01, 0.4, size=L)
    y = (rng.random((n, L)) < rates).astype(np.int64)
    y[:, :empty_cols] = 0  # labels with no positives
    scores = np.clip(0.5 * y + rng.random((n, L)) * 0.7, 0.0, 1.0)
    # quantise some scores so ties exist (for AUC / P@k tie handling)
    scores[: n // 3] = np.round(scores[: n // 3], 1)
    return y, scores


def _reference_p_at_k(y: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Independent, loop-based P@k: ties go to the lower label index."""
    total = 0.0
    for row_y, row_s in zip(y, scores):
        ranked = sorted(range(len(row_s)), key=lambda j: (-row_s[j], j))[:k]
        total += sum(row_y[j] for j in ranked) / k
    return total / len(y)


def _sk_all(y: np.ndarray, pred: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    kw = dict(zero_division=0)
    return {
        "hamming_loss": hamming_loss(y, pred),
        "binary_accuracy": 1.0 - hamming_loss(y, pred),
        "f1_micro": f1_score(y, pred, average="micro", **kw),
        "f1_macro": f1_score(y, pred, average="macro", **kw),
        "f1_samples": f1_score(y, pred, average="samples", **kw),
        "precision_micro": precision_score(y, pred, average="micro", **kw),
        "precision_macro": precision_score(y, pred, average="macro", **kw),
        "recall_micro": recall_score(y, pred, average="micro", **kw),
        "recall_macro": recall_score(y, pred, average="macro", **kw),
        "subset_accuracy": accuracy_score(y, pred),
        "roc_auc_micro": roc_auc_score(y, scores, average="micro"),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_label", [False, True])
def test_every_key_matches_sklearn(seed: int, per_label: bool) -> None:
    y, scores = _random_case(seed)
    if per_label:
        threshold = np.random.default_rng(seed + 10).uniform(0.2, 0.9, size=y.shape[1])
    else:
        threshold = 0.55
    pred = (scores >= threshold).astype(int)
    got = evaluate(y, scores, threshold=threshold)
    for key, ref in _sk_all(y, pred, scores).items():
        assert got[key] == pytest.approx(ref, abs=TOL), key
    for k in (1, 3, 5):
        assert got[f"p_at_{k}"] == pytest.approx(_reference_p_at_k(y, scores, k), abs=TOL)
    assert set(got) >= {"p_at_1", "p_at_3", "p_at_5"}
    assert "head_f1_micro" not in got
    json.dumps(got)  # plain, JSON-serialisable values
    assert all(v is None or type(v) in (float, int) for v in got.values())


def test_all_zero_predictions_and_empty_rows() -> None:
    y, scores = _random_case(5)
    y[:10] = 0  # docs with no true labels
    got = evaluate(y, scores, threshold=1.01)  # nothing predicted
    pred = np.zeros_like(y)
    for key, ref in _sk_all(y, pred, scores).items():
        assert got[key] == pytest.approx(ref, abs=TOL), key
    assert got["f1_micro"] == 0.0 and got["precision_micro"] == 0.0


def test_everything_predicted() -> None:
    y, scores = _random_case(6)
    got = evaluate(y, scores, threshold=0.0)
    pred = np.ones_like(y)
    for key, ref in _sk_all(y, pred, scores).items():
        assert got[key] == pytest.approx(ref, abs=TOL), key


def test_roc_auc_none_when_undefined() -> None:
    y = np.zeros((5, 4))
    s = np.random.default_rng(0).random((5, 4))
    assert evaluate(y, s)["roc_auc_micro"] is None
    assert evaluate(np.ones((5, 4)), s)["roc_auc_micro"] is None


def test_roc_auc_heavy_ties() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((200, 10)) < 0.2).astype(int)
    s = rng.integers(0, 4, size=(200, 10)) / 4.0
    got = evaluate(y, s)["roc_auc_micro"]
    assert got == pytest.approx(roc_auc_score(y, s, average="micro"), abs=TOL)


def test_p_at_k_ties_and_large_k() -> None:
    y = np.array([[0, 1, 1, 0], [1, 0, 0, 0]])
    s = np.array([[0.5, 0.5, 0.1, 0.5], [0.2, 0.2, 0.2, 0.2]])
    got = evaluate(y, s, ks=(1, 2, 3, 4, 5))
    # row 0: ranking 0,1,3,2 ; row 1: 0,1,2,3
    assert got["p_at_1"] == pytest.approx((0 + 1) / 2)
    assert got["p_at_2"] == pytest.approx((0.5 + 0.5) / 2)
    assert got["p_at_3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert got["p_at_4"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert got["p_at_5"] is None  # k > n_labels


def test_groups_match_sklearn_on_column_subsets() -> None:
    y, scores = _random_case(7, L=30, empty_cols=4)
    counts = np.random.default_rng(1).integers(0, 80, size=30)
    thr = np.random.default_rng(2).uniform(0.3, 0.8, size=30)
    got = evaluate(y, scores, threshold=thr, train_counts=counts)
    pred = (scores >= thr).astype(int)
    groups = label_groups(counts)
    assert sorted(np.concatenate(list(groups.values())).tolist()) == list(range(30))
    assert np.all(counts[groups["head"]] >= 35)
    assert np.all(counts[groups["tail"]] <= 8)
    assert np.all((counts[groups["medium"]] > 8) & (counts[groups["medium"]] < 35))
    for g, idx in groups.items():
        assert got[f"{g}_labels"] == idx.size
        assert idx.size > 0
        ref_mi = f1_score(y[:, idx], pred[:, idx], average="micro", zero_division=0)
        ref_ma = f1_score(y[:, idx], pred[:, idx], average="macro", zero_division=0)
        assert got[f"{g}_f1_micro"] == pytest.approx(ref_mi, abs=TOL)
        assert got[f"{g}_f1_macro"] == pytest.approx(ref_ma, abs=TOL)


def test_empty_group_is_none() -> None:
    y, scores = _random_case(8, L=6, empty_cols=0)
    counts = np.array([100, 50, 40, 3, 2, 1])  # no medium labels
    got = evaluate(y, scores, train_counts=counts)
    assert got["medium_labels"] == 0
    assert got["medium_f1_micro"] is None and got["medium_f1_macro"] is None
    assert got["head_labels"] == 3 and got["tail_labels"] == 3
    custom = label_groups(counts, FrequencyGroups(head_min=60, tail_max=2))
    assert custom["head"].tolist() == [0]
    assert custom["medium"].tolist() == [1, 2, 3]
    with pytest.raises(ValueError):
        FrequencyGroups(head_min=5, tail_max=5)


def test_predict_labels_and_per_label_f1() -> None:
    y, scores = _random_case(9)
    thr = np.linspace(0.3, 0.7, y.shape[1])
    pred = predict_labels(scores, thr)
    assert pred.dtype == np.int8
    assert np.array_equal(pred, (scores >= thr).astype(np.int8))
    assert np.array_equal(predict_labels(np.array([[0.5, 0.49]])), [[1, 0]])
    ref = f1_score(y, pred, average=None, zero_division=0)
    np.testing.assert_allclose(per_label_f1(y, pred), ref, atol=TOL)
    with pytest.raises(ValueError):
        predict_labels(scores, np.ones(3))


def test_shape_errors() -> None:
    with pytest.raises(ValueError):
        evaluate(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError):
        evaluate(np.zeros((3, 4)), np.zeros((3, 4)), train_counts=np.ones(3))


def test_fast_on_large_arrays() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((50_000, 150)) < 0.02).astype(np.int8)
    s = rng.random((50_000, 150)).astype(np.float32)
    t0 = time.perf_counter()
    evaluate(y, s, threshold=0.5, train_counts=rng.integers(0, 100, 150))
    assert time.perf_counter() - t0 < 10.0


@pytest.mark.parametrize("seed", [0, 3])
def test_threshold_metrics_is_evaluate_on_decisions_and_sklearn(seed: int) -> None:
    """`threshold_metrics` (what searches and the ensemble rank on) gives `evaluate`'s
    figures for 0/1 decisions, whichever subset of keys is asked for."""
    from mlbench.evaluation.metrics import COUNT_KEYS, threshold_metrics

    y, scores = _random_case(seed)
    pred = (scores >= 0.55).astype(np.int8)
    full = evaluate(y, scores, threshold=0.55)
    got = threshold_metrics(y, pred)
    assert list(got) == list(COUNT_KEYS)
    reference = _sk_all(y, pred, scores)
    for key in COUNT_KEYS:
        assert got[key] == full[key], key
        assert got[key] == pytest.approx(reference[key], abs=TOL), key
        assert threshold_metrics(y, pred, keys=(key,)) == {key: got[key]}
    with pytest.raises(ValueError, match="roc_auc_micro"):
        threshold_metrics(y, pred, keys=("roc_auc_micro",))
