"""``python -m reports.screenshot runs/<run>/report.html out.png [--width W --height H]``.

The implementation lives in ``reports.chromium``; this module is the CLI.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

from .chromium import find_chromium, screenshot

__all__ = ["screenshot", "find_chromium", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.screenshot", description="Screenshot a report with headless Chromium.")
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args(argv)
    try:
        out = screenshot(args.html, args.png, width=args.width, height=args.height, chromium=args.chromium)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


class _CallableModule(types.ModuleType):
    """Why: ``reports.screenshot`` is both the re-exported function and this CLI
    module; importing the module rebinds the package attribute to it, so the
    module forwards calls to keep ``reports.screenshot(html, png)`` working."""

    def __call__(self, *args, **kwargs) -> Path:
        return screenshot(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    raise SystemExit(main())
