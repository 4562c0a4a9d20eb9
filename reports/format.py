"""`num`: the one reading of a recorded number the report draws and prints.

Why: a report must render even when the evaluator could not compute a metric (None) or
a record holds NaN / inf; those read as missing instead of breaking a figure or a table.
"""

from __future__ import annotations

import math
from typing import Any


def num(value: Any) -> float | None:
    """A finite float or None (nulls, strings, NaN and inf all read as missing)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
