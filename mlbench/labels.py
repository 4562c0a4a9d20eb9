"""LabelSpace: the one label vocabulary shared by every track, result and report.

It gives the names and multi-hot rows a Keras ``StringLookup(output_mode="multi_hot")``
adapted on the training labels only would (label order by training frequency, most
frequent first, ties as Keras breaks them), but computes them with a dict and NumPy:
adapting and calling the Keras layer grows about quadratically with documents (an
hour-scale cost at 1M), a dict lookup linearly.  The Keras layer is still built on
demand (`lookup`) for graphs that need one; `encode_sparse` gives CSR rows for label
counts where a dense n × L matrix would not fit in memory.
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
        """The vocabulary `StringLookup.adapt` would learn from the training label sets.

        Keras orders tokens by occurrence count, most frequent first, and breaks ties
        by the UTF-8 bytes, largest first (``np.lexsort((tokens, counts))[::-1]``).
        """
        from collections import Counter

        label_sets = [tuple(str(l) for l in ls) for ls in label_sets]
        counts = Counter(l for ls in label_sets for l in ls)
        names = [n for n, _ in sorted(counts.items(), key=lambda kv: (kv[1], kv[0].encode("utf-8")),
                                      reverse=True)]
        space = cls(names)
        n, rows, cols, _ = space._positions(label_sets)
        space.train_counts = _document_counts(n, rows, cols, len(names))
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

    def _positions(self, label_sets: Iterable[Sequence[str]]) -> tuple[int, np.ndarray, np.ndarray, int]:
        """(rows, (row, column) of each known label, labels dropped) in one dict pass."""
        index, rows, cols, dropped, n = self._index, [], [], 0, 0
        for n, ls in enumerate(label_sets, start=1):
            for label in ls:
                j = index.get(label)
                if j is None:
                    dropped += 1
                else:
                    rows.append(n - 1)
                    cols.append(j)
        return n, np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64), dropped

    def encode(self, label_sets: Iterable[Sequence[str]]) -> np.ndarray:
        """Label-name sets → float32 multi-hot matrix [n, n_labels] (StringLookup's output)."""
        n, rows, cols, self.last_dropped = self._positions(label_sets)
        y = np.zeros((n, len(self)), dtype=np.float32)
        y[rows, cols] = 1.0
        return y

    def encode_sparse(self, label_sets: Iterable[Sequence[str]]):
        """`encode` as a scipy CSR matrix (float32, 0/1): n × L without the dense zeros."""
        import scipy.sparse as sp

        n, rows, cols, self.last_dropped = self._positions(label_sets)
        y = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, len(self)))
        y.sum_duplicates()
        y.data[:] = 1.0  # a label repeated in one set is still one 1
        return y

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


def _document_counts(n: int, rows: np.ndarray, cols: np.ndarray, n_labels: int) -> np.ndarray:
    """Documents per label (a label repeated within one document counts once)."""
    if len(rows) == 0:
        return np.zeros(n_labels, dtype=np.int64)
    unique = np.unique(rows * n_labels + cols)
    return np.bincount(unique % n_labels, minlength=n_labels).astype(np.int64)
