"""SavedModel vs ONNX float vs ONNX int8, side by side, for each exported track of a run.

For every ``<track>_savedmodel`` folder of a run (MLP, then SVM, then encoder), the
script exports ONNX float and int8 folders (`mlbench.serving.onnx_export`: for the SVM
one graph from raw strings, for the others a core + Python front end) and
measures, for the three: size on disk (whole folder, front end files included),
docs/s at batch 1 and 256 on raw test texts (warm-up first, best of passes lasting
`--min-seconds`), test micro/macro F1 at each folder's saved best decision rule, and
top-1 agreement with the SavedModel's scores.  Targets (issue): int8 MLP ≤ ¼ of
the float SavedModel's size, micro-F1 within 0.5 point, top-1 agreement ≥ 99%.

    python run_all.py --dataset reuters --models mlp,svm --no-tune --bootstrap 0 --no-report --out /tmp/onnx_runs
    python run_all.py --dataset reuters --models encoder --quick --no-tune --bootstrap 0 --no-report --out /tmp/onnx_runs
    python benchmarks/onnx_compare.py /tmp/onnx_runs/reuters-* --dataset reuters
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

TRACK_ORDER = ("mlp", "svm", "svm_balanced", "encoder")


def docs_per_second(model: Any, texts: Sequence[str], batch: int, min_seconds: float) -> float:
    """docs/s of ``model.predict(texts, batch_size=batch)``: one warm-up, then the best
    pass among those run within `min_seconds` (at least one)."""
    model.predict(texts[: max(batch, 8)], batch_size=batch)
    best, spent = 0.0, 0.0
    while spent < min_seconds or best == 0.0:
        start = time.perf_counter()
        model.predict(texts, batch_size=batch)
        took = time.perf_counter() - start
        spent += took
        best = max(best, len(texts) / took)
    return best


def label_matrix(label_lists: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
    """0/1 [n, len(names)] in the artifact's column order (labels it lacks are dropped)."""
    column = {n: j for j, n in enumerate(names)}
    y = np.zeros((len(label_lists), len(names)), dtype=np.int8)
    for i, labels in enumerate(label_lists):
        for label in labels:
            if label in column:
                y[i, column[label]] = 1
    return y


def track_folders(runs: Sequence[Path]) -> list[tuple[str, Path]]:
    """(track, SavedModel folder) for every ``*_savedmodel`` folder of the runs, in TRACK_ORDER."""
    import json

    found = []
    for run in runs:
        for folder in sorted(Path(run).glob("*_savedmodel")):
            meta = json.loads((folder / "mlbench.json").read_text(encoding="utf-8"))
            found.append((meta.get("track", folder.name), folder))
    rank = {t: i for i, t in enumerate(TRACK_ORDER)}
    return sorted(found, key=lambda tf: (rank.get(tf[0], len(rank)), str(tf[1])))


def compare(track: str, saved: Path, texts: Sequence[str], label_lists: Sequence[Sequence[str]],
            out_root: Path, *, min_seconds: float, batch1_docs: int) -> list[dict]:
    """One row per model form (SavedModel, ONNX float, ONNX int8) for one exported track."""
    from mlbench.evaluation.metrics import evaluate
    from mlbench.serving.artifacts import load_artifact
    from mlbench.serving.onnx_artifact import OnnxArtifact
    from mlbench.serving.onnx_export import export_onnx
    from mlbench.sizes import directory_size

    forms: list[tuple[str, Path, Any]] = [("SavedModel", saved, load_artifact(saved))]
    for int8 in (False, True):
        start = time.perf_counter()
        folder = export_onnx(saved, out_root / f"{saved.name}_onnx{'_int8' if int8 else ''}", int8=int8)
        print(f"  exported {folder.name} in {time.perf_counter() - start:.1f} s", flush=True)
        forms.append(("ONNX int8" if int8 else "ONNX float", folder, OnnxArtifact(folder)))
    reference = None
    rows = []
    for name, folder, model in forms:
        scores = model.predict(texts)
        if reference is None:
            reference = scores
        y = label_matrix(label_lists, model.labels)
        metrics = evaluate(y, scores, threshold=model.threshold())
        rows.append({
            "track": track, "form": name, "mb": directory_size(folder) / 2**20,
            "b1": docs_per_second(model, texts[:batch1_docs], 1, min_seconds),
            "b256": docs_per_second(model, texts, 256, min_seconds),
            "micro": float(metrics["f1_micro"]), "macro": float(metrics["f1_macro"]),
            "top1": float(np.mean(np.argmax(scores, 1) == np.argmax(reference, 1))),
            "max_diff": float(np.max(np.abs(scores - reference))),
        })
        r = rows[-1]
        print(f"  {name:<10} {r['mb']:8.2f} MB  {r['b1']:8.0f} / {r['b256']:8.0f} docs/s  "
              f"micro {r['micro']:.4f} macro {r['macro']:.4f} top-1 {r['top1']:.4f}", flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| track | model | size MB | × SavedModel size | docs/s b=1 | docs/s b=256 | "
          "test micro-F1 | test macro-F1 | top-1 agreement | max |Δscore| |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base: dict[str, dict] = {}
    for r in rows:
        b = base.setdefault(r["track"], r)
        print(f"| {r['track']} | {r['form']} | {r['mb']:.2f} | {r['mb'] / b['mb']:.3f} | {r['b1']:,.0f} | "
              f"{r['b256']:,.0f} | {r['micro']:.4f} | {r['macro']:.4f} | {r['top1']:.4f} | "
              f"{r['max_diff']:.2g} |")
    print()
    for track, b in base.items():
        for r in rows:
            if r["track"] == track and r["form"] == "ONNX int8":
                checks = [("size ≤ ¼ SavedModel", r["mb"] <= b["mb"] / 4),
                          ("micro-F1 within 0.5 point", abs(r["micro"] - b["micro"]) <= 0.005),
                          ("top-1 agreement ≥ 99%", r["top1"] >= 0.99)]
                print(f"{track} int8: " + ", ".join(f"{'PASS' if ok else 'MISS'} {what}"
                                                    for what, ok in checks))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding *_savedmodel exports")
    parser.add_argument("--dataset", default="reuters")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tracks", default=None, help="comma list (default: every export found)")
    parser.add_argument("--out", type=Path, default=None, help="where the ONNX folders go (default: a temp dir)")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--batch1-docs", type=int, default=500)
    args = parser.parse_args(argv)

    from mlbench.data import load_corpus

    corpus = load_corpus(args.dataset, data_dir=args.data_dir)
    texts, label_lists = list(corpus.test.texts), list(corpus.test.labels)
    wanted = set(args.tracks.split(",")) if args.tracks else None
    folders = [(t, f) for t, f in track_folders(args.runs) if wanted is None or t in wanted]
    if not folders:
        print("error: no *_savedmodel folders found", file=sys.stderr)
        return 2
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        out_root = args.out or Path(tmp)
        out_root.mkdir(parents=True, exist_ok=True)
        for track, folder in folders:
            print(f"{track}: {folder}", flush=True)
            rows += compare(track, folder, texts, label_lists, out_root,
                            min_seconds=args.min_seconds, batch1_docs=args.batch1_docs)
    print(f"\n{args.dataset} test split: {len(texts)} documents; batch 1 on the first {args.batch1_docs}")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
