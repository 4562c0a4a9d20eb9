"""Decision rules (score -> label) chosen on the validation split.

Three rules are fitted for every model so reports can show how much of a method's
score comes from calibration rather than ranking:

* ``fixed``: the default threshold (0.5) for every label;
* ``global``: one threshold maximising validation micro-F1;
* ``per_label``: each label's own F1-optimal threshold, falling back to the global
  one for labels with too few validation positives to tune on;
* ``scutfbr``: macro-oriented per-label thresholds with the SCutFBR fallback of
  Fan & Lin (2007), as LibMultiLabel's linear ``train_thresholding`` used it: a
  label whose tuned F1 is below ``fbr`` gets a conservative threshold (its top
  score), and ``fbr`` itself is chosen per label by cross-validation.

A label is predicted when ``score >= threshold`` (as in `mlbench.evaluation.metrics`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlbench.errors import InputError
from mlbench.record import RULES

__all__ = [
    "DecisionRule",
    "fit_global_threshold",
    "fit_per_label_thresholds",
    "fit_scutfbr_thresholds",
    "fit_decision_rules",
    "save_thresholds",
    "load_thresholds",
]

RULE_NAMES: tuple[str, ...] = RULES  # the one list, in mlbench.record
#: the FBR values LibMultiLabel's SCutFBR chooses from (Fan & Lin 2007 used 0.1-0.8 too)
FBR_GRID: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
_TIE = 1e-12  # F1 values closer than this count as tied


def _check(y_val: np.ndarray, scores_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_val)
    s = np.asarray(scores_val, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(
            f"y_val and scores_val must be 2-D and of one shape, got {y.shape} and {s.shape}"
        )
    return y != 0, s


def default_grid(scores_val: np.ndarray, y_val: np.ndarray | None = None) -> np.ndarray:
    """0.05..0.95 step 0.01, plus 0.5, plus percentiles of the scores (all and positive).

    The quantiles add candidates where the scores actually are, which matters for
    poorly calibrated models whose scores all sit below 0.05 or above 0.95.
    """
    s = np.asarray(scores_val, dtype=np.float64)
    parts = [np.linspace(0.05, 0.95, 91), [0.5]]
    levels = np.linspace(0.0, 1.0, 101)
    if s.size:
        parts.append(np.quantile(s, levels))
        if y_val is not None:
            pos = s[np.asarray(y_val) != 0]
            if pos.size:
                parts.append(np.quantile(pos, levels))
    return np.unique(np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]))


def _closest(candidates: np.ndarray, values: np.ndarray, target: float) -> int:
    """Index of the best value; among ties, the candidate closest to `target`."""
    best = np.max(values)
    tied = np.flatnonzero(values >= best - _TIE)
    return int(tied[np.argmin(np.abs(candidates[tied] - target))])


def fit_global_threshold(
    y_val: np.ndarray,
    scores_val: np.ndarray,
    grid: Sequence[float] | np.ndarray | None = None,
    *,
    default: float = 0.5,
) -> float:
    """The grid threshold with the best validation micro-F1 (ties: closest to default).

    Vectorised: with all scores and the positives' scores sorted once, the number of
    predicted and true-positive cells at any threshold is one `searchsorted`.
    """
    y, s = _check(y_val, scores_val)
    cand = default_grid(s, y) if grid is None else np.unique(np.asarray(grid, dtype=np.float64))
    if cand.size == 0:
        raise ValueError("empty threshold grid")
    all_sorted = np.sort(s, axis=None)
    pos_sorted = np.sort(s[y], axis=None)
    n_pred = all_sorted.size - np.searchsorted(all_sorted, cand, side="left")
    tp = pos_sorted.size - np.searchsorted(pos_sorted, cand, side="left")
    den = (pos_sorted.size + n_pred).astype(np.float64)
    f1 = np.divide(2.0 * tp, den, out=np.zeros_like(den), where=den > 0)
    return float(cand[_closest(cand, f1, default)])


def fit_per_label_thresholds(
    y_val: np.ndarray,
    scores_val: np.ndarray,
    *,
    fallback: float,
    min_positives: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Each label's F1-optimal threshold on validation; (thresholds [L], fell_back [L]).

    Per label, sort scores descending; predicting the top j documents gives
    F1_j = 2 TP_j / (P + j), evaluated for every j at once with cumulative sums
    (only at cuts between distinct scores). The cut between scores a > b is realised
    by any threshold in (b, a]: we use `fallback` itself when it lies in that
    interval, else the midpoint. Among tied best cuts the threshold closest to
    `fallback` wins, so labels with a flat optimum stay near the default. Labels with
    fewer than `min_positives` validation positives get `fallback` and are flagged.
    """
    y, s = _check(y_val, scores_val)
    # midpoints are rounded to the scores' own float type, so a float32 pipeline that
    # casts the thresholds down still makes exactly the same predictions
    raw_dtype = np.asarray(scores_val).dtype
    dtype = raw_dtype if np.issubdtype(raw_dtype, np.floating) else np.dtype(np.float64)
    n, L = s.shape
    fallback = float(fallback)
    thresholds = np.full(L, fallback, dtype=np.float64)
    n_pos = y.sum(axis=0)
    fell_back = n_pos < max(int(min_positives), 1)
    cols = np.flatnonzero(~fell_back)
    if n == 0 or cols.size == 0:
        return thresholds, fell_back

    # column chunks keep the [n, chunk] work arrays small on 50k-document splits
    chunk = max(1, min(cols.size, 4_000_000 // max(n, 1)))
    for start in range(0, cols.size, chunk):
        part = cols[start : start + chunk]
        thresholds[part] = _best_cuts(y[:, part], s[:, part], n_pos[part], fallback, dtype)
    return thresholds, fell_back


def _best_cuts(
    y: np.ndarray, s: np.ndarray, n_pos: np.ndarray, fallback: float, dtype: np.dtype
) -> np.ndarray:
    """F1-optimal threshold per column of (y, s); see `fit_per_label_thresholds`."""
    n, width = s.shape
    order = np.argsort(-s, axis=0, kind="stable")
    s_desc = np.take_along_axis(s, order, axis=0)  # [n, width]
    tp = np.cumsum(np.take_along_axis(y, order, axis=0), axis=0)  # TP when predicting top row+1
    j = np.arange(1, n + 1, dtype=np.float64)[:, None]
    f1 = 2.0 * tp / (n_pos[None, :] + j)
    # a cut after row i is realisable only if the next score is strictly lower
    hi = s_desc  # lowest score kept
    lo = np.vstack([s_desc[1:], np.full((1, width), -np.inf)])  # highest score dropped
    f1 = np.where(hi > lo, f1, -1.0)

    # threshold realising each cut: fallback if inside (lo, hi], else the midpoint
    with np.errstate(invalid="ignore"):
        mid = np.where(np.isfinite(lo), (hi + lo) / 2.0, hi).astype(dtype).astype(np.float64)
    mid = np.where(mid > lo, mid, hi)  # float rounding may land on lo: use hi
    inside = (lo < fallback) & (fallback <= hi)
    thr = np.where(inside, fallback, mid)

    best = f1.max(axis=0)
    tied = f1 >= best[None, :] - _TIE
    dist = np.where(tied, np.abs(thr - fallback), np.inf)
    pick = np.argmin(dist, axis=0)
    return thr[pick, np.arange(width)]


def _fold_bounds(n: int, folds: int) -> list[tuple[int, int]]:
    """LibMultiLabel's contiguous fold slices ``[int(f n / k), int((f + 1) n / k))``."""
    return [(int(f * n / folds), int((f + 1) * n / folds)) for f in range(folds)]


def _scutfbr_inner(
    y: np.ndarray, s: np.ndarray, fbr: np.ndarray, *, fallback: float, folds: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """SCutFBR thresholds for every fbr value: ([K, L] thresholds, [K, L] FBR-used flags).

    Rows are split into `folds` random folds; on each, a label's SCut threshold (its
    F1-optimal cut on that fold, `fit_per_label_thresholds`) is kept when the F1 it
    reaches there exceeds fbr, else replaced by the fold's top score for the label
    (SCut.FBR.1: only the highest-scored documents stay positive). The threshold is
    the mean over folds, which also smooths the cut of a label with few positives.
    """
    n, L = s.shape
    perm = rng.permutation(n)
    thr = np.zeros((fbr.size, L))
    used = np.zeros((fbr.size, L), dtype=bool)
    k = max(1, min(int(folds), n))
    for lo, hi in _fold_bounds(n, k):
        rows = perm[lo:hi]
        y_f, s_f = y[rows], s[rows]
        scut, _ = fit_per_label_thresholds(y_f, s_f, fallback=fallback, min_positives=1)
        f1 = _label_f1(y_f, s_f >= scut)  # [L]
        top = s_f.max(axis=0) if len(rows) else np.full(L, np.inf)
        low = f1[None, :] <= fbr[:, None]  # [K, L]: LibMultiLabel keeps SCut only if F > fbr
        thr += np.where(low, top[None, :], scut[None, :])
        used |= low
    return thr / k, used


def _label_f1(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-column F1 of boolean matrices [n, L] (0 where a column has no true/predicted)."""
    tp = np.count_nonzero(y & p, axis=0)
    den = y.sum(axis=0) + p.sum(axis=0)
    return np.divide(2.0 * tp, den, out=np.zeros(y.shape[1]), where=den > 0)


def fit_scutfbr_thresholds(
    y_val: np.ndarray,
    scores_val: np.ndarray,
    *,
    fallback: float,
    fbr_grid: Sequence[float] = FBR_GRID,
    folds: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label SCutFBR thresholds on validation; (thresholds [L], fell_back [L]).

    Why: a per-label F1-optimal cut fitted on a handful of positives often admits
    many false positives on new data; Fan & Lin's FBR heuristic falls back to a
    conservative cut whenever the tuned F1 is poor.  This follows LibMultiLabel's
    linear ``_thresholding_one_label`` / ``_scutfbr`` (3 outer and 3 inner folds,
    fbr in 0.1..0.8, per label the largest fbr with the best outer-fold F1 sum, or
    the smallest fbr when every F1 is 0), with one change: the model is not refitted
    per fold (its validation scores already come from a model fitted on train), so
    the folds only split the validation documents.  Labels with no validation
    positive have no F1 to judge and keep `fallback` (flagged in `fell_back`).
    """
    y, s = _check(y_val, scores_val)
    n, L = s.shape
    fallback = float(fallback)
    fbr = np.asarray(fbr_grid, dtype=np.float64)
    if fbr.ndim != 1 or fbr.size == 0:
        raise ValueError(f"fbr_grid must be a non-empty list of values, got {fbr_grid!r}")
    thresholds = np.full(L, fallback, dtype=np.float64)
    fell_back = y.sum(axis=0) == 0
    cols = np.flatnonzero(~fell_back)
    if n < 2 or cols.size == 0:
        return thresholds, fell_back
    y, s = y[:, cols], s[:, cols]
    rng = np.random.default_rng(seed)

    # outer folds: score each fbr by the F1 its inner-CV thresholds reach on held-out rows
    f_sum = np.zeros((fbr.size, cols.size))
    perm = rng.permutation(n)
    k = max(1, min(int(folds), n))
    for lo, hi in _fold_bounds(n, k):
        held = perm[lo:hi]
        rest = np.concatenate([perm[:lo], perm[hi:]])
        if rest.size == 0 or held.size == 0:
            continue
        thr_k, _ = _scutfbr_inner(y[rest], s[rest], fbr, fallback=fallback, folds=folds, rng=rng)
        for i in range(fbr.size):
            f_sum[i] += _label_f1(y[held], s[held] >= thr_k[i])
    # last largest (ties go to the larger, more conservative fbr); all-zero -> smallest fbr
    best = fbr.size - 1 - np.argmax(f_sum[::-1], axis=0)
    best = np.where(f_sum.max(axis=0) > 0, best, int(np.argmin(fbr)))

    final, _ = _scutfbr_inner(y, s, fbr, fallback=fallback, folds=folds, rng=rng)
    thresholds[cols] = final[best, np.arange(cols.size)]
    return thresholds, fell_back


@dataclass
class DecisionRule:
    """A named thresholding rule; `thresholds` is a float or one value per label."""

    name: str
    thresholds: float | np.ndarray
    fallback_labels: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.name not in RULE_NAMES:
            raise ValueError(f"rule name must be one of {RULE_NAMES}, got {self.name!r}")
        t = np.asarray(self.thresholds, dtype=np.float64)
        self.thresholds = float(t) if t.ndim == 0 else t
        self.fallback_labels = [int(i) for i in self.fallback_labels]

    def threshold_array(self, n_labels: int) -> np.ndarray:
        """The thresholds broadcast to shape [n_labels]."""
        t = np.broadcast_to(np.asarray(self.thresholds, dtype=np.float64), (n_labels,))
        return t.copy()

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """0/1 int8 predictions ``scores >= thresholds``."""
        s = np.asarray(scores)
        return (s >= self.threshold_array(s.shape[-1])).astype(np.int8)

    def to_json(self) -> dict[str, Any]:
        t = self.thresholds
        return {
            "name": self.name,
            "thresholds": float(t) if np.ndim(t) == 0 else [float(v) for v in np.ravel(t)],
            "fallback_labels": list(self.fallback_labels),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DecisionRule":
        return cls(
            name=data["name"],
            thresholds=np.asarray(data["thresholds"], dtype=np.float64)
            if isinstance(data["thresholds"], list)
            else float(data["thresholds"]),
            fallback_labels=list(data.get("fallback_labels", [])),
        )


def fit_decision_rules(
    y_val: np.ndarray, scores_val: np.ndarray, *, default: float = 0.5, min_positives: int = 2,
    seed: int = 0,
) -> dict[str, DecisionRule]:
    """Fit every rule of `RULE_NAMES`; per-label and SCutFBR fall back to global.

    `seed` fixes SCutFBR's internal folds (the other rules are deterministic).
    """
    g = fit_global_threshold(y_val, scores_val, default=default)
    per, fell = fit_per_label_thresholds(
        y_val, scores_val, fallback=g, min_positives=min_positives
    )
    fbr, fbr_fell = fit_scutfbr_thresholds(y_val, scores_val, fallback=g, seed=seed)
    return {
        "fixed": DecisionRule("fixed", float(default)),
        "global": DecisionRule("global", g),
        "per_label": DecisionRule("per_label", per, np.flatnonzero(fell).tolist()),
        "scutfbr": DecisionRule("scutfbr", fbr, np.flatnonzero(fbr_fell).tolist()),
    }


def save_thresholds(
    path: str | Path,
    rules: dict[str, DecisionRule],
    label_names: Sequence[str],
    *,
    best_rule: str | None = None,
) -> None:
    """Write the rules as JSON, with the label order their per-label arrays follow.

    ``best_rule`` (the rule chosen on validation) is stored as a top-level
    ``"best_rule"`` key so a served model knows which rule to apply by default.
    """
    names = [str(n) for n in label_names]
    if best_rule is not None and best_rule not in rules:
        raise ValueError(f"best_rule {best_rule!r} is not one of {sorted(rules)}")
    for key, rule in rules.items():
        if np.ndim(rule.thresholds) and np.size(rule.thresholds) != len(names):
            raise ValueError(
                f"rule {key!r} has {np.size(rule.thresholds)} thresholds for {len(names)} labels"
            )
    payload: dict[str, Any] = {"label_names": names}
    if best_rule is not None:
        payload["best_rule"] = best_rule
    payload["rules"] = {k: r.to_json() for k, r in rules.items()}
    Path(path).write_text(json.dumps(payload, indent=1), encoding="utf-8")


def load_thresholds(
    path: str | Path, label_names: Sequence[str] | None = None
) -> dict[str, DecisionRule]:
    """Read rules written by `save_thresholds`; InputError on a bad or mismatched file.

    With `label_names`, also checks the file was fitted for that label order.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = [str(n) for n in data["label_names"]]
        rules = {k: DecisionRule.from_json(v) for k, v in data["rules"].items()}
    except FileNotFoundError:
        raise InputError(f"{path}: thresholds file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}: not a thresholds file ({err})") from None
    for key, rule in rules.items():
        if np.ndim(rule.thresholds) and np.size(rule.thresholds) != len(names):
            raise InputError(
                f"{path}: rule {key!r} has {np.size(rule.thresholds)} thresholds "
                f"for {len(names)} labels"
            )
    if label_names is not None and [str(n) for n in label_names] != names:
        raise InputError(f"{path}: thresholds were fitted for a different label order")
    return rules
