"""Shared test fixtures: quiet TensorFlow, paths to the real data in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ARXIV_SAMPLE = SHARED_DATA / "arxiv" / "arxiv_data.csv"
REUTERS_DIR = SHARED_DATA / "reuters21578"


@pytest.fixture
def arxiv_sample() -> Path:
    if not ARXIV_SAMPLE.exists():
        pytest.skip(f"real data not found at {ARXIV_SAMPLE}")
    return ARXIV_SAMPLE


@pytest.fixture
def reuters_dir() -> Path:
    if not REUTERS_DIR.exists():
        pytest.skip(f"real data not found at {REUTERS_DIR}")
    return REUTERS_DIR
