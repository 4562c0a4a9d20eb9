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

__all__ = ["Documents", "documents_from_records"]


@dataclass
class Documents:
    """Parallel lists of texts, label tuples and the rows they came from."""

    texts: list[str] = field(default_factory=list)
    labels: list[tuple[str, ...]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def keep(self, mask: Sequence[bool]) -> "Documents":
        idx = [i for i, k in enumerate(mask) if k]
        return Documents(
            [self.texts[i] for i in idx], [self.labels[i] for i in idx], [self.rows[i] for i in idx]
        )


def documents_from_records(
    path: Path,
    records: Sequence[Record],
    text_col: str,
    labels_col: str,
    label_sep: str | None,
    *,
    skip_empty: bool = False,
) -> tuple[Documents, int]:
    """Validate each record's text and label cell; return documents and #skipped rows.

    An unparseable label cell is always an InputError. An empty text or an empty label
    set is an InputError naming the row, unless ``skip_empty`` (used for the published
    arXiv file, where a stray empty row should not make the dataset unusable).
    """
    docs = Documents()
    skipped = 0
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
        problem = None
        if not text or not text.strip():
            problem = (text_col, "empty text")
        elif not labels:
            problem = (labels_col, "empty label cell (every document needs at least one label)")
        if problem is not None:
            if skip_empty:
                skipped += 1
                continue
            raise InputError(f"{where(path, rec.row, problem[0])}: {problem[1]}")
        docs.texts.append(text)
        docs.labels.append(labels)
        docs.rows.append(rec.row)
    return docs, skipped
