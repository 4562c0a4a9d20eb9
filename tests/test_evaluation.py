"""Rule selection uses cross-fitted validation metrics, not in-sample ones."""

from __future__ import annotations

import numpy as np

from mlbench.evaluation.scoring import best_rule, cross_fitted_predictions, rule_results
from mlbench.labels import LabelSpace
from mlbench.evaluation.metrics import FrequencyGroups, evaluate
from mlbench.evaluation.thresholds import fit_decision_rules


def noisy_scores(n: int, n_labels: int, seed: int):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < np.linspace(0.3, 0.01, n_labels)).astype(np.float32)
    s = np.clip(0.35 * y + rng.random((n, n_labels)) * 0.6, 0, 1).astype(np.float32)
    return y, s


def test_cross_fitted_predictions_come_from_rules_fitted_without_the_fold():
    y, s = noisy_scores(200, 6, 0)
    oof = cross_fitted_predictions(y, s, folds=4, seed=1)
    assert set(oof) == {"fixed", "global", "per_label", "scutfbr"}
    np.testing.assert_array_equal(oof["fixed"], (s >= 0.5).astype(np.int8))
    order = np.random.default_rng(1).permutation(len(y))
    fold = np.array_split(order, 4)[0]
    rest = np.setdiff1d(order, fold)
    rule = fit_decision_rules(y[rest], s[rest])["per_label"]
    np.testing.assert_array_equal(oof["per_label"][fold], rule.predict(s[fold]))


def test_in_sample_per_label_looks_better_than_cross_fitted():
    y, s = noisy_scores(300, 30, 2)
    labels = LabelSpace([f"l{i}" for i in range(30)], train_counts=np.arange(30, 0, -1) * 3)
    rules = fit_decision_rules(y, s)
    res = rule_results(y, s, y, s, rules, labels, FrequencyGroups())
    per = res["per_label"]
    assert per["val"]["f1_macro"] > per["val_cv"]["f1_macro"]  # in-sample optimism
    assert "p_at_1" not in per["val_cv"] and "p_at_1" in per["val"]
    expected = evaluate(y, s, threshold=0.5)["f1_micro"]
    assert res["fixed"]["val_cv"]["f1_micro"] == expected == res["fixed"]["val"]["f1_micro"]
    chosen = best_rule(res)
    assert res[chosen]["val_cv"]["f1_micro"] == max(r["val_cv"]["f1_micro"] for r in res.values())


def test_search_and_ensemble_rank_on_one_cross_fitted_score():
    """`tuning.point_score` and the ensemble's weights both call `cross_fitted_score`: the
    best rule's pooled out-of-fold metric, as `evaluate` computes it on those decisions."""
    import baselines.ensemble as ensemble_track
    from mlbench.evaluation.scoring import cross_fitted_score
    from mlbench.tuning import point_score

    rng = np.random.default_rng(7)
    y = (rng.random((120, 6)) < 0.3).astype(np.int8)
    s = np.clip(0.4 * y + 0.6 * rng.random((120, 6)), 0, 1).astype(np.float32)
    assert ensemble_track.cross_fitted_score is cross_fitted_score
    for key in ("f1_micro", "f1_macro"):
        oof = cross_fitted_predictions(y, s, seed=0)
        by_rule = {r: evaluate(y, p.astype(np.float32), threshold=0.5)[key] for r, p in oof.items()}
        best = max(by_rule, key=by_rule.get)
        assert cross_fitted_score(y, s, key, seed=0) == (by_rule[best], best)
        assert point_score(y, s, key) == (by_rule[best], best)
