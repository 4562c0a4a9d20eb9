"""`mlbench predict`: top-k labels of raw texts from any exported model folder.

Prints each top-k label's calibrated probability (the map fitted on validation and
saved with the export; `--raw`: the raw scores instead) and marks the labels that pass
the model's decision rule, which is applied to the RAW scores as it was tuned (thresholds
saved beside the export; default: the rule chosen on validation).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from mlbench.errors import InputError

#: tokens printed per explained label
EXPLAIN_SHOWN = 6
#: how Python's surrogateescape spells an undecodable byte of a command-line argument
_ESCAPED = re.compile("[\udc80-\udcff]")


def _file_lines(file: str) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line of `file` ('-': stdin), read as strict
    UTF-8 (a leading BOM dropped; \\r\\n and \\r end lines as in text mode)."""
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as err:
        raise InputError(f"{file}: cannot read texts ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start].decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        raise InputError(f"{'stdin' if file == '-' else file}, line {line}: not valid UTF-8 (byte 0x{data[err.start]:02x} at "
                         f"character {column}); save the file as UTF-8") from None
    text = text[1:] if text.startswith("\ufeff") else text
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]


def read_texts(texts: Sequence[str], file: str | None) -> list[str]:
    """Texts from the command line plus, with `file`, one per non-empty line ('-': stdin).

    Every text must be valid UTF-8 without NUL (`text_checks`); the first that is not is
    an InputError naming its argument or file line."""
    from mlbench.serving.text_checks import bad_texts

    named = [(f"predict: text argument {i}", t) for i, t in enumerate(texts, start=1)]
    if file:
        named += [(f"{'stdin' if file == '-' else file}, line {n}", t) for n, t in _file_lines(file)]
    if not named:
        raise InputError("predict: give texts as arguments or with --file")
    bad = bad_texts([t for _, t in named])
    if bad:
        i, reason = bad[0]
        (name, text), more = named[i], f" (and {len(bad) - 1} more bad text(s))" if len(bad) > 1 else ""
        escaped = _ESCAPED.search(text) if i < len(texts) else None
        if escaped:  # Python decoded a non-UTF-8 argument byte with surrogateescape
            reason = (f"is not valid UTF-8 (byte 0x{ord(escaped.group()) - 0xDC00:02x} at character "
                      f"{escaped.start() + 1}; pass text in your terminal's UTF-8 or use --file)")
        raise InputError(f"{name}: {reason}{more}")
    return [t for _, t in named]


def predict_command(*, model: str, texts: Sequence[str], file: str | None, top_k: int = 5,
                    rule: str | None = None, raw: bool = False, explain: bool = False) -> int:
    from mlbench.runtime import import_tensorflow
    from mlbench.serving.artifacts import load_artifact

    if top_k < 1:
        raise InputError(f"--top-k: expected a positive integer, got {top_k}")
    texts = read_texts(texts, file)
    import_tensorflow()  # quietly, before the artifact loads it
    artifact = load_artifact(model)
    threshold = np.broadcast_to(artifact.threshold(rule), (len(artifact.labels),))
    scores = artifact.predict(texts)
    calibrated = not raw and bool(getattr(artifact, "has_calibration", False))
    shown = artifact.probabilities(texts) if calibrated else scores
    why: list[dict] = [{}] * len(texts)
    if explain:
        from mlbench.explain.tracks import predicted_labels
        from mlbench.serving.layout import explanations

        why = explanations(artifact, texts, predicted_labels(scores, threshold))
    for text, row, raw_row, reasons in zip(texts, shown, scores, why):
        print(text if len(text) <= 80 else text[:77] + "...")
        for j in np.argsort(-row, kind="stable")[:top_k]:
            mark = "*" if raw_row[j] >= threshold[j] else " "
            print(f"  {mark} {artifact.labels[j]:<30} {row[j]:.4f}")
        for label, pairs in reasons.items():
            shown_pairs = ", ".join(f"{tok} {w:+.3f}" for tok, w in pairs[:EXPLAIN_SHOWN])
            print(f"    why {label}: {shown_pairs or '(no known tokens)'}")
    if calibrated:
        print("(figures: calibrated probabilities; * = predicted by the decision rule, applied to "
              "the raw scores it was tuned on)")
    else:
        note = "" if raw else " (this export has no calibration)"
        print(f"(figures: raw scores{note}; * = predicted under the decision rule)")
    if explain:
        print("(why: the n-grams/tokens that pushed each predicted label's logit most, signed; "
              "labels with no score past the rule explain the top label)")
    return 0
