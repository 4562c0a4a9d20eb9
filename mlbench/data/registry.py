"""`load_corpus`: one entry point from a dataset name or file path to a Corpus.

Why a registry: the driver and the tests should not know where each dataset lives or
how it is cleaned; they ask for "arxiv", "reuters" or a file and get a checked Corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Callable

from mlbench.data.arxiv import LABELS_COL as ARXIV_LABELS_COL
from mlbench.data.arxiv import TEXT_COL as ARXIV_TEXT_COL
from mlbench.data.arxiv import load_arxiv
from mlbench.data.corpus import Corpus
from mlbench.data.reuters import load_reuters
from mlbench.data.splits import MIN_TRAIN, SPLIT_METHODS, VAL_FRACTION, cap_indices
from mlbench.data.user_file import (DEFAULT_LABELS_COL, DEFAULT_TEXT_COL, SUFFIXES, is_user_data,
                                    load_user_file, load_user_files)
from mlbench.errors import InputError

__all__ = ["DATASETS", "REGISTRY", "Dataset", "load_corpus", "check_corpus", "data_columns"]


def _load_reuters(data_dir: str | Path | None, *, text_col: str | None, labels_col: str | None,
                  label_sep: str | None, **common) -> Corpus:
    """Reuters is SGML with fixed fields: the column options of files do not apply."""
    given = [n for n, v in (("text_col", text_col), ("labels_col", labels_col),
                            ("label_sep", label_sep)) if v is not None]
    if given:
        raise InputError(f"reuters: {', '.join(given)} only apply to user files")
    return load_reuters(data_dir, **common)


@dataclass(frozen=True)
class Dataset:
    """A built-in dataset: how to load it and which columns its texts and labels come from.

    ``load(data_dir, *, text_col, labels_col, label_sep, verify, seed, split_method, progress)``
    returns its Corpus; ``columns`` is its (text, labels) column pair, None when it has no
    columns (error messages name them).
    """

    name: str
    load: Callable[..., Corpus]
    columns: tuple[str, str] | None


#: the built-in datasets by name; anything else is a user file or folder (`mlbench.data.user_file`)
REGISTRY: dict[str, Dataset] = {d.name: d for d in (
    Dataset("arxiv", load_arxiv, (ARXIV_TEXT_COL, ARXIV_LABELS_COL)),
    Dataset("reuters", _load_reuters, None),
)}
DATASETS: tuple[str, ...] = tuple(REGISTRY)


def load_corpus(
    dataset: str,
    *,
    data_dir: str | Path | None = None,
    seed: int = 42,
    split_method: str = "stratified",
    text_col: str | None = None,
    labels_col: str | None = None,
    label_sep: str | None = None,
    max_docs: int | None = None,
    split_col: str | None = None,
    test_file: str | Path | None = None,
    val_file: str | Path | None = None,
    val_size: float | int | None = None,
    unlabeled: str | None = None,
    max_bad_rows: float | None = None,
    verify: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Corpus:
    """Load ``"arxiv"``, ``"reuters"``, a user file or a data folder into train/val/test.

    * ``data_dir``: where the named dataset lives (else env var, cache, download).
    * ``split_method``: "stratified" (on the label-set string) or "iterative"
      (multi-label iterative stratification); either falls back to a seeded random
      split when impossible, noted in ``corpus.notes["split"]``.
    * ``text_col`` / ``labels_col`` / ``label_sep``: for files (defaults ``text``,
      ``labels``, one label per cell unless the cell is a list); arxiv honours them
      as overrides of ``summaries`` / ``terms``; reuters rejects them.
    * ``max_docs``: keep at most this many TRAIN documents (seeded subsample);
      val and test are untouched so scores stay comparable.
    * Given splits (files only): ``split_col`` (values train, val/validation/dev,
      test); ``test_file`` (and optionally ``val_file``) beside a train file; or a
      folder as ``dataset`` holding train.*, test.*, dev.*/val.*. Without validation
      documents, ``val_size`` (share or count; default 0.1) of train is split off
      with ``seed``.
      ``corpus.notes["split_origin"]`` records "given" or "made by the suite".
    * ``unlabeled`` (files; default "keep": all-negative documents), "drop" or
      "error"; ``max_bad_rows`` (files; default 0.01): the share of empty-text rows
      that are skipped and reported before the file is refused.
    * ``verify``: check built-in data files against their pinned / recorded sha256.

    Errors are InputError with one line naming the file, row and column. Row numbers
    are what a spreadsheet shows: CSV header = row 1, first data row = row 2; in
    JSONL, row = line number; in Parquet, the 1-based table row.
    """
    _check_options(seed, split_method, max_docs)
    seed = int(seed)
    common = dict(seed=seed, split_method=split_method, progress=progress)
    key = str(dataset).strip().lower()
    file_only = [n for n, v in (("split_col", split_col), ("test_file", test_file),
                                ("val_file", val_file), ("val_size", val_size),
                                ("unlabeled", unlabeled),
                                ("max_bad_rows", max_bad_rows)) if v is not None]
    columns = dict(text_col=text_col, labels_col=labels_col, label_sep=label_sep)
    entry = REGISTRY.get(key)
    if entry is not None:
        if file_only:
            raise InputError(f"{key}: {', '.join(file_only)} only apply to user files")
        corpus = entry.load(data_dir, verify=verify, **columns, **common)
    elif is_user_data(dataset):
        if data_dir is not None:
            raise InputError(f"{dataset}: data_dir only applies to {', '.join(DATASETS)}")
        rows = dict(unlabeled=unlabeled or "keep",
                    max_bad_rows=0.01 if max_bad_rows is None else max_bad_rows,
                    val_size=VAL_FRACTION if val_size is None else val_size, **columns, **common)
        if Path(str(dataset)).expanduser().is_dir() or test_file is not None:
            if split_col is not None:
                raise InputError(f"{dataset}: split_col and split files exclude each other")
            corpus = load_user_files(dataset, test_file, val_file, **rows)
        else:
            if val_file is not None:
                raise InputError(f"{dataset}: val_file needs test_file too")
            corpus = load_user_file(dataset, split_col=split_col, **rows)
    else:
        raise InputError(
            f"unknown dataset {dataset!r}: use {' or '.join(DATASETS)}, a path to a "
            f"{' / '.join(SUFFIXES)} file, or a folder holding train.* and test.*"
        )
    if max_docs is not None and max_docs < len(corpus.train):
        corpus = _cap_train(corpus, max_docs, seed)
    check_corpus(corpus)
    return corpus


def _check_options(seed: object, split_method: str, max_docs: int | None) -> None:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed < 2**32:
        raise InputError(f"seed {seed!r}: must be an integer from 0 to 2**32-1")
    if split_method not in SPLIT_METHODS:
        raise InputError(f"split method {split_method!r}: use one of {', '.join(SPLIT_METHODS)}")
    if max_docs is not None and (isinstance(max_docs, bool) or not isinstance(max_docs, int)
                                 or max_docs < MIN_TRAIN):
        raise InputError(f"max_docs {max_docs!r}: must be an integer of at least {MIN_TRAIN}")


def _cap_train(corpus: Corpus, max_docs: int, seed: int) -> Corpus:
    keep = cap_indices(len(corpus.train), max_docs, seed)
    notes = {**corpus.notes, "max_docs": max_docs, "train_before_cap": len(corpus.train)}
    return Corpus(corpus.name, corpus.train.subset(keep), corpus.val, corpus.test,
                  corpus.source, notes)


def data_columns(dataset: str, text_col: str | None = None,
                 labels_col: str | None = None) -> dict[str, str] | None:
    """``{"text": …, "labels": …}``: the columns a dataset's texts and labels come from (for
    error messages), None for Reuters (SGML, no columns)."""
    entry = REGISTRY.get(str(dataset).strip().lower())
    default = entry.columns if entry is not None else (DEFAULT_TEXT_COL, DEFAULT_LABELS_COL)
    if default is None:
        return None
    return {"text": text_col or default[0], "labels": labels_col or default[1]}


def check_corpus(corpus: Corpus) -> None:
    """Refuse a corpus no model can be trained and scored on."""
    src = corpus.source or corpus.name
    if len(corpus.train) < MIN_TRAIN:
        raise InputError(
            f"{src}: the train split has only {len(corpus.train)} documents "
            f"(need at least {MIN_TRAIN})"
        )
    for name, split in (("val", corpus.val), ("test", corpus.test)):
        if len(split) == 0:
            raise InputError(f"{src}: the {name} split is empty; the file has too few rows")
    if not any(corpus.train.labels):
        raise InputError(f"{src}: no labels left in the train split after filtering")
