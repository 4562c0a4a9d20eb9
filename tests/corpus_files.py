"""Synthetic corpora written as the user files `run_all.py --dataset FILE` reads."""

from __future__ import annotations

import csv
from pathlib import Path

from mlbench.data.corpus import Corpus


def write_corpus_csv(corpus: Corpus, path: Path, *, label_sep: str = "|") -> Path:
    """Every split of `corpus` as rows (text, labels joined by `label_sep`) of a CSV at `path`."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "labels"])
        for split in (corpus.train, corpus.val, corpus.test):
            for text, labels in zip(split.texts, split.labels):
                w.writerow([text, label_sep.join(labels)])
    return path
