"""LabelSpace: the one label vocabulary shared by every track, result and report.

It wraps a Keras ``StringLookup(output_mode="multi_hot")`` adapted on the training
labels only, so label order is by training frequency (most frequent first) and the
same object turns label names into the multi-hot rows every track trains on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


class LabelSpace:
    """Ordered label names ⇄ multi-hot rows, plus training frequencies.

    Labels never seen in training are dropped when encoding (a model cannot learn
    them); `encode` counts how many were dropped in `last_dropped`.
    """

    def __init__(self, names: Sequence[str], train_counts: Sequence[int] | None = None):
        if len(names) == 0:
            raise ValueError("a LabelSpace needs at least one label")
        if len(set(names)) != len(names):
            raise ValueError("label names must be unique")
        self.names: list[str] = [str(n) for n in names]
        self.train_counts = (
            np.asarray(train_counts, dtype=np.int64) if train_counts is not None else None
        )
        self._index = {n: i for i, n in enumerate(self.names)}
        self._lookup = None
        self.last_dropped = 0

    @classmethod
    def from_training_labels(cls, label_sets: Sequence[Sequence[str]]) -> "LabelSpace":
        """Adapt a multi-hot StringLookup on the training label sets."""
        import tensorflow as tf
        import keras

        lookup = keras.layers.StringLookup(output_mode="multi_hot", num_oov_indices=0)
        ragged = tf.ragged.constant([list(ls) for ls in label_sets], dtype=tf.string)
        lookup.adapt(ragged)
        names = [str(n) for n in lookup.get_vocabulary()]
        space = cls(names)
        space._lookup = lookup
        space.train_counts = space.encode(label_sets).sum(axis=0).astype(np.int64)
        return space

    def __len__(self) -> int:
        return len(self.names)

    @property
    def lookup(self):
        """The Keras multi-hot StringLookup layer over these names (built on demand)."""
        if self._lookup is None:
            import keras

            self._lookup = keras.layers.StringLookup(
                vocabulary=self.names, output_mode="multi_hot", num_oov_indices=0
            )
        return self._lookup

    def encode(self, label_sets: Iterable[Sequence[str]]) -> np.ndarray:
        """Label-name sets → float32 multi-hot matrix [n, n_labels] (StringLookup)."""
        import tensorflow as tf

        kept, dropped = [], 0
        for ls in label_sets:
            known = [l for l in ls if l in self._index]
            dropped += len(ls) - len(known)
            kept.append(known)
        self.last_dropped = dropped
        if not kept:
            return np.zeros((0, len(self)), dtype=np.float32)
        ragged = tf.ragged.constant(kept, dtype=tf.string, ragged_rank=1) if any(kept) else None
        if ragged is None:
            return np.zeros((len(kept), len(self)), dtype=np.float32)
        return np.asarray(self.lookup(ragged), dtype=np.float32)

    def decode(self, row: np.ndarray, threshold: float | np.ndarray = 0.5) -> list[str]:
        """One score/multi-hot row → the label names at or above threshold."""
        mask = np.asarray(row) >= threshold
        return [n for n, m in zip(self.names, mask) if m]

    def top_k(self, scores: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per row, the k best (label, score) pairs, best first."""
        scores = np.atleast_2d(scores)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[(self.names[j], float(scores[i, j])) for j in row] for i, row in enumerate(order)]

    def to_json(self) -> dict:
        counts = None if self.train_counts is None else self.train_counts.tolist()
        return {"names": self.names, "train_counts": counts}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "LabelSpace":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(data["names"], data.get("train_counts"))
