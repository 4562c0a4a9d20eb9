"""Console progress: one line per phase with its time, and ETA lines for long loops.

Everything goes to stderr (stdout carries only results, e.g. the run folder).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def phase(name: str) -> Iterator[dict]:
    """Print ``[name] …`` on entry and ``[name] done in 1.2 s`` on exit.

    The yielded dict gets ``seconds`` on exit so callers can record the time.
    """
    info: dict = {}
    say(f"[{name}] …")
    start = time.perf_counter()
    try:
        yield info
    finally:
        info["seconds"] = time.perf_counter() - start
        say(f"[{name}] done in {info['seconds']:.1f} s")


def eta_line(name: str, done: int, total: int, elapsed: float) -> str:
    """``[name] 3/12 (25%), 4.0 s elapsed, ETA 12.0 s`` (ETA from the mean time per item)."""
    pct = 100.0 * done / total if total else 100.0
    eta = elapsed / done * (total - done) if done else float("nan")
    eta_text = "?" if eta != eta else f"{eta:.1f} s"
    return f"[{name}] {done}/{total} ({pct:.0f}%), {elapsed:.1f} s elapsed, ETA {eta_text}"


def progress(items: Iterable[T], *, total: int, name: str, every: float = 2.0) -> Iterator[T]:
    """Yield `items`, printing an ETA line at most every `every` seconds and at the end.

    Loops that finish within `every` seconds print nothing, so short phases stay quiet.
    """
    start = last = time.perf_counter()
    done = 0
    printed = False
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= every or (printed and done == total):
            say(eta_line(name, done, total, now - start))
            last, printed = now, True
