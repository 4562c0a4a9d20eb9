"""Datasets: `load_corpus` turns "arxiv", "reuters" or a .csv/.jsonl path into a Corpus."""

from mlbench.data.corpus import Corpus, Split
from mlbench.data.registry import DATASETS, load_corpus

__all__ = ["Corpus", "Split", "DATASETS", "load_corpus"]
