"""Throughput of an exported raw-string SavedModel, in documents per second.

Loads the model the way a user would (`mlbench.serving.export.ExportedModel`, in a fresh
process when run as a script) and times ``predict`` on real texts at each batch
size: one warm-up call, then whole passes over the texts until at least
`min_seconds` have gone by.  Batch 1 is latency-bound (one graph call per
document); batch 256 measures the vectorizer + network's throughput.

    python benchmarks/inference_speed.py runs/.../mlp_bce.savedmodel --dataset reuters
    python benchmarks/inference_speed.py DIR --synthetic 2000 --batch-sizes 1,64,256

`benchmarks/mlp_speed.py` runs this on the MLP it trained and exported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULT_PREFIX = "MLBENCH_INFERENCE "


def measure_throughput(model, texts: Sequence[str], batch_sizes: Sequence[int] = (1, 256),
                       min_seconds: float = 3.0, max_docs_batch1: int = 2000) -> dict[int, float]:
    """docs/s of ``model.predict(texts, batch_size=b)`` for each b (after a warm-up)."""
    out: dict[int, float] = {}
    for batch in batch_sizes:
        docs = list(texts[: max_docs_batch1]) if batch == 1 else list(texts)
        model.predict(docs[: max(batch, 1)], batch_size=batch)  # warm-up: first call traces
        n, start = 0, time.perf_counter()
        while True:
            model.predict(docs, batch_size=batch)
            n += len(docs)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        out[batch] = n / elapsed
    return out


def benchmark_export(export_dir: str | Path, texts: Sequence[str], batch_sizes: Sequence[int] = (1, 256),
                     min_seconds: float = 3.0) -> dict:
    """Load `export_dir` and measure it; also report the load time and RSS."""
    import resource

    from mlbench.serving.export import ExportedModel

    start = time.perf_counter()
    model = ExportedModel(export_dir)
    load_s = time.perf_counter() - start
    docs_per_s = measure_throughput(model, texts, batch_sizes, min_seconds=min_seconds)
    return {
        "export_dir": str(export_dir), "load_seconds": load_s, "n_texts": len(texts),
        "docs_per_second": {str(b): v for b, v in docs_per_s.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def load_texts(dataset: str | None, data_dir: str | None, synthetic: int | None, seed: int) -> list[str]:
    """Test-split texts of the named dataset (or of a synthetic corpus)."""
    if synthetic:
        from mlbench.data.synthetic import synthetic_corpus

        return synthetic_corpus(synthetic, seed=seed).test.texts
    from mlbench.data import load_corpus

    return load_corpus(dataset or "reuters", data_dir=data_dir, seed=seed).test.texts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="exported SavedModel folder")
    p.add_argument("--dataset", default="reuters")
    p.add_argument("--data-dir")
    p.add_argument("--synthetic", type=int, help="use the test texts of a synthetic corpus of N docs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-sizes", default="1,256")
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "gpu"])
    p.add_argument("--json", action="store_true", help="print one machine-readable result line")
    args = p.parse_args(argv)

    from mlbench.keras.device import configure_device

    configure_device(args.device)
    texts = load_texts(args.dataset, args.data_dir, args.synthetic, args.seed)
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    result = benchmark_export(args.model, texts, sizes, min_seconds=args.min_seconds)
    if args.json:
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    else:
        print(f"{args.model}: loaded in {result['load_seconds']:.1f} s, {len(texts)} test texts")
        for b, v in result["docs_per_second"].items():
            print(f"  batch {b:>4}: {v:10,.0f} docs/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
