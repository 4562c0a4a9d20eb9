"""User-facing errors: one clear line, exit code 2, no traceback."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (file, row, column, option). `str(err)` is the whole message.

    The driver catches it and prints ``error: <message>`` then exits with code 2,
    so the message must name the file, row or field that is wrong.
    """

    exit_code = 2


def where(path: object, row: int | None = None, column: str | None = None) -> str:
    """Format a location like ``data.csv, row 12, column 'terms'`` for error messages."""
    parts = [str(path)]
    if row is not None:
        parts.append(f"row {row}")
    if column is not None:
        parts.append(f"column {column!r}")
    return ", ".join(parts)
