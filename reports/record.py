"""Defensive readers over a RunRecord (the dict stored in results.json).

Why: a report must render even for partial or older records (a crashed model,
an SVM without history, a metric the evaluator could not compute), so every
lookup here tolerates missing keys, nulls and non-finite numbers instead of
letting the figure or template code raise.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

from mlbench.naming import slug  # noqa: F401  (figures name files with it)

# names defined once in the core; the report only reads them
from mlbench.record import (  # noqa: E402,F401
    GROUP_METRICS, LABEL_GROUPS as GROUPS, OBJECTIVES, RULES as RULE_ORDER, TEST_METRICS, Metric,
)


def num(value: Any) -> float | None:
    """A finite float or None (nulls, strings, NaN and inf all read as missing)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, (list, tuple)) else []


def models(record: dict) -> dict[str, dict]:
    """Model variants in record order, skipping entries that are not dicts."""
    return {str(k): v for k, v in as_dict(record.get("models")).items() if isinstance(v, dict)}


def rules(model: dict) -> dict[str, dict]:
    """A model's decision rules, known rules first in a stable reading order."""
    raw = {str(k): v for k, v in as_dict(model.get("rules")).items() if isinstance(v, dict)}
    known = [r for r in RULE_ORDER if r in raw]
    return {r: raw[r] for r in known + [r for r in raw if r not in known]}


def split_metrics(model: dict, rule: str = "fixed", split: str = "test") -> dict:
    return as_dict(as_dict(rules(model).get(rule)).get(split))


def validation(result: dict) -> dict:
    """A rule's validation metrics: cross-fitted (``val_cv``) when recorded, since the
    in-sample ones flatter rules whose thresholds were fitted on validation."""
    return as_dict(result.get("val_cv")) or as_dict(result.get("val"))


def has_history(model: dict) -> bool:
    """Why: only Keras models log epochs; an SVM's history is {} and gets no curves."""
    history = as_dict(model.get("history"))
    return any(len(as_list(v)) > 0 for v in history.values())


def is_keras(model: dict) -> bool:
    return has_history(model) or model.get("loss") is not None


def labels(record: dict) -> list[str]:
    return [str(x) for x in as_list(as_dict(record.get("dataset")).get("labels"))]


def train_counts(record: dict) -> list[float | None]:
    return [num(x) for x in as_list(as_dict(record.get("dataset")).get("train_counts"))]


def label_groups(record: dict) -> list[str | None]:
    """head / medium / tail per label, as the experiment recorded it (None when unknown)."""
    names = labels(record)
    stored = [str(g) if g in GROUPS else None for g in as_list(as_dict(record.get("dataset")).get("label_groups"))]
    return stored if len(stored) == len(names) else [None] * len(names)


def per_label_f1(model: dict, rule: str = "fixed") -> list[float | None]:
    return [num(x) for x in as_list(as_dict(rules(model).get(rule)).get("per_label_f1_test"))]


def configurations(record: dict) -> Iterator[tuple[str, str, dict]]:
    """Every (variant, rule, rule-result) triple in reading order."""
    for name, model in models(record).items():
        for rule, result in rules(model).items():
            yield name, rule, result


def baseline_config(record: dict) -> tuple[str, str] | None:
    """The reference point: first Keras model trained with BCE, fixed 0.5 rule.

    Falls back to the first Keras model, then the first model, so a record
    without a BCE run still gets a comparison point.
    """
    ms = models(record)
    for pick in (
        lambda m: m.get("loss") == "bce" and is_keras(m),
        is_keras,
        lambda m: True,
    ):
        for name, model in ms.items():
            if pick(model) and "fixed" in rules(model):
                return name, "fixed"
    return None


def chosen_rule(model: dict, objective: str = "micro") -> str | None:
    """The rule the experiment chose for `objective` on cross-fitted validation."""
    rule = as_dict(model.get("chosen_rule")).get(objective)
    return str(rule) if rule in rules(model) else None


def best_config(record: dict, objective: str = "micro") -> tuple[str, str] | None:
    """The (variant, rule) the experiment chose as best for `objective` (test never picks)."""
    best = as_dict(as_dict(record.get("best")).get(objective))
    name, rule = best.get("model"), best.get("rule")
    if name in models(record) and rule in rules(models(record)[name]):
        return str(name), str(rule)
    return None


def test_ci(model: dict, rule: str) -> dict[str, tuple[float, float]]:
    """The rule's 95% test intervals ``metric -> (lo, hi)``; malformed entries are dropped."""
    out = {}
    for key, pair in as_dict(as_dict(rules(model).get(rule)).get("test_ci")).items():
        pair = as_list(pair)
        lo, hi = (num(pair[0]), num(pair[1])) if len(pair) == 2 else (None, None)
        if lo is not None and hi is not None:
            out[str(key)] = (lo, hi)
    return out


def not_worse(record: dict, objective: str) -> dict[str, bool]:
    """``variant -> True`` where the paired bootstrap found it not significantly worse than
    the best for `objective`; only explicit ``true`` counts (absent = not tested)."""
    raw = as_dict(as_dict(record.get("not_worse")).get(objective))
    return {str(k): v is True for k, v in raw.items()}


def n_seeds(record: dict) -> int:
    """``config.seeds`` (training seeds per stochastic variant); 1 when not recorded."""
    n = num(as_dict(record.get("config")).get("seeds"))
    return int(n) if n is not None and n >= 1 else 1
