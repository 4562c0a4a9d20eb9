"""Which input texts a model cannot take: one rule for `predict`, `score` and the server.

Why: TensorFlow turns every text into UTF-8 bytes; a lone surrogate (``"\\ud800"`` in a
JSON string, or a non-UTF-8 byte that Python decoded with ``surrogateescape``, as it does
for command-line arguments) cannot be encoded and fails the whole batch with a
traceback.  A NUL character is refused too (not stripped): it is almost always a binary
file or a broken export read as text, and silently editing a user's text would change
what the model saw without saying so.
"""

from __future__ import annotations

import re
from typing import Sequence

__all__ = ["bad_texts", "text_problem"]

#: a NUL, or any code point in U+D800–U+DFFF (in a Python str always a lone surrogate:
#: characters past U+FFFF are one code point, never a pair)
_BAD = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: object) -> str | None:
    """Why `text` cannot be scored, or None: a phrase naming the character and its
    1-based position, e.g. ``"NUL character (U+0000) at character 5"``."""
    if not isinstance(text, str):
        return f"text must be a string, got {type(text).__name__}"
    hit = _BAD.search(text)
    if hit is None:
        return None
    char, at = hit.group(), hit.start() + 1
    if char == "\x00":
        return f"NUL character (U+0000) at character {at}"
    return (f"lone surrogate U+{ord(char):04X} at character {at}, not encodable as UTF-8 "
            "(an undecodable byte or a broken \\u escape)")


def bad_texts(texts: Sequence[str]) -> list[tuple[int, str]]:
    """(index, reason) for every text of `texts` a model cannot take, in order; [] if all are fine."""
    out = []
    for i, text in enumerate(texts):
        reason = text_problem(text)
        if reason is not None:
            out.append((i, reason))
    return out
