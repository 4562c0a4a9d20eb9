"""Command line: ``python -m mlbench predict --model DIR "some text" ...``.

Prints the top-k labels with their scores for each text, and marks the labels
that pass the model's decision rule (tuned thresholds saved beside the export).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlbench")
    sub = p.add_subparsers(dest="command", required=True)
    pred = sub.add_parser("predict", help="score texts with an exported model")
    pred.add_argument("--model", required=True, help="an exported *_savedmodel folder")
    pred.add_argument("--top-k", type=int, default=5)
    pred.add_argument("--rule", help="decision rule: fixed | global | per_label (default: best on validation)")
    pred.add_argument("--file", help="read texts from this file, one per line ('-' for stdin)")
    pred.add_argument("texts", nargs="*", help="texts to classify")
    return p


def _read_texts(args: argparse.Namespace) -> list[str]:
    from mlbench.errors import InputError

    texts = list(args.texts)
    if args.file:
        try:
            handle = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
            with handle:
                texts += [line.rstrip("\n") for line in handle if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{args.file}: cannot read texts ({err})") from None
    if not texts:
        raise InputError("predict: give texts as arguments or with --file")
    return texts


def predict(args: argparse.Namespace) -> int:
    import numpy as np

    from mlbench.serving.export import ExportedModel

    texts = _read_texts(args)
    model = ExportedModel(args.model)
    threshold = np.broadcast_to(model.threshold(args.rule), (len(model.labels),))
    scores = model.predict(texts)
    for text, row in zip(texts, scores):
        print(text if len(text) <= 80 else text[:77] + "...")
        for j in np.argsort(-row, kind="stable")[: args.top_k]:
            mark = "*" if row[j] >= threshold[j] else " "
            print(f"  {mark} {model.labels[j]:<30} {row[j]:.4f}")
    print("(* = predicted under the decision rule)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from mlbench.errors import InputError

    args = _parser().parse_args(argv)
    try:
        return predict(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
