"""Paired-bootstrap confidence intervals and "not significantly worse" verdicts.

Why: a test split of a few thousand documents leaves every F1 with sampling noise
of about a point; the report must say which differences are real.  Documents are
the resampled unit (labels of one document are not independent), and every model
is scored on the SAME resampled documents, so differences are paired.

Vectorised: per-document per-label TP/FP/FN cells are reduced once to [n, L]
(or [n]) count arrays; a resample is a [n] vector of multinomial weights (how many
times each document was drawn), so B resamples of every metric are a few
``[B, n] @ [n, L]`` products — no Python loop over resamples or documents.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from mlbench.evaluation.metrics import count_metrics, safe_div
from mlbench.record import RANKING_KEYS, TEST_METRICS

__all__ = ["METHOD_SENTENCE", "BOOTSTRAP_KEYS", "bootstrap_cis", "not_worse_than_best",
           "resample_weights", "weighted_metrics"]

#: metrics with intervals; ROC-AUC is left out (a weighted rank statistic per resample
#: would cost more than all the others together)
BOOTSTRAP_KEYS: tuple[str, ...] = tuple(m.key for m in TEST_METRICS if m.key != "roc_auc_micro")
_LOWER_IS_BETTER = {m.key for m in TEST_METRICS if not m.higher_is_better}
_KS = (1, 3, 5)

METHOD_SENTENCE = (
    "95% intervals: percentile paired bootstrap over test documents (1,000 resamples, "
    "seeded; every model scored on the same resampled documents). A model is 'not "
    "significantly worse' than the best when the 95% interval of best minus model "
    "reaches zero. ROC-AUC has no interval."
)

_CHUNK_CELLS = 4_000_000  # resamples per chunk: chunk × n weights stay ~32 MB


def resample_weights(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[B, n] multinomial counts: row b says how often each document is in resample b."""
    idx = rng.integers(0, n, size=(n_resamples, n))
    offsets = (np.arange(n_resamples) * n)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=n_resamples * n).reshape(
        n_resamples, n).astype(np.float64)


def _cells(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per-document count arrays every metric is a ratio of: [n, L] or [n] each."""
    y = np.asarray(y_true) != 0
    p = np.asarray(y_pred) != 0
    if y.ndim != 2 or y.shape != p.shape:
        raise ValueError(f"y_true and y_pred must be 2-D and of one shape, got {y.shape} and {p.shape}")
    tp, fp, fn = y & p, ~y & p, y & ~p
    tp_d, fp_d, fn_d = tp.sum(1), fp.sum(1), fn.sum(1)
    den = 2 * tp_d + fp_d + fn_d
    out = {
        "tp": tp.astype(np.float64), "fp": fp.astype(np.float64), "fn": fn.astype(np.float64),
        "f1_doc": np.divide(2.0 * tp_d, den, out=np.zeros(len(y)), where=den > 0),
        "wrong_doc": (fp_d + fn_d).astype(np.float64),
        "exact_doc": ((fp_d + fn_d) == 0).astype(np.float64),
    }
    if scores is not None:
        s = np.asarray(scores)
        if s.shape != y.shape:
            raise ValueError(f"scores {s.shape} and y_true {y.shape} differ in shape")
        n_labels = y.shape[1]
        kmax = max([k for k in _KS if k <= n_labels], default=0)
        if kmax and len(y):
            # same tie rule as `evaluate`: stable sort on -score (lower label index first)
            order = np.argsort(-s, axis=1, kind="stable")[:, :kmax]
            cum = np.cumsum(np.take_along_axis(y, order, axis=1), axis=1)
            for k in _KS:
                if k <= n_labels:
                    out[f"p_at_{k}_doc"] = cum[:, k - 1] / k
    return out


def weighted_metrics(cells: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
    """Every `BOOTSTRAP_KEYS` metric under document weights `w` [B, n] → [B] each: the
    weighted counts go through `mlbench.evaluation.metrics.count_metrics`, so with ``w`` all
    ones this is exactly `mlbench.evaluation.metrics.evaluate`.
    """
    n_docs = w.sum(axis=1)  # [B]
    out = count_metrics(w @ cells["tp"], w @ cells["fp"], w @ cells["fn"], n_docs=n_docs,  # [B, L]
                        doc_f1=w @ cells["f1_doc"], doc_wrong=w @ cells["wrong_doc"],
                        doc_exact=w @ cells["exact_doc"])
    for k in _KS:
        if f"p_at_{k}_doc" in cells:
            out[f"p_at_{k}"] = safe_div(w @ cells[f"p_at_{k}_doc"], n_docs)
    return {k: out[k] for k in BOOTSTRAP_KEYS if k in out}


def _chunks(n: int, n_resamples: int) -> list[int]:
    size = max(1, min(n_resamples, _CHUNK_CELLS // max(n, 1)))
    return [min(size, n_resamples - i) for i in range(0, n_resamples, size)]


def _check_resamples(n_resamples: int, level: float) -> None:
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def bootstrap_cis(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    scores: np.ndarray | None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals (lo, hi) for every `BOOTSTRAP_KEYS` metric.

    Args:
        y_true, y_pred: 0/1 matrices [n_docs, n_labels] (y_pred: the decision rule applied).
        scores: [n_docs, n_labels] for P@k (None: no P@k intervals).
    Documents are resampled with replacement, `n_resamples` times, from `seed`.
    """
    _check_resamples(n_resamples, level)
    cells = _cells(y_true, y_pred, scores)
    n = len(cells["f1_doc"])
    if n == 0:
        return {}
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {}
    for b in _chunks(n, n_resamples):
        for key, v in weighted_metrics(cells, resample_weights(n, b, rng)).items():
            parts.setdefault(key, []).append(v)
    alpha = (1.0 - level) / 2.0
    out = {}
    for key in BOOTSTRAP_KEYS:
        if key in parts:
            lo, hi = np.quantile(np.concatenate(parts[key]), [alpha, 1.0 - alpha])
            out[key] = (float(lo), float(hi))
    return out


def not_worse_than_best(
    predictions: Mapping[str, np.ndarray],
    y_true: np.ndarray,
    *,
    metric: str,
    n_resamples: int = 1000,
    seed: int = 0,
    best: str | None = None,
    level: float = 0.95,
) -> dict[str, bool]:
    """Model → True when it is not significantly worse than the best at `metric`.

    `predictions` maps a model name to its 0/1 test predictions [n_docs, n_labels]
    (each under its own chosen rule).  The best is `best` (e.g. chosen on validation)
    or else the highest point estimate (lowest for Hamming loss).  For each model the
    paired bootstrap distribution of best − model (sign flipped for lower-is-better
    metrics) is drawn on the same resampled documents; the model is "not worse" when
    the `level` interval of that difference reaches 0 (lo <= 0).  The best gets True.
    """
    if metric in RANKING_KEYS or metric not in BOOTSTRAP_KEYS:
        raise ValueError(f"metric must be a thresholded metric of {BOOTSTRAP_KEYS}, got {metric!r}")
    _check_resamples(n_resamples, level)
    if not predictions:
        return {}
    names = list(predictions)
    cells = {m: _cells(y_true, predictions[m], None) for m in names}
    n = len(y_true)
    sign = -1.0 if metric in _LOWER_IS_BETTER else 1.0
    ones = np.ones((1, n))
    point = {m: float(weighted_metrics(cells[m], ones)[metric][0]) for m in names}
    if best is None:
        best = max(names, key=lambda m: sign * point[m])
    elif best not in predictions:
        raise ValueError(f"best {best!r} is not one of {names}")
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[np.ndarray]] = {m: [] for m in names}
    for b in _chunks(n, n_resamples):
        w = resample_weights(n, b, rng)
        values = {m: weighted_metrics(cells[m], w)[metric] for m in names}
        for m in names:
            diffs[m].append(sign * (values[best] - values[m]))
    alpha = (1.0 - level) / 2.0
    return {m: m == best or bool(np.quantile(np.concatenate(diffs[m]), alpha) <= 0.0) for m in names}
