"""The keras-io arXiv multi-label dataset (titles, summaries, terms).

Why these steps: they reproduce the keras-io example "Large-scale multi-label text
classification" so results compare with it: text = summary, drop duplicate titles,
drop label sets that occur once (they cannot be stratified), 90/5/5 split stratified
on the label set.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Callable

from mlbench.data.corpus import Corpus
from mlbench.data.documents import documents_from_records
from mlbench.data.download import (
    Pin,
    cache_root,
    download,
    sha256_of,
    sibling_data_dir,
    verify_file,
    verify_recorded,
)
from mlbench.data.records import read_records
from mlbench.data.splits import label_set_key, split_corpus
from mlbench.errors import InputError

__all__ = ["ARXIV_URL", "ENV_VAR", "locate_arxiv", "load_arxiv"]

ARXIV_URL = (
    "https://github.com/soumik12345/multi-label-text-classification/"
    "releases/download/v0.2/arXiv_data.csv"
)
ENV_VAR = "MLBENCH_ARXIV"
FILE_NAMES = ("arxiv_data.csv", "arXiv_data.csv")
MIN_BYTES = 1_000_000  # the real file is tens of MB; an error page is a few kB
TITLE_COL, TEXT_COL, LABELS_COL = "titles", "summaries", "terms"
# Pinned: the 1,000-row offline sample in ../shared/data/arxiv (hashed here). The full
# release file could not be fetched from the project's machines: it is record-and-verify
# (its sha256 is written beside the cache entry on download and checked on every use).
SAMPLE_PIN = Pin(1295360, "eb203e28c961ce3695453f3022ad256df8ca2d831e8eba6ffc7c5111661d7ffa")


def cache_path() -> Path:
    return cache_root() / "arxiv" / FILE_NAMES[0]


def _resolve(path: Path, origin: str) -> Path:
    """A file, or a folder holding arxiv_data.csv; an explicit location must exist."""
    path = path.expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in FILE_NAMES:
            if (path / name).is_file():
                return path / name
        raise InputError(f"{path}: no {FILE_NAMES[0]} in this folder (from {origin})")
    raise InputError(f"{path}: file not found (from {origin})")


def locate_arxiv(
    data_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    verify: bool = True,
) -> Path:
    """data_dir, then $MLBENCH_ARXIV, then the cache, then a download into the cache,
    then (offline) the 1,000-row sample in ../shared/data/arxiv beside the checkout.

    The cache entry is checked against the sha256 recorded when it was downloaded, the
    sample against its pin; a file the user points at is read as given.
    """
    if data_dir is not None:
        return _resolve(Path(data_dir), "data_dir")
    env = os.environ.get(ENV_VAR)
    if env:
        return _resolve(Path(env), f"${ENV_VAR}")
    cached = cache_path()
    if cached.is_file() and not verify:
        return cached
    if cached.is_file():
        _, recorded_now = verify_recorded(cached)  # InputError (and moved aside) if changed
        if recorded_now and progress:
            progress(f"{cached}: no recorded sha256; recorded it now (trust on first use)")
        return cached
    try:
        return download(ARXIV_URL, cached, min_bytes=MIN_BYTES, progress=progress)
    except OSError as err:
        sample = sibling_data_dir("arxiv")
        if sample is not None and (sample / "arxiv_data.csv").is_file():
            if verify:
                verify_file(sample / "arxiv_data.csv", SAMPLE_PIN)
            if progress:
                progress(f"download failed ({err}); using the local copy {sample / 'arxiv_data.csv'}")
            return sample / "arxiv_data.csv"
        raise InputError(
            f"arxiv data not found and could not be downloaded ({err}); download {ARXIV_URL} "
            f"and save it as {cached}, or point ${ENV_VAR} or --data-dir at the file or its folder"
        ) from None


def load_arxiv(
    data_dir: str | Path | None = None,
    *,
    seed: int = 42,
    split_method: str = "stratified",
    text_col: str | None = None,
    labels_col: str | None = None,
    label_sep: str | None = None,
    verify: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Corpus:
    """Load, clean and split the arXiv CSV (column overrides allowed, e.g. titles as text).

    ``verify``: check the cache entry against its recorded sha256 and the offline
    sample against its pin (see `locate_arxiv`).
    """
    path = locate_arxiv(data_dir, progress, verify=verify)
    text_col = text_col or TEXT_COL
    labels_col = labels_col or LABELS_COL
    if progress:
        progress(f"reading {path}")
    columns = list(dict.fromkeys([TITLE_COL, text_col, labels_col]))
    records = read_records(path, columns)
    docs, skipped = documents_from_records(
        path, records, text_col, labels_col, label_sep, skip_empty=True
    )
    rows_read = len(records)

    titles = {rec.row: str(rec.fields[TITLE_COL]) for rec in records}
    seen: set[str] = set()
    first_title = []
    for row in docs.rows:  # keep the first row of each title, like pandas .duplicated()
        first_title.append(titles[row] not in seen)
        seen.add(titles[row])
    n_before = len(docs)
    docs = docs.keep(first_title)
    dup_titles = n_before - len(docs)

    counts = Counter(label_set_key(ls) for ls in docs.labels)
    docs = docs.keep([counts[label_set_key(ls)] > 1 for ls in docs.labels])
    singletons = n_before - dup_titles - len(docs)
    if len(docs) == 0:
        raise InputError(
            f"{path}: no documents left after dropping duplicate titles and label sets "
            f"that occur only once ({rows_read} rows read)"
        )
    if progress:
        progress(f"arxiv: {len(docs)} documents, splitting ({split_method})")
    return split_corpus(
        "arxiv",
        docs.texts,
        docs.labels,
        seed=seed,
        method=split_method,
        source=str(path),
        notes={
            "file_sha256": sha256_of(path),
            "rows_read": rows_read,
            "empty_rows_dropped": skipped,
            "duplicate_titles_dropped": dup_titles,
            "singleton_label_sets_dropped": singletons,
        },
    )
