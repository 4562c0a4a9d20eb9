#!/usr/bin/env python
"""Train and evaluate every track on one dataset; write a run folder with a report.

    python run_all.py --dataset arxiv            # or reuters, or path/to/file.csv|.jsonl
    python run_all.py --dataset reuters --models mlp,svm --loss bce,focal,db --quick

A thin driver: argument parsing only; the work is `mlbench.experiment.run_experiment`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="arxiv | reuters | path to a .csv/.jsonl file")
    p.add_argument("--data-dir", help="folder (or file) holding the dataset; overrides env vars and the cache")
    p.add_argument("--models", help="comma list of tracks (default: all available; "
                   "'pretrained' joins the default only when a GPU is present)")
    p.add_argument("--loss", default="bce", help="Keras loss name or comma list to compare "
                   "(bce, wbce, focal, cb, rfl, ntr, db, cbntr)")
    p.add_argument("--epochs", type=int, help="max epochs for Keras tracks (early stopping still applies)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default="runs", help="parent folder of the run folder (default: runs)")
    p.add_argument("--quick", action="store_true", help="small, fast configuration for smoke runs")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--split", default="stratified", choices=["stratified", "iterative"],
                   help="train/val/test split for arxiv and user files")
    p.add_argument("--text-col", help="user files: text column (default: text)")
    p.add_argument("--labels-col", help="user files: labels column (default: labels)")
    p.add_argument("--label-sep", help="user files: delimiter for labels given as one string")
    p.add_argument("--head-min", type=int, default=35, help="head labels: at least this many training docs")
    p.add_argument("--tail-max", type=int, default=8, help="tail labels: at most this many training docs")
    p.add_argument("--max-docs", type=int, help="cap the training documents (quick experiments)")
    p.add_argument("--encoder", help="pretrained track: local Hugging Face folder or KerasHub preset")
    p.add_argument("--max-length", type=int, help="transformer tracks: tokens per document")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace, argv: list[str]):
    from mlbench.experiment import RunConfig

    split_list = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    options: dict = {}
    for track in ("encoder", "pretrained"):
        opts = {}
        if args.max_length:
            opts["max_length"] = args.max_length
        if args.encoder and track == "pretrained":
            opts["encoder"] = args.encoder
        if opts:
            options[track] = opts
    return RunConfig(
        dataset=args.dataset, models=split_list(args.models), losses=split_list(args.loss) or ["bce"],
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, quick=args.quick,
        device=args.device, out=Path(args.out), data_dir=args.data_dir, split_method=args.split,
        text_col=args.text_col, labels_col=args.labels_col, label_sep=args.label_sep,
        head_min=args.head_min, tail_max=args.tail_max, max_docs=args.max_docs,
        track_options=options, report=not args.no_report,
        command="python run_all.py " + " ".join(shlex.quote(a) for a in argv),
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from mlbench.errors import InputError

    try:
        from mlbench.experiment import run_experiment

        run_dir = run_experiment(config_from_args(args, argv))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
