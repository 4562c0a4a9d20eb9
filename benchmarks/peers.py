"""Peers on Reuters: fastText (OVA, bigrams) and a validation-weighted svm + mlp ensemble.

Prints, for each model, fit seconds and TEST micro/macro F1 under the decision rule
chosen on cross-fitted validation (micro objective; `mlbench.evaluation.selection`),
plus the ensemble's chosen weights and its nested validation estimate.  Nothing is
chosen on test: the rules and the weights see validation only.

    python benchmarks/peers.py                          # ../shared/data/reuters21578
    python benchmarks/peers.py --data-dir DIR --no-ensemble
    python benchmarks/peers.py --no-ensemble --option epoch=50 --option lr=1.0   # fastText options
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.cli_options import parse_option  # noqa: E402
from mlbench.data import load_corpus  # noqa: E402
from mlbench.evaluation.metrics import FrequencyGroups  # noqa: E402
from mlbench.evaluation.scoring import rule_results  # noqa: E402
from mlbench.evaluation.selection import best_rule_for  # noqa: E402
from mlbench.evaluation.thresholds import fit_decision_rules  # noqa: E402
from mlbench.labels import LabelSpace  # noqa: E402
from mlbench.tracks import TrainSettings, get_track_class  # noqa: E402


def judge(name: str, s_val: np.ndarray, s_test: np.ndarray, y_val: np.ndarray, y_test: np.ndarray,
          labels: LabelSpace, seconds: float) -> None:
    """One line: fit seconds, the cross-fitted rule, its test micro / macro F1."""
    rules = fit_decision_rules(y_val, s_val, default=0.5)
    results = rule_results(y_val, s_val, y_test, s_test, rules, labels, FrequencyGroups())
    rule = best_rule_for(results, "f1_micro")
    test, fixed = results[rule]["test"], results["fixed"]["test"]
    print(f"{name:<22} fit {seconds:7.1f} s   rule {rule:<9}  test micro {test['f1_micro']:.4f}  "
          f"macro {test['f1_macro']:.4f}   (fixed 0.5: {fixed['f1_micro']:.4f} / {fixed['f1_macro']:.4f})",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "reuters21578"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-ensemble", action="store_true", help="fastText only")
    p.add_argument("--option", type=parse_option, action="append", default=[],
                   help="fastText option key=value (epoch, lr, dim, bucket)")
    args = p.parse_args(argv)

    corpus = load_corpus("reuters", data_dir=args.data_dir, seed=args.seed)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    y_val, y_test = labels.encode(corpus.val.labels), labels.encode(corpus.test.labels)
    print(f"reuters: {len(corpus.train)} train / {len(corpus.val)} val / {len(corpus.test)} test, "
          f"{len(labels)} labels", flush=True)

    settings = TrainSettings(seed=args.seed, verbose=0)
    fitted, val_scores = {}, {}
    for name in ["fasttext"] + ([] if args.no_ensemble else ["svm", "mlp"]):
        options = dict(args.option) if name == "fasttext" else {}
        track = get_track_class(name)(TrainSettings(seed=args.seed, verbose=0, options=options))
        start = time.perf_counter()
        track.fit(corpus.train, corpus.val, labels)
        seconds = time.perf_counter() - start
        s_val, s_test = track.predict_scores(corpus.val.texts), track.predict_scores(corpus.test.texts)
        judge(name, s_val, s_test, y_val, y_test, labels, seconds)
        fitted[name], val_scores[name] = (track, s_test, seconds), s_val

    if not args.no_ensemble:
        from baselines.ensemble import EnsembleTrack

        members = {n: fitted[n][0] for n in ("svm", "mlp")}
        ens = EnsembleTrack(settings, members)
        start = time.perf_counter()
        ens.fit_from_scores({n: val_scores[n] for n in members}, y_val)
        seconds = time.perf_counter() - start
        w = np.array([ens.weights[n] for n in members])

        def blend(parts: list[np.ndarray]) -> np.ndarray:  # = ens.predict_scores, without rescoring
            return np.tensordot(w, np.stack(parts).astype(np.float64), axes=1).astype(np.float32)

        s_val = blend([val_scores[n] for n in members])
        s_test = blend([fitted[n][1] for n in members])
        # fit seconds: the weight search alone (the members' own fits are above)
        judge("ensemble(svm+mlp)", s_val, s_test, y_val, y_test, labels, seconds)
        d = ens.describe()
        print(f"  weights {d['weights']}   nested val micro {d['nested_val_cv']['f1_micro']:.4f}   "
              f"top: " + ", ".join(f"{t['weights']}={t['val_cv']:.4f}" for t in d["top_weights"][:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
