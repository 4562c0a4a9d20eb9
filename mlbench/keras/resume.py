"""What a Keras fit needs to continue after a kill as if it had never stopped.

`keras.callbacks.BackupAndRestore` brings back the weights, the optimizer (and so the
learning-rate schedule's step) and the epoch counter.  Three things it leaves out are
here:

* the data order: `epoch_ids` draws epoch e's document order from ``(seed, e)``
  (a stateless shuffle keyed by an `EpochCounter` variable), so epoch 3 after a resume
  sees the batches epoch 3 would have seen; a plain ``Dataset.shuffle`` would restart
  its sequence from epoch 0;
* early stopping: `ResumableEarlyStopping` saves its patience count, best value, best
  epoch and best weights after every epoch and reloads them at the start of a fit;
* the history of the epochs before the kill (`ResumableEarlyStopping` keeps it too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf


class EpochCounter(keras.callbacks.Callback):
    """Holds the current epoch in a variable the input pipeline reads."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_counter")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.assign(int(epoch))


def epoch_ids(n: int, seed: int, counter: EpochCounter | None) -> tf.data.Dataset:
    """Document ids 0..n-1: in order without a counter, else epoch e's permutation of (seed, e).

    The permutation is computed when an epoch's iterator starts (Keras makes one per
    epoch, after ``on_epoch_begin``), so it depends on the epoch number only.
    """
    if counter is None:
        return tf.data.Dataset.range(n)
    base = tf.constant(int(seed) % (2**31 - 1), dtype=tf.int64)
    epoch = counter.epoch

    def permutation(_):
        return tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([base, epoch.read_value()]))

    return tf.data.Dataset.range(1).map(permutation).unbatch()


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose state (and the history so far) survives a restart.

    State lives in ``directory/early_stopping.json`` and ``best_weights.npz``; it is
    written at each epoch end (the weights only when they improved) and read at the
    start of training when present.  `history` is every epoch's logs, resumed ones
    included.
    """

    def __init__(self, directory: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.directory = Path(directory)
        self.history: dict[str, list[float]] = {}

    @property
    def _state_path(self) -> Path:
        return self.directory / "early_stopping.json"

    @property
    def _weights_path(self) -> Path:
        return self.directory / "best_weights.npz"

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if not self._state_path.exists():
            return
        state = json.loads(self._state_path.read_text(encoding="utf-8"))
        self.wait, self.best_epoch = int(state["wait"]), int(state["best_epoch"])
        self.best = float(state["best"]) if state["best"] is not None else self.best
        self.history = {k: list(v) for k, v in state["history"].items()}
        if self._weights_path.exists():
            with np.load(self._weights_path) as data:
                self.best_weights = [data[f"w{i}"] for i in range(len(data.files))]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.best_epoch == epoch and self.best_weights is not None:
            tmp = self._weights_path.with_suffix(".tmp.npz")
            np.savez(tmp, **{f"w{i}": np.asarray(w) for i, w in enumerate(self.best_weights)})
            tmp.replace(self._weights_path)
        best = None if self.best is None or not np.isfinite(self.best) else float(self.best)
        state = {"wait": int(self.wait), "best_epoch": int(self.best_epoch), "best": best,
                 "history": self.history}
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(self._state_path)

    def on_train_end(self, logs: dict | None = None) -> None:
        """Restore the best weights, then forget the state (as BackupAndRestore does)."""
        super().on_train_end(logs)
        for path in (self._state_path, self._weights_path):
            path.unlink(missing_ok=True)
