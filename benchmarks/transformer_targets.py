"""Full Reuters run of a transformer track against its target (prints figures; not a test).

Targets: ``encoder`` test micro-F1 >= 0.87 within 10 minutes of CPU training;
``pretrained`` micro-F1 >= 0.90 (GPU).  Prints test micro/macro F1 at the fixed 0.5
cut-off, training seconds, training examples/s, and the exported raw-string
SavedModel's inference throughput (docs/s at batch 64) after reloading it.

    python benchmarks/transformer_targets.py --track encoder --max-train-seconds 600
    python benchmarks/transformer_targets.py --track pretrained --device gpu

Reuters comes from ``--data-dir``, else ``$MLBENCH_REUTERS``, else
``../shared/data/reuters21578`` next to the repository.  Extra track options:
``--option key=value`` (value parsed as JSON when possible), repeatable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.cli_options import parse_option  # noqa: E402

import numpy as np  # noqa: E402

TARGETS = {"encoder": 0.87, "pretrained": 0.90}




def reuters_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    if os.environ.get("MLBENCH_REUTERS"):
        return Path(os.environ["MLBENCH_REUTERS"])
    return REPO.parent / "shared" / "data" / "reuters21578"


def f1_scores(y: np.ndarray, scores: np.ndarray) -> dict:
    try:
        from mlbench.evaluation.metrics import evaluate

        m = evaluate(y, scores, threshold=0.5)
        return {"f1_micro": m["f1_micro"], "f1_macro": m["f1_macro"]}
    except ImportError:  # metrics module missing: the same numbers from scikit-learn
        from sklearn.metrics import f1_score

        pred = (scores >= 0.5).astype(int)
        return {"f1_micro": f1_score(y, pred, average="micro", zero_division=0),
                "f1_macro": f1_score(y, pred, average="macro", zero_division=0)}


def export_throughput(track, texts: list[str], batch_size: int = 64) -> tuple[float, float, Path]:
    """Export, reload as a plain SavedModel, time `predict`; return (docs/s, max |Δ|, dir)."""
    from mlbench.serving.export import ExportedModel

    directory = Path(tempfile.mkdtemp(prefix=f"{track.name}-export-")) / "model"
    track.export(directory)
    model = ExportedModel(directory)
    model.predict(texts[:batch_size], batch_size=batch_size)  # warm-up: first call traces
    start = time.perf_counter()
    scores = model.predict(texts, batch_size=batch_size)
    seconds = time.perf_counter() - start
    diff = float(np.abs(scores - track.predict_scores(texts)).max())
    return len(texts) / seconds, diff, directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", choices=sorted(TARGETS), default="encoder")
    parser.add_argument("--max-train-seconds", type=float, default=600.0,
                        help="stop before an epoch that would end past this (0: no limit)")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--loss", default="bce")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--workdir", default=None, help="checkpoint folder: rerun to resume")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--option", type=parse_option, action="append", default=[],
                        help="track option key=value, e.g. --option preset=gpu")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    from mlbench.data import load_corpus
    from mlbench.keras.device import configure_device
    from mlbench.labels import LabelSpace
    from mlbench.tracks import TrainSettings, get_track_class

    device = configure_device(args.device)
    corpus = load_corpus("reuters", data_dir=reuters_dir(args.data_dir), seed=args.seed)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    print(f"device: {device}; reuters: {len(corpus.train)} train / {len(corpus.val)} val / "
          f"{len(corpus.test)} test, {len(labels)} labels", flush=True)

    options = dict(args.option)
    if args.max_train_seconds:
        options.setdefault("max_train_seconds", args.max_train_seconds)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                             quick=args.quick, loss=args.loss, options=options,
                             workdir=Path(args.workdir) if args.workdir else None)
    track = get_track_class(args.track)(settings)

    start = time.perf_counter()
    history = track.fit(corpus.train, corpus.val, labels)
    train_seconds = time.perf_counter() - start
    epochs_run = len(history.get("loss", []))

    start = time.perf_counter()
    scores = track.predict_scores(corpus.test.texts)
    predict_seconds = time.perf_counter() - start
    metrics = f1_scores(labels.encode(corpus.test.labels), scores)
    docs_per_s, diff, export_dir = export_throughput(track, corpus.test.texts)

    target = TARGETS[args.track]
    figures = {
        "track": args.track, "device": device, "command": " ".join(sys.argv),
        "test_f1_micro": round(metrics["f1_micro"], 4), "test_f1_macro": round(metrics["f1_macro"], 4),
        "target_f1_micro": target, "target_met": metrics["f1_micro"] >= target,
        "train_seconds": round(train_seconds, 1), "epochs_run": epochs_run,
        "train_examples_per_s": round(epochs_run * len(corpus.train) / train_seconds, 1),
        "in_process_predict_docs_per_s": round(len(corpus.test) / predict_seconds, 1),
        "exported_docs_per_s_batch64": round(docs_per_s, 1),
        "export_vs_track_max_abs_diff": diff, "export_dir": str(export_dir),
        "val_loss": [round(v, 4) for v in history.get("val_loss", [])],
        "describe": track.describe(),
    }
    print(json.dumps(figures, indent=1, default=str))
    print(f"\n{args.track}: test micro-F1 {figures['test_f1_micro']:.4f} "
          f"(target {target}: {'met' if figures['target_met'] else 'NOT met'}), "
          f"macro-F1 {figures['test_f1_macro']:.4f}, {figures['train_seconds']} s training "
          f"({epochs_run} epochs, {figures['train_examples_per_s']} ex/s), exported model "
          f"{figures['exported_docs_per_s_batch64']} docs/s at batch 64")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
