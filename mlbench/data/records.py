"""Read a .csv or .jsonl file into records that remember their user-visible row.

Row numbers (used in every error message):
* CSV: the spreadsheet row number. The header is row 1, the first data row is row 2,
  and a record whose quoted cell spans several lines still counts as one row (that
  is what a spreadsheet shows). Blank lines count as rows, as they do in a spreadsheet.
* JSONL: the line number (1-based); there is no header.

Why not pandas: pandas loses the row a record came from (it skips blank lines and
joins multi-line cells) and raises tracebacks users cannot act on. The stdlib csv
reader is fast enough (the full arXiv file reads in about a second).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mlbench.errors import InputError, where

__all__ = ["Record", "read_records", "JSONL_SUFFIXES", "CSV_SUFFIXES"]

CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")

_SURROGATE = re.compile("[\udc80-\udcff]")
_FIELD_LIMIT = 2**30  # arXiv abstracts are short, but user texts may not be


@dataclass(frozen=True)
class Record:
    """One data row: its user-visible row number and the requested columns' values."""

    row: int
    fields: dict[str, object]


def read_records(path: Path, columns: Sequence[str]) -> list[Record]:
    """Read `columns` from every non-blank row of a .csv/.jsonl file.

    Raises InputError (naming file, row and column) for a missing file, bytes that
    are not UTF-8, a missing column, malformed CSV/JSON rows.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    data = path.read_bytes()
    is_jsonl = path.suffix.lower() in JSONL_SUFFIXES
    text = _decode_utf8(path, data, is_jsonl)
    return _read_jsonl(path, text, columns) if is_jsonl else _read_csv(path, text, columns)


def _decode_utf8(path: Path, data: bytes, is_jsonl: bool) -> str:
    """Strict UTF-8 (a leading BOM is allowed); on failure name the row and column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        bad = data[err.start : err.start + 1].hex()
        if is_jsonl:
            loc = where(path, row=line)
        else:
            row, column = _locate_bad_csv_cell(data)
            loc = where(path, row=row or line, column=column)
        raise InputError(
            f"{loc}: not valid UTF-8 (byte 0x{bad} on line {line}); save the file as UTF-8"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _locate_bad_csv_cell(data: bytes) -> tuple[int | None, str | None]:
    """Re-read with surrogateescape to find the CSV record and column of a bad byte."""
    text = data.decode("utf-8", "surrogateescape")
    try:
        header: list[str] | None = None
        for row, fields in enumerate(_csv_rows(text), start=1):
            if header is None:
                header = fields
            for j, value in enumerate(fields):
                if _SURROGATE.search(value):
                    name = header[j] if row > 1 and j < len(header) else None
                    return row, name
    except csv.Error:
        pass
    return None, None


def _csv_rows(text: str):
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    return csv.reader(io.StringIO(text, newline=""))


def _read_csv(path: Path, text: str, columns: Sequence[str]) -> list[Record]:
    reader = _csv_rows(text)
    records: list[Record] = []
    row = 0
    try:
        header = next(reader, None)
        row = 1
        if not header or not any(h.strip() for h in header):
            raise InputError(f"{where(path, row=1)}: empty file or empty header row")
        header = [h.strip() for h in header]
        positions = {}
        for name in columns:
            if name not in header:
                raise InputError(
                    f"{where(path, column=name)}: no such column "
                    f"(the header has {', '.join(map(repr, header))})"
                )
            positions[name] = header.index(name)
        for fields in reader:
            row += 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line
            if len(fields) < len(header) or any(f.strip() for f in fields[len(header) :]):
                raise InputError(
                    f"{where(path, row=row)}: {len(fields)} field(s) but the header has "
                    f"{len(header)} (check quoting and separators)"
                )
            records.append(Record(row, {n: fields[i] for n, i in positions.items()}))
    except csv.Error as err:
        raise InputError(f"{where(path, row=row + 1)}: malformed CSV ({err})") from None
    if not records:
        raise InputError(f"{path}: no data rows below the header")
    return records


def _read_jsonl(path: Path, text: str, columns: Sequence[str]) -> list[Record]:
    records: list[Record] = []
    for row, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as err:
            raise InputError(f"{where(path, row=row)}: not valid JSON ({err})") from None
        if not isinstance(obj, dict):
            raise InputError(
                f"{where(path, row=row)}: expected a JSON object, got {type(obj).__name__}"
            )
        for name in columns:
            if name not in obj:
                raise InputError(
                    f"{where(path, row=row, column=name)}: no such key "
                    f"(the object has {', '.join(map(repr, obj)) or 'no keys'})"
                )
        records.append(Record(row, {n: obj[n] for n in columns}))
    if not records:
        raise InputError(f"{path}: no data rows")
    return records
