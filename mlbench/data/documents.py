"""Turn raw records into (text, label set) documents, checking every cell.

Why separate from `records`: reading a file and deciding what a valid document is are
different jobs; arXiv and user files share this step but differ in what they forgive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mlbench.errors import InputError, where
from mlbench.data.label_cells import LabelCellError, parse_label_cell
from mlbench.data.records import Record

__all__ = [
    "Documents",
    "documents_from_records",
    "read_documents",
    "UNLABELED_POLICIES",
    "SPLIT_NAMES",
    "canonical_split",
]

UNLABELED_POLICIES = ("keep", "drop", "error")
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "dev": "val", "test": "test"}
_SHOW_ROWS = 20  # rows listed in the notes per reason


def canonical_split(value: object) -> str | None:
    """"train" / "val" / "test" for a split cell (val, validation, dev all mean "val")."""
    if not isinstance(value, str):
        return None
    return SPLIT_NAMES.get(value.strip().lower())


@dataclass
class Documents:
    """Parallel lists of texts, label tuples, the rows they came from and (when the
    file has a split column) each row's given split."""

    texts: list[str] = field(default_factory=list)
    labels: list[tuple[str, ...]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    splits: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def keep(self, mask: Sequence[bool]) -> "Documents":
        idx = [i for i, k in enumerate(mask) if k]
        return Documents(
            [self.texts[i] for i in idx],
            [self.labels[i] for i in idx],
            [self.rows[i] for i in idx],
            None if self.splits is None else [self.splits[i] for i in idx],
        )


def read_documents(
    path: Path,
    records: Sequence[Record],
    text_col: str,
    labels_col: str,
    label_sep: str | None,
    *,
    unlabeled: str = "keep",
    max_bad_rows: float = 0.01,
    split_col: str | None = None,
) -> tuple[Documents, dict]:
    """Validate each record's cells; return the documents and a row report.

    * An unparseable label cell, a non-string text, or (with ``split_col``) a split cell
      that is not train / val / validation / dev / test is an InputError naming the row.
    * Rows with an empty text are skipped and reported, unless they are more than
      ``max_bad_rows`` (a share, 0-1) of the file: then one InputError names the first
      rows (a file that is mostly empty is wrong, not noisy).
    * Rows with no labels follow ``unlabeled``: "keep" (an all-negative document),
      "drop" (skipped and reported) or "error".

    The report: ``{"rows_read", "documents", "skipped": {reason: {"count", "rows"}},
    "unlabeled": {"policy", "count", "rows"}}`` (``rows``: the first 20 row numbers).
    """
    if unlabeled not in UNLABELED_POLICIES:
        raise InputError(f"unlabeled {unlabeled!r}: use one of {', '.join(UNLABELED_POLICIES)}")
    if isinstance(max_bad_rows, bool) or not isinstance(max_bad_rows, (int, float)) \
            or not 0 <= max_bad_rows <= 1:
        raise InputError(f"max_bad_rows {max_bad_rows!r}: must be a share from 0 to 1")
    docs = Documents(splits=[] if split_col else None)
    empty_rows: list[int] = []
    unlabeled_rows: list[int] = []
    for rec in records:
        text = rec.fields[text_col]
        if text is not None and not isinstance(text, str):
            raise InputError(
                f"{where(path, rec.row, text_col)}: text must be a string, "
                f"got {type(text).__name__}"
            )
        try:
            labels = parse_label_cell(rec.fields[labels_col], label_sep)
        except LabelCellError as err:
            raise InputError(f"{where(path, rec.row, labels_col)}: {err}") from None
        split = None
        if split_col:
            split = canonical_split(rec.fields[split_col])
            if split is None:
                raise InputError(
                    f"{where(path, rec.row, split_col)}: split {rec.fields[split_col]!r:.40} is "
                    "not one of train, val, validation, dev, test"
                )
        if not text or not text.strip():
            empty_rows.append(rec.row)
            continue
        if not labels:
            if unlabeled == "error":
                raise InputError(
                    f"{where(path, rec.row, labels_col)}: empty label cell (every document "
                    "needs at least one label with unlabeled='error')"
                )
            unlabeled_rows.append(rec.row)
            if unlabeled == "drop":
                continue
        docs.texts.append(text)
        docs.labels.append(labels)
        docs.rows.append(rec.row)
        if docs.splits is not None:
            docs.splits.append(split)
    n = len(records)
    if empty_rows and len(empty_rows) > max_bad_rows * n:
        shown = ", ".join(map(str, empty_rows[1:4]))
        raise InputError(
            f"{where(path, empty_rows[0], text_col)}: empty text in {len(empty_rows)} of {n} "
            f"rows{f' (also rows {shown}' + (', …)' if len(empty_rows) > 4 else ')') if shown else ''}"
            f", more than max_bad_rows={max_bad_rows:g} of the file"
        )
    report: dict = {"rows_read": n, "documents": len(docs), "skipped": {}}
    if empty_rows:
        report["skipped"]["empty text"] = {"count": len(empty_rows), "rows": empty_rows[:_SHOW_ROWS]}
    if unlabeled_rows and unlabeled == "drop":
        report["skipped"]["no labels"] = {"count": len(unlabeled_rows),
                                          "rows": unlabeled_rows[:_SHOW_ROWS]}
    report["unlabeled"] = {"policy": unlabeled, "count": len(unlabeled_rows),
                           "rows": unlabeled_rows[:_SHOW_ROWS]}
    return docs, report


def documents_from_records(
    path: Path,
    records: Sequence[Record],
    text_col: str,
    labels_col: str,
    label_sep: str | None,
    *,
    skip_empty: bool = False,
) -> tuple[Documents, int]:
    """The strict (or, with ``skip_empty``, forgiving) form used by the arXiv loader.

    Without ``skip_empty`` an empty text or label set is an InputError naming the row;
    with it such rows are skipped (the published arXiv file should not become unusable
    over a stray empty row). Returns the documents and the number of rows skipped.
    """
    docs, report = read_documents(
        path, records, text_col, labels_col, label_sep,
        unlabeled="drop" if skip_empty else "error",
        max_bad_rows=1.0 if skip_empty else 0.0,
    )
    return docs, sum(r["count"] for r in report["skipped"].values())
