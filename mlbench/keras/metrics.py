"""Metrics logged during Keras training, where models output LOGITS.

They mirror `mlbench.evaluation.metrics.evaluate` (prediction = ``probability >= threshold``,
i.e. ``logit >= log(t / (1 - t))``) so the numbers in training logs match the final
report. Comparing logits with the logit of the threshold, instead of sigmoid-ing
first, keeps the decision exact where float32 sigmoid would round to 0.5.
"""

from __future__ import annotations

import math

import keras
from keras import ops

__all__ = ["HammingLoss", "F1FromLogits", "training_metrics"]

_PACKAGE = "mlbench"


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def _binary_predictions(y_pred, threshold: float, from_logits: bool, dtype):
    """0/1 predictions with the project convention ``score >= threshold``."""
    y_pred = ops.convert_to_tensor(y_pred)
    cut = _logit(threshold) if from_logits else threshold
    return ops.cast(ops.greater_equal(y_pred, ops.cast(cut, y_pred.dtype)), dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class HammingLoss(keras.metrics.Metric):
    """Fraction of wrong label bits over all (document, label) cells seen so far.

    A per-document ``sample_weight`` weights all of that document's bits.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        from_logits: bool = True,
        name: str = "hamming_loss",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        self.threshold = float(threshold)
        self.from_logits = bool(from_logits)
        self.wrong = self.add_variable(shape=(), initializer="zeros", name="wrong")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        pred = _binary_predictions(y_pred, self.threshold, self.from_logits, self.dtype)
        y = ops.cast(ops.greater(ops.cast(y_true, self.dtype), 0.5), self.dtype)
        wrong = ops.cast(ops.not_equal(y, pred), self.dtype)
        ones = ops.ones_like(wrong)
        if sample_weight is not None:
            sw = ops.cast(sample_weight, self.dtype)
            if len(sw.shape) == 1:
                sw = ops.expand_dims(sw, -1)
            wrong = wrong * sw
            ones = ones * sw
        self.wrong.assign_add(ops.sum(wrong))
        self.total.assign_add(ops.sum(ones))

    def result(self):
        return ops.divide_no_nan(self.wrong, self.total)

    def reset_state(self):
        self.wrong.assign(0.0)
        self.total.assign(0.0)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "from_logits": self.from_logits,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class F1FromLogits(keras.metrics.F1Score):
    """Micro F1 of ``sigmoid(logits) >= threshold`` (Keras F1Score on our predictions);
    ``average="macro"`` (name ``f1_macro``) gives macro F1 the same way.

    Binarises with the project's ``>=`` rule itself and hands 0/1 rows to
    `keras.metrics.F1Score`, whose own ``> threshold`` then keeps them unchanged.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        from_logits: bool = True,
        average: str = "micro",
        name: str = "f1_micro",
        dtype=None,
    ):
        super().__init__(average=average, threshold=float(threshold), name=name, dtype=dtype)
        self.from_logits = bool(from_logits)

    def update_state(self, y_true, y_pred, sample_weight=None):
        dtype = self.dtype
        pred = _binary_predictions(y_pred, self.threshold, self.from_logits, dtype)
        y = ops.cast(ops.greater(ops.cast(y_true, dtype), 0.5), dtype)
        # F1Score applies `pred > threshold`; 0/1 rows with threshold in (0, 1] stay as is
        # except threshold == 1.0, where 1 > 1 fails: hand it 1 + 1 = 2 instead.
        return super().update_state(y, pred * 2.0, sample_weight=sample_weight)

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits}


def training_metrics(from_logits: bool = True, threshold: float = 0.5, *,
                     macro_f1: bool = False) -> list:
    """[binary_accuracy, f1_micro, hamming_loss] for ``model.compile(metrics=...)``,
    plus ``f1_macro`` (unweighted mean of per-label F1) with ``macro_f1=True``.

    Macro-F1 is what to early-stop on when rare labels matter: the validation loss is
    dominated by frequent labels and bottoms out before the tail is learned.  It is
    `mlbench.evaluation.metrics.evaluate`'s ``f1_macro`` at `threshold`: an average over ALL
    labels, a label with no positives and no predictions counting as F1 0.
    """
    acc_threshold = _logit(threshold) if from_logits else threshold
    out = [
        keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=acc_threshold),
        F1FromLogits(threshold=threshold, from_logits=from_logits),
        HammingLoss(threshold=threshold, from_logits=from_logits, name="hamming_loss"),
    ]
    if macro_f1:
        out.append(F1FromLogits(threshold=threshold, from_logits=from_logits, average="macro",
                                name="f1_macro"))
    return out
