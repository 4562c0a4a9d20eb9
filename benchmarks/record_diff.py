"""Compare the figures of two runs' results.json, number by number.

What "behaviour does not change" is checked with: run the same command before and after a
change, then ``python benchmarks/record_diff.py OLD/results.json NEW/results.json``.  Timings,
sizes, paths and the command line are left out (they differ between any two runs); every
other number must agree to ``--atol`` (default 1e-9) and every other value exactly.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

#: keys whose values differ between two runs of the same code (a key containing one is skipped)
VOLATILE = ("seconds", "docs_per_s", "bytes", "size", "command", "out", "dir", "created", "started",
            "finished", "elapsed", "host", "version", "python", "peak", "cpu", "time", "run_id")


def differences(old: Any, new: Any, atol: float, path: str = "") -> tuple[int, list[str]]:
    """(numbers compared, one line per difference) between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        count, out = 0, []
        for key in sorted(set(old) | set(new)):
            if any(v in key.lower() for v in VOLATILE):
                continue
            if key not in old or key not in new:
                out.append(f"{path}/{key}: only in the {'new' if key in new else 'old'} record")
                continue
            n, d = differences(old[key], new[key], atol, f"{path}/{key}")
            count, out = count + n, out + d
        return count, out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return 0, [f"{path}: {len(old)} items, now {len(new)}"]
        count, out = 0, []
        for i, (a, b) in enumerate(zip(old, new)):
            n, d = differences(a, b, atol, f"{path}[{i}]")
            count, out = count + n, out + d
        return count, out
    numeric = (int, float)
    if isinstance(old, numeric) and isinstance(new, numeric) and not isinstance(old, bool):
        same = old == new or (math.isnan(old) and math.isnan(new)) or abs(old - new) <= atol
        return 1, [] if same else [f"{path}: {old!r} → {new!r}"]
    return 0, [] if old == new else [f"{path}: {str(old)[:60]!r} → {str(new)[:60]!r}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--atol", type=float, default=1e-9)
    args = p.parse_args(argv)
    old, new = (json.loads(path.read_text(encoding="utf-8")) for path in (args.old, args.new))
    count, diffs = differences(old, new, args.atol)
    for line in diffs:
        print(line)
    print(f"{count} numbers compared, {sum(': only in' not in d for d in diffs)} values differ, "
          f"{sum(': only in' in d for d in diffs)} keys in one record only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
