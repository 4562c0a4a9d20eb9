"""Long-tail losses for multi-label training on LOGITS (Huang et al., EMNLP 2021).

Huang, Giledereli, Köksal, Özgür, Ozkirimli, "Balancing Methods for Multi-label Text
Classification with Long-Tailed Class Distribution" compare BCE, focal loss (FL),
class-balanced FL (CB), rebalanced FL (R-FL), negative-tolerant regularisation
(NTR-FL), distribution-balanced loss (DB = R-FL + NTR) and CB-NTR. All of them are
one family here (`BalancedFocalLoss`): a per-element weight times a focal loss on
shifted/scaled logits. Everything is written with softplus / log-sigmoid so loss
and gradients stay finite at logits of +-100 (and beyond).

Notation: z logit, y in {0,1}, sigma the sigmoid, n_c training documents with label
c, N training documents, C labels. Per element (document k, label c):

    z'   = z - nu_c,                     nu_c = kappa * b_c,  b_c = -log(1/p_c - 1),  p_c = n_c / N
    L+   = (1 - sigma(z'))^gamma * (-log sigma(z'))                     (positives)
    L-   = (1/lambda) * sigma(lambda z')^gamma * (-log(1 - sigma(lambda z')))   (negatives)
    L    = w_kc * [ y L+ + (1 - y) L- ]

    focal : w = 1,     kappa = 0,    lambda = 1
    cb    : w = r_CB(c) = (1 - beta) / (1 - beta^n_c)            (beta = 0.9; see cb_weights)
    rfl   : w = r_hat = alpha + sigma(beta_map * (r - mu)),       (alpha=0.1, beta_map=10, mu=0.9)
            r_kc = (1/n_c) / sum_{j: y_kj = 1} (1/n_j)           (Wu et al. 2020: P^C_c / P^I_k)
    ntr   : w = 1,     kappa = 0.05, lambda = 2
    db    : w = r_hat, kappa = 0.05, lambda = 2
    cbntr : w = r_CB,  kappa = 0.05, lambda = 2

Reduction: the mean over all (document, label) elements (Keras' default
"sum_over_batch_size" of the per-document mean over labels).

Conventions worth knowing (also in each docstring):
* The paper's focal loss has no alpha; the authors' code multiplies by a constant
  alpha_t = 0.5 (alpha=0.5 for both classes), which only halves the loss. Use
  ``loss_weight=0.5`` to match their scale exactly.
* NTR follows the paper's sign, z' = z - nu. The public code of Wu et al. / Huang et
  al. *adds* kappa * b (``logits += init_bias``), which is ``kappa=-0.05`` here.
* Counts of 0 (a label absent from training) are treated as 1 wherever a formula
  needs 1/n_c, beta^n_c or log n_c; the NTR prior uses n_c clipped to [1, N-1].
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from mlbench.errors import InputError
from mlbench.keras import LOSS_NAMES

__all__ = [
    "LOSS_NAMES",
    "make_loss",
    "wbce_pos_weights",
    "cb_weights",
    "ntr_bias",
    "LogitBCE",
    "WeightedBCE",
    "BalancedFocalLoss",
    "FocalLoss",
    "ClassBalancedFocalLoss",
    "RebalancedFocalLoss",
    "NTRFocalLoss",
    "DistributionBalancedLoss",
    "CBNTRFocalLoss",
]


_PACKAGE = "mlbench"


# --------------------------------------------------------------------------- helpers
def _check_counts(train_counts: Any, n_train_docs: int | None) -> tuple[np.ndarray, int]:
    counts = np.asarray(train_counts, dtype=np.float64).reshape(-1)
    if counts.size == 0:
        raise ValueError("train_counts is empty")
    if np.any(counts < 0):
        raise ValueError("train_counts must be non-negative")
    if n_train_docs is None:
        raise ValueError("n_train_docs is required with train_counts")
    n = int(n_train_docs)
    if n < 1:
        raise ValueError(f"n_train_docs must be >= 1, got {n_train_docs}")
    if np.any(counts > n):
        raise ValueError("a train count exceeds n_train_docs")
    return counts, n


#: default wbce cap on p_c (see `wbce_pos_weights`)
WBCE_MAX_WEIGHT = 10.0


def wbce_pos_weights(
    train_counts: np.ndarray,
    n_train_docs: int,
    *,
    min_weight: float = 0.5,
    max_weight: float | None = WBCE_MAX_WEIGHT,
    cap_percentile: float = 95.0,
) -> np.ndarray:
    """Positive-class weights p_c = (N - n_c) / n_c (neg/pos ratio), clipped.

    Why a cap: on Reuters a label seen once gets p_c ~ 6,800, and a handful of such
    labels would dominate the gradient. The cap is ``max_weight`` (default 10), or,
    with ``max_weight=None``, the ``cap_percentile``-th percentile of p_c over labels
    seen in training. Weights are clipped to [min_weight, cap]; labels with n_c = 0
    get the cap.

    Why 10 and not a percentile by default: in a long-tailed label set even the
    median p_c is huge (Reuters: median 397, 95th percentile 6,769), so a percentile
    cap flattens almost nothing.  With it the Reuters MLP predicted most labels
    everywhere (test micro-F1 0.28, macro 0.19); with a cap of 10 it gets micro
    0.83 / macro 0.41 (cap 3: 0.84 / 0.41), on a par with BCE on micro and above it
    on macro (benchmarks/longtail_targets.py).
    """
    counts, n = _check_counts(train_counts, n_train_docs)
    seen = counts > 0
    raw = np.zeros_like(counts)
    raw[seen] = (n - counts[seen]) / counts[seen]
    if max_weight is not None:
        cap = float(max_weight)
    elif seen.any():
        cap = float(np.percentile(raw[seen], cap_percentile))
    else:
        cap = float(min_weight)
    cap = max(cap, float(min_weight))
    w = np.clip(raw, min_weight, cap)
    w[~seen] = cap
    return w


def cb_weights(
    train_counts: np.ndarray, *, beta: float = 0.9, normalize: str = "mean"
) -> np.ndarray:
    """Class-balanced weights r_CB(c) = (1 - beta) / (1 - beta^n_c) (Cui et al. 2019).

    ``normalize="mean"`` (default) rescales them to mean 1 over classes, as Cui et al.
    do (weights summing to C), so the loss keeps the scale of plain focal loss and
    the learning rate transfers. ``"none"`` keeps the raw weights, as in Huang et
    al.'s code (CB_mode="by_class"), which compensates with ``loss_weight=10``.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"cb beta must be in [0, 1), got {beta}")
    counts = np.maximum(np.asarray(train_counts, dtype=np.float64).reshape(-1), 1.0)
    w = (1.0 - beta) / (1.0 - np.power(beta, counts))
    if normalize == "mean":
        w = w / w.mean()
    elif normalize != "none":
        raise ValueError(f"cb normalize must be 'mean' or 'none', got {normalize!r}")
    return w


def ntr_bias(train_counts: np.ndarray, n_train_docs: int, kappa: float = 0.05) -> np.ndarray:
    """NTR logit shift nu_c = kappa * b_c with the prior bias b_c = -log(1/p_c - 1).

    p_c = n_c / N with n_c clipped to [1, N - 1] so b_c is finite. b_c is the bias a
    sigmoid needs to output the class prior, strongly negative for rare labels.
    """
    counts, n = _check_counts(train_counts, n_train_docs)
    c = np.clip(counts, 1.0, max(n - 1.0, 1.0))
    p = c / n
    with np.errstate(divide="ignore"):
        b = np.where(p < 1.0, np.log(p) - np.log1p(-p), np.log(c))  # = -log(1/p - 1)
    return kappa * b


def _const(x: np.ndarray, dtype: str):
    return ops.convert_to_tensor(np.asarray(x), dtype=dtype)


def _neg_log_sigmoid(x):
    """-log sigma(x) = softplus(-x), finite for any x."""
    return ops.softplus(-x)


def _sigmoid_pow(x, gamma: float):
    """sigma(x)^gamma = exp(-gamma * softplus(-x)): no 0^gamma or log(0) anywhere."""
    if gamma == 0:
        return ops.ones_like(x)
    return ops.exp(-gamma * ops.softplus(-x))


# --------------------------------------------------------------------------- losses
@keras.saving.register_keras_serializable(package=_PACKAGE)
class LogitBCE(keras.losses.Loss):
    """Binary cross-entropy on logits: y softplus(-z) + (1 - y) softplus(z), mean."""

    def __init__(self, name: str = "bce", reduction: str = "sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        z = ops.convert_to_tensor(y_pred)
        y = ops.cast(y_true, z.dtype)
        el = y * ops.softplus(-z) + (1.0 - y) * ops.softplus(z)
        return ops.mean(el, axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedBCE(keras.losses.Loss):
    """BCE with a per-label positive weight: p_c y softplus(-z) + (1 - y) softplus(z).

    p_c = (N - n_c) / n_c clipped to [min_weight, cap] (see `wbce_pos_weights`; cap 10
    by default), the usual ``pos_weight`` that balances positive and negative mass per
    label.
    """

    def __init__(
        self,
        train_counts: Any,
        n_train_docs: int,
        *,
        min_weight: float = 0.5,
        max_weight: float | None = WBCE_MAX_WEIGHT,
        cap_percentile: float = 95.0,
        name: str = "wbce",
        reduction: str = "sum_over_batch_size",
        **kwargs,
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.train_counts = [int(c) for c in np.asarray(train_counts).reshape(-1)]
        self.n_train_docs = int(n_train_docs)
        self.min_weight = float(min_weight)
        self.max_weight = None if max_weight is None else float(max_weight)
        self.cap_percentile = float(cap_percentile)
        self.pos_weight = wbce_pos_weights(
            self.train_counts,
            self.n_train_docs,
            min_weight=self.min_weight,
            max_weight=self.max_weight,
            cap_percentile=self.cap_percentile,
        )

    def call(self, y_true, y_pred):
        z = ops.convert_to_tensor(y_pred)
        y = ops.cast(y_true, z.dtype)
        pw = _const(self.pos_weight, z.dtype)
        el = pw * y * ops.softplus(-z) + (1.0 - y) * ops.softplus(z)
        return ops.mean(el, axis=-1)

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg.update(
            train_counts=self.train_counts,
            n_train_docs=self.n_train_docs,
            min_weight=self.min_weight,
            max_weight=self.max_weight,
            cap_percentile=self.cap_percentile,
        )
        return cfg


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BalancedFocalLoss(keras.losses.Loss):
    """The focal family of Huang et al. 2021 (see the module docstring for equations).

        L = loss_weight * w * [ y (1-sigma(z'))^gamma (-log sigma(z'))
                                + (1-y) (1/lambda) sigma(lambda z')^gamma (-log(1-sigma(lambda z'))) ]
        z' = z - kappa * b_c

    Args:
        train_counts, n_train_docs: training label frequencies (needed unless
            weighting is None and kappa == 0).
        gamma: focusing parameter (0 gives BCE).
        weighting: None (w=1), "rebalance" (r_hat, Wu et al. 2020) or "cb" (r_CB).
        kappa: NTR bias scale (0 = no shift). lam: NTR negative scale (1 = none).
        alpha, beta, mu: the smoothing map r_hat = alpha + sigma(beta (r - mu)).
            (alpha=0.5, beta=0 makes r_hat = 1.)
        cb_beta, cb_normalize: see `cb_weights`.
        loss_weight: constant multiplier (0.5 reproduces the authors' alpha_t = 0.5).
    """

    def __init__(
        self,
        train_counts: Any = None,
        n_train_docs: int | None = None,
        *,
        gamma: float = 2.0,
        weighting: str | None = None,
        kappa: float = 0.0,
        lam: float = 1.0,
        alpha: float = 0.1,
        beta: float = 10.0,
        mu: float = 0.9,
        cb_beta: float = 0.9,
        cb_normalize: str = "mean",
        loss_weight: float = 1.0,
        name: str = "focal",
        reduction: str = "sum_over_batch_size",
        **kwargs,
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if weighting not in (None, "rebalance", "cb"):
            raise ValueError(f"weighting must be None, 'rebalance' or 'cb', got {weighting!r}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if lam <= 0:
            raise ValueError(f"lam must be > 0, got {lam}")
        self.gamma = float(gamma)
        self.weighting = weighting
        self.kappa = float(kappa)
        self.lam = float(lam)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.mu = float(mu)
        self.cb_beta = float(cb_beta)
        self.cb_normalize = cb_normalize
        self.loss_weight = float(loss_weight)
        needs_counts = weighting is not None or self.kappa != 0.0
        if train_counts is None:
            if needs_counts:
                raise ValueError(f"{type(self).__name__} needs train_counts and n_train_docs")
            self.train_counts = None
            self.n_train_docs = None
        else:
            counts, n = _check_counts(train_counts, n_train_docs)
            self.train_counts = [int(c) for c in counts]
            self.n_train_docs = n
        self.bias = (
            ntr_bias(self.train_counts, self.n_train_docs, self.kappa)
            if self.kappa != 0.0
            else None
        )
        self.class_weight = (
            cb_weights(self.train_counts, beta=self.cb_beta, normalize=self.cb_normalize)
            if weighting == "cb"
            else None
        )
        self.inv_freq = (
            1.0 / np.maximum(np.asarray(self.train_counts, dtype=np.float64), 1.0)
            if weighting == "rebalance"
            else None
        )

    def _rebalance_weight(self, y):
        """r_hat[k, c] = alpha + sigma(beta (r_kc - mu)), r_kc = (1/n_c) / sum_j y_kj / n_j.

        A document with no positive label has an undefined r (0 in the denominator);
        it gets the r -> inf limit (alpha + 1 for beta > 0), as the reference code does.
        """
        inv = _const(self.inv_freq, y.dtype)
        rate = ops.sum(y * inv, axis=-1, keepdims=True)
        has_pos = rate > 0
        safe_rate = ops.where(has_pos, rate, ops.ones_like(rate))
        r = inv / safe_rate
        w = self.alpha + ops.sigmoid(self.beta * (r - self.mu))
        limit = self.alpha + (1.0 if self.beta > 0 else 0.5 if self.beta == 0 else 0.0)
        return ops.where(has_pos, w, ops.full_like(w, limit))

    def elementwise(self, y_true, y_pred):
        """Unreduced loss [batch, labels] (before the mean)."""
        z = ops.convert_to_tensor(y_pred)
        y = ops.cast(y_true, z.dtype)
        if self.bias is not None:
            z = z - _const(self.bias, z.dtype)
        pos = _sigmoid_pow(-z, self.gamma) * _neg_log_sigmoid(z)
        zn = self.lam * z if self.lam != 1.0 else z
        neg = _sigmoid_pow(zn, self.gamma) * ops.softplus(zn)
        if self.lam != 1.0:
            neg = neg / self.lam
        el = y * pos + (1.0 - y) * neg
        if self.weighting == "cb":
            el = el * _const(self.class_weight, z.dtype)
        elif self.weighting == "rebalance":
            el = el * self._rebalance_weight(y)
        if self.loss_weight != 1.0:
            el = el * self.loss_weight
        return el

    def call(self, y_true, y_pred):
        return ops.mean(self.elementwise(y_true, y_pred), axis=-1)

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg.update(
            train_counts=self.train_counts,
            n_train_docs=self.n_train_docs,
            gamma=self.gamma,
            weighting=self.weighting,
            kappa=self.kappa,
            lam=self.lam,
            alpha=self.alpha,
            beta=self.beta,
            mu=self.mu,
            cb_beta=self.cb_beta,
            cb_normalize=self.cb_normalize,
            loss_weight=self.loss_weight,
        )
        return cfg


def _preset(cls_name: str, loss_name: str, doc: str, **defaults) -> type:
    """A BalancedFocalLoss subclass whose defaults are one of the paper's variants."""

    def __init__(self, train_counts: Any = None, n_train_docs: int | None = None, **kwargs):
        for k, v in defaults.items():
            kwargs.setdefault(k, v)
        kwargs.setdefault("name", loss_name)
        BalancedFocalLoss.__init__(self, train_counts, n_train_docs, **kwargs)

    cls = type(cls_name, (BalancedFocalLoss,), {"__init__": __init__, "__doc__": doc})
    cls.__module__ = __name__
    return keras.saving.register_keras_serializable(package=_PACKAGE)(cls)


_NTR = dict(kappa=0.05, lam=2.0)

FocalLoss = _preset(
    "FocalLoss", "focal",
    "Focal loss (Lin et al. 2017), gamma=2, no alpha: -y(1-p)^g log p - (1-y) p^g log(1-p).",
    weighting=None, kappa=0.0, lam=1.0,
)
ClassBalancedFocalLoss = _preset(
    "ClassBalancedFocalLoss", "cb",
    "Class-balanced focal loss: r_CB(c) = (1-b)/(1-b^n_c), b=0.9, mean-1 normalised, x focal.",
    weighting="cb", kappa=0.0, lam=1.0,
)
RebalancedFocalLoss = _preset(
    "RebalancedFocalLoss", "rfl",
    "Rebalanced focal loss: r_hat = 0.1 + sigma(10 (r - 0.9)) x focal (Wu et al. 2020).",
    weighting="rebalance", kappa=0.0, lam=1.0,
)
NTRFocalLoss = _preset(
    "NTRFocalLoss", "ntr",
    "Negative-tolerant regularised focal loss: z' = z - 0.05 b_c, negatives on 2z', x 1/2.",
    weighting=None, **_NTR,
)
DistributionBalancedLoss = _preset(
    "DistributionBalancedLoss", "db",
    "Distribution-balanced loss: rebalancing weight r_hat x NTR focal loss.",
    weighting="rebalance", **_NTR,
)
CBNTRFocalLoss = _preset(
    "CBNTRFocalLoss", "cbntr",
    "CB-NTR: class-balanced weight r_CB x NTR focal loss.",
    weighting="cb", **_NTR,
)

_FACTORY = {
    "focal": FocalLoss,
    "cb": ClassBalancedFocalLoss,
    "rfl": RebalancedFocalLoss,
    "ntr": NTRFocalLoss,
    "db": DistributionBalancedLoss,
    "cbntr": CBNTRFocalLoss,
}


def make_loss(
    name: str, train_counts: np.ndarray, n_train_docs: int, **overrides: Any
) -> keras.losses.Loss:
    """The loss called `name` (one of LOSS_NAMES) built from TRAINING label counts.

    ``overrides`` set any hyperparameter of the class (gamma, kappa, lam, alpha,
    beta, mu, cb_beta, cb_normalize, loss_weight; min_weight, max_weight,
    cap_percentile for wbce). Unknown names raise `InputError`.
    """
    key = str(name).strip().lower()
    if key not in LOSS_NAMES:
        raise InputError(f"unknown loss {name!r}; valid losses: {', '.join(LOSS_NAMES)}")
    try:
        if key == "bce":
            return LogitBCE(**overrides)
        if key == "wbce":
            return WeightedBCE(train_counts, n_train_docs, **overrides)
        return _FACTORY[key](train_counts, n_train_docs, **overrides)
    except TypeError as err:  # an override the loss does not take
        raise InputError(f"bad option for loss {key!r}: {err}") from None
