"""The `svm` validation search on Reuters: what it tried, what it chose, what that gives on test.

For each objective (``--objective micro,macro``) runs `mlbench.tuning.search` (fits on
train, scores on validation, never sees test), prints every point with its validation
score, the chosen point and the search seconds; then, and only then, fits the decision
rules on validation (`mlbench.evaluation.scoring.evaluate_track`) and prints the chosen
model's TEST micro/macro F1 under the rule chosen for each objective, next to the
untuned `svm` defaults.

    python benchmarks/svm_search.py                          # Reuters, both objectives
    python benchmarks/svm_search.py --track svm_balanced --objective macro
    python benchmarks/svm_search.py --data-dir ../shared/data/reuters21578 --seed 42
"""

from __future__ import annotations

import argparse
import time
import warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="reuters")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--track", default="svm")
    parser.add_argument("--objective", default="micro,macro", help="comma list of micro, macro")
    parser.add_argument("--no-baseline", action="store_true", help="skip the untuned defaults row")
    args = parser.parse_args(argv)

    from sklearn.exceptions import ConvergenceWarning

    from mlbench.data import load_corpus
    from mlbench.evaluation.scoring import evaluate_track
    from mlbench.labels import LabelSpace
    from mlbench.tracks import TrainSettings, get_track_class
    from mlbench.tuning import search

    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # large C on rare labels
    t0 = time.perf_counter()
    corpus = load_corpus(args.dataset, data_dir=args.data_dir, seed=args.seed)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    print(f"{args.dataset}: {len(corpus.train)} train / {len(corpus.val)} val / {len(corpus.test)} test, "
          f"{len(labels)} labels ({time.perf_counter() - t0:.1f}s)")

    def report(name: str, track, seconds: float) -> None:
        ev = evaluate_track(track, corpus, labels)
        parts = []
        for objective, rule in ev["chosen_rule"].items():
            test = ev["rules"][rule]["test"]
            parts.append(f"{objective}->{rule}: test micro {test['f1_micro']:.4f} macro {test['f1_macro']:.4f}")
        fixed = ev["rules"]["fixed"]["test"]
        print(f"{name:<28} train {seconds:6.1f}s | fixed 0.5: {fixed['f1_micro']:.4f} / "
              f"{fixed['f1_macro']:.4f} | " + " | ".join(parts))

    if not args.no_baseline:
        start = time.perf_counter()
        base = get_track_class(args.track)(TrainSettings(seed=args.seed))
        base.fit(corpus.train, corpus.val, labels)
        report(f"{args.track} defaults", base, time.perf_counter() - start)

    for objective in [o.strip() for o in args.objective.split(",") if o.strip()]:
        print(f"\n== search {args.track}, objective {objective} ==")
        track, result = search(args.track, TrainSettings(seed=args.seed), corpus.train, corpus.val,
                               labels, objective=objective, progress=print)
        print(f"method {result.method} ({len(result.grid)} of {result.full_grid} points, budget "
              f"{result.budget}), scored on {result.evaluation}")
        print(f"chosen {result.chosen}: validation {result.metric} {result.score:.4f} "
              f"({result.chosen_rule}), search {result.seconds:.1f}s")
        report(f"{args.track} tuned ({objective})", track, result.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
