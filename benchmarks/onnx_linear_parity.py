"""The self-contained linear ONNX graph against scikit-learn, on a corpus's test split.

Fits the `svm` track on the training split (the settings the default Reuters run chose:
unigrams, sublinear tf, min_df 2, C 1; change them with the flags), exports its
SavedModel, converts that with ``mlbench export-onnx``'s function into ONE ONNX graph
from raw strings (float and int8) and, for comparison, into the numeric core + Python
front end, then scores every test document with each and prints, against
scikit-learn's own ``predict_scores``: the largest |Δscore|, how many documents differ
by more than 1e-4, agreement of the 0/1 decisions at 0.5 (the graph's ``labels``
output), top-1 agreement, and docs/s at batch 256 (best of passes lasting
``--min-seconds``).  Target (issue 21): max |Δscore| ≤ 1e-4 on Reuters test.

    python benchmarks/onnx_linear_parity.py --dataset reuters
    python benchmarks/onnx_linear_parity.py --dataset reuters --ngram-max 2 --min-df 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def docs_per_second(score: Callable[[Sequence[str]], Any], texts: Sequence[str], min_seconds: float) -> float:
    """docs/s of ``score(texts)``: one warm-up on a slice, then the best of passes run within `min_seconds`."""
    score(texts[:64])
    best, spent = 0.0, 0.0
    while spent < min_seconds or best == 0.0:
        start = time.perf_counter()
        score(texts)
        took = time.perf_counter() - start
        spent, best = spent + took, max(best, len(texts) / took)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="reuters")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--ngram-max", type=int, default=1)
    parser.add_argument("--min-df", type=int, default=2)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--plain-tf", action="store_true", help="tf instead of sublinear tf")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)

    from baselines.svm import LinearSVMTrack
    from mlbench.data import load_corpus
    from mlbench.labels import LabelSpace
    from mlbench.serving.artifacts import load_artifact
    from mlbench.serving.onnx_artifact import OnnxArtifact
    from mlbench.serving.onnx_export import export_onnx
    from mlbench.sizes import directory_size
    from mlbench.tracks import TrainSettings

    corpus = load_corpus(args.dataset, data_dir=args.data_dir)
    texts = list(corpus.test.texts)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    track = LinearSVMTrack(TrainSettings(seed=42), ngram_range=(1, args.ngram_max), min_df=args.min_df,
                           C=args.C, sublinear_tf=not args.plain_tf)
    start = time.perf_counter()
    track.fit(corpus.train, corpus.val, labels)
    print(f"{args.dataset}: svm {track.describe()['vectorizer']}, C={args.C}: {len(labels)} labels, "
          f"{track.describe()['vocabulary']:,} terms, fitted in {time.perf_counter() - start:.1f} s", flush=True)
    reference = track.predict_scores(texts)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        saved = track.export(Path(tmp) / "svm_savedmodel", thresholds=np.full(len(labels), 0.5))
        forms: list[tuple[str, Path, Any]] = [("SavedModel", saved, load_artifact(saved))]
        for name, int8, python_frontend in (("ONNX graph float", False, False), ("ONNX graph int8", True, False),
                                            ("ONNX core + Python front end", False, True)):
            start = time.perf_counter()
            folder = export_onnx(saved, Path(tmp) / name.replace(" ", "_"), int8=int8,
                                 python_frontend=python_frontend)
            print(f"  exported {name} in {time.perf_counter() - start:.1f} s", flush=True)
            forms.append((name, folder, OnnxArtifact(folder)))
        want_labels = reference >= 0.5
        for name, folder, model in forms:
            scores = model.predict(texts)
            diff = np.abs(scores - reference).max(axis=1)
            decided = (model.outputs(texts)["labels"].astype(bool) if isinstance(model, OnnxArtifact)
                       else scores >= 0.5)
            rows.append({
                "form": name, "mb": directory_size(folder) / 2**20, "max": float(diff.max()),
                "over": int(np.sum(diff > 1e-4)),
                "cells": float(np.mean(decided == want_labels)),
                "docs": float(np.mean(np.all(decided == want_labels, axis=1))),
                "top1": float(np.mean(np.argmax(scores, 1) == np.argmax(reference, 1))),
                "speed": docs_per_second(lambda t, m=model: m.predict(t, batch_size=256), texts, args.min_seconds),
            })
            r = rows[-1]
            print(f"  {name:<30} max |Δ| {r['max']:.2g}  docs > 1e-4: {r['over']}  "
                  f"labels {r['cells']:.6f}  top-1 {r['top1']:.4f}  {r['speed']:,.0f} docs/s", flush=True)
    sk = docs_per_second(track.predict_scores, texts, args.min_seconds)
    print(f"\n{args.dataset} test split, {len(texts):,} documents; reference: scikit-learn "
          f"predict_scores ({sk:,.0f} docs/s); decisions at 0.5 (the graph's `labels` output)\n")
    print("| form | MB | max abs score diff vs scikit-learn | docs > 1e-4 | label agreement (doc × label) | "
          "docs with identical label sets | top-1 agreement | docs/s batch 256 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['form']} | {r['mb']:.2f} | {r['max']:.2g} | {r['over']} | {r['cells']:.6f} | "
              f"{r['docs']:.4f} | {r['top1']:.4f} | {r['speed']:,.0f} |")
    graph = next(r for r in rows if r["form"] == "ONNX graph float")
    ok = graph["max"] <= 1e-4
    print(f"\n{'PASS' if ok else 'MISS'}: self-contained float graph within 1e-4 of scikit-learn on every "
          f"test document (max {graph['max']:.2g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
