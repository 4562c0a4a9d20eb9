"""Per-label calibration of scores, fitted on the VALIDATION split only.

Why: a track's scores may rank well without being probabilities (an SVM's
sigmoid(margin) is a squashed distance to a hyperplane), so a reader cannot take
"0.9" at face value.  Three maps, each monotone per label
(so rankings, P@k and ROC-AUC do not change):

* ``platt``: ``sigmoid(a · logit(s) + b)`` per label, fitted by Newton's method on the
  cross-entropy with Platt's (1999) smoothed targets ``(N+ + 1) / (N+ + 2)`` for the
  positives and ``1 / (N- + 2)`` for the negatives (which keep the optimum finite with
  0-2 positives), plus a Gaussian prior ``shrink/2 · ((a - a_g)² + (b - b_g)²)``
  (`PLATT_SHRINK` = 10, about ten documents' worth) towards ONE pooled Platt map
  (a_g, b_g) of all (doc, label) pairs (itself with the prior ``(a - 1)² / 2`` towards
  the identity, `PLATT_PRIOR`).  Why the pooled prior: a label with a handful of
  validation positives cannot be calibrated on its own, and a separate map per rare
  label reorders scores across labels, which changes what any global threshold
  selects; ``shrink=0`` gives plain per-label Platt;
* ``isotonic``: `sklearn.isotonic.IsotonicRegression(out_of_bounds="clip")` per label,
  only where the label has at least `min_isotonic_positives` (default 20) validation
  positives AND as many negatives; it is stored as its knots and applied by linear
  interpolation, exactly as scikit-learn predicts;
* ``temperature``: one global ``sigmoid(logit(s) / T)`` for every label, T fitted on
  all validation pairs (the fallback when a label-wise map is not wanted);
* ``identity``: the raw score, for a model that is already calibrated.

`select_calibration` (what a run uses) picks among ``auto``, ``temperature`` and
``identity`` the one with the lowest top-5 ECE out of fold on validation (cross-fitted),
so calibration never trades a calibrated model for a noisier map fitted on a
thousand documents.

``method="auto"`` uses isotonic where a label has enough positives and its
out-of-fold (3-fold, on validation) Brier score is no worse than Platt's, else Platt.
``method="isotonic"`` uses isotonic wherever there are enough positives, Platt
elsewhere.  Scores are clipped to ``[EPS, 1 - EPS]`` before any logit.

Since decision rules are also fitted on validation, `cross_fitted_calibrated` gives
out-of-fold calibrated validation scores, so rules fitted on calibrated scores never
see scores calibrated on their own documents.  `calibration_layer` is the same map as
TensorFlow ops for a SavedModel signature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlbench.errors import InputError

if TYPE_CHECKING:
    from mlbench.record import CalibrationResult

__all__ = [
    "Calibration",
    "fit_calibration",
    "cross_fitted_calibrated",
    "calibration_layer",
    "select_calibration",
    "calibrate_scores",
    "METHODS",
    "CANDIDATES",
    "EPS",
    "PLATT_PRIOR",
]

METHODS: tuple[str, ...] = ("auto", "platt", "isotonic", "temperature", "identity")
#: what `select_calibration` picks from (ties: the first listed)
CANDIDATES: tuple[str, ...] = ("auto", "temperature", "identity")
#: scores are clipped to [EPS, 1 - EPS] before the logit
EPS = 1e-7
#: strength of the Gaussian prior (a - 1)² / 2 on the pooled Platt slope, in units of one document
PLATT_PRIOR = 1.0
#: strength of the prior pulling each label's Platt (a, b) towards the pooled map (documents)
PLATT_SHRINK = 10.0
_KINDS = ("platt", "isotonic", "temperature", "identity")
_FORMAT = "mlbench.calibration/1"


# ----------------------------------------------------------------------------- helpers
def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(np.asarray(s, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(s) - np.log1p(-s)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _check_scores(name: str, s: Any, n_labels: int | None = None) -> np.ndarray:
    """`s` as float64 [n, L] in [0, 1]; InputError naming the first bad cell."""
    a = np.asarray(s, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"{name}: expected a 2-D array [n_docs, n_labels], got shape {a.shape}")
    if n_labels is not None and a.shape[1] != n_labels:
        raise InputError(f"{name}: expected {n_labels} label columns, got {a.shape[1]}")
    bad = ~np.isfinite(a) | (a < 0.0) | (a > 1.0)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(f"{name}: scores must be in [0, 1], got {float(a[r, c])!r} at row {r}, label {c}")
    return a


def _check_labels(name: str, y: Any, shape: tuple[int, int]) -> np.ndarray:
    a = np.asarray(y)
    if a.shape != shape:
        raise InputError(f"{name}: expected shape {shape} like the scores, got {a.shape}")
    bad = (a != 0) & (a != 1)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(f"{name}: expected 0/1 values, got {a[r, c].item()!r} at row {r}, label {c}")
    return a.astype(bool)


# ----------------------------------------------------------------------------- fitting
def _platt_fit(y: np.ndarray, z: np.ndarray, *, prior: float = PLATT_PRIOR,
               center: tuple[float, float] = (1.0, 0.0), prior_b: float = 0.0,
               iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Platt (a [L], b [L]) for labels y [n, L] (bool) and logits z [n, L], all labels at once.

    Minimises the cross-entropy to Platt's smoothed targets plus the Gaussian prior
    ``prior/2 · (a - a0)² + prior_b/2 · (b - b0)²`` around ``center = (a0, b0)``, by
    Newton steps with backtracking; strictly convex for prior > 0, so it converges
    from the start (a0, b0).
    """
    n, L = z.shape
    n_pos = y.sum(axis=0)
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n - n_pos + 2.0))  # [n, L]
    a0, b0 = float(center[0]), float(center[1])
    a, b = np.full(L, a0), np.full(L, b0)

    def objective(a_: np.ndarray, b_: np.ndarray) -> np.ndarray:
        u = a_ * z + b_
        # cross-entropy of targets t under sigmoid(u), stable: log(1 + e^u) - t u
        return ((np.logaddexp(0.0, u) - t * u).sum(axis=0) + 0.5 * prior * (a_ - a0) ** 2
                + 0.5 * prior_b * (b_ - b0) ** 2)

    f = objective(a, b)
    active = np.ones(L, dtype=bool)
    for _ in range(iters):
        if not active.any():
            break
        p = _sigmoid(a * z + b)
        r = p - t
        w = p * (1.0 - p)
        ga = (r * z).sum(axis=0) + prior * (a - a0)
        gb = r.sum(axis=0) + prior_b * (b - b0)
        haa = (w * z * z).sum(axis=0) + prior
        hab = (w * z).sum(axis=0)
        hbb = w.sum(axis=0) + prior_b + 1e-12
        det = haa * hbb - hab * hab
        det = np.where(det > 0, det, 1e-12)
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        step = np.where(active, 1.0, 0.0)
        for _ in range(30):  # backtracking: halve the step of labels whose objective rose
            fa = objective(a - step * da, b - step * db)
            worse = active & (fa > f + 1e-12 * np.abs(f))
            if not worse.any():
                break
            step = np.where(worse, step * 0.5, step)
        a_new, b_new = a - step * da, b - step * db
        f_new = objective(a_new, b_new)
        done = (np.abs(f - f_new) <= 1e-12 * np.maximum(1.0, np.abs(f))) & (np.abs(step * da) + np.abs(step * db) < 1e-10)
        a, b, f = np.where(active, a_new, a), np.where(active, b_new, b), np.where(active, f_new, f)
        active &= ~done
    return a, b


def _shrunk_platt(y: np.ndarray, z: np.ndarray, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-label Platt shrunk towards one pooled Platt map of every (doc, label) pair.

    The pooled map (a_g, b_g) is fitted first (prior `PLATT_PRIOR` towards the identity);
    each label's (a, b) then has the prior ``shrink/2 · ((a - a_g)² + (b - b_g)²)``, worth
    about `shrink` informative documents: a label with few validation positives keeps
    the pooled map (which preserves the ordering across labels, so a global threshold
    means what it meant on raw scores), a frequent label gets its own.
    """
    ag, bg = _platt_fit(y.reshape(-1, 1), z.reshape(-1, 1))
    return _platt_fit(y, z, prior=shrink, prior_b=shrink, center=(float(ag[0]), float(bg[0])))


def _temperature_fit(y: np.ndarray, z: np.ndarray, iters: int = 100) -> float:
    """Global T > 0 minimising the mean cross-entropy of sigmoid(z / T) over all pairs.

    Newton on beta = 1/T (convex: a logistic regression with one slope and no bias).
    """
    zf, yf = z.ravel(), y.ravel().astype(np.float64)
    beta = 1.0

    def loss(bt: float) -> float:
        u = bt * zf
        return float(np.mean(np.logaddexp(0.0, u) - yf * u))

    f = loss(beta)
    for _ in range(iters):
        p = _sigmoid(beta * zf)
        g = float(np.mean((p - yf) * zf))
        h = float(np.mean(p * (1 - p) * zf * zf)) + 1e-12
        step = g / h
        for _ in range(30):
            if loss(beta - step) <= f:
                break
            step *= 0.5
        new = beta - step
        f_new = loss(new)
        if abs(new - beta) < 1e-10:
            beta, f = new, f_new
            break
        beta, f = new, f_new
    beta = max(beta, 1e-6)  # a non-positive slope would reverse the ranking
    return 1.0 / beta


def _isotonic_knots(y: np.ndarray, s: np.ndarray) -> tuple[list[float], list[float]]:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, y.astype(np.float64))
    return [float(v) for v in iso.X_thresholds_], [float(v) for v in iso.y_thresholds_]


def _interp(s: np.ndarray, x: list[float], yk: list[float]) -> np.ndarray:
    return np.interp(s, np.asarray(x), np.asarray(yk))


def _oof_brier(y: np.ndarray, s: np.ndarray, cols: np.ndarray, folds: int, seed: int,
               shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold Brier of isotonic and of Platt for columns `cols` ([len(cols)] each)."""
    n = len(y)
    order = np.random.default_rng(seed).permutation(n)
    iso_p = np.zeros((n, cols.size))
    platt_p = np.zeros((n, cols.size))
    for fold in np.array_split(order, folds):
        rest = np.setdiff1d(order, fold)
        yr, sr = y[rest][:, cols], s[rest][:, cols]
        a, b = _shrunk_platt(yr, _logit(sr), shrink)
        platt_p[fold] = _sigmoid(a * _logit(s[fold][:, cols]) + b)
        for j, c in enumerate(cols):
            if yr[:, j].all() or not yr[:, j].any():
                iso_p[fold, j] = float(yr[:, j].mean())
                continue
            x, yk = _isotonic_knots(yr[:, j], sr[:, j])
            iso_p[fold, j] = _interp(s[fold, c], x, yk)
    yc = y[:, cols].astype(np.float64)
    return ((iso_p - yc) ** 2).mean(axis=0), ((platt_p - yc) ** 2).mean(axis=0)


# ----------------------------------------------------------------------------- the map
@dataclass
class Calibration:
    """A fitted per-label calibration map (scores [n, L] → calibrated scores [n, L]).

    ``kinds[l]`` is "platt", "isotonic" or "temperature"; Platt labels use
    ``sigmoid(a[l] · logit(s) + b[l])``, temperature labels ``sigmoid(logit(s) / temperature)``,
    isotonic labels interpolate ``knots[l] = (x, y)`` (clipped outside x).
    ``n_positives`` are the validation positives each label was fitted with.
    """

    kinds: list[str]
    a: np.ndarray
    b: np.ndarray
    temperature: float = 1.0
    knots: dict[int, tuple[list[float], list[float]]] = field(default_factory=dict)
    n_positives: list[int] = field(default_factory=list)
    method: str = "auto"
    min_isotonic_positives: int = 20
    shrink: float = PLATT_SHRINK

    def __post_init__(self) -> None:
        self.kinds = [str(k) for k in self.kinds]
        self.a = np.asarray(self.a, dtype=np.float64).reshape(-1)
        self.b = np.asarray(self.b, dtype=np.float64).reshape(-1)
        L = len(self.kinds)
        if self.a.shape != (L,) or self.b.shape != (L,):
            raise ValueError(f"a and b need shape [{L}], got {self.a.shape} and {self.b.shape}")
        for l, k in enumerate(self.kinds):
            if k not in _KINDS:
                raise ValueError(f"label {l}: unknown calibration kind {k!r}")
            if k == "isotonic" and l not in self.knots:
                raise ValueError(f"label {l}: isotonic without knots")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @property
    def n_labels(self) -> int:
        return len(self.kinds)

    def slopes_and_biases(self) -> tuple[np.ndarray, np.ndarray]:
        """(a [L], b [L]) of the sigmoid(a·logit(s)+b) form for every non-isotonic label
        (temperature labels: a = 1/T, b = 0; isotonic labels: identity)."""
        a, b = self.a.copy(), self.b.copy()
        for l, k in enumerate(self.kinds):
            if k == "temperature":
                a[l], b[l] = 1.0 / self.temperature, 0.0
            elif k in ("isotonic", "identity"):
                a[l], b[l] = 1.0, 0.0
        return a, b

    def apply(self, scores: Any) -> np.ndarray:
        """Calibrated scores, float64 [n, L], for raw scores [n, L] in [0, 1]."""
        s = _check_scores("scores", scores, self.n_labels)
        a, b = self.slopes_and_biases()
        out = _sigmoid(a * _logit(s) + b)
        for l, (x, yk) in self.knots.items():
            if self.kinds[l] == "isotonic":
                out[:, l] = _interp(s[:, l], x, yk)
        return out

    def describe(self) -> list[str]:
        """One line per label saying which map it uses (for the report)."""
        out = []
        for l, k in enumerate(self.kinds):
            pos = self.n_positives[l] if l < len(self.n_positives) else None
            tail = "" if pos is None else f", {pos} val positives"
            if k == "platt":
                out.append(f"platt(a={self.a[l]:.4g}, b={self.b[l]:.4g}{tail})")
            elif k == "isotonic":
                out.append(f"isotonic({len(self.knots[l][0])} knots{tail})")
            elif k == "identity":
                out.append(f"identity(raw score kept{tail})")
            else:
                out.append(f"temperature(T={self.temperature:.4g}{tail})")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "method": self.method,
            "min_isotonic_positives": int(self.min_isotonic_positives),
            "shrink": float(self.shrink),
            "kinds": list(self.kinds),
            "a": [float(v) for v in self.a],
            "b": [float(v) for v in self.b],
            "temperature": float(self.temperature),
            "knots": {str(l): {"x": list(x), "y": list(yk)} for l, (x, yk) in sorted(self.knots.items())},
            "n_positives": [int(v) for v in self.n_positives],
            "describe": self.describe(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | str, *, source: str = "calibration") -> "Calibration":
        """Inverse of `to_json` (a dict or its JSON text); InputError naming the bad field."""
        try:
            if isinstance(data, str):
                data = json.loads(data)
            if data.get("format") != _FORMAT:
                raise InputError(f"{source}: field 'format' must be {_FORMAT!r}, got {data.get('format')!r}")
            knots = {}
            for key, kv in data.get("knots", {}).items():
                x, yk = [float(v) for v in kv["x"]], [float(v) for v in kv["y"]]
                if len(x) != len(yk) or not x or np.any(np.diff(x) < 0):
                    raise InputError(f"{source}: field 'knots.{key}' needs equal-length, sorted x and y")
                knots[int(key)] = (x, yk)
            return cls(kinds=list(data["kinds"]), a=data["a"], b=data["b"],
                       temperature=float(data["temperature"]), knots=knots,
                       n_positives=[int(v) for v in data.get("n_positives", [])],
                       method=str(data.get("method", "auto")),
                       min_isotonic_positives=int(data.get("min_isotonic_positives", 20)),
                       shrink=float(data.get("shrink", PLATT_SHRINK)))
        except InputError:
            raise
        except KeyError as err:
            raise InputError(f"{source}: missing field {err.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as err:
            raise InputError(f"{source}: not a calibration ({err})") from None


def fit_calibration(y_val: Any, s_val: Any, *, method: str = "auto", min_isotonic_positives: int = 20,
                    shrink: float = PLATT_SHRINK, seed: int = 0) -> Calibration:
    """Fit a `Calibration` on validation labels y_val [n, L] (0/1) and scores s_val [n, L].

    See the module docstring for the maps and the rule that picks one per label;
    `seed` fixes the folds "auto" compares isotonic and Platt on.
    """
    if method not in METHODS:
        raise InputError(f"method: expected one of {METHODS}, got {method!r}")
    if int(min_isotonic_positives) < 1:
        raise InputError(f"min_isotonic_positives: expected >= 1, got {min_isotonic_positives}")
    s = _check_scores("s_val", s_val)
    y = _check_labels("y_val", y_val, s.shape)
    n, L = s.shape
    if n < 2:
        raise InputError(f"s_val: need at least 2 validation documents to calibrate, got {n}")
    n_pos = y.sum(axis=0)
    if method == "identity":
        return Calibration(["identity"] * L, np.ones(L), np.zeros(L), n_positives=n_pos.tolist(),
                           method=method, min_isotonic_positives=int(min_isotonic_positives))
    z = _logit(s)
    if method == "temperature":
        return Calibration(["temperature"] * L, np.ones(L), np.zeros(L), _temperature_fit(y, z),
                           n_positives=n_pos.tolist(), method=method,
                           min_isotonic_positives=int(min_isotonic_positives))
    a, b = _shrunk_platt(y, z, shrink) if shrink > 0 else _platt_fit(y, z)
    kinds = ["platt"] * L
    knots: dict[int, tuple[list[float], list[float]]] = {}
    m = int(min_isotonic_positives)
    enough = np.flatnonzero((n_pos >= m) & (n - n_pos >= m))
    if method in ("auto", "isotonic") and enough.size:
        use = enough
        if method == "auto":
            folds = 3
            iso_b, platt_b = _oof_brier(y, s, enough, folds, seed, shrink)
            use = enough[iso_b <= platt_b]
        for l in use:
            knots[int(l)] = _isotonic_knots(y[:, l], s[:, l])
            kinds[int(l)] = "isotonic"
    return Calibration(kinds, a, b, 1.0, knots, n_positives=n_pos.tolist(), method=method,
                       min_isotonic_positives=m, shrink=float(shrink))


def cross_fitted_calibrated(y_val: Any, s_val: Any, folds: int = 5, seed: int = 0, *,
                            method: str = "auto", min_isotonic_positives: int = 20,
                            shrink: float = PLATT_SHRINK) -> np.ndarray:
    """Out-of-fold calibrated validation scores [n, L]: each fold's rows are calibrated
    by a map fitted on the other folds (so rules fitted on them are honest)."""
    s = _check_scores("s_val", s_val)
    y = _check_labels("y_val", y_val, s.shape)
    n = len(s)
    k = int(folds)
    if k < 2 or k > n:
        raise InputError(f"folds: expected 2 <= folds <= {n} (validation documents), got {folds}")
    out = np.zeros_like(s)
    order = np.random.default_rng(seed).permutation(n)
    for fold in np.array_split(order, k):
        rest = np.setdiff1d(order, fold)
        cal = fit_calibration(y[rest], s[rest], method=method, shrink=shrink,
                              min_isotonic_positives=min_isotonic_positives, seed=seed)
        out[fold] = cal.apply(s[fold])
    return out


def select_calibration(y_val: Any, s_val: Any, *, candidates: tuple[str, ...] = CANDIDATES,
                       folds: int = 5, seed: int = 0, top_k: int = 5) -> tuple[Calibration, dict[str, float]]:
    """The candidate method with the lowest out-of-fold top-`top_k` ECE on validation
    (each fold calibrated by a map fitted on the others; ``identity`` is the raw scores),
    refitted on all of validation.  Returns (calibration, {method: out-of-fold ECE}).

    Why choose: a model trained with cross-entropy can already be calibrated, and a map
    fitted on a thousand documents then only adds noise; ECE over each document's top
    labels is what a reader of soft labels looks at.
    """
    from mlbench.evaluation.metrics import calibration_metrics

    for m in candidates:
        if m not in METHODS:
            raise InputError(f"candidates: expected methods from {METHODS}, got {m!r}")
    if not candidates:
        raise InputError("candidates: expected at least one calibration method")
    s = _check_scores("s_val", s_val)
    y = _check_labels("y_val", y_val, s.shape)
    oof: dict[str, float] = {}
    for m in candidates:
        p = s if m == "identity" else cross_fitted_calibrated(y, s, folds, seed, method=m)
        oof[m] = float(calibration_metrics(y, p, top_k=top_k)[f"ece_top{top_k}"])
    best = min(candidates, key=lambda m: (oof[m], candidates.index(m)))
    return fit_calibration(y, s, method=best, seed=seed), oof


# ----------------------------------------------------------------------------- TF ops
def calibration_layer(cal: Calibration):
    """The map of `cal` as TensorFlow ops: a `tf.Module` callable float32 [None, L] → float32 [None, L].

    Platt / temperature labels are elementwise ``sigmoid(a · logit(s) + b)``; isotonic
    labels interpolate linearly between their knots (padded to one width with the last
    knot) with a per-label ``tf.searchsorted`` + gather.  Computed in float64 so it
    matches `Calibration.apply` to float32 rounding; attach it to the exported module
    so its constants are saved with the signature.
    """
    import tensorflow as tf

    L = cal.n_labels
    a, b = cal.slopes_and_biases()
    iso = np.array([k == "isotonic" for k in cal.kinds])
    width = max([len(x) for x, _ in cal.knots.values()] + [2])
    kx = np.tile(np.array([0.0, 1.0] + [1.0] * (width - 2)), (L, 1))
    ky = kx.copy()
    for l, (x, yk) in cal.knots.items():
        kx[l, :] = x[-1]
        ky[l, :] = yk[-1]
        kx[l, : len(x)] = x
        ky[l, : len(yk)] = yk

    class CalibrationLayer(tf.Module):
        def __init__(self):
            super().__init__(name="calibration")
            self.a = tf.constant(a, tf.float64)
            self.b = tf.constant(b, tf.float64)
            self.is_isotonic = tf.constant(iso)
            self.knots_x = tf.constant(kx, tf.float64)  # [L, K]
            self.knots_y = tf.constant(ky, tf.float64)
            self.n_labels = L

        @tf.function(input_signature=[tf.TensorSpec([None, L], tf.float32)])
        def __call__(self, scores):
            s = tf.cast(scores, tf.float64)
            c = tf.clip_by_value(s, EPS, 1.0 - EPS)
            z = tf.math.log(c) - tf.math.log1p(-c)
            platt = tf.sigmoid(self.a * z + self.b)
            st = tf.transpose(s)  # [L, B]: searchsorted works along the last axis, per label
            i = tf.searchsorted(self.knots_x, st, side="right")
            hi = tf.minimum(i, width - 1)
            lo = tf.maximum(i - 1, 0)
            x0 = tf.gather(self.knots_x, lo, batch_dims=1)
            x1 = tf.gather(self.knots_x, hi, batch_dims=1)
            y0 = tf.gather(self.knots_y, lo, batch_dims=1)
            y1 = tf.gather(self.knots_y, hi, batch_dims=1)
            gap = x1 - x0
            t = tf.where(gap > 0, (st - x0) / tf.where(gap > 0, gap, 1.0), tf.zeros_like(st))
            interp = tf.transpose(y0 + t * (y1 - y0))
            out = tf.where(self.is_isotonic[None, :], interp, platt)
            return tf.cast(out, tf.float32)

    return CalibrationLayer()


def calibrate_scores(y_val: np.ndarray, s_val: np.ndarray, y_test: np.ndarray, s_test: np.ndarray, *,
                     seed: int = 0) -> tuple[Calibration | None, CalibrationResult | None]:
    """Choose and fit the calibration on out-of-sample scores s_val [n_val, L] only
    (`select_calibration`: cross-fitted top-5 ECE); judge raw and calibrated test scores
    s_test [n_test, L] with `calibration_metrics`.  Decision rules stay on raw scores.
    (None, None) when there are too few rows to calibrate (said on the console)."""
    from mlbench.evaluation.metrics import calibration_metrics
    from mlbench.progress import say
    from mlbench.record import CALIBRATION_KEYS, CalibrationResult, CalibrationScores

    try:
        cal, oof = select_calibration(y_val, np.clip(s_val, 0.0, 1.0), seed=seed)
    except InputError as err:
        say(f"calibration skipped: {err}")
        return None, None
    raw = calibration_metrics(y_test, s_test)
    calibrated = calibration_metrics(y_test, cal.apply(np.clip(s_test, 0.0, 1.0)))
    maps: dict[str, int] = {}
    for kind in cal.kinds:
        maps[kind] = maps.get(kind, 0) + 1
    return cal, CalibrationResult(
        method=cal.method, maps=maps, bins=raw["bins"],
        chosen_by={"criterion": "out-of-fold ECE top-5 on validation", "candidates": oof},
        raw=CalibrationScores(**{k: raw[k] for k in CALIBRATION_KEYS}),
        calibrated=CalibrationScores(**{k: calibrated[k] for k in CALIBRATION_KEYS}),
        reliability={name: {"all": m["reliability"], "top5": m["reliability_top5"]}
                     for name, m in (("raw", raw), ("calibrated", calibrated))},
    )
