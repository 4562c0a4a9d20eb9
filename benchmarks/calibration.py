"""Raw vs calibrated scores on Reuters: top-5 ECE, Brier, log loss and micro-F1.

For each track (default: ``svm`` and ``mlp``): fit on train (early stopping on val),
score val and test, then

* fit `mlbench.evaluation.calibration.fit_calibration` on the VALIDATION scores and
  apply it to test (test is never used to fit anything);
* read `calibration_metrics` of the raw and the calibrated test scores;
* micro-F1 on test under the global rule (`fit_global_threshold`) fitted on the raw
  val scores, vs. the global rule fitted on the cross-fitted calibrated val scores
  (`cross_fitted_calibrated`) and applied to the calibrated test scores.

Targets: calibrated ece_top5 <= half of raw for every track; micro-F1 within 0.3 point.

    python benchmarks/calibration.py                       # svm + mlp (quick)
    python benchmarks/calibration.py --tracks svm --method platt
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


def run_track(name: str, corpus, labels, *, method: str, seed: int) -> dict:
    from mlbench.evaluation.calibration import cross_fitted_calibrated, fit_calibration
    from mlbench.evaluation.metrics import calibration_metrics, evaluate
    from mlbench.evaluation.thresholds import fit_global_threshold

    y_val, y_test = labels.encode(corpus.val.labels), labels.encode(corpus.test.labels)
    track = make_track(name, seed)
    t0 = time.perf_counter()
    track.fit(corpus.train, corpus.val, labels)
    fit_s = time.perf_counter() - t0
    s_val = np.asarray(track.predict_scores(corpus.val.texts), np.float64)
    s_test = np.asarray(track.predict_scores(corpus.test.texts), np.float64)

    t0 = time.perf_counter()
    cal = fit_calibration(y_val, s_val, method=method, seed=seed)
    c_test = cal.apply(s_test)
    c_val_oof = cross_fitted_calibrated(y_val, s_val, folds=5, seed=seed, method=method)
    cal_s = time.perf_counter() - t0

    raw, after = calibration_metrics(y_test, s_test), calibration_metrics(y_test, c_test)
    g_raw = fit_global_threshold(y_val, s_val)
    g_cal = fit_global_threshold(y_val, c_val_oof)
    f1_raw = evaluate(y_test, s_test, threshold=g_raw)["f1_micro"]
    f1_cal = evaluate(y_test, c_test, threshold=g_cal)["f1_micro"]
    kinds = {k: cal.kinds.count(k) for k in ("platt", "isotonic", "temperature") if k in cal.kinds}
    return {"track": name, "raw": raw, "cal": after, "g_raw": g_raw, "g_cal": g_cal,
            "f1_raw": f1_raw, "f1_cal": f1_cal, "kinds": kinds, "fit_s": fit_s, "cal_s": cal_s}


def main(argv: list[str] | None = None) -> int:
    from mlbench.data import load_corpus
    from mlbench.labels import LabelSpace

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="Reuters SGML folder (default: loader's own)")
    ap.add_argument("--tracks", default="svm,mlp")
    ap.add_argument("--method", default="auto", choices=["auto", "platt", "isotonic", "temperature"])
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    corpus = load_corpus("reuters", data_dir=args.data_dir, seed=args.seed)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    print(f"reuters: {len(corpus.train)} train / {len(corpus.val)} val / {len(corpus.test)} test, "
          f"{len(labels)} labels; calibration method={args.method!r}", flush=True)
    rows = [run_track(t.strip(), corpus, labels, method=args.method, seed=args.seed)
            for t in args.tracks.split(",") if t.strip()]

    print("\nTEST split (calibration fitted on val; ECE: 15 uniform bins, Guo et al.)")
    head = f"{'track':<6} {'':<4} {'ece_top5':>9} {'ece':>8} {'brier':>9} {'log_loss':>9} {'global t':>9} {'micro-F1':>9}"
    print(head)
    print("-" * len(head))
    ok = True
    for r in rows:
        for tag, m, g, f1 in (("raw", r["raw"], r["g_raw"], r["f1_raw"]), ("cal", r["cal"], r["g_cal"], r["f1_cal"])):
            print(f"{r['track']:<6} {tag:<4} {m['ece_top5']:>9.4f} {m['ece']:>8.5f} {m['brier']:>9.6f} "
                  f"{m['log_loss']:>9.5f} {g:>9.4f} {f1:>9.4f}")
        ratio = r["cal"]["ece_top5"] / max(r["raw"]["ece_top5"], 1e-12)
        d_f1 = r["f1_cal"] - r["f1_raw"]
        ece_ok, f1_ok = ratio <= ECE_RATIO_TARGET, abs(d_f1) <= F1_TOLERANCE
        ok &= ece_ok and f1_ok
        print(f"{r['track']:<6} maps {r['kinds']}; fit {r['fit_s']:.1f} s, calibration+cross-fit {r['cal_s']:.1f} s")
        print(f"{r['track']:<6} ece_top5 cal/raw = {ratio:.3f} (target <= {ECE_RATIO_TARGET}) "
              f"{'PASS' if ece_ok else 'MISS'}; micro-F1 change {100 * d_f1:+.2f} points "
              f"(target within {100 * F1_TOLERANCE:.1f}) {'PASS' if f1_ok else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
