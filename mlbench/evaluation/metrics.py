"""`evaluate`: the one evaluation function every track reports through.

Every track hands over probabilities in [0, 1] and a threshold (a scalar or one per
label); a label is predicted when ``score >= threshold``. All metrics are computed
here with vectorised NumPy from per-label confusion counts so that the numbers in
every report are comparable across tracks (and fast on 50,000 x 150 matrices); the
tests check each one against scikit-learn (``zero_division=0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = [
    "FrequencyGroups",
    "label_groups",
    "predict_labels",
    "per_label_f1",
    "evaluate",
    "count_metrics",
    "COUNT_KEYS",
    "safe_div",
    "threshold_metrics",
    "METRIC_KEYS",
    "calibration_metrics",
    "reliability_bins",
]

#: Keys `evaluate` always returns (group keys are added when train_counts is given).
METRIC_KEYS = (
    "binary_accuracy",
    "hamming_loss",
    "f1_micro",
    "f1_macro",
    "f1_samples",
    "precision_micro",
    "precision_macro",
    "recall_micro",
    "recall_macro",
    "subset_accuracy",
    "roc_auc_micro",
)


@dataclass(frozen=True)
class FrequencyGroups:
    """Label-frequency bands by number of *training* documents.

    Defaults follow Huang et al. (2021) for Reuters-21578: head >= 35, medium 9-34,
    tail <= 8 training documents. A label with ``tail_max < n < head_min`` is medium.
    """

    head_min: int = 35
    tail_max: int = 8

    def __post_init__(self) -> None:
        if self.tail_max >= self.head_min:
            raise ValueError(
                f"FrequencyGroups needs tail_max < head_min, got tail_max={self.tail_max}, "
                f"head_min={self.head_min}"
            )


def label_groups(
    train_counts: np.ndarray, groups: FrequencyGroups = FrequencyGroups()
) -> dict[str, np.ndarray]:
    """Split label indices into "head" / "medium" / "tail" by training frequency."""
    counts = np.asarray(train_counts).reshape(-1)
    head = counts >= groups.head_min
    tail = counts <= groups.tail_max
    medium = ~head & ~tail
    return {
        "head": np.flatnonzero(head),
        "medium": np.flatnonzero(medium),
        "tail": np.flatnonzero(tail),
    }


def _as_2d(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_docs, n_labels], got shape {a.shape}")
    return a


def _threshold_array(threshold: float | np.ndarray, n_labels: int) -> np.ndarray | float:
    t = np.asarray(threshold, dtype=np.float64)
    if t.ndim == 0:
        return float(t)
    if t.shape != (n_labels,):
        raise ValueError(
            f"threshold must be a scalar or have shape [{n_labels}], got shape {t.shape}"
        )
    return t


def predict_labels(scores: np.ndarray, threshold: float | np.ndarray = 0.5) -> np.ndarray:
    """0/1 int8 predictions: ``scores >= threshold`` (scalar or per-label threshold)."""
    s = np.asarray(scores)
    n_labels = s.shape[-1] if s.ndim else 1
    return (s >= _threshold_array(threshold, n_labels)).astype(np.int8)


def safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den with 0 where den == 0 (sklearn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _counts(y: np.ndarray, p: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn) summed along `axis`, as int64."""
    tp = np.count_nonzero(y & p, axis=axis).astype(np.int64)
    fp = np.count_nonzero(p, axis=axis).astype(np.int64) - tp  # predicted, not true
    fn = np.count_nonzero(y, axis=axis).astype(np.int64) - tp  # true, not predicted
    return tp, fp, fn


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    # 2tp / (2tp + fp + fn) equals 2PR/(P+R) and is 0 (zero_division=0) when tp=fp=fn=0.
    return safe_div(2 * tp, 2 * tp + fp + fn)


def per_label_f1(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F1 of each label column [n_labels]; 0 where a label has no true and no predicted positives."""
    y = _as_2d("y_true", y_true) != 0
    p = _as_2d("y_pred", y_pred) != 0
    if y.shape != p.shape:
        raise ValueError(f"y_true {y.shape} and y_pred {p.shape} differ in shape")
    return _f1(*_counts(y, p, axis=0))


def _roc_auc_micro(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Micro ROC-AUC = AUC of all (doc, label) cells pooled; ties count one half.

    Mann-Whitney form: each positive beats the negatives scored below it and ties
    with the negatives scored equal to it. Two plain sorts + searchsorted (no argsort)
    keep this fast on millions of cells.
    """
    yv = y.ravel()
    sv = scores.ravel()
    pos = np.sort(sv[yv])
    n_pos = pos.size
    n_neg = sv.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    all_sorted = np.sort(sv)
    less_all = np.searchsorted(all_sorted, pos, side="left")
    leq_all = np.searchsorted(all_sorted, pos, side="right")
    less_pos = np.searchsorted(pos, pos, side="left")
    leq_pos = np.searchsorted(pos, pos, side="right")
    neg_less = int(np.sum(less_all - less_pos, dtype=np.int64))
    neg_equal = int(np.sum((leq_all - less_all) - (leq_pos - less_pos), dtype=np.int64))
    u = neg_less + 0.5 * neg_equal
    return float(u / (float(n_pos) * float(n_neg)))


def _precision_at_k(y: np.ndarray, scores: np.ndarray, ks: Sequence[int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    ks = [int(k) for k in ks]
    if not ks:
        return out
    n_docs, n_labels = y.shape
    valid = [k for k in ks if 1 <= k <= n_labels]
    if valid and n_docs:
        kmax = max(valid)
        # stable sort on -score: equal scores keep label-index order (lower index first)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :kmax]
        hits = np.take_along_axis(y, order, axis=1)
        cum_hits = np.cumsum(hits, axis=1)
    for k in ks:
        if k < 1 or k > n_labels or n_docs == 0:
            out[f"p_at_{k}"] = None
        else:
            out[f"p_at_{k}"] = float(np.mean(cum_hits[:, k - 1] / k))
    return out


#: the keys `count_metrics` computes: every `METRIC_KEYS` entry that depends on the threshold
COUNT_KEYS: tuple[str, ...] = tuple(k for k in METRIC_KEYS if k != "roc_auc_micro")
#: ... and those that need per-document sums (`doc_f1`, `doc_wrong`, `doc_exact`)
DOC_KEYS = frozenset({"binary_accuracy", "hamming_loss", "f1_samples", "subset_accuracy"})


def count_metrics(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, *, n_docs: np.ndarray | float,
                  doc_f1: np.ndarray | float | None = None, doc_wrong: np.ndarray | float | None = None,
                  doc_exact: np.ndarray | float | None = None,
                  keys: Sequence[str] = COUNT_KEYS) -> dict[str, np.ndarray]:
    """The threshold-dependent metrics from confusion counts: the one home of their formulas.

    Why one function: `evaluate`, the bootstrap (document-weighted counts), the search
    (`mlbench.tuning.point_score`) and the ensemble's weights must compute the same numbers.
    ``tp``, ``fp``, ``fn``: per-label counts [..., L] (possibly weighted); ``n_docs``,
    ``doc_f1`` (sum of per-document F1), ``doc_wrong`` (sum of wrong cells per document) and
    ``doc_exact`` (documents without a wrong cell): [...] each, needed only for `DOC_KEYS`.
    Returns float64 [...] for each of `keys` (definitions: `evaluate`); a search asks for
    the one key it ranks on, so a grid of thousands of points stays cheap.
    """
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    n_labels = tp.shape[-1]
    n_docs = np.asarray(n_docs, dtype=np.float64)

    def total(a: np.ndarray) -> np.ndarray:
        return a.sum(-1)

    def macro(per_label: np.ndarray) -> np.ndarray:
        return per_label.mean(-1) if n_labels else np.zeros(per_label.shape[:-1])

    def hamming() -> np.ndarray:
        return safe_div(doc_wrong, n_docs * n_labels)

    formulas = {
        "binary_accuracy": lambda: np.where(n_docs * n_labels > 0, 1.0 - hamming(), 0.0),
        "hamming_loss": hamming,
        "f1_micro": lambda: _f1(total(tp), total(fp), total(fn)),
        "f1_macro": lambda: macro(_f1(tp, fp, fn)),
        "f1_samples": lambda: safe_div(doc_f1, n_docs),
        "precision_micro": lambda: safe_div(total(tp), total(tp) + total(fp)),
        "precision_macro": lambda: macro(safe_div(tp, tp + fp)),
        "recall_micro": lambda: safe_div(total(tp), total(tp) + total(fn)),
        "recall_macro": lambda: macro(safe_div(tp, tp + fn)),
        "subset_accuracy": lambda: safe_div(doc_exact, n_docs),
    }
    unknown = [k for k in keys if k not in formulas]
    if unknown:
        raise ValueError(f"count_metrics computes {', '.join(COUNT_KEYS)}; got {', '.join(unknown)}")
    return {k: formulas[k]() for k in keys}


def threshold_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                      keys: Sequence[str] = COUNT_KEYS) -> dict[str, float]:
    """`count_metrics` of 0/1 predictions [n, L] against 0/1 targets [n, L], as floats:
    the cheap part of `evaluate` (no ranking metrics), for searches that score many points;
    per-document sums are only counted when `keys` needs them."""
    y = _as_2d("y_true", y_true) != 0
    p = _as_2d("y_pred", y_pred) != 0
    if y.shape != p.shape:
        raise ValueError(f"y_true {y.shape} and y_pred {p.shape} differ in shape")
    docs = {}
    if DOC_KEYS.intersection(keys):
        tp_d, fp_d, fn_d = _counts(y, p, axis=1)
        docs = dict(doc_f1=_f1(tp_d, fp_d, fn_d).sum(), doc_wrong=int((fp_d + fn_d).sum()),
                    doc_exact=int(np.count_nonzero((fp_d + fn_d) == 0)))
    counts = count_metrics(*_counts(y, p, axis=0), n_docs=len(y), keys=keys, **docs)
    return {k: float(v) for k, v in counts.items()}


def evaluate(
    y_true: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float | np.ndarray = 0.5,
    train_counts: np.ndarray | None = None,
    groups: FrequencyGroups = FrequencyGroups(),
    ks: Sequence[int] = (1, 3, 5),
) -> dict[str, float | int | None]:
    """All benchmark metrics for one split, as a JSON-ready dict of plain floats.

    Args:
        y_true: 0/1 matrix [n_docs, n_labels].
        scores: probabilities [n_docs, n_labels]; predicted = ``scores >= threshold``.
        threshold: scalar or per-label array [n_labels].
        train_counts: training documents per label; adds head/medium/tail F1.
        groups: frequency bands for the group metrics.
        ks: the k of each ``p_at_k``.

    Definitions (all with scikit-learn's ``zero_division=0`` semantics):
        * ``*_micro`` pool the confusion counts of every (doc, label) cell.
        * ``*_macro`` average over ALL label columns, so a label never predicted and
          never true contributes 0 (as in sklearn).
        * ``f1_samples`` is the mean per-document F1 (0 for a doc with no true and no
          predicted labels: an all-negative document, kept by ``--unlabeled keep``, counts
          as 0 here and in ``p_at_k``; `Corpus.stats` records how many a split has).
        * ``subset_accuracy``: exact match of the whole label row.
        * ``p_at_k``: fraction of the k highest-scored labels that are true, averaged
          over documents; ties in score go to the lower label index. It always divides
          by k, so a doc with fewer than k true labels cannot reach 1 (standard P@k).
          None when k > n_labels.
        * ``roc_auc_micro``: ROC-AUC over all cells; None when there are no positive
          or no negative cells.
        * Group keys ``{head,medium,tail}_f1_{micro,macro}`` are micro/macro F1 on the
          group's columns (None for an empty group), ``{group}_labels`` its size.
    """
    y = _as_2d("y_true", y_true)
    s = _as_2d("scores", scores)
    if y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} differ in shape")
    y = y != 0
    n_labels = y.shape[1]
    p = s >= _threshold_array(threshold, n_labels)

    out: dict[str, float | int | None] = dict(threshold_metrics(y, p))
    out.update(_precision_at_k(y, s, ks))
    out["roc_auc_micro"] = _roc_auc_micro(y, s)

    if train_counts is not None:
        counts = np.asarray(train_counts).reshape(-1)
        if counts.shape != (n_labels,):
            raise ValueError(
                f"train_counts must have shape [{n_labels}], got shape {counts.shape}"
            )
        tp, fp, fn = _counts(y, p, axis=0)
        for gname, idx in label_groups(counts, groups).items():
            out[f"{gname}_labels"] = int(idx.size)
            if idx.size == 0:
                out[f"{gname}_f1_micro"] = None
                out[f"{gname}_f1_macro"] = None
            else:
                out[f"{gname}_f1_micro"] = float(
                    _f1(tp[idx].sum(), fp[idx].sum(), fn[idx].sum())
                )
                out[f"{gname}_f1_macro"] = float(_f1(tp[idx], fp[idx], fn[idx]).mean())
    return out


# ----------------------------------------------------------------------------- calibration
#: clip for the log loss: scores are taken in [LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]
LOG_LOSS_EPS = 1e-7


def reliability_bins(y: np.ndarray, scores: np.ndarray, bins: int = 15) -> dict[str, list]:
    """Reliability-diagram data of pooled (label, score) pairs y [m], scores [m].

    `bins` uniform bins on [0, 1], right-closed as in Guo et al. (2017):
    bin i holds ``i/bins < s <= (i+1)/bins`` (bin 0 also holds s = 0).  Per bin:
    ``mean_score``, observed ``frequency`` of positives (None for an empty bin) and
    ``count``; ``ece`` = sum over bins of count/m * |frequency - mean_score|.
    """
    yv = np.asarray(y).reshape(-1) != 0
    sv = np.asarray(scores, dtype=np.float64).reshape(-1)
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    idx = np.searchsorted(edges[1:-1], sv, side="left")
    count = np.bincount(idx, minlength=bins)
    s_sum = np.bincount(idx, weights=sv, minlength=bins)
    y_sum = np.bincount(idx, weights=yv.astype(np.float64), minlength=bins)
    filled = count > 0
    mean_s = safe_div(s_sum, count)
    freq = safe_div(y_sum, count)
    ece = float(np.sum(count * np.abs(freq - mean_s)) / sv.size) if sv.size else 0.0
    return {
        "edges": edges.tolist(),
        "mean_score": [float(v) if f else None for v, f in zip(mean_s, filled)],
        "frequency": [float(v) if f else None for v, f in zip(freq, filled)],
        "count": count.astype(np.int64).tolist(),
        "ece": ece,
    }


def calibration_metrics(y: np.ndarray, scores: np.ndarray, *, bins: int = 15,
                        top_k: int = 5) -> dict[str, Any]:
    """How far scores [n_docs, n_labels] are from probabilities for 0/1 labels y (same shape).

    * ``brier``: mean of (score - y)² over every document x label pair;
    * ``log_loss``: mean binary cross-entropy over every pair, scores clipped to
      [1e-7, 1 - 1e-7];
    * ``ece``: expected calibration error with `bins` (15) uniform bins (Guo et al.
      2017) over every pair — dominated by the many easy negatives near 0;
    * ``ece_top{k}`` (``ece_top5``): the same over each document's `top_k` highest-
      scored labels (ties: lower label index), where a reader looks;
    * ``reliability`` / ``reliability_top{k}``: the per-bin data (`reliability_bins`).
    """
    yy = _as_2d("y_true", y) != 0
    s = _as_2d("scores", scores).astype(np.float64)
    if yy.shape != s.shape:
        raise ValueError(f"y_true {yy.shape} and scores {s.shape} differ in shape")
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    n_docs, n_labels = s.shape
    k = max(1, min(int(top_k), n_labels))
    yf = yy.astype(np.float64)
    c = np.clip(s, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    n_cells = s.size
    brier = float(np.mean((s - yf) ** 2)) if n_cells else 0.0
    log_loss = float(-np.mean(yf * np.log(c) + (1.0 - yf) * np.log1p(-c))) if n_cells else 0.0
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    rel_all = reliability_bins(yy, s, bins)
    rel_top = reliability_bins(np.take_along_axis(yy, order, axis=1),
                               np.take_along_axis(s, order, axis=1), bins)
    return {
        "brier": brier,
        "log_loss": log_loss,
        "ece": rel_all.pop("ece"),
        f"ece_top{top_k}": rel_top.pop("ece"),
        "bins": int(bins),
        "reliability": rel_all,
        f"reliability_top{top_k}": rel_top,
    }
