"""Read a .csv / .tsv / .jsonl / .parquet file (each optionally .gz) into records that
remember their user-visible row.

Row numbers (used in every error message):
* CSV/TSV: the spreadsheet row number. The header is row 1, the first data row is row 2,
  and a record whose quoted cell spans several lines still counts as one row (that
  is what a spreadsheet shows). Blank lines count as rows, as they do in a spreadsheet.
* JSONL: the line number (1-based); there is no header.
* Parquet: the table row, 1-based (no header).

Why not pandas: pandas loses the row a record came from (it skips blank lines and
joins multi-line cells) and raises tracebacks users cannot act on. The stdlib csv
reader is fast enough (the full arXiv file reads in about a second). Parquet needs
pyarrow, imported only for Parquet files.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mlbench.errors import InputError, where

__all__ = [
    "Record",
    "read_records",
    "file_format",
    "CSV_SUFFIXES",
    "TSV_SUFFIXES",
    "JSONL_SUFFIXES",
    "PARQUET_SUFFIXES",
    "SUFFIXES",
]

CSV_SUFFIXES = (".csv",)
TSV_SUFFIXES = (".tsv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
_BASE = CSV_SUFFIXES + TSV_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES
SUFFIXES = _BASE + tuple(s + ".gz" for s in _BASE)
_DELIMITER = {"csv": ",", "tsv": "\t"}

_SURROGATE = re.compile("[\udc80-\udcff]")
_FIELD_LIMIT = 2**30  # arXiv abstracts are short, but user texts may not be


@dataclass(frozen=True)
class Record:
    """One data row: its user-visible row number and the requested columns' values."""

    row: int
    fields: dict[str, object]


def file_format(path: Path) -> tuple[str, bool] | None:
    """("csv" | "tsv" | "jsonl" | "parquet", gzipped?) from the name, or None."""
    name = Path(path).name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    for fmt, suffixes in (("csv", CSV_SUFFIXES), ("tsv", TSV_SUFFIXES),
                          ("jsonl", JSONL_SUFFIXES), ("parquet", PARQUET_SUFFIXES)):
        if name.endswith(suffixes):
            return fmt, gz
    return None


def read_records(path: Path, columns: Sequence[str]) -> list[Record]:
    """Read `columns` from every non-blank row of a supported file.

    Raises InputError (naming file, row and column, and for text files the delimiter
    and encoding tried) for a missing file, bytes that are not UTF-8, a missing column,
    malformed rows, a broken gzip or Parquet file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    kind = file_format(path)
    if kind is None:
        raise InputError(f"{path}: unsupported file type; use {', '.join(SUFFIXES)}")
    fmt, gz = kind
    data = path.read_bytes()
    if gz:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise InputError(f"{path}: not a valid gzip file ({err})") from None
    if fmt == "parquet":
        return _read_parquet(path, data, columns)
    is_jsonl = fmt == "jsonl"
    delimiter = _DELIMITER.get(fmt, "")
    text = _decode_utf8(path, data, is_jsonl, delimiter)
    if is_jsonl:
        return _read_jsonl(path, text, columns)
    return _read_csv(path, text, columns, delimiter)


def _tried(delimiter: str) -> str:
    return f"read as {delimiter!r}-delimited UTF-8"


def _decode_utf8(path: Path, data: bytes, is_jsonl: bool, delimiter: str = ",") -> str:
    """Strict UTF-8 (a leading BOM is allowed); on failure name the row and column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        bad = data[err.start : err.start + 1].hex()
        if is_jsonl:
            loc = where(path, row=line)
        else:
            row, column = _locate_bad_csv_cell(data, delimiter)
            loc = where(path, row=row or line, column=column)
        raise InputError(
            f"{loc}: not valid UTF-8 (byte 0x{bad} on line {line}; encoding tried: UTF-8"
            f"{'' if is_jsonl else f', delimiter {delimiter!r}'}); save the file as UTF-8"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _locate_bad_csv_cell(data: bytes, delimiter: str) -> tuple[int | None, str | None]:
    """Re-read with surrogateescape to find the CSV record and column of a bad byte."""
    text = data.decode("utf-8", "surrogateescape")
    try:
        header: list[str] | None = None
        for row, fields in enumerate(_csv_rows(text, delimiter), start=1):
            if header is None:
                header = fields
            for j, value in enumerate(fields):
                if _SURROGATE.search(value):
                    name = header[j] if row > 1 and j < len(header) else None
                    return row, name
    except csv.Error:
        pass
    return None, None


def _csv_rows(text: str, delimiter: str = ","):
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)


def _read_csv(path: Path, text: str, columns: Sequence[str], delimiter: str = ",") -> list[Record]:
    reader = _csv_rows(text, delimiter)
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
                    f"(the header has {', '.join(map(repr, header))}; {_tried(delimiter)})"
                )
            positions[name] = header.index(name)
        for fields in reader:
            row += 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line
            if len(fields) < len(header) or any(f.strip() for f in fields[len(header) :]):
                raise InputError(
                    f"{where(path, row=row)}: {len(fields)} field(s) but the header has "
                    f"{len(header)} (check quoting and separators; {_tried(delimiter)})"
                )
            records.append(Record(row, {n: fields[i] for n, i in positions.items()}))
    except csv.Error as err:
        raise InputError(
            f"{where(path, row=row + 1)}: malformed CSV ({err}; {_tried(delimiter)})"
        ) from None
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
            raise InputError(
                f"{where(path, row=row)}: not valid JSON ({err}; read as UTF-8 JSON lines, "
                "one object per line)"
            ) from None
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


def _read_parquet(path: Path, data: bytes, columns: Sequence[str]) -> list[Record]:
    """Parquet via pyarrow, only the requested columns, row = 1-based table row."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a pinned dependency
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable Parquet file ({err})") from None
    names = pf.schema_arrow.names
    for name in columns:
        if name not in names:
            raise InputError(
                f"{where(path, column=name)}: no such column "
                f"(the file has {', '.join(map(repr, names)) or 'no columns'})"
            )
    records: list[Record] = []
    row = 0
    try:
        for batch in pf.iter_batches(columns=list(dict.fromkeys(columns))):
            cols = {n: batch.column(n).to_pylist() for n in dict.fromkeys(columns)}
            for i in range(batch.num_rows):
                row += 1
                records.append(Record(row, {n: cols[n][i] for n in columns}))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise InputError(f"{where(path, row=row + 1)}: unreadable Parquet data ({err})") from None
    if not records:
        raise InputError(f"{path}: no data rows")
    return records
