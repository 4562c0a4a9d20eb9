"""One line per phase, with its time, so long runs show where they are."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator


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
