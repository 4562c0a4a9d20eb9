"""A user's own .csv / .jsonl file of (text, labels) rows.

Rules (why: a benchmark on silently mangled data is worse than a clear error):
* columns default to ``text`` and ``labels``; a missing column is an error;
* a label cell is a JSON/Python list, a real JSONL list, or a ``label_sep``-separated
  string; labels are stripped and empty ones dropped;
* a row with empty text or an empty label cell is an error naming its row (see
  `mlbench.data.records` for row numbering: CSV header = row 1, JSONL = line number);
* all labels are kept, duplicated texts are kept;
* split 90/5/5 like arXiv, stratified on the label set, seeded random fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mlbench.data.corpus import Corpus
from mlbench.data.documents import documents_from_records
from mlbench.data.records import CSV_SUFFIXES, JSONL_SUFFIXES, read_records
from mlbench.data.splits import split_corpus
from mlbench.errors import InputError

__all__ = ["SUFFIXES", "load_user_file"]

SUFFIXES = CSV_SUFFIXES + JSONL_SUFFIXES
DEFAULT_TEXT_COL = "text"
DEFAULT_LABELS_COL = "labels"


def load_user_file(
    path: str | Path,
    *,
    seed: int = 42,
    split_method: str = "stratified",
    text_col: str | None = None,
    labels_col: str | None = None,
    label_sep: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Corpus:
    """Read, validate and split a user file; every problem is an InputError."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"{path}: unsupported file type; use {', '.join(SUFFIXES)}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a {path.suffix} file")
    text_col = text_col or DEFAULT_TEXT_COL
    labels_col = labels_col or DEFAULT_LABELS_COL
    if text_col == labels_col:
        raise InputError(f"{path}: text and labels column are both {text_col!r}")
    if progress:
        progress(f"reading {path}")
    records = read_records(path, [text_col, labels_col])
    docs, _ = documents_from_records(path, records, text_col, labels_col, label_sep)
    if progress:
        progress(f"{path.name}: {len(docs)} documents, splitting ({split_method})")
    return split_corpus(
        path.stem,
        docs.texts,
        docs.labels,
        seed=seed,
        method=split_method,
        source=str(path),
        notes={"rows_read": len(records)},
    )
