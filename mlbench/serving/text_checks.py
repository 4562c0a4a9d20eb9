"""What every text must be before it reaches a model: one rule for the server and the command line.

Why: TensorFlow turns a Python ``str`` into UTF-8 bytes, and a string that cannot be
encoded (a lone surrogate such as JSON's ``"\\ud800"``) fails inside ``tf.constant``,
far from the request or row that held it; one such text used to fail a whole shared
batch.  NUL is refused too: C-string tooling on the way (fastText, TF Serving's JSON
reader, log viewers) may cut a text there, so what is scored would not be what was sent.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["check_texts", "text_problem"]


def text_problem(text: str) -> str | None:
    """Why `text` cannot be scored (one short phrase), or None when it is fine."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return (f"is not valid Unicode: lone surrogate U+{ord(text[err.start]):04X} at character "
                f"{err.start} (cannot be encoded as UTF-8)")
    nul = text.find("\x00")
    if nul >= 0:
        return f"contains a NUL character at character {nul}"
    return None


def check_texts(texts: Sequence[str]) -> list[tuple[int, str]]:
    """(index, problem) for every text of `texts` that `text_problem` refuses; [] when all are fine."""
    found = []
    for i, text in enumerate(texts):
        problem = text_problem(text)
        if problem is not None:
            found.append((i, problem))
    return found
