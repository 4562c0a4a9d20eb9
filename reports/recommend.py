"""What to ship: the models not dominated on quality, throughput, size and training cost.

Why validation: a recommendation is a choice, and the suite never chooses on test.
Quality is each model's cross-fitted validation F1 under the rule it chose for the
objective; test figures (with their 95% intervals and the record's paired-bootstrap
verdict) are shown beside it, never used to rank.  Costs are what the record measured:
serving throughput (docs/s on the test split), export size and total training seconds,
an ensemble's members included (it cannot be trained without them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mlbench.record import OBJECTIVES, RunRecord

from .format import num

#: the resource axes: record key → (label, unit, higher is better)
COSTS: dict[str, tuple[str, str, bool]] = {
    "docs_per_s": ("throughput", "docs/s", True),
    "size_mb": ("size", "MB", False),
    "train_total_s": ("training", "s", False),
}


@dataclass
class Candidate:
    """One model under the rule it chose for an objective, with its costs."""

    name: str
    rule: str | None
    val: float | None                      # cross-fitted validation F1 (what ranks)
    test: float | None
    ci: tuple[float, float] | None
    docs_per_s: float | None
    size_mb: float | None
    train_total_s: float | None
    members: list[str] = field(default_factory=list)
    near_best: bool = False                # record.not_worse: paired bootstrap on test
    dominated_by: str | None = None

    def cost(self, key: str) -> float | None:
        return getattr(self, key)


def total_train_seconds(record: RunRecord, name: str) -> tuple[float | None, list[str]]:
    """A variant's own training seconds plus its members' (an ensemble's ``describe.members``).

    Returns (seconds or None when any part is missing, members counted)."""
    models = record.models
    model = models.get(name)
    if model is None:
        return None, []
    own = num(model.train_seconds)
    listed = model.describe.get("members")
    members = [str(m) for m in (listed if isinstance(listed, list) else []) if str(m) in models]
    if own is None:
        return None, members
    parts = [num(models[m].train_seconds) for m in members]
    return (None if any(p is None for p in parts) else own + sum(parts)), members  # type: ignore[operator]


def candidates(record: RunRecord, objective: str) -> list[Candidate]:
    """Every model under its `objective`-chosen rule (models without that rule keep None figures)."""
    key = OBJECTIVES[objective]
    near = record.near_best(objective)
    out = []
    for name, model in record.models.items():
        rule = model.rule_for(objective)
        result = model.rules[rule] if rule else None
        size = num(model.size_bytes)
        total, members = total_train_seconds(record, name)
        out.append(Candidate(
            name=name, rule=rule, val=num(result.validation.get(key)) if result else None,
            test=num(result.test.get(key)) if result else None,
            ci=result.ci(key) if result else None,
            docs_per_s=num(model.inference_docs_per_s),
            size_mb=None if size is None else size / 1e6, train_total_s=total, members=members,
            near_best=near.get(name, False)))
    return out


def _axes(c: Candidate) -> list[float] | None:
    """Every axis oriented so that larger is better; None when a figure is missing."""
    vals = [c.val] + [c.cost(k) for k in COSTS]
    if any(v is None for v in vals):
        return None
    return [c.val] + [c.cost(k) if up else -c.cost(k) for k, (_, _, up) in COSTS.items()]  # type: ignore[operator]


def mark_dominated(cands: list[Candidate]) -> list[Candidate]:
    """Set ``dominated_by`` on each candidate another beats or ties on every axis and beats on one.

    Candidates with a missing figure can neither dominate nor be dominated (nothing to
    compare); they stay on the front, so a partial record never hides a model."""
    for c in cands:
        a = _axes(c)
        if a is None:
            continue
        for other in cands:
            b = _axes(other)
            if other is c or b is None:
                continue
            if all(y >= x for x, y in zip(a, b)) and any(y > x for x, y in zip(a, b)):
                c.dominated_by = other.name
                break
    return cands


def best(cands: list[Candidate]) -> Candidate | None:
    """The highest validation quality (ties: the earlier model, as `RunRecord.best_for`)."""
    ranked = [c for c in cands if c.val is not None]
    return max(ranked, key=lambda c: c.val) if ranked else None  # max keeps the first of ties


def steps(cands: list[Candidate], key: str, start: Candidate, limit: int = 2) -> list[Candidate]:
    """Walk down the (quality, `key`) front from `start`: each step is the best-validation
    model strictly better than the previous step on cost `key`.  At most `limit` steps."""
    _, _, up = COSTS[key]
    out, cur = [], start
    while len(out) < limit:
        here = cur.cost(key)
        if here is None:
            break
        better = [c for c in cands if c.val is not None and c.cost(key) is not None
                  and (c.cost(key) > here if up else c.cost(key) < here)]
        nxt = best(better)
        if nxt is None:
            break
        out.append(nxt)
        cur = nxt
    return out


def _round_down(value: float, up: bool) -> float:
    """A readable requirement at two significant figures that `value` still meets
    (rounded down for a minimum like docs/s, up for a maximum like MB)."""
    if value <= 0:
        return value
    mag = 10 ** (math.floor(math.log10(value)) - 1)
    return (math.floor(value / mag) if up else math.ceil(value / mag)) * mag


def requirement(key: str, value: float) -> str:
    label, unit, up = COSTS[key]
    v = _round_down(value, up)
    text = f"{v:,.0f}" if v >= 10 else f"{v:,.1f}"
    return f"{'≥' if up else '≤'} {text} {unit}" + (" of training" if key == "train_total_s" else "")


def describe_costs(c: Candidate) -> str:
    """"7,029 docs/s, 10.5 MB, 30 s to train (members included)"."""
    parts = []
    if c.docs_per_s is not None:
        parts.append(f"{c.docs_per_s:,.0f} docs/s")
    if c.size_mb is not None:
        parts.append(f"{c.size_mb:,.1f} MB")
    if c.train_total_s is not None:
        parts.append(f"{c.train_total_s:,.0f} s to train" + (" (members included)" if c.members else ""))
    return ", ".join(parts) or "no cost recorded"


def signed(value: float) -> str:
    """``+0.012`` / ``−0.009`` (a typographic minus, as the rest of the page)."""
    return f"{value:+.3f}".replace("-", "−")


def _quality(c: Candidate, metric: str) -> str:
    val = "—" if c.val is None else f"{c.val:.3f}"
    test = "—" if c.test is None else f"{c.test:.3f}"
    ci = "" if c.ci is None else f" [{c.ci[0]:.3f}, {c.ci[1]:.3f}]"
    return f"validation {metric} {val} (cross-fitted), test {test}{ci}"


def paragraph(record: RunRecord, objective: str) -> dict[str, Any] | None:
    """The generated advice for one objective: ship the best, and what each constraint costs.

    Returns {"objective", "best", "text": [sentences]} or None when no model has a figure."""
    cands = candidates(record, objective)
    top = best(cands)
    if top is None:
        return None
    metric = f"{objective}-F1"
    text = [f"For the best {metric} ship {top.name} (rule {top.rule}): {_quality(top, metric)}; "
             f"{describe_costs(top)}."]
    record_best = record.best_config(objective)
    tested = record_best is not None and record_best[0] == top.name and bool(record.near_best(objective))
    alternatives: dict[str, list[str]] = {}
    for key in ("docs_per_s", "size_mb"):
        for alt in steps(cands, key, top):
            alternatives.setdefault(alt.name, []).append(requirement(key, alt.cost(key)))
    by_name = {c.name: c for c in cands}
    for name, needs in alternatives.items():
        alt = by_name[name]
        delta_val = alt.val - top.val  # both present: steps() only returns ranked candidates
        delta_test = None if alt.test is None or top.test is None else alt.test - top.test
        verdict = ""
        if tested:
            verdict = (f"; on test it is within the paired-bootstrap interval of {top.name} (not significantly worse)"
                       if alt.near_best else f"; on test it is significantly worse than {top.name} (paired bootstrap)")
        text.append(
            f"If you need {' or '.join(needs)}, {alt.name} (rule {alt.rule}) costs "
            f"{signed(delta_val)} {metric} on validation"
            + ("" if delta_test is None else f" ({signed(delta_test)} on test)")
            + f": {_quality(alt, metric)}; {describe_costs(alt)}{verdict}.")
    if not alternatives:
        text.append(f"No other model is faster or smaller than {top.name}.")
    return {"objective": objective, "best": top.name, "text": text}


def front_rows(record: RunRecord) -> list[dict[str, Any]]:
    """One row per model: per objective its rule, validation and test F1 (CI), whether it is
    dominated (and by whom), and its costs; the front first, in validation order of the
    run's selection objective."""
    select = str(record.config.get("select") or "micro")
    select = select if select in OBJECTIVES else "micro"
    per_obj = {obj: {c.name: c for c in mark_dominated(candidates(record, obj))} for obj in OBJECTIVES}
    rows = []
    for name in record.models:
        first = per_obj[select][name]
        rows.append({
            "name": name,
            "objectives": {obj: per_obj[obj][name] for obj in OBJECTIVES},
            "front": [obj for obj in OBJECTIVES if per_obj[obj][name].dominated_by is None],
            "costs": first, "members": first.members,
        })
    rows.sort(key=lambda r: (not r["front"], -(r["costs"].val if r["costs"].val is not None else -math.inf)))
    return rows
