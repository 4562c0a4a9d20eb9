"""The `mlbench` command: ``mlbench run | predict | score | serve | report`` (thin; the work lives in the layers).

    mlbench run --dataset reuters                  # = python run_all.py --dataset reuters
    mlbench predict --model RUN/mlp_savedmodel "Oil prices rose after OPEC cut output"
    mlbench score --model RUN/svm_savedmodel --input corpus.csv --out soft_labels.csv
    mlbench serve --model RUN/svm_savedmodel       # JSON API + TF Serving REST + web page
    mlbench report RUN                             # re-render report.html from results.json
    mlbench compare RUN_A RUN_B --out cmp.html     # runs side by side (+ cmp.md)

This is the top layer: it parses options into a `RunConfig`, calls the experiment, then
the report on the record the experiment returned.  Every error a user can cause leaves
as one ``error: …`` line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mlbench.runtime import set_environment

set_environment()


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _names(tracks: dict, declared) -> str:
    """The registered tracks whose class satisfies `declared`, comma-joined (for help texts)."""
    return ", ".join(n for n, cls in tracks.items() if declared(cls)) or "none"


def _flag_dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _add_track_options(p: argparse.ArgumentParser, tracks: dict) -> None:
    """The flags the tracks declare (`mlbench.tracks.Param.flag`): one per flag, whichever
    tracks read it; checked by `RunConfig.validate` against the same declarations."""
    from mlbench.tracks import track_flags

    for flag, targets in (track_flags() if tracks else {}).items():
        param = targets[0][2]
        p.add_argument(flag, dest=_flag_dest(flag), type=param.convert or str, help=param.help)


def _add_run_options(p: argparse.ArgumentParser, tracks: dict) -> None:
    p.add_argument("--dataset", help="arxiv | reuters | path to a .csv/.jsonl file (required unless --resume)")
    p.add_argument("--resume", metavar="RUN_DIR", type=Path,
                   help="continue an interrupted run in its own folder, with its recorded configuration")
    p.add_argument("--data-dir", help="folder (or file) holding the dataset; overrides env vars and the cache")
    p.add_argument("--models", help=f"comma list of tracks: {', '.join(tracks)} (default: all available; "
                   f"{_names(tracks, lambda c: not c.cpu_default)} join the default only when a GPU is present)")
    p.add_argument("--loss", default="bce", help="Keras loss name or comma list to compare "
                   "(bce, wbce, focal, cb, rfl, ntr, db, cbntr)")
    p.add_argument("--epochs", type=int, help="max epochs for Keras tracks (early stopping still applies)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--seeds", type=int, default=1,
                   help="train each stochastic track with this many seeds (seed, seed+1, …); mean ± std")
    p.add_argument("--select", default="micro", choices=["micro", "macro"],
                   help="objective the searches optimise on validation (both are always reported)")
    p.add_argument("--no-tune", action="store_true",
                   help="skip the validation search; train each track's fixed defaults")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="paired-bootstrap resamples for test confidence intervals (0: none)")
    p.add_argument("--out", default="runs", help="parent folder of the run folder (default: runs)")
    p.add_argument("--quick", action="store_true", help="small, fast configuration for smoke runs (no search)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--split", default="stratified", choices=["stratified", "iterative"],
                   help="train/val/test split for arxiv and user files")
    p.add_argument("--text-col", help="user files: text column (default: text)")
    p.add_argument("--labels-col", help="user files: labels column (default: labels)")
    p.add_argument("--label-sep", help="user files: delimiter for labels given as one string")
    p.add_argument("--head-min", type=int, default=35, help="head labels: at least this many training docs")
    p.add_argument("--tail-max", type=int, default=8, help="tail labels: at most this many training docs")
    p.add_argument("--max-docs", type=int, help="cap the training documents (quick experiments)")
    p.add_argument("--split-col", help="user files: column giving each row's split (train, val/dev, test)")
    p.add_argument("--test-file", help="user files: a given test file (--dataset is then the train file)")
    p.add_argument("--val-file", help="user files: a given validation file")
    p.add_argument("--val-size", type=float, help="validation share (< 1) or count split from train "
                   "when none is given (default 0.1)")
    p.add_argument("--unlabeled", choices=["keep", "drop", "error"],
                   help="rows with no labels: keep as all-negative documents (default), drop, or error")
    p.add_argument("--max-bad-rows", type=float,
                   help="user files: share of empty-text rows skipped and reported before the file is "
                   "refused (default 0.01)")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 checks of built-in data")
    p.add_argument("--strict", action="store_true", help="data-health warnings stop the run too")
    p.add_argument("--dedupe", default="none", choices=["none", "train", "cross"],
                   help="remove duplicate texts (default none: a published split stays as given)")
    p.add_argument("--min-label-docs", type=int, default=2,
                   help="health check: report labels with fewer training documents")
    _add_track_options(p, tracks)
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--mlflow", nargs="?", const="", metavar="URI",
                   help="log the finished run to MLflow (parent run + one child per variant, exports as pyfunc "
                        "models); URI default: sqlite under --out (needs the tracking extra)")
    p.add_argument("--tensorboard", metavar="DIR", help="Keras tracks: write training curves here (TensorBoard)")
    p.add_argument("--strategy", default="default", help="Keras tracks: tf.distribute strategy: default | "
                   "mirrored (all GPUs, or --cpu-devices) | multiworker (cluster from TF_CONFIG)")
    p.add_argument("--cpu-devices", type=int, help="split the CPU into N logical devices (mirrored without GPUs)")
    p.add_argument("--n-jobs", type=int, help="linear tracks: parallel jobs over labels (default: all cores; 1: serial)")
    p.add_argument("--protocol", default="cv", choices=["cv", "holdout"],
                   help=f"cv (default): cheap tracks ({_names(tracks, lambda c: c.cheap_fit)}) cross-fitted on "
                        "K folds of train+val, choices fitted on out-of-fold scores, then refit on train+val; "
                        "holdout: fit on train, choose on validation")
    p.add_argument("--folds", type=int, help="--protocol cv: folds of train+val (default 5; 2 under --quick)")
    p.add_argument("--cv-tracks", help="--protocol cv: comma list of expensive tracks to cross-fit too "
                   f"({_names(tracks, lambda c: not c.cheap_fit and not c.needs_members)})")
    p.add_argument("--dask", metavar="SCHEDULER_ADDRESS", help="linear tracks: send the per-label fits, "
                   "cross-fitting folds and search points to a Dask cluster (tcp://HOST:8786; 'local': a "
                   "LocalCluster of --n-jobs processes); the results equal a local run's")


#: commands that never read a track's declarations: their parser skips importing the
#: track modules (scikit-learn alone costs ~1.5 s of CPU)
_TRACKLESS = ("report", "compare")


def parser(tracks: bool = True) -> argparse.ArgumentParser:
    """The command line; `tracks` False leaves out what the tracks declare (their flags,
    the names in help texts) for a command in `_TRACKLESS`."""
    from mlbench.tracks import track_classes

    classes = track_classes() if tracks else {}
    p = _Parser(prog="mlbench", description="Multi-label text classification benchmark suite.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_options(sub.add_parser("run", help="train and evaluate every track on one dataset"), classes)
    pred = sub.add_parser("predict", help="score texts with an exported model")
    pred.add_argument("--model", required=True, help="an exported model folder (e.g. RUN/mlp_savedmodel)")
    pred.add_argument("--top-k", type=int, default=5)
    pred.add_argument("--rule", help="decision rule: fixed | global | per_label | scutfbr (default: best on validation)")
    pred.add_argument("--file", help="read texts from this file, one per line ('-' for stdin)")
    pred.add_argument("--raw", action="store_true",
                      help="print raw scores instead of calibrated probabilities")
    pred.add_argument("--explain", action="store_true",
                      help="for each predicted label, the n-grams/tokens that pushed its score most "
                           f"(signed, logit units; exports of {_names(classes, lambda c: c.explains)})")
    pred.add_argument("texts", nargs="*", help="texts to classify")
    sc = sub.add_parser("score", help="calibrated soft labels for every row of a file (resumable)")
    sc.add_argument("--model", required=True, help="an exported model folder")
    sc.add_argument("--input", required=True, help="a .csv/.tsv/.jsonl/.parquet file (optionally .gz)")
    sc.add_argument("--text-col", default="text", help="text column (default: text)")
    sc.add_argument("--out", required=True, help="output .csv/.jsonl/.parquet; an existing output of "
                    "this model is resumed (rows already there are skipped; its sidecar "
                    "OUT.mlbench.json names the model)")
    sc.add_argument("--chunk", type=int, default=2048, help="texts per model call (default 2048)")
    sc.add_argument("--id-col", help="copy this input column into the output, beside row")
    srv = sub.add_parser("serve", help="serve an exported model: JSON API, TF Serving REST, web page")
    srv.add_argument("--model", required=True, type=Path, help="an exported model folder")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--name", help="model name in the URLs (default: folder name minus _savedmodel)")
    srv.add_argument("--max-texts", type=int, default=128, help="most texts in one request (default 128)")
    srv.add_argument("--max-chars", type=int, default=20_000, help="longest text accepted (default 20,000)")
    srv.add_argument("--max-explain", type=int, default=16,
                     help='most texts in one request with "explain": true')
    srv.add_argument("--batch-window-ms", type=float, default=5.0, help="micro-batching window")
    srv.add_argument("--max-batch", type=int, default=256, help="most texts in one model call")
    srv.add_argument("--max-body-bytes", type=int, default=None,
                     help="largest request body (default: max-texts x max-chars x 2 bytes + 64 KiB)")
    srv.add_argument("--max-in-flight", type=int, default=32,
                     help="requests handled at once; more get 429 with Retry-After (default 32)")
    srv.add_argument("--header-timeout", type=float, default=10.0,
                     help="seconds a request head may take to arrive (default 10)")
    srv.add_argument("--body-timeout", type=float, default=30.0,
                     help="seconds a request body may take to arrive (default 30)")
    srv.add_argument("--allowed-host", action="append", default=None, metavar="NAME",
                     help="a Host name clients use (repeatable; '*' for any; default: localhost, "
                          "127.0.0.1, [::1] and --host)")
    srv.add_argument("--openapi", action="store_true", help="serve /openapi.json (no /docs page)")
    onx = sub.add_parser("export-onnx", help="convert an exported SavedModel folder to ONNX (+ its text front end)")
    onx.add_argument("--model", required=True, type=Path, help="an exported *_savedmodel folder "
                     f"({_names(classes, lambda c: c.onnx_core)}; calibrated or not)")
    onx.add_argument("--out", required=True, type=Path, help="new folder for the ONNX model")
    onx.add_argument("--int8", action="store_true", help="quantise the weights to int8")
    onx.add_argument("--python-frontend", action="store_true",
                     help="linear tracks: numeric core + Python text front end instead of one graph from strings")
    rep = sub.add_parser("report", help="re-render report.html from a run's results.json")
    rep.add_argument("run_dir", type=Path, help="run folder containing results.json")
    cmp_ = sub.add_parser("compare", help="compare run folders side by side: one HTML page + a Markdown table")
    cmp_.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders (results.json)")
    cmp_.add_argument("--out", type=Path, default=Path("compare.html"), help="the HTML page (default: compare.html)")
    cmp_.add_argument("--markdown", type=Path, help="the Markdown table (default: --out with .md)")
    cmp_.add_argument("--force", action="store_true", help="overwrite existing output files")
    return p


def config_from_args(args: argparse.Namespace, argv: list[str]):
    from mlbench.config import RunConfig

    split_list = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s is not None else None  # noqa: E731
    from mlbench.tracks import track_flags

    options: dict = {}
    for flag, targets in track_flags().items():
        value = getattr(args, _flag_dest(flag))
        if value is not None:
            for track, key, _ in targets:
                options.setdefault(track, {})[key] = value
    return RunConfig(
        dataset=args.dataset, models=split_list(args.models), losses=split_list(args.loss) or [],
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, quick=args.quick,
        device=args.device, out=Path(args.out), data_dir=args.data_dir, split_method=args.split,
        text_col=args.text_col, labels_col=args.labels_col, label_sep=args.label_sep,
        head_min=args.head_min, tail_max=args.tail_max, max_docs=args.max_docs,
        split_col=args.split_col, test_file=args.test_file, val_file=args.val_file,
        val_size=None if args.val_size is None else (int(args.val_size) if args.val_size >= 1 else args.val_size),
        unlabeled=args.unlabeled, max_bad_rows=args.max_bad_rows, verify=not args.no_verify,
        strict=args.strict, dedupe=args.dedupe, min_label_docs=args.min_label_docs,
        track_options=options, select=args.select, tune=not args.no_tune, seeds=args.seeds,
        bootstrap=args.bootstrap, report=not args.no_report, tensorboard=args.tensorboard,
        strategy=args.strategy, cpu_devices=args.cpu_devices, n_jobs=args.n_jobs,
        protocol=args.protocol, folds=args.folds, cv_tracks=split_list(args.cv_tracks) or [],
        dask=args.dask,
        command="python run_all.py " + " ".join(shlex.quote(a) for a in argv),
    )


def resumed_config(args: argparse.Namespace, argv: list[str]):
    """The interrupted run's recorded RunConfig; an option given now that differs is an error."""
    from dataclasses import fields

    from mlbench.config import RunConfig
    from mlbench.errors import InputError
    from mlbench.record import RunRecord

    recorded = RunRecord.load(args.resume).config
    names = [f.name for f in fields(RunConfig) if f.name in recorded]
    cfg = RunConfig(**{n: recorded[n] for n in names})
    if "protocol" not in recorded:  # recorded before --protocol existed: those runs were holdout
        cfg.protocol = "holdout"
    cfg.out = Path(cfg.out)
    dataset = args.dataset or cfg.dataset
    args.dataset = dataset
    given = config_from_args(args, argv)
    default = config_from_args(parser().parse_args(["run", "--dataset", dataset]), [])
    for name in names:
        if name in ("command", "report", "models", "tensorboard", "dask"):
            continue
        value = getattr(given, name)
        if value != getattr(default, name) and value != getattr(cfg, name):
            raise InputError(f"--resume {args.resume}: option {name} = {value!r} conflicts with the run's "
                             f"recorded {getattr(cfg, name)!r} (leave it out to resume)")
    if given.models is not None and given.models != (recorded.get("models") or given.models):
        raise InputError(f"--resume {args.resume}: option models = {','.join(given.models)} conflicts with "
                         f"the run's recorded {','.join(recorded['models'])}")
    cfg.report = given.report
    cfg.tensorboard = given.tensorboard
    cfg.dask = given.dask  # where the fits run, not what they give: each resume picks its own
    return cfg


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from mlbench.errors import InputError
    from mlbench.experiment import run_experiment
    from mlbench.progress import phase, say

    if args.mlflow is not None:  # before hours of training, not after
        from mlbench.tracking.mlflow_log import require_mlflow

        require_mlflow()
    if args.resume is not None:
        cfg = resumed_config(args, argv).validate()
    elif not args.dataset:
        raise InputError("run: --dataset is required (or --resume RUN_DIR)")
    else:
        cfg = config_from_args(args, argv).validate()
    from mlbench.cluster import dask_cluster

    with dask_cluster(cfg.dask, n_workers=cfg.n_jobs if cfg.n_jobs and cfg.n_jobs > 0 else None):
        run_dir, record = run_experiment(cfg, resume=args.resume)
    if not run_dir.is_dir():  # a non-chief multiworker process: its scratch run folder is gone
        return 0
    if cfg.report:
        with phase("report"):
            from reports import write_report

            say(f"report: {write_report(record, run_dir)}")
    if args.mlflow is not None:
        with phase("mlflow"):
            from mlbench.tracking.mlflow_log import default_uri, log_run

            uri = args.mlflow or default_uri(cfg.out)
            say(f"mlflow: parent run {log_run(record, run_dir, uri, say=say)} in {uri}")
    print(run_dir)
    return 0


def predict(args: argparse.Namespace) -> int:
    from mlbench.serving.predict import predict_command

    return predict_command(model=args.model, texts=args.texts, file=args.file, top_k=args.top_k,
                           rule=args.rule, raw=args.raw, explain=args.explain)


def score(args: argparse.Namespace) -> int:
    from mlbench.serving.score import score_command

    return score_command(model=args.model, input_path=args.input, out=args.out, text_col=args.text_col,
                         chunk=args.chunk, id_col=args.id_col)


def serve(args: argparse.Namespace) -> int:
    from importlib.util import find_spec

    from mlbench.errors import InputError

    if find_spec("fastapi") is None or find_spec("uvicorn") is None:
        raise InputError("serve: needs the serve extra (pip install -e '.[serve]')")
    from mlbench.runtime import import_tensorflow
    from mlbench.serving.server import serve as run_server

    import_tensorflow()
    hosts = {"allowed_hosts": tuple(args.allowed_host)} if args.allowed_host else {}
    run_server(args.model, host=args.host, port=args.port, model_name=args.name, max_texts=args.max_texts,
               max_chars=args.max_chars, batch_window_ms=args.batch_window_ms, max_batch=args.max_batch,
               max_explain=args.max_explain, max_body_bytes=args.max_body_bytes,
               max_in_flight=args.max_in_flight, header_timeout_s=args.header_timeout,
               body_timeout_s=args.body_timeout, openapi=args.openapi, **hosts)
    return 0


def export_onnx(args: argparse.Namespace) -> int:
    from mlbench.errors import InputError
    from mlbench.runtime import import_tensorflow

    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise InputError(f"--out {args.out}: exists and is not an empty folder (nothing is overwritten)")
    import_tensorflow()
    from mlbench.serving.onnx_export import export_onnx as convert

    try:
        print(convert(args.model, args.out, int8=args.int8, python_frontend=args.python_frontend))
    except RuntimeError as err:  # the float model failed its parity self-check
        raise InputError(f"export-onnx {args.model}: {err}") from None
    return 0


def report(args: argparse.Namespace) -> int:
    from mlbench.record import RunRecord
    from reports import write_report

    print(write_report(RunRecord.load(args.run_dir), args.run_dir))
    return 0


def compare(args: argparse.Namespace) -> int:
    from mlbench.errors import InputError
    from reports.compare import write

    md = args.markdown or args.out.with_suffix(".md")
    taken = [str(p) for p in (args.out, md) if p.exists()]
    if taken and not args.force:
        raise InputError(f"compare: {', '.join(taken)} already exist(s); pass --force to overwrite")
    for path in write(args.run_dirs, args.out, md):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    from mlbench.errors import InputError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser(tracks=not argv or argv[0] not in _TRACKLESS).parse_args(argv)
    try:
        if args.command == "run":
            return run(args, argv[1:])
        if args.command == "predict":
            return predict(args)
        if args.command == "score":
            return score(args)
        if args.command == "serve":
            return serve(args)
        if args.command == "export-onnx":
            return export_onnx(args)
        if args.command == "compare":
            return compare(args)
        return report(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
