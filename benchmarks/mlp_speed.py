"""TF-IDF MLP speed: the faithful dense keras-io pipeline vs the project's MLP.

Prints figures; not a unit test.  For each configuration, on the same data and
split and for the same number of epochs (early stopping off):

* seconds per epoch — median over the epochs after the first (the first
  traces the graphs); an epoch includes its validation pass;
* peak resident memory — each configuration runs in its own child process
  launched by this script, so the two never share a high-water mark.  ``peak``
  is that process's whole peak RSS (``ru_maxrss``); ``base`` its RSS after
  importing TensorFlow and loading the corpus and labels, before the track
  starts (~0.75 GB, ~0.73 GB of it TensorFlow's shared libraries, the same for
  every configuration); ``own`` = peak − base is what the configuration itself
  needs (vectorizer, cached features, model, optimizer, pipeline), and the
  memory target is checked on it (the whole-process ratio is printed too);
* test micro-F1 at the 0.5 cut-off.

Then a ratio line (reference / project MLP) against the targets: ≥ 10× faster per
epoch, ≤ ½ the peak memory, micro-F1 at most 0.5 point lower.  ``--scale`` adds
synthetic corpora (`mlbench/data/synthetic.py`) of the given sizes, project MLP
only unless ``--scale-reference-max`` covers them (the dense reference needs
~minutes per epoch at 200k documents); the exported MLP's inference throughput
on raw strings (batch 1 and 256) is measured in a fresh process.

    python benchmarks/mlp_speed.py --dataset reuters --epochs 4
    python benchmarks/mlp_speed.py --epochs 4 --scale 50000,200000 --scale-reference-max 50000
    python benchmarks/mlp_speed.py --skip-reference --option steps_per_execution=8

Timings on a shared machine are noisy: the load average at the start and end of
each child is printed beside its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.cli_options import parse_option  # noqa: E402

RESULT_PREFIX = "MLBENCH_RESULT "
TARGET_SPEEDUP, TARGET_MEMORY, TARGET_F1_DROP = 10.0, 0.5, 0.005

CONFIGS = {
    # the keras-io example: dense tf_idf vectorized in tf.data every epoch, Dense, Adam
    "reference": {"label": "keras-io dense (reference)", "sparse": False, "cache": False},
    # the project's default TfidfMLPTrack
    "mlp": {"label": "project MLP (sparse)", "sparse": True, "cache": True},
}




def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def load_data(spec: dict):
    if spec["kind"] == "synthetic":
        from mlbench.data.synthetic import synthetic_corpus

        return synthetic_corpus(spec["docs"], seed=spec["seed"])
    from mlbench.data import load_corpus

    return load_corpus(spec["dataset"], data_dir=spec.get("data_dir"), seed=spec["seed"])


# -- child: one configuration on one dataset ----------------------------------------------
def run_child(job: dict) -> dict:
    """Fit one configuration for `epochs` epochs; time, measure and evaluate it."""
    import keras

    from mlbench.keras.device import configure_device

    device = configure_device(job["device"])
    from baselines.tfidf_mlp import TfidfMLPTrack
    from mlbench.labels import LabelSpace
    from mlbench.evaluation.metrics import evaluate
    from mlbench.tracks import TrainSettings

    load_start = os.getloadavg()[0]
    corpus = load_data(job["data"])
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    base_rss = rss_mb()

    epoch_seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.start)
            print(f"    [{job['config']}] epoch {epoch + 1}: {epoch_seconds[-1]:.2f} s "
                  f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)

    cfg = CONFIGS[job["config"]]
    settings = TrainSettings(epochs=job["epochs"], seed=job["data"]["seed"], verbose=0,
                             options=dict(job.get("options") or {}))
    track = TfidfMLPTrack(settings, sparse=cfg["sparse"], cache=cfg["cache"],
                          patience=job["epochs"] + 1, callbacks=[EpochTimer()])
    start = time.perf_counter()
    track.fit(corpus.train, corpus.val, labels)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = track.predict_scores(corpus.test.texts)
    predict_s = time.perf_counter() - start
    f1 = evaluate(labels.encode(corpus.test.labels), scores)["f1_micro"]
    result = {
        "config": job["config"], "label": cfg["label"], "data": job["data"]["name"], "device": device,
        "n_train": len(corpus.train), "n_test": len(corpus.test), "n_labels": len(labels),
        "vocabulary": track.dense_vectorizer.vocabulary_size(),
        "parameters": track.describe()["parameters"], "options": job.get("options") or {},
        "epoch_seconds": epoch_seconds,
        "median_epoch_s": statistics.median(epoch_seconds[1:] or epoch_seconds),
        "setup_s": fit_s - sum(epoch_seconds), "fit_s": fit_s, "predict_test_s": predict_s,
        "test_f1_micro": f1, "base_rss_mb": base_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_start": load_start, "load_end": os.getloadavg()[0],
    }
    if job.get("export_dir"):
        track.export(Path(job["export_dir"]))
        result["export_dir"] = job["export_dir"]
    return result


def spawn(args: list[str], prefix: str) -> dict:
    """Run this script (or another) in a child process; return its result line."""
    proc = subprocess.run([sys.executable, *args], stdout=subprocess.PIPE, text=True, cwd=REPO)
    lines = [l for l in proc.stdout.splitlines() if l.startswith(prefix)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {' '.join(args[:3])}… failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(prefix):])


# -- parent: jobs, table, ratios -----------------------------------------------------------
def own_mb(r: dict) -> float:
    return r["peak_rss_mb"] - r["base_rss_mb"]


def fmt_row(r: dict) -> str:
    epochs = ", ".join(f"{s:.2f}" for s in r["epoch_seconds"])
    return (f"{r['data']:<16} {r['label']:<27} {r['n_train']:>7,} {r['vocabulary']:>7,} "
            f"{r['median_epoch_s']:>8.2f} {r['peak_rss_mb']:>8,.0f} {r['base_rss_mb']:>7,.0f} {own_mb(r):>7,.0f} "
            f"{r['test_f1_micro']:>7.4f} {r['setup_s']:>7.1f}  [{epochs}]  load {r['load_start']:.1f}->{r['load_end']:.1f}")


HEADER = (f"{'data':<16} {'configuration':<27} {'train':>7} {'vocab':>7} {'s/epoch':>8} "
          f"{'peak MB':>8} {'base MB':>7} {'own MB':>7} {'test F1':>7} {'setup s':>7}  [epoch seconds]")


def ratio_line(ref: dict, mlp: dict) -> str:
    speed = ref["median_epoch_s"] / mlp["median_epoch_s"]
    memory = own_mb(mlp) / own_mb(ref)
    whole = mlp["peak_rss_mb"] / ref["peak_rss_mb"]
    df1 = mlp["test_f1_micro"] - ref["test_f1_micro"]
    ok = lambda b: "met" if b else "MISSED"  # noqa: E731
    return (f"ratios on {mlp['data']} (project MLP vs reference): {speed:.1f}x faster per epoch "
            f"[target >= {TARGET_SPEEDUP:.0f}x: {ok(speed >= TARGET_SPEEDUP)}]; "
            f"own peak memory {memory:.2f}x [target <= {TARGET_MEMORY}: {ok(memory <= TARGET_MEMORY)}] "
            f"(whole process incl. TF runtime {whole:.2f}x); "
            f"micro-F1 {df1 * 100:+.2f} points [target >= -0.5: {ok(df1 >= -TARGET_F1_DROP)}]")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="reuters", help="reuters, arxiv or a .csv/.jsonl file")
    p.add_argument("--data-dir", default=os.environ.get("MLBENCH_REUTERS"))
    p.add_argument("--epochs", type=int, default=4, help="epochs per configuration (>= 4: median of >= 3)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--scale", default="", help="synthetic corpus sizes, e.g. 50000,200000")
    p.add_argument("--scale-reference-max", type=int, default=0, metavar="N",
                   help="also run the dense reference on the --scale corpora of at most N documents")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--skip-main", action="store_true", help="only the --scale runs")
    p.add_argument("--skip-inference", action="store_true")
    p.add_argument("--option", action="append", type=parse_option, default=[],
                   help="project MLP track option key=value (repeatable), e.g. steps_per_execution=8")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "gpu"])
    p.add_argument("--json", help="also write all results to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        print(RESULT_PREFIX + json.dumps(run_child(json.loads(args.child))), flush=True)
        return 0
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (the first epoch is not timed)")

    options = dict(args.option)
    datasets = []
    if not args.skip_main:
        datasets.append(({"kind": "named", "dataset": args.dataset, "data_dir": args.data_dir,
                          "seed": args.seed, "name": Path(args.dataset).name}, not args.skip_reference))
    for size in [int(s) for s in args.scale.split(",") if s.strip()]:
        datasets.append(({"kind": "synthetic", "docs": size, "seed": args.seed,
                          "name": f"synthetic-{size // 1000}k"}, size <= args.scale_reference_max))
    print(f"TF-IDF MLP speed: {args.epochs} epochs per configuration, device {args.device}, "
          f"project MLP options {options or '{}'}; one child process per configuration "
          f"(peak memory = that process's ru_maxrss).", flush=True)

    results: list[dict] = []
    inference = None
    with tempfile.TemporaryDirectory(prefix="mlp_speed_") as tmp:
        for i, (data, with_reference) in enumerate(datasets):
            configs = (["reference"] if with_reference else []) + ["mlp"]
            for config in configs:
                export = (i == 0 and config == "mlp" and not args.skip_inference)
                job = {"config": config, "data": data, "epochs": args.epochs, "device": args.device,
                       "options": options if config == "mlp" else {},
                       "export_dir": str(Path(tmp) / "mlp_export") if export else None}
                print(f"  running {CONFIGS[config]['label']} on {data['name']} …", file=sys.stderr, flush=True)
                results.append(spawn([__file__, "--child", json.dumps(job)], RESULT_PREFIX))
                print("  " + fmt_row(results[-1]), file=sys.stderr, flush=True)
                if export:
                    from benchmarks.inference_speed import RESULT_PREFIX as INF

                    cmd = [str(REPO / "benchmarks" / "inference_speed.py"), job["export_dir"], "--json",
                           "--device", args.device, "--seed", str(args.seed)]
                    if data["kind"] == "synthetic":
                        cmd += ["--synthetic", str(data["docs"])]
                    else:
                        cmd += ["--dataset", data["dataset"]] + (["--data-dir", data["data_dir"]] if data["data_dir"] else [])
                    inference = spawn(cmd, INF)

    print()
    print(HEADER)
    for r in results:
        print(fmt_row(r))
    scaled = [r for r in results if r["config"] == "mlp" and r["data"].startswith("synthetic")]
    if scaled:
        print("scale (project MLP): " + "; ".join(
            f"{r['data']}: {r['median_epoch_s']:.2f} s/epoch = {r['median_epoch_s'] / r['n_train'] * 1e4:.2f} s "
            f"per 10k train docs, peak {r['peak_rss_mb']:,.0f} MB" for r in scaled))
    if inference:
        dps = inference["docs_per_second"]
        print(f"inference (exported MLP SavedModel, raw strings, fresh process): "
              + ", ".join(f"batch {b}: {v:,.0f} docs/s" for b, v in dps.items())
              + f"  [target >= 5,000 docs/s at batch 256: {'met' if dps.get('256', 0) >= 5000 else 'MISSED'}]")
    by_data: dict[str, dict] = {}
    for r in results:
        by_data.setdefault(r["data"], {})[r["config"]] = r
    for pair in by_data.values():
        if "reference" in pair and "mlp" in pair:
            print(ratio_line(pair["reference"], pair["mlp"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "inference": inference,
                                               "argv": sys.argv}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
