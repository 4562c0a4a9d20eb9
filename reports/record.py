"""Defensive readers over a RunRecord (the dict stored in results.json).

Why: a report must render even for partial or older records (a crashed model,
an SVM without history, a metric the evaluator could not compute), so every
lookup here tolerates missing keys, nulls and non-finite numbers instead of
letting the figure or template code raise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

from mlbench.naming import slug  # noqa: F401  (figures name files with it)

RULE_ORDER = ("fixed", "global", "per_label", "balanced")
GROUPS = ("head", "medium", "tail")


@dataclass(frozen=True)
class Metric:
    """One comparison-table column: where the value lives and which way is better."""

    key: str
    label: str
    higher_is_better: bool = True
    digits: int = 3


TEST_METRICS: tuple[Metric, ...] = (
    Metric("f1_micro", "Micro F1"),
    Metric("f1_macro", "Macro F1"),
    Metric("f1_samples", "Samples F1"),
    Metric("precision_micro", "Micro P"),
    Metric("precision_macro", "Macro P"),
    Metric("recall_micro", "Micro R"),
    Metric("recall_macro", "Macro R"),
    Metric("binary_accuracy", "Binary acc.", digits=4),
    Metric("hamming_loss", "Hamming loss", higher_is_better=False, digits=4),
    Metric("subset_accuracy", "Subset acc."),
    Metric("p_at_1", "P@1"),
    Metric("p_at_3", "P@3"),
    Metric("p_at_5", "P@5"),
    Metric("roc_auc_micro", "ROC-AUC"),
)

GROUP_METRICS: tuple[Metric, ...] = (
    Metric("f1_micro", "Total micro"),
    Metric("f1_macro", "Total macro"),
    Metric("head_f1_micro", "Head micro"),
    Metric("head_f1_macro", "Head macro"),
    Metric("medium_f1_micro", "Medium micro"),
    Metric("medium_f1_macro", "Medium macro"),
    Metric("tail_f1_micro", "Tail micro"),
    Metric("tail_f1_macro", "Tail macro"),
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
    """head / medium / tail per label (None when unknown).

    Head is ``count >= head_min`` and tail ``count <= tail_max`` from
    ``dataset.groups``; without thresholds we fall back on the evaluator's
    head/medium/tail label counts, which split the frequency-ordered labels.
    """
    names = labels(record)
    counts = train_counts(record)
    groups = as_dict(as_dict(record.get("dataset")).get("groups"))
    head_min, tail_max = num(groups.get("head_min")), num(groups.get("tail_max"))
    if head_min is not None and tail_max is not None and len(counts) == len(names):
        out: list[str | None] = []
        for c in counts:
            if c is None:
                out.append(None)
            elif c >= head_min:
                out.append("head")
            elif c <= tail_max:
                out.append("tail")
            else:
                out.append("medium")
        return out
    for model in models(record).values():
        m = split_metrics(model)
        sizes = [_count(m.get(f"{g}_labels")) for g in GROUPS]
        if all(s is not None for s in sizes) and sum(sizes) == len(names):  # type: ignore[arg-type]
            return [g for g, s in zip(GROUPS, sizes) for _ in range(int(s))]  # type: ignore[arg-type]
    return [None] * len(names)


def _count(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        return len(value)
    n = num(value)
    return int(n) if n is not None else None


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


def best_config(record: dict) -> tuple[str, str] | None:
    """Highest validation macro-F1 across variants × rules (test never picks)."""
    best, best_value = None, -math.inf
    for name, rule, result in configurations(record):
        value = num(validation(result).get("f1_macro"))
        if value is not None and value > best_value:
            best, best_value = (name, rule), value
    return best
