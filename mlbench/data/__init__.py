"""Datasets: `load_corpus` turns "arxiv", "reuters", a user file or a data folder into a
Corpus; `check_health` inspects a Corpus before any model trains."""

from mlbench.data.corpus import Corpus, Split
from mlbench.data.dedupe import dedupe
from mlbench.data.health import HealthReport, check_health, raise_for
from mlbench.data.registry import DATASETS, load_corpus

__all__ = [
    "Corpus",
    "Split",
    "DATASETS",
    "load_corpus",
    "HealthReport",
    "check_health",
    "dedupe",
    "raise_for",
]
