"""Python's ``(?u)\\w`` as code points and as an RE2 character class.

Why here: scikit-learn tokenises with Python's Unicode ``\\w``; both graphs that must
tokenise the same way — the TensorFlow graph of a linear export
(`baselines.linear_export`) and its ONNX graph (`mlbench.serving.onnx_graph`) — take
the word class from this one function, so the two cannot drift apart and serving
imports no track code for it.
"""

from __future__ import annotations

import functools
import re

import numpy as np

__all__ = ["MAX_CODE_POINT", "python_word_mask", "python_word_class", "re2_char"]

MAX_CODE_POINT = 0x10FFFF


@functools.lru_cache(maxsize=1)
def python_word_mask() -> np.ndarray:
    """bool [0x110000]: code point c matches Python's ``(?u)\\w`` (this interpreter)."""
    word = re.compile(r"\w")
    return np.array([bool(word.match(chr(c))) if not 0xD800 <= c <= 0xDFFF else False
                     for c in range(MAX_CODE_POINT + 1)])


def _ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in `mask` as inclusive (first, last) code points."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def re2_char(c: int) -> str:
    """Code point `c` as an RE2 escape (``\\x{…}``)."""
    return f"\\x{{{c:X}}}"


@functools.lru_cache(maxsize=1)
def python_word_class() -> str:
    """An RE2 character class (``[...]``) holding exactly Python's ``\\w`` code points."""
    parts = [re2_char(a) if a == b else f"{re2_char(a)}-{re2_char(b)}"
             for a, b in _ranges(python_word_mask())]
    return "[" + "".join(parts) + "]"
