"""Training helpers shared by the two transformer tracks.

* `WarmupLinearDecay`: the BERT learning-rate schedule (linear warm-up, then linear
  decay); warm-up is what gets a from-scratch encoder off the label prior.
* `make_adamw`: AdamW without weight decay on biases / LayerNorm, optionally with
  per-variable learning-rate multipliers (a larger rate for a fresh head on a
  pretrained backbone).
* `TimeBudget`: stops after the last epoch that fits in a wall-clock budget.
* Length-bucketed tf.data pipelines: each split is tokenized once into int tensors;
  batches group documents of similar length and are trimmed to a bucket boundary,
  so a 60-token wire is not padded to 256.  Masked attention and masked pooling make
  the result independent of the padding, so this only saves time.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

_PACKAGE = "mlbench"


# --------------------------------------------------------------------------- schedule
@keras.saving.register_keras_serializable(package=_PACKAGE)
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``peak * step / warmup`` for the first `warmup_steps`, then linear to ``end * peak``.

    The step is the optimizer's iteration counter, which BackupAndRestore saves, so a
    resumed run continues the schedule where it stopped.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, end_fraction: float = 0.0):
        if peak <= 0:
            raise ValueError(f"peak learning rate must be > 0, got {peak}")
        if total_steps < 1 or warmup_steps < 0:
            raise ValueError(f"total_steps >= 1 and warmup_steps >= 0 expected, got "
                             f"{total_steps}, {warmup_steps}")
        self.peak = float(peak)
        self.warmup_steps = int(min(warmup_steps, total_steps))
        self.total_steps = int(total_steps)
        self.end_fraction = float(end_fraction)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(max(self.warmup_steps, 1))
        warm = self.peak * (step + 1.0) / warmup
        decay_len = float(max(self.total_steps - self.warmup_steps, 1))
        frac = ops.clip((step - self.warmup_steps) / decay_len, 0.0, 1.0)
        decayed = self.peak * (1.0 - (1.0 - self.end_fraction) * frac)
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "end_fraction": self.end_fraction}


# --------------------------------------------------------------------------- optimizer
class ScaledAdamW(keras.optimizers.AdamW):
    """AdamW whose step for some variables is multiplied by a constant.

    Why: Keras 3 has no per-variable learning rate, and scaling gradients does not
    work with Adam (it is invariant to gradient scale).  The multiplier is applied
    to the learning rate inside `update_step`.  Weight decay uses the base rate.
    """

    def __init__(self, *args, lr_multipliers: Sequence[tuple[Any, float]] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self._multiplier_variables = list(lr_multipliers)  # [(variable, factor)]
        self._multipliers: dict | None = None

    def _multiplier(self, variable) -> float:
        if self._multipliers is None:  # keys only exist once variables are created
            self._multipliers = {self._var_key(v): float(f) for v, f in self._multiplier_variables}
        return self._multipliers.get(self._var_key(variable), 1.0)

    def update_step(self, gradient, variable, learning_rate):
        factor = self._multiplier(variable)
        if factor != 1.0:
            learning_rate = ops.cast(learning_rate, variable.dtype) * factor
        return super().update_step(gradient, variable, learning_rate)


def make_adamw(schedule, *, weight_decay: float = 0.01, clipnorm: float | None = 1.0,
               lr_multipliers: Sequence[tuple[Any, float]] = ()) -> keras.optimizers.Optimizer:
    """AdamW with decoupled weight decay except on biases and LayerNorm parameters.

    `lr_multipliers`: ``(variable, factor)`` pairs; other variables use factor 1.
    """
    opt = ScaledAdamW(learning_rate=schedule, weight_decay=weight_decay, clipnorm=clipnorm,
                      lr_multipliers=lr_multipliers)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "norm"])
    return opt


# --------------------------------------------------------------------------- callbacks
class TimeBudget(keras.callbacks.Callback):
    """Stop before an epoch that would end past `seconds` of training (best effort)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = float(seconds)
        self.stopped_early = False

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()
        self._epoch_start = self._start
        self._longest = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self._longest = max(self._longest, now - self._epoch_start)
        if now - self._start + self._longest > self.seconds:
            self.stopped_early = True
            self.model.stop_training = True


# --------------------------------------------------------------------------- devices
# --------------------------------------------------------------------------- data
def bucket_boundaries(lengths: np.ndarray, max_length: int, n_buckets: int = 6,
                      multiple: int = 8) -> list[int]:
    """Upper lengths of the buckets: length quantiles rounded up to `multiple`, last = max_length.

    A handful of shapes keeps XLA (used by Keras on GPU) from recompiling per batch.
    """
    lengths = np.asarray(lengths)
    qs = np.quantile(lengths, np.linspace(0, 1, n_buckets + 1)[1:-1]) if len(lengths) else []
    bounds = {min(max_length, max(multiple, int(math.ceil(q / multiple)) * multiple)) for q in qs}
    bounds.add(int(max_length))
    return sorted(bounds)


def _trim_to_bucket(x, lengths, boundaries):
    """Slice every [batch, T] tensor in `x` to the smallest boundary ≥ the batch's longest."""
    import tensorflow as tf

    bounds = tf.constant(boundaries, dtype=tf.int32)
    longest = tf.reduce_max(lengths)
    width = tf.gather(bounds, tf.searchsorted(bounds, tf.reshape(longest, [1]), side="left"))[0]
    return tf.nest.map_structure(lambda t: t[:, :width], x)


def count_batches(lengths: np.ndarray, boundaries: Sequence[int], batch_size: int) -> int:
    """Batches per epoch of `training_dataset` (each bucket ends with one partial batch)."""
    bucket = np.searchsorted(np.asarray(boundaries), np.asarray(lengths), side="left")
    return int(sum(math.ceil(c / batch_size) for c in np.bincount(bucket) if c))


def training_dataset(x: Any, y: np.ndarray, lengths: np.ndarray, *, batch_size: int,
                     boundaries: Sequence[int], seed: int, shuffle: bool = True):
    """Cached (x, y) batches of similar-length documents, reshuffled every epoch.

    `x` is a [n, T] int array or a dict of them (KerasHub inputs), padded to T.
    """
    import tensorflow as tf

    lengths = np.asarray(lengths, dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y, lengths)).cache()
    if shuffle:
        ds = ds.shuffle(len(lengths), seed=seed, reshuffle_each_iteration=True)
    bounds = tf.constant(list(boundaries), dtype=tf.int32)

    def key(xi, yi, li):
        return tf.cast(tf.searchsorted(bounds, tf.reshape(li, [1]), side="left")[0], tf.int64)

    ds = ds.group_by_window(key, lambda _, window: window.batch(batch_size), window_size=batch_size)
    ds = ds.map(lambda xb, yb, lb: (_trim_to_bucket(xb, lb, boundaries), yb),
                num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:  # buckets fill at different rates: mix the batch order a little
        ds = ds.shuffle(64, seed=seed + 1, reshuffle_each_iteration=True)
    # The count is exact, and telling Keras gives it a progress bar and no warning.
    ds = ds.apply(tf.data.experimental.assert_cardinality(
        count_batches(lengths, boundaries, batch_size)))
    return ds.prefetch(tf.data.AUTOTUNE)


def inference_dataset(x: Any, lengths: np.ndarray, *, batch_size: int, boundaries: Sequence[int]):
    """Batches in length order (trimmed), plus the permutation to undo afterwards.

    Returns ``(dataset, order)``: row ``i`` of the concatenated predictions belongs to
    document ``order[i]``.
    """
    import tensorflow as tf

    lengths = np.asarray(lengths, dtype=np.int32)
    order = np.argsort(lengths, kind="stable")
    xs = {k: np.asarray(v)[order] for k, v in x.items()} if isinstance(x, dict) else np.asarray(x)[order]
    ds = tf.data.Dataset.from_tensor_slices((xs, lengths[order])).batch(batch_size)
    ds = ds.map(lambda xb, lb: _trim_to_bucket(xb, lb, boundaries), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE), order


def predict_in_length_order(model, x: Any, lengths: np.ndarray, *, batch_size: int,
                            boundaries: Sequence[int]) -> np.ndarray:
    """`model` outputs for every row of `x`, in the original order (float32)."""
    n = len(lengths)
    if n == 0:
        return np.zeros((0, int(model.outputs[0].shape[-1])), dtype=np.float32)
    ds, order = inference_dataset(x, lengths, batch_size=batch_size, boundaries=boundaries)
    out = np.asarray(model.predict(ds, verbose=0), dtype=np.float32)
    result = np.empty_like(out)
    result[order] = out
    return result


def tokenize_in_batches(fn, texts: Sequence[str], batch_size: int = 1024) -> Any:
    """Apply a string-batch tokenizer `fn` once over `texts` in graph mode; numpy out.

    Returns an array, or a dict of arrays when `fn` returns a dict.
    """
    import tensorflow as tf

    if len(texts) == 0:  # keep the output structure and trailing shape
        return tf.nest.map_structure(lambda t: t.numpy(), fn(tf.constant([], dtype=tf.string)))
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), dtype=tf.string))
    ds = ds.batch(batch_size).map(fn, num_parallel_calls=tf.data.AUTOTUNE)
    chunks = [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds]
    if isinstance(chunks[0], dict):
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return np.concatenate(chunks)
