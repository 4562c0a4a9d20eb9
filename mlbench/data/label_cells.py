"""Parse one label cell into a tuple of label names.

Why a module of its own: the same cell formats turn up in the arXiv CSV (Python list
literals), user CSVs (literals, JSON lists or ``a|b`` strings) and JSONL files (real
lists), and every loader must reject a bad cell the same way.
"""

from __future__ import annotations

import ast
import csv
import json
import math
from typing import Iterable

__all__ = ["LabelCellError", "parse_label_cell"]


class LabelCellError(ValueError):
    """A label cell that cannot be read; the caller adds file/row/column to the message."""


def parse_label_cell(value: object, label_sep: str | None = None) -> tuple[str, ...]:
    """Return the cell's labels: stripped, non-empty, de-duplicated, in cell order.

    Accepted cells:
    * a real list/tuple (JSONL), items being strings or integers;
    * a string starting with ``[``: a JSON list (``["a", "b"]``) or a Python list
      literal (``['a', 'b']``), detected automatically whatever ``label_sep`` is;
    * any other string: split on ``label_sep`` (e.g. ``"|"``), or one single label
      when ``label_sep`` is None; a one-character separator inside double quotes does
      not split (``'"New York, NY",Boston'`` with ``","`` gives two labels);
    * a bare integer (JSONL, Parquet) is one label; numbers become their decimal
      string (``3`` and ``3.0`` both give ``"3"``, the same as the CSV cell ``3``),
      other floats are refused (a float column is usually a score, not a label).

    Labels are stripped of surrounding whitespace and keep their case (``"Econ"`` and
    ``"econ"`` stay two labels; the health check reports such pairs).
    An empty cell (``""``, ``"[]"``, ``None``, NaN) gives ``()``; the caller decides
    whether that is an error. Anything else raises `LabelCellError`.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, (list, tuple)):
        return _clean(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _clean([value])
    if not isinstance(value, str):
        raise LabelCellError(
            f"label cell must be a list or a string, got {type(value).__name__} {value!r:.60}"
        )
    cell = value.strip()
    if not cell:
        return ()
    if cell.startswith("["):
        return _clean(_parse_list_literal(cell))
    if label_sep:
        if '"' in cell and len(label_sep) == 1:
            return _clean(_split_quoted(cell, label_sep))
        return _clean(cell.split(label_sep))
    return _clean([cell])


def _split_quoted(cell: str, sep: str) -> list[str]:
    """Split on ``sep`` except inside double quotes (CSV quoting rules)."""
    if cell.count('"') % 2:
        raise LabelCellError(f"label cell has an unbalanced double quote: {cell!r:.80}")
    rows = list(csv.reader([cell], delimiter=sep, skipinitialspace=True, strict=False))
    return rows[0] if rows else []


def _parse_list_literal(cell: str) -> list:
    """JSON first (the stricter, commoner format), then a Python literal."""
    try:
        parsed = json.loads(cell)
    except ValueError:
        try:
            parsed = ast.literal_eval(cell)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise LabelCellError(
                f"label cell starts with '[' but is not a JSON or Python list: {cell!r:.80}"
            ) from None
    if not isinstance(parsed, (list, tuple)):
        raise LabelCellError(f"label cell is not a list: {cell!r:.80}")
    return list(parsed)


def _clean(items: Iterable[object]) -> tuple[str, ...]:
    """Strip, drop empties and duplicates; only strings and integers are labels."""
    out: dict[str, None] = {}
    for item in items:
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise LabelCellError(
                f"labels must be strings or whole numbers, got {type(item).__name__} {item!r:.60}"
            )
        name = str(item).strip()
        if name:
            out[name] = None
    return tuple(out)
