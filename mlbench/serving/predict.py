"""`mlbench predict`: top-k labels of raw texts from any exported model folder.

Prints each top-k label's calibrated probability (the map fitted on validation and
saved with the export; `--raw`: the raw scores instead) and marks the labels that pass
the model's decision rule, which is applied to the RAW scores as it was tuned (thresholds
saved beside the export; default: the rule chosen on validation).
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from mlbench.errors import InputError

#: tokens printed per explained label
EXPLAIN_SHOWN = 6


def read_texts(texts: Sequence[str], file: str | None) -> list[str]:
    """Texts from the command line plus, with `file`, one per non-empty line ('-': stdin)."""
    out = list(texts)
    if file:
        try:
            handle = sys.stdin if file == "-" else open(file, encoding="utf-8")
            with handle:
                out += [line.rstrip("\n") for line in handle if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{file}: cannot read texts ({err})") from None
    if not out:
        raise InputError("predict: give texts as arguments or with --file")
    return out


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
        from mlbench.serving.artifacts import explanations

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
