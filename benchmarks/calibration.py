"""Raw vs calibrated scores on Reuters: top-5 ECE, Brier, log loss and micro-F1.

For each track (default: ``svm`` and ``mlp``): fit on train (early stopping on val),
score val and test (or, with ``--from-run``, read a run's stored scores), then

* choose and fit the calibration on the VALIDATION scores (`select_calibration`, as a
  run does; ``--method`` forces one) and apply it to test (test never fits anything);
* read `calibration_metrics` of the raw and the calibrated test scores;
* micro-F1 on test under the global rule (`fit_global_threshold`) fitted on the raw
  val scores, vs. the global rule fitted on the cross-fitted calibrated val scores
  (`cross_fitted_calibrated`) and applied to the calibrated test scores.

Targets: calibrated ece_top5 <= half of raw for every track; micro-F1 within 0.3 point.

    python benchmarks/calibration.py                       # svm + mlp (quick)
    python benchmarks/calibration.py --tracks svm --method platt
    python benchmarks/calibration.py --from-run runs/reuters-…   # every track of a default run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

ECE_RATIO_TARGET = 0.5
F1_TOLERANCE = 0.003


def make_track(name: str, seed: int):
    from mlbench.tracks import TrainSettings

    if name == "svm":
        from baselines.svm import LinearSVMTrack

        return LinearSVMTrack(TrainSettings(seed=seed))
    if name == "mlp":
        from baselines.tfidf_mlp import TfidfMLPTrack

        return TfidfMLPTrack(TrainSettings(seed=seed, quick=True, verbose=0))
    raise SystemExit(f"error: unknown track {name!r} (svm, mlp)")


def fitted_scores(name: str, corpus, labels, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(val scores [n_val, L], test scores [n_test, L], fit seconds) of a freshly fitted track."""
    track = make_track(name, seed)
    t0 = time.perf_counter()
    track.fit(corpus.train, corpus.val, labels)
    fit_s = time.perf_counter() - t0
    s_val = np.asarray(track.predict_scores(corpus.val.texts), np.float64)
    s_test = np.asarray(track.predict_scores(corpus.test.texts), np.float64)
    return s_val, s_test, fit_s


def stored_scores(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{variant: (val scores, test scores)} from a run folder's predictions/*.npz."""
    out = {}
    for path in sorted((run_dir / "predictions").glob("*.npz")):
        with np.load(path) as data:
            out[path.stem] = (np.asarray(data["val_scores"], np.float64), np.asarray(data["test_scores"], np.float64))
    if not out:
        raise SystemExit(f"error: {run_dir}/predictions holds no .npz score files")
    return out


def judge(name: str, s_val: np.ndarray, s_test: np.ndarray, y_val: np.ndarray, y_test: np.ndarray, *,
          method: str, seed: int, fit_s: float | None = None) -> dict:
    from mlbench.evaluation.calibration import cross_fitted_calibrated, fit_calibration, select_calibration
    from mlbench.evaluation.metrics import calibration_metrics, evaluate
    from mlbench.evaluation.thresholds import fit_global_threshold

    s_val, s_test = np.clip(s_val, 0.0, 1.0), np.clip(s_test, 0.0, 1.0)
    t0 = time.perf_counter()
    if method == "select":  # what a run does: the lowest out-of-fold ECE top-5 on validation
        cal, _ = select_calibration(y_val, s_val, seed=seed)
    else:
        cal = fit_calibration(y_val, s_val, method=method, seed=seed)
    c_test = cal.apply(s_test)
    c_val_oof = cross_fitted_calibrated(y_val, s_val, folds=5, seed=seed, method=cal.method)
    cal_s = time.perf_counter() - t0

    raw, after = calibration_metrics(y_test, s_test), calibration_metrics(y_test, c_test)
    g_raw = fit_global_threshold(y_val, s_val)
    g_cal = fit_global_threshold(y_val, c_val_oof)
    f1_raw = evaluate(y_test, s_test, threshold=g_raw)["f1_micro"]
    f1_cal = evaluate(y_test, c_test, threshold=g_cal)["f1_micro"]
    kinds = {k: cal.kinds.count(k) for k in ("platt", "isotonic", "temperature", "identity") if k in cal.kinds}
    return {"track": name, "raw": raw, "cal": after, "g_raw": g_raw, "g_cal": g_cal, "method": cal.method,
            "f1_raw": f1_raw, "f1_cal": f1_cal, "kinds": kinds, "fit_s": fit_s, "cal_s": cal_s}


def main(argv: list[str] | None = None) -> int:
    from mlbench.data import load_corpus
    from mlbench.labels import LabelSpace

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="Reuters SGML folder (default: loader's own)")
    ap.add_argument("--tracks", default="svm,mlp")
    ap.add_argument("--method", default="select",
                    choices=["select", "auto", "platt", "isotonic", "temperature", "identity"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--from-run", type=Path, default=None,
                    help="a Reuters run folder: judge its stored val/test scores (predictions/*.npz) "
                         "instead of fitting --tracks")
    args = ap.parse_args(argv)

    corpus = load_corpus("reuters", data_dir=args.data_dir, seed=args.seed)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    print(f"reuters: {len(corpus.train)} train / {len(corpus.val)} val / {len(corpus.test)} test, "
          f"{len(labels)} labels; calibration method={args.method!r}", flush=True)
    if args.from_run is not None:  # the run's own label columns and split (same seed)
        from mlbench.record import RunRecord

        record = RunRecord.load(args.from_run)
        labels = LabelSpace(list(record.dataset.labels), list(record.dataset.train_counts))
        scores = {k: (v[0], v[1], None) for k, v in stored_scores(args.from_run).items()}
    else:
        scores = {t.strip(): fitted_scores(t.strip(), corpus, labels, args.seed)
                  for t in args.tracks.split(",") if t.strip()}
    y_val, y_test = labels.encode(corpus.val.labels), labels.encode(corpus.test.labels)
    rows = [judge(name, s_val, s_test, y_val, y_test, method=args.method, seed=args.seed, fit_s=fit_s)
            for name, (s_val, s_test, fit_s) in scores.items()]

    print("\nTEST split (calibration fitted on val; ECE: 15 uniform bins, Guo et al.)")
    head = f"{'track':<9} {'':<4} {'ece_top5':>9} {'ece':>8} {'brier':>9} {'log_loss':>9} {'global t':>9} {'micro-F1':>9}"
    print(head)
    print("-" * len(head))
    ok = True
    for r in rows:
        for tag, m, g, f1 in (("raw", r["raw"], r["g_raw"], r["f1_raw"]), ("cal", r["cal"], r["g_cal"], r["f1_cal"])):
            print(f"{r['track']:<9} {tag:<4} {m['ece_top5']:>9.4f} {m['ece']:>8.5f} {m['brier']:>9.6f} "
                  f"{m['log_loss']:>9.5f} {g:>9.4f} {f1:>9.4f}")
        ratio = r["cal"]["ece_top5"] / max(r["raw"]["ece_top5"], 1e-12)
        d_f1 = r["f1_cal"] - r["f1_raw"]
        ece_ok, f1_ok = ratio <= ECE_RATIO_TARGET, abs(d_f1) <= F1_TOLERANCE
        ok &= ece_ok and f1_ok
        fit = "scores read from the run" if r["fit_s"] is None else f"fit {r['fit_s']:.1f} s"
        print(f"{r['track']:<9} method {r['method']}, maps {r['kinds']}; {fit}, calibration+cross-fit "
              f"{r['cal_s']:.1f} s")
        print(f"{r['track']:<9} ece_top5 cal/raw = {ratio:.3f} (target <= {ECE_RATIO_TARGET}) "
              f"{'PASS' if ece_ok else 'MISS'}; micro-F1 change {100 * d_f1:+.2f} points "
              f"(target within {100 * F1_TOLERANCE:.1f}) {'PASS' if f1_ok else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
