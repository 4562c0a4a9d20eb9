"""``python -m reports runs/<run>``: re-render report.html from the run's results.json.

The same as ``mlbench report RUN`` (kept because the README has always shown it);
only ``report.html`` and ``figures/`` are (re)written.
"""

from __future__ import annotations

import sys

from mlbench_cli import main

if __name__ == "__main__":
    raise SystemExit(main(["report", *sys.argv[1:]]))
