"""``python -m reports runs/<run>``: re-render report.html from the run's results.json.

Why a separate entry point: reports can be regenerated after a template change
without retraining; only ``report.html`` and ``figures/`` are (re)written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .html import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run folder containing results.json")
    args = parser.parse_args(argv)
    results = args.run_dir / "results.json"
    if not results.is_file():
        print(f"error: {results} not found", file=sys.stderr)
        return 1
    record = json.loads(results.read_text(encoding="utf-8"))
    print(write_report(record, args.run_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
