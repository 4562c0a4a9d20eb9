"""Score a fitted track on validation and test under every decision rule.

Decision rules are fitted on validation only (`mlbench.evaluation.thresholds`) and then
applied unchanged to test, so test numbers stay honest.  A rule's validation
metrics are in-sample (its thresholds were fitted on those very documents), which
flatters per-label thresholds most; so each rule also gets ``val_cv``: the
threshold-dependent metrics of k-fold *cross-fitted* predictions (thresholds fitted
on the other folds), and the best rule is chosen on those.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from mlbench.data.corpus import Corpus
from mlbench.labels import LabelSpace
from mlbench.evaluation.metrics import (FrequencyGroups, evaluate, per_label_f1, predict_labels,
                                        threshold_metrics)
from mlbench.evaluation.selection import best_rule_for, choose_rules
from mlbench.evaluation.thresholds import DecisionRule, fit_decision_rules
from mlbench.record import RANKING_KEYS  # metrics that do not depend on the threshold; not in val_cv
from mlbench.tracks import Track


def _jsonable(thresholds: float | np.ndarray) -> float | list[float]:
    if np.ndim(thresholds) == 0:
        return float(thresholds)
    return [float(t) for t in np.asarray(thresholds)]


def cross_fitted_predictions(y_val: np.ndarray, s_val: np.ndarray, *, folds: int = 5,
                             seed: int = 0, default: float = 0.5) -> dict[str, np.ndarray]:
    """Out-of-fold 0/1 predictions of every rule: fit on k-1 folds, predict the k-th."""
    order = np.random.default_rng(seed).permutation(len(y_val))
    preds: dict[str, np.ndarray] = {}
    for fold in np.array_split(order, min(folds, len(y_val))):
        rest = np.setdiff1d(order, fold)
        for name, rule in fit_decision_rules(y_val[rest], s_val[rest], default=default).items():
            preds.setdefault(name, np.zeros(y_val.shape, dtype=np.int8))[fold] = rule.predict(s_val[fold])
    return preds


def cross_fitted_score(y: np.ndarray, scores: np.ndarray, key: str, *, folds: int = 5,
                       seed: int = 0) -> tuple[float, str]:
    """(best rule's pooled out-of-fold `key`, that rule) for scores [n, L] and 0/1 y [n, L].

    Why one function: the search (`mlbench.tuning.point_score`) and the ensemble's weights
    judge a candidate the same way as the rules are chosen (`val_cv`).  `key` is a
    `threshold_metrics` key; ties keep the simpler rule (`fit_decision_rules` order).
    """
    oof = cross_fitted_predictions(y, scores, folds=folds, seed=seed)
    values = {rule: threshold_metrics(y, pred, keys=(key,))[key] for rule, pred in oof.items()}
    best = max(values, key=values.get)  # first of equal maxima: the simpler rule
    return values[best], best


def rule_results(y_val: np.ndarray, s_val: np.ndarray, y_test: np.ndarray, s_test: np.ndarray,
                 rules: dict[str, DecisionRule], labels: LabelSpace,
                 groups: FrequencyGroups) -> dict[str, dict]:
    """Metrics on val and test for each rule, plus per-label test F1."""
    out = {}
    oof = cross_fitted_predictions(y_val, s_val)
    for name, rule in rules.items():
        kw = dict(threshold=rule.thresholds, train_counts=labels.train_counts, groups=groups)
        cv = evaluate(y_val, oof[name].astype(np.float32), threshold=0.5,
                      train_counts=labels.train_counts, groups=groups)
        out[name] = {
            "val_cv": {k: v for k, v in cv.items() if k not in RANKING_KEYS},
            "threshold": _jsonable(rule.thresholds),
            "fallback_labels": [int(i) for i in rule.fallback_labels],
            "val": evaluate(y_val, s_val, **kw),
            "test": evaluate(y_test, s_test, **kw),
            "per_label_f1_test": per_label_f1(y_test, predict_labels(s_test, rule.thresholds)).tolist(),
        }
    return out


def best_rule(results: dict[str, dict], key: str = "f1_micro") -> str:
    """The rule with the best cross-fitted validation `key` (ties keep the earlier,
    simpler rule); kept for callers of the micro choice, see `selection.choose_rules`."""
    return best_rule_for(results, key)


def examples(texts: Sequence[str], y_true_names: Sequence[Sequence[str]], scores: np.ndarray,
             labels: LabelSpace, n: int = 5, k: int = 3, chars: int = 300) -> list[dict]:
    """A few test documents with their true labels and top-k predictions."""
    tops = labels.top_k(scores[:n], k)
    return [
        {"text": texts[i][:chars], "true": list(y_true_names[i]), "top": [[l, s] for l, s in tops[i]]}
        for i in range(min(n, len(texts)))
    ]


def evaluate_track(track: Track, corpus: Corpus, labels: LabelSpace,
                   groups: FrequencyGroups = FrequencyGroups()) -> dict:
    """Everything results.json records about one fitted track except training."""
    y_val, y_test = labels.encode(corpus.val.labels), labels.encode(corpus.test.labels)
    s_val = track.predict_scores(corpus.val.texts)
    start = time.perf_counter()
    s_test = track.predict_scores(corpus.test.texts)
    seconds = time.perf_counter() - start
    rules = fit_decision_rules(y_val, s_val, default=0.5)
    results = rule_results(y_val, s_val, y_test, s_test, rules, labels, groups)
    return {
        "rules": results,
        "best_rule": best_rule(results),
        "chosen_rule": choose_rules(results),  # objective -> rule (ModelResult.chosen_rule)
        "decision_rules": rules,  # objects, for thresholds.json; dropped before JSON
        "inference_docs_per_s": len(corpus.test) / seconds if seconds > 0 else None,
        "examples": examples(corpus.test.texts, corpus.test.labels, s_test, labels),
    }
