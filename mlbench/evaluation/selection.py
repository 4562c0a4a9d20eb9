"""Choose a decision rule per selection objective on cross-fitted validation.

Why a module of its own: the experiment, the tuner and the report must agree on
which rule a model is judged under for ``--select micro`` and ``--select macro``;
the objective names and their metric keys live in `mlbench.record.OBJECTIVES`.
"""

from __future__ import annotations

from typing import Mapping

from mlbench.record import OBJECTIVES, RULES

__all__ = ["best_rule_for", "choose_rules"]


def _order(names: list[str]) -> list[str]:
    """Rules in `RULES` reading order (simplest first), unknown names after, as given."""
    known = [r for r in RULES if r in names]
    return known + [r for r in names if r not in known]


def best_rule_for(results: Mapping[str, Mapping], key: str) -> str:
    """The rule with the best cross-fitted validation `key` (``results[rule]["val_cv"]``).

    Ties keep the simpler rule (the earlier one in `RULES`); a missing or None value
    counts as 0.  ValueError when `results` is empty.
    """
    if not results:
        raise ValueError("no rule results to choose from")
    names = _order(list(results))
    # max() returns the first of equal maxima, so ties go to the simpler rule
    return max(names, key=lambda r: (results[r].get("val_cv") or {}).get(key) or 0.0)


def choose_rules(results: Mapping[str, Mapping]) -> dict[str, str]:
    """Objective → rule, e.g. ``{"micro": "global", "macro": "scutfbr"}``.

    `results` maps rule name → a dict with ``"val_cv"`` metrics (as made by
    `mlbench.evaluation.scoring.rule_results`); never reads test metrics.
    """
    return {objective: best_rule_for(results, key) for objective, key in OBJECTIVES.items()}
