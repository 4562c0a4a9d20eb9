"""The Corpus type every dataset loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Split:
    """One split: parallel lists of texts and label tuples (label names, not ids)."""

    texts: list[str]
    labels: list[tuple[str, ...]]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} label sets")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Split":
        return Split([self.texts[i] for i in indices], [self.labels[i] for i in indices])


@dataclass(frozen=True)
class Corpus:
    """Texts and label sets in train / val / test splits, plus where they came from."""

    name: str
    train: Split
    val: Split
    test: Split
    source: str = ""
    notes: dict = field(default_factory=dict)

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def stats(self) -> dict:
        """Documents per split, distinct labels, label cardinality and text length, plus
        the notes: where the split came from (``split_origin``: "given", "given
        train/test, val made by the suite" or "made by the suite"; ``split``: method;
        ``seed``), skipped rows (``rows``) and the loader's own counts."""
        out: dict = {"name": self.name, "source": self.source,
                     "split_origin": "not recorded", **self.notes}
        for split_name, split in self.splits().items():
            n_labels = [len(l) for l in split.labels]
            n_words = [len(t.split()) for t in split.texts]
            out[split_name] = {
                "documents": len(split),
                "distinct_labels": len({l for ls in split.labels for l in ls}),
                "label_cardinality": float(np.mean(n_labels)) if n_labels else 0.0,
                "mean_words": float(np.mean(n_words)) if n_words else 0.0,
                # all-negative documents: sample-F1 and P@k count each as 0 (sklearn's
                # zero_division=0), so a reader can see how many there are
                "documents_without_labels": int(sum(1 for ls in split.labels if not ls)),
            }
        return out
