"""A user's own files of (text, labels) rows: one file, or given train/val/test files.

Formats: .csv, .tsv, .jsonl / .ndjson, .parquet, each optionally .gz (`records`).

Rules (why: a benchmark on silently mangled data is worse than a clear error):
* columns default to ``text`` and ``labels``; a missing column is an error;
* a label cell is a JSON/Python list, a real list (JSONL, Parquet), a number, or a
  ``label_sep``-separated string (a separator inside double quotes does not split);
  labels are stripped of surrounding whitespace, keep their case, empty ones dropped;
* rows with an empty text are skipped and reported in ``corpus.notes["rows"]``, unless
  they are more than ``max_bad_rows`` of the file (then one error names the rows);
* rows with no labels: ``unlabeled="keep"`` by default (one console line counts them). In multi-label data "none of
  these labels applies" is a real answer (most comments in a toxicity corpus carry no
  label; news wires have untagged items), so such rows are kept as all-negative
  documents, the negatives every label's precision depends on; dropping them would
  flatter precision, refusing them would reject common datasets. The count is
  reported; "drop" and "error" are there when empty cells mean missing data;
* all labels are kept, duplicated texts are kept (the health check reports them);
* the split: a ``split_col`` (train, val/validation/dev, test), or three files, or a
  folder holding train.*, dev.* / val.* / validation.*, test.* is kept as given;
  without validation documents ``val_size`` of train is split off (seeded); otherwise
  90/5/5 like arXiv, stratified on the label set, seeded random fallback.
  ``corpus.notes["split_origin"]`` says which ("given" vs "made by the suite").
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mlbench.data.corpus import Corpus
from mlbench.data.documents import Documents, read_documents
from mlbench.data.records import SUFFIXES, file_format, read_records
from mlbench.data.splits import VAL_FRACTION, given_split_corpus, split_corpus
from mlbench.errors import InputError

__all__ = ["SUFFIXES", "load_user_file", "load_user_files", "find_split_files", "is_user_data"]

DEFAULT_TEXT_COL = "text"
DEFAULT_LABELS_COL = "labels"
SPLIT_FILE_STEMS = {"train": ("train",), "val": ("val", "dev", "validation"), "test": ("test",)}


def _stem(path: Path) -> str:
    """The name without its format suffixes (``train.csv.gz`` -> ``train``)."""
    name = path.name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def is_user_data(dataset: str | Path) -> bool:
    """A supported file name, or an existing folder (the three-file form)."""
    path = Path(str(dataset)).expanduser()
    return file_format(path) is not None or path.is_dir()


def find_split_files(folder: str | Path) -> dict[str, Path]:
    """train.*, dev.* / val.* / validation.*, test.* in ``folder`` (val optional)."""
    folder = Path(folder).expanduser()
    found: dict[str, list[Path]] = {k: [] for k in SPLIT_FILE_STEMS}
    for p in sorted(folder.iterdir()):
        if p.is_file() and file_format(p) is not None:
            for split, stems in SPLIT_FILE_STEMS.items():
                if _stem(p).lower() in stems:
                    found[split].append(p)
    for split, paths in found.items():
        if len(paths) > 1:
            raise InputError(
                f"{folder}: several {split} files ({', '.join(p.name for p in paths)}); keep one"
            )
    for split in ("train", "test"):
        if not found[split]:
            raise InputError(
                f"{folder}: no {split}.* file (a data folder holds train.*, test.* and "
                f"optionally dev.* / val.*, each one of {', '.join(SUFFIXES)})"
            )
    return {k: v[0] for k, v in found.items() if v}


def _check_columns(path: Path, text_col: str, labels_col: str, split_col: str | None) -> None:
    cols = [text_col, labels_col] + ([split_col] if split_col else [])
    if len(set(cols)) != len(cols):
        raise InputError(f"{path}: text, labels and split columns must differ (got {cols})")


def _read(
    path: Path, text_col: str, labels_col: str, label_sep: str | None, *, unlabeled: str,
    max_bad_rows: float, split_col: str | None = None,
) -> tuple[Documents, dict]:
    if file_format(path) is None:
        raise InputError(f"{path}: unsupported file type; use {', '.join(SUFFIXES)}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a file")
    columns = [text_col, labels_col] + ([split_col] if split_col else [])
    records = read_records(path, columns)
    return read_documents(path, records, text_col, labels_col, label_sep, unlabeled=unlabeled,
                          max_bad_rows=max_bad_rows, split_col=split_col)


def _rows_lines(path: Path, report: dict) -> list[str]:
    """Console lines counting the rows a file did not give as ordinary documents (why: a
    user should see that 300 rows became all-negative documents without opening results.json)."""
    def rows(entry: dict) -> str:
        shown = ", ".join(map(str, entry["rows"][:5]))
        return f"rows {shown}{', …' if entry['count'] > 5 else ''}"

    lines = []
    empty = report["skipped"].get("empty text")
    if empty:
        lines.append(f"{path}: skipped {empty['count']} row(s) with an empty text ({rows(empty)})")
    unlabeled = report.get("unlabeled", {})
    if unlabeled.get("count"):
        if unlabeled["policy"] == "keep":
            lines.append(f"{path}: kept {unlabeled['count']} row(s) without labels as all-negative "
                         f"documents ({rows(unlabeled)}; --unlabeled drop or error to change that)")
        else:
            lines.append(f"{path}: dropped {unlabeled['count']} row(s) without labels ({rows(unlabeled)})")
    return lines


def load_user_file(
    path: str | Path,
    *,
    seed: int = 42,
    split_method: str = "stratified",
    text_col: str | None = None,
    labels_col: str | None = None,
    label_sep: str | None = None,
    split_col: str | None = None,
    unlabeled: str = "keep",
    max_bad_rows: float = 0.01,
    val_size: float | int = VAL_FRACTION,
    progress: Callable[[str], None] | None = None,
) -> Corpus:
    """Read, validate and split one user file; every problem is an InputError.

    With ``split_col`` the partition is taken from that column; otherwise 90/5/5.
    """
    path = Path(path).expanduser()
    text_col = text_col or DEFAULT_TEXT_COL
    labels_col = labels_col or DEFAULT_LABELS_COL
    _check_columns(path, text_col, labels_col, split_col)
    if progress:
        progress(f"reading {path}")
    docs, rows = _read(path, text_col, labels_col, label_sep, unlabeled=unlabeled,
                       max_bad_rows=max_bad_rows, split_col=split_col)
    notes = {"rows_read": rows["rows_read"], "rows": rows}
    if progress:
        for line in _rows_lines(path, rows):
            progress(line)
        progress(f"{path.name}: {len(docs)} documents, splitting ({split_method})")
    if split_col:
        return given_split_corpus(
            _stem(path), docs.texts, docs.labels, docs.splits or [], seed=seed,
            method=split_method, source=str(path), given_by=f"column {split_col!r}",
            val_size=val_size, notes=notes,
        )
    return split_corpus(_stem(path), docs.texts, docs.labels, seed=seed, method=split_method,
                        source=str(path), notes=notes)


def load_user_files(
    train: str | Path,
    test: str | Path | None = None,
    val: str | Path | None = None,
    *,
    seed: int = 42,
    split_method: str = "stratified",
    text_col: str | None = None,
    labels_col: str | None = None,
    label_sep: str | None = None,
    unlabeled: str = "keep",
    max_bad_rows: float = 0.01,
    val_size: float | int = VAL_FRACTION,
    progress: Callable[[str], None] | None = None,
) -> Corpus:
    """Given splits as files: ``train`` and ``test`` (and optionally ``val``), any
    supported formats, or ``train`` = a folder holding train.*, test.*, dev.*/val.*.

    Without a val file, ``val_size`` of train is split off with ``seed``.
    """
    train = Path(train).expanduser()
    if train.is_dir():
        if test is not None or val is not None:
            raise InputError(f"{train}: a data folder already names its test and val files")
        files = find_split_files(train)
        name, source = train.name, str(train)
    else:
        if test is None:
            raise InputError(f"{train}: a train file needs a test file beside it (test_file)")
        files = {"train": train, "test": Path(test).expanduser()}
        if val is not None:
            files["val"] = Path(val).expanduser()
        name, source = _stem(train), ", ".join(str(p) for p in files.values())
    text_col = text_col or DEFAULT_TEXT_COL
    labels_col = labels_col or DEFAULT_LABELS_COL
    texts: list[str] = []
    labels: list[tuple[str, ...]] = []
    splits: list[str] = []
    rows: dict = {}
    for split, path in files.items():
        _check_columns(path, text_col, labels_col, None)
        if progress:
            progress(f"reading {path} ({split})")
        docs, report = _read(path, text_col, labels_col, label_sep, unlabeled=unlabeled,
                             max_bad_rows=max_bad_rows)
        if progress:
            for line in _rows_lines(path, report):
                progress(line)
        texts += docs.texts
        labels += docs.labels
        splits += [split] * len(docs)
        rows[split] = {"file": str(path), **report}
    notes = {"rows_read": sum(r["rows_read"] for r in rows.values()), "rows": rows}
    given_by = "files " + ", ".join(f"{k}={p.name}" for k, p in files.items())
    return given_split_corpus(name, texts, labels, splits, seed=seed, method=split_method,
                              source=source, given_by=given_by, val_size=val_size, notes=notes)
