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

    After each epoch e it writes ``directory/state-<e>.json`` (patience count, best
    value and epoch, history) and, when the weights improved, ``best-<e>.npz``, each
    atomically, keeping the last two epochs.  A resumed fit starts at whatever epoch
    BackupAndRestore restored (its ``double_checkpoint`` falls back one epoch when a
    kill truncated the latest checkpoint), so the state of the epoch before it is
    loaded lazily at the first ``on_epoch_begin``.  `history` holds every epoch's logs.
    """

    def __init__(self, directory: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.directory = Path(directory)
        self.history: dict[str, list[float]] = {}
        self._loaded = False

    def _state(self, epoch: int) -> Path:
        return self.directory / f"state-{epoch}.json"

    def _weights(self, epoch: int) -> Path:
        return self.directory / f"best-{epoch}.npz"

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self.history, self._loaded = {}, False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._loaded:
            return
        self._loaded = True
        path = self._state(epoch - 1)
        if epoch == 0 or not path.exists():
            return
        state = json.loads(path.read_text(encoding="utf-8"))
        self.wait, self.best_epoch = int(state["wait"]), int(state["best_epoch"])
        self.best = float(state["best"]) if state["best"] is not None else None
        self.history = {k: list(v) for k, v in state["history"].items()}
        if self._weights(self.best_epoch).exists():
            with np.load(self._weights(self.best_epoch)) as data:
                self.best_weights = [data[f"w{i}"] for i in range(len(data.files))]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.best_epoch == epoch and self.best_weights is not None:
            tmp = self.directory / f"best-{epoch}.tmp.npz"
            np.savez(tmp, **{f"w{i}": np.asarray(w) for i, w in enumerate(self.best_weights)})
            tmp.replace(self._weights(epoch))
        best = None if self.best is None or not np.isfinite(self.best) else float(self.best)
        state = {"wait": int(self.wait), "best_epoch": int(self.best_epoch), "best": best,
                 "history": self.history}
        tmp = self.directory / f"state-{epoch}.tmp"
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(self._state(epoch))
        self._prune(keep_from=epoch - 1)

    def _prune(self, keep_from: int) -> None:
        """Drop states before `keep_from` and best weights no kept state points to."""
        wanted = set()
        for path in self.directory.glob("state-*.json"):
            epoch = int(path.stem.split("-")[1])
            if epoch < keep_from:
                path.unlink(missing_ok=True)
            else:
                wanted.add(json.loads(path.read_text(encoding="utf-8"))["best_epoch"])
        for path in self.directory.glob("best-*.npz"):
            if path.stem.count("-") == 1 and int(path.stem.split("-")[1]) not in wanted:
                path.unlink(missing_ok=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        """Restore the best weights, then forget the state (as BackupAndRestore does)."""
        super().on_train_end(logs)
        for path in list(self.directory.glob("state-*.json")) + list(self.directory.glob("best-*.npz")):
            path.unlink(missing_ok=True)
