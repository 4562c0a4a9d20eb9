"""Turn a RunRecord plus its figures into one self-contained HTML page.

Why self-contained: the report is mailed around, attached to PRs and opened
from CI artifacts, so images are inlined as base64 data URIs and the CSS lives
in the page — there is nothing to resolve relative to the run folder.
"""

from __future__ import annotations

import base64
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from mlbench.record import (GROUP_METRICS, LABEL_GROUPS, OBJECTIVES, TEST_METRICS, Metric, ModelResult,
                            RuleResult, RunRecord)

from . import recommend
from .figures import MANY_LABELS, label_f1, label_groups, write_figures
from .format import num

TEMPLATES = Path(__file__).parent / "templates"
DASH = "—"

RESOURCE_METRICS: tuple[Metric, ...] = (
    Metric("train_seconds", "Train s (total)", higher_is_better=False, digits=1),
    Metric("inference_docs_per_s", "Docs/s", digits=0),
    Metric("size_mb", "Size MB", higher_is_better=False, digits=1),
)
VAL_METRICS: tuple[Metric, ...] = (
    Metric("val_f1_micro", "Val micro"),
    Metric("val_f1_macro", "Val macro"),
)
TEST_AND_RESOURCES = TEST_METRICS + RESOURCE_METRICS
RULE_METRICS = VAL_METRICS + GROUP_METRICS
FALLBACK_NOTE = (
    "The per-label rule tunes one threshold per label on the validation split. A label "
    "with too few positive validation documents to tune on (fewer than min_positives, 2 "
    "by default) falls back to the global threshold instead, so its predictions match the "
    "global rule. The scutfbr rule (macro-oriented) also tunes one threshold per label, "
    "choosing in folds of validation a per-label FBR cut: a label whose tuned F1 stays "
    "below it gets a conservative threshold (its top validation score), after Fan & Lin "
    "(2007); a label with no positive validation document keeps the global threshold. "
    "The “Fallback” column counts the labels that kept the global threshold."
)


@dataclass
class Cell:
    """One table cell: display text, best-of-column flag, full-precision tooltip, 95% CI text."""

    text: str
    value: float | None = None
    best: bool = False
    title: str = ""
    ci: str = ""


@dataclass(frozen=True)
class Badge:
    """A small tag beside a name; `kind` picks its colour (chosen, best, near, baseline)."""

    text: str
    kind: str


@dataclass
class Row:
    name: str
    cells: list[Cell]
    rule: str = ""
    badges: list[Badge] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers to fixed digits with thousands separators; anything missing to a dash."""
    v = num(value)
    if v is None:
        return DASH
    return f"{v:,.{digits}f}"


def mark_best(rows: Sequence[Row], metrics: Sequence[Metric]) -> None:
    """Flag the best value of every column (ties all marked; nulls never win).

    Values are compared at the precision shown, so two cells that read the same
    are both marked rather than one winning on an invisible fifth decimal. A
    column with fewer than two numbers has nothing to compare: nothing is marked.
    """
    for j, metric in enumerate(metrics):
        shown = [None if row.cells[j].value is None else round(row.cells[j].value, metric.digits)
                 for row in rows]
        present = [v for v in shown if v is not None]
        if len(present) < 2:
            continue
        target = max(present) if metric.higher_is_better else min(present)
        for row, v in zip(rows, shown):
            if v is not None and v == target:
                row.cells[j].best = True


def ci_text(ci: tuple[float, float] | None, digits: int = 3) -> str:
    """``[lo, hi]`` as ``"lo–hi"`` at the cell's precision; empty when not recorded."""
    return "" if ci is None else f"{ci[0]:.{digits}f}–{ci[1]:.{digits}f}"


def _cells(values: dict, metrics: Sequence[Metric], result: RuleResult | None = None) -> list[Cell]:
    """One cell per metric of `values`, with the 95% test interval `result` records for it."""
    out = []
    for m in metrics:
        v = num(values.get(m.key))
        ci = result.ci(m.key) if result is not None else None
        title = "" if v is None else repr(v)
        if ci is not None:
            title += f" (95% CI {ci[0]:.4f} to {ci[1]:.4f})"
        out.append(Cell(fmt(v, m.digits), v, title=title.strip(), ci=ci_text(ci, m.digits)))
    return out


def _resources(record: RunRecord, name: str) -> dict[str, float | None]:
    """Cost columns; ``train_seconds`` is the total (an ensemble's members included)."""
    model = record.models[name]
    size = num(model.size_bytes)
    return {
        "train_seconds": recommend.total_train_seconds(record, name)[0],
        "inference_docs_per_s": num(model.inference_docs_per_s),
        "size_mb": None if size is None else size / 1e6,
    }


def comparison_rows(record: RunRecord, rule: str = "fixed") -> list[Row]:
    """Model × test-metric rows, every model under the same `rule` (the fixed-0.5 table)."""
    metrics = TEST_AND_RESOURCES
    rows = []
    for name, model in record.models.items():
        result = model.rules.get(rule)
        values = {**(result.test if result else {}), **_resources(record, name)}
        rows.append(Row(name, _cells(values, metrics, result), rule=rule if result else DASH))
    mark_best(rows, metrics)
    return rows


def seed_summary(record: RunRecord, name: str, objective: str) -> str:
    """Mean ± sample std of the objective's test F1 over seeds (each seed under its own
    rule chosen for `objective`); the primary run is the model's chosen-rule figure."""
    model = record.models[name]
    key = OBJECTIVES[objective]
    rule = model.rule_for(objective)
    values = [num(model.rules[rule].test.get(key))] if rule else []
    for entry in model.seeds:
        values.append(num((entry.get(objective) or {}).get(key)))
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return "single run"
    return f"{statistics.mean(present):.3f} ± {statistics.stdev(present):.3f} (n={len(present)})"


def objective_rows(record: RunRecord, objective: str) -> list[Row]:
    """One row per model under the rule it chose for `objective` on cross-fitted validation.

    Badges: "best" on ``record.best[objective]``, "≈ best" on models the paired
    bootstrap found not significantly worse (``record.not_worse[objective]``).
    """
    metrics = TEST_AND_RESOURCES
    best = record.best_config(objective)
    near = record.near_best(objective)
    seeds = record.n_seeds > 1
    rows = []
    for name, model in record.models.items():
        rule = model.rule_for(objective)
        result = model.rules[rule] if rule else None
        values = {**(result.test if result else {}), **_resources(record, name)}
        badges = []
        if best is not None and best == (name, rule):
            badges.append(Badge("best", "best"))
        elif near.get(name):
            badges.append(Badge("≈ best", "near"))
        extra = {"seeds": seed_summary(record, name, objective)} if seeds else {}
        rows.append(Row(name, _cells(values, metrics, result), rule=rule or DASH, badges=badges, extra=extra))
    mark_best(rows, metrics)
    return rows


def threshold_text(threshold: Any) -> str:
    """A scalar threshold as a number; a per-label vector as its median and range."""
    if isinstance(threshold, (list, tuple)):
        vals = [v for v in (num(t) for t in threshold) if v is not None]
        if not vals:
            return DASH
        return f"per label: median {statistics.median(vals):.2f} ({min(vals):.2f}–{max(vals):.2f})"
    return fmt(threshold, 2)


def rule_rows(record: RunRecord) -> list[Row]:
    """(variant × rule) rows: validation F1 plus total/head/medium/tail test F1."""
    names = record.dataset.labels
    base = record.baseline_config()
    best = {obj: record.best_config(obj) for obj in OBJECTIVES}
    rows = []
    for name, model, rule, result in ((n, m, r, res) for n, m in record.models.items()
                                      for r, res in m.rules_in_order().items()):
        val = result.validation
        values = {"val_f1_micro": val.get("f1_micro"), "val_f1_macro": val.get("f1_macro"), **result.test}
        badges = [Badge(f"chosen ({obj})", "chosen") for obj in OBJECTIVES if model.rule_for(obj) == rule]
        if (name, rule) == base:
            badges.append(Badge("baseline", "baseline"))
        badges += [Badge(f"best ({obj})", "best") for obj, cfg in best.items() if cfg == (name, rule)]
        raw_fb = result.fallback_labels
        fallback = [_label_name(x, names) for x in raw_fb or []]
        if raw_fb is None or (not fallback and rule in ("fixed", "global")):
            fb_text = DASH
        else:
            fb_text = f"{len(fallback)}" + (f" / {len(names)}" if names else "")
        rows.append(Row(name, _cells(values, RULE_METRICS), rule=rule, badges=badges,
                        extra={"threshold": threshold_text(result.threshold),
                               "fallback": fallback, "fallback_text": fb_text}))
    mark_best(rows, RULE_METRICS)
    return rows


def _label_name(x: Any, names: Sequence[str]) -> str:
    if isinstance(x, int) and 0 <= x < len(names):
        return names[x]
    return str(x)


def dataset_context(record: RunRecord) -> dict[str, Any]:
    """Split statistics (``dataset.stats``), label-group sizes, notes and the health check."""
    ds = record.dataset
    stats = ds.stats
    splits = []
    for split in ("train", "val", "test"):
        s = stats.get(split)
        if isinstance(s, dict) and s:
            splits.append({"split": split, "documents": fmt(s.get("documents"), 0),
                           "distinct_labels": fmt(s.get("distinct_labels"), 0),
                           "label_cardinality": fmt(s.get("label_cardinality"), 2),
                           "mean_words": fmt(s.get("mean_words"), 1)})
    groups = label_groups(record)
    known = {"name", "source", "train", "val", "test"}
    notes = {str(k): public(_plain(v)) for k, v in stats.items() if k not in known}
    return {
        "name": str(ds.name or stats.get("name") or DASH),
        "source": public(stats.get("source") or ""),
        "splits": splits,
        "n_labels": len(ds.labels),
        "group_sizes": {g: groups.count(g) for g in LABEL_GROUPS if g in groups},
        "thresholds": {str(k): _plain(v) for k, v in ds.groups.items()},
        "notes": notes,
        "health": health_context(ds.health),
    }


SEVERITIES: tuple[str, ...] = ("error", "warning", "info")


def health_context(health: Any) -> dict[str, Any] | None:
    """The data health check's findings, most severe first; None when the check did not run.

    Why defensive: the health module grows checks and keys; an unknown severity reads
    as "info" rather than breaking the page, and unknown keys are shown as notes.
    """
    if not isinstance(health, dict):
        return None
    findings = []
    for f in _list(health.get("findings")):
        if not isinstance(f, dict):
            continue
        sev = str(f.get("severity") or "info")
        findings.append({
            "check": str(f.get("check") or DASH),
            "severity": sev if sev in SEVERITIES else "info",
            "severity_text": sev,
            "count": fmt(f.get("count"), 0),
            "message": public(f.get("message") or ""),
            "examples": [public(x) for x in _list(f.get("examples"))],
        })
    findings.sort(key=lambda f: SEVERITIES.index(f["severity"]))
    extra = {str(k): public(json.dumps(v, indent=1, default=str) if isinstance(v, (dict, list)) else v)
             for k, v in health.items() if k not in ("findings", "seconds")}
    return {
        "findings": findings,
        "counts": {sev: sum(f["severity"] == sev for f in findings) for sev in SEVERITIES},
        "seconds": fmt(health.get("seconds"), 2),
        "extra": extra,
    }


#: an absolute POSIX or Windows path of at least two parts (not a URL's "//host/...")
_HOST_PATH = re.compile(r"(?<![\w.:/~-])(?:[A-Za-z]:[\\/]|/)(?:[^\s/\\\"',;:()\[\]<>]+[\\/])+"
                        r"([^\s/\\\"',;:()\[\]<>]*)")


def public(text: str) -> str:
    """`text` with every absolute path shortened to ``…/<last part>``.

    Why: the report is mailed around and attached to PRs; the machine's folder layout
    (user names, mount points) is not the reader's business and differs on every host.
    Relative paths (``runs/…``, ``shared/data/…``) are kept as written."""
    return _HOST_PATH.sub(lambda m: "…/" + m.group(1), str(text))


def _plain(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _list(value: Any) -> list:
    """A list read from the health check's JSON (anything else reads as empty)."""
    return list(value) if isinstance(value, (list, tuple)) else []


def model_overview(record: RunRecord) -> list[dict[str, Any]]:
    """One row per variant: what it is, the rule it chose per objective, and its notices."""
    out = []
    for name, m in record.models.items():
        out.append({
            "name": name, "track": str(m.track or DASH), "family": str(m.family or DASH),
            "loss": str(m.loss or DASH), "parameters": fmt(m.parameters, 0),
            "chosen": {obj: m.rule_for(obj) or DASH for obj in OBJECTIVES},
            "notices": [str(n) for n in m.notices],
            "export_dir": public(m.export_dir or DASH),
            "describe": public(json.dumps(m.describe or {}, indent=2, default=str)),
            "protocol": protocol_text(m),
        })
    return out


def protocol_text(model: ModelResult) -> str:
    """Where a variant's rules, calibration and search were fitted (`ModelResult.protocol`)."""
    on = model.fitted_on
    rows, folds, refit = num(on.get("rows")), num(on.get("folds")), num(on.get("refit_rows"))
    if model.protocol == "cv":
        text = f"cv: {fmt(folds, 0)}-fold out-of-fold scores of {fmt(rows, 0)} train+val docs"
        return text + (f", refit on {fmt(refit, 0)}" if refit is not None else "")
    return "holdout: " + (f"validation ({fmt(rows, 0)} docs)" if rows is not None else "validation")


def _at(values: list, i: int) -> Any:
    return values[i] if i < len(values) else None


def search_context(record: RunRecord) -> list[dict[str, Any]]:
    """Each model's hyper-parameter search (``models[v].search``, a `SearchResult`).

    ``space`` is option → candidates; ``grid[i]`` the i-th point fitted, ``scores[i]`` its
    validation score and ``rules[i]`` the rule reaching it; a missing figure reads as a dash.
    """
    out = []
    for name, m in record.models.items():
        search = m.search
        if search is None:
            out.append({"name": name, "tuned": False})
            continue
        grid = search.grid
        params = list(search.space) or list(dict.fromkeys(k for p in grid for k in p))
        fitted, full = num(search.full_grid), len(grid)
        budget = num(search.budget)
        out.append({
            "name": name, "tuned": True,
            "space": {str(k): ", ".join(_plain(c) for c in v) if isinstance(v, list) else _plain(v)
                      for k, v in search.space.items()},
            "chosen": {str(k): _plain(v) for k, v in search.chosen.items()},
            "score": fmt(search.score, 4),
            "chosen_rule": str(search.chosen_rule or DASH),
            "metric": str(search.metric or DASH),
            "objective": str(search.objective or DASH),
            "method": str(search.method or DASH),
            "evaluation": str(search.evaluation or DASH),
            "points_text": f"{full} of {fmt(fitted, 0)} grid points fitted" if fitted is not None
                           else f"{full} points fitted",
            "budget": fmt(budget, 0) if budget is not None else "none",
            "seconds": fmt(search.seconds, 1),
            "params": [str(k) for k in params],
            "points": [{"cells": [_plain(p[k]) if k in p else DASH for k in params],
                        "score": fmt(_at(search.scores, i), 4), "rule": str(_at(search.rules, i) or DASH),
                        "chosen": bool(search.chosen) and p == search.chosen}
                       for i, p in enumerate(grid)],
        })
    return out


def examples(record: RunRecord) -> list[dict[str, Any]]:
    """Sample documents grouped by text, one prediction row per model.

    Why group: the runner samples the same test documents for every model, so a
    reviewer compares models on one document instead of hunting across lists.
    """
    docs: dict[str, dict[str, Any]] = {}
    for name, model in record.models.items():
        for ex in model.examples:
            text = str(ex.get("text") or "")
            true = [str(t) for t in _list(ex.get("true"))]
            doc = docs.setdefault(text, {"text": _excerpt(text), "true": true, "preds": []})
            top = []
            for pair in _list(ex.get("top")):
                pair = _list(pair)
                if pair:
                    label = str(pair[0])
                    score = pair[1] if len(pair) > 1 else None
                    top.append({"label": label, "score": fmt(score, 2), "hit": label in true})
            hits = sum(t["hit"] for t in top)
            doc["preds"].append({"model": name, "top": top[:3], "hits": hits})
    for doc in docs.values():
        found = {t["label"] for p in doc["preds"] for t in p["top"] if t["hit"]}
        doc["true"] = [{"label": t, "found": t in found} for t in doc["true"]]
    return list(docs.values())


ATTRIBUTION_NOTE = (
    "Units: logits of the label in question (its score is sigmoid(logit)), so +2 moves a score from "
    "0.5 to 0.88. Linear models (SVM) get exact attributions, weight × feature. The MLP and the encoder "
    "get integrated gradients: each token's share of the difference between the logit for this document "
    "and the logit for an empty document, and the shares add up to that difference. A network trained "
    "to saturation reaches logits of ±50 or more where the score is already 0 or 1, so one token at, "
    "say, −75 means “this token alone decides against the label”, not a broken value; compare tokens "
    "within one document and one model, not across models.")

CALIBRATION_METHOD = (
    "Calibration: per model, the method with the lowest out-of-fold ECE top-5 on validation among "
    "auto (one map per label: Platt scaling shrunk towards a pooled map, or isotonic regression "
    "where a label has enough validation positives and it scores better out of fold), one global "
    "temperature, and identity (the raw scores, for a model already calibrated); "
    "fitted on the validation split only; judged on test. ECE = expected calibration error with "
    "15 uniform score bins (Guo et al. 2017); ECE top-5 uses each document's five highest-scored "
    "labels, where a reader looks; Brier and log loss are means over every (document, label) pair. "
    "Decision rules stay fitted on the raw scores, so every F1 figure above is unchanged.")


def _arrow(before: Any, after: Any, digits: int = 4) -> dict[str, Any]:
    """``raw → calibrated`` text of one metric (lower is better), with the change's sign."""
    b, a = num(before), num(after)
    return {"raw": fmt(b, digits), "calibrated": fmt(a, digits),
            "better": a is not None and b is not None and a < b}


def calibration_rows(record: RunRecord) -> list[dict[str, Any]]:
    """Per model with a calibration record: maps used and test ECE top-5 / ECE / Brier /
    log loss of raw → calibrated scores (``models[v].calibration``)."""
    out = []
    for name, m in record.models.items():
        cal = m.calibration
        if cal is None:
            continue
        maps = ", ".join(f"{k} {fmt(v, 0)}" for k, v in cal.maps.items())
        chosen = cal.chosen_by.get("candidates") or {}
        if chosen:  # the out-of-fold validation figures the method was chosen by
            maps = f"{maps or DASH} (out-of-fold ECE top-5: " + ", ".join(
                f"{k} {fmt(v, 4)}" for k, v in chosen.items()) + ")"
        out.append({"name": name, "method": str(cal.method or DASH), "maps": maps or DASH,
                    "metrics": {k: _arrow(getattr(cal.raw, k), getattr(cal.calibrated, k))
                                for k in ("ece_top5", "ece", "brier", "log_loss")}})
    return out


def _explanation(value: Any) -> list[dict[str, str]]:
    """[[token, weight], ...] → chips (positive weights push the label up)."""
    out = []
    for pair in _list(value):
        pair = _list(pair)
        if len(pair) == 2 and num(pair[1]) is not None:
            out.append({"token": str(pair[0]), "weight": f"{num(pair[1]):+.2f}", "up": num(pair[1]) > 0})
    return out


def _error_example(ex: dict[str, Any]) -> dict[str, Any]:
    return {"text": _excerpt(str(ex.get("text") or ""), 300), "label": str(ex.get("label") or ""),
            "score": fmt(ex.get("score"), 3), "threshold": fmt(ex.get("threshold"), 3),
            "train_count": fmt(ex.get("train_count"), 0),
            "true": [str(t) for t in _list(ex.get("true"))],
            "predicted": [str(t) for t in _list(ex.get("predicted"))],
            "explanation": _explanation(ex.get("explanation")),
            "explained": isinstance(ex.get("explanation"), list), "also": []}


def _distinct_documents(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Error examples with each test text once: older records list a document per missed
    label (and test sets hold copies of one text), so one text could be shown three times;
    its first entry (the rarest label) stays and the other labels are listed on it (``also``)."""
    out: dict[Any, dict[str, Any]] = {}
    for raw in examples:
        key = " ".join(str(raw.get("text") or "").split()) or raw.get("doc")  # copies of one text read as one
        if key in out:
            label = str(raw.get("label") or "")
            if label and label != out[key]["label"] and label not in out[key]["also"]:
                out[key]["also"].append(label)
            continue
        out[key] = _error_example(raw)
    return list(out.values())


def error_context(record: RunRecord) -> list[dict[str, Any]]:
    """Per model its error analysis (``models[v].errors``, `mlbench.evaluation.errors`)."""
    out = []
    for name, m in record.models.items():
        e = m.errors
        if e is None:
            continue
        breakdown = []
        for part, title in (("single", "single-label"), ("multi", "multi-label"), ("unlabeled", "no label")):
            b = e.breakdown.get(part)
            if b is not None:
                breakdown.append({"part": part, "title": title, "documents": fmt(b.documents, 0),
                                  "f1_micro": fmt(b.f1_micro), "f1_macro": fmt(b.f1_macro)})
        out.append({
            "name": name, "rule": str(e.rule or DASH),
            "n_fn": fmt(e.errors.get("false_negatives"), 0), "n_fp": fmt(e.errors.get("false_positives"), 0),
            "breakdown": breakdown,
            "confusions": [{"true": str(c.get("true")), "predicted": str(c.get("predicted")),
                            "count": fmt(c.get("count"), 0),
                            "examples": [_error_example(x) for x in c.get("examples") or []]}
                           for c in e.confusions],
            "false_negatives": _distinct_documents(e.false_negatives),
            "false_positives": _distinct_documents(e.false_positives),
            "tokens": [{"token": str(t[0]), "mass": fmt(t[1], 2), "docs": fmt(t[2], 0)}
                       for t in map(_list, e.overfitted_tokens) if len(t) == 3],
            "explained": fmt(e.explained, 0),
            "note": str(e.explain_note or ""),
        })
    return out


def _excerpt(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def headline(record: RunRecord) -> list[dict[str, str]]:
    """The best (variant, rule) per objective with that exact configuration's figures:
    cross-fitted validation (what it was chosen on) and test, with 95% CIs when recorded.

    Objectives whose best is the same configuration share one sentence (``objective``
    then reads "micro macro"), so the page never names one model twice in identical words."""
    out = []
    configs: dict[tuple[str, str], list[str]] = {}
    for obj in OBJECTIVES:
        cfg = record.best_config(obj)
        if cfg is not None:
            configs.setdefault(cfg, []).append(obj)
    for (name, rule), objs in configs.items():
        result = record.models[name].rules[rule]
        val, test = result.val_cv, result.test
        near_by = {o: ", ".join(n for n, ok in record.near_best(o).items() if ok and n != name) for o in objs}
        near = (next(iter(near_by.values())) if len(set(near_by.values())) == 1
                else "; ".join(f"on {o}-F1 {v}" for o, v in near_by.items() if v))
        out.append({
            "objective": " ".join(objs), "objectives_text": "- and ".join(objs), "name": name, "rule": rule,
            "val_micro": fmt(val.get("f1_micro")), "val_macro": fmt(val.get("f1_macro")),
            "test_micro": fmt(test.get("f1_micro")), "test_macro": fmt(test.get("f1_macro")),
            "ci_micro": ci_text(result.ci("f1_micro")), "ci_macro": ci_text(result.ci("f1_macro")),
            "near": near,
        })
    return out


def recommendation(record: RunRecord) -> dict[str, Any]:
    """The shipping advice (`reports.recommend`): one paragraph per objective (the run's
    ``--select`` first) and the dominance table, formatted for the template."""
    select = str(record.config.get("select") or "micro")
    order = sorted(OBJECTIVES, key=lambda o: o != select)
    paragraphs = [p for p in (recommend.paragraph(record, o) for o in order) if p is not None]
    rows = []
    for r in recommend.front_rows(record):
        c = r["costs"]
        own = num(record.models[r["name"]].train_seconds)
        rows.append({
            "name": r["name"], "front": r["front"],
            "quality": {o: {"rule": q.rule or DASH, "val": fmt(q.val), "test": fmt(q.test),
                            "ci": ci_text(q.ci), "dominated_by": q.dominated_by or ""}
                        for o, q in r["objectives"].items()},
            "docs_per_s": fmt(c.docs_per_s, 0), "size_mb": fmt(c.size_mb, 1),
            "train_total_s": fmt(c.train_total_s, 0),
            "train_title": (f"own {fmt(own, 1)} s + members {', '.join(r['members'])}" if r["members"] else ""),
        })
    return {"paragraphs": paragraphs, "rows": rows, "objectives": order}


#: labels listed at each end of the F1 ranking (many-label runs) and chips shown per fallback list
EXTREMES = 10
MAX_CHIPS = 40


def label_extremes(record: RunRecord, k: int = EXTREMES) -> list[dict[str, Any]]:
    """With more than `MANY_LABELS` labels: per model (micro-chosen rule) its `k` best and
    `k` worst labels by test F1 among labels with training documents, with their counts."""
    names, counts = record.dataset.labels, [num(c) for c in record.dataset.train_counts]
    if len(names) <= MANY_LABELS:
        return []
    out = []
    for name, model in record.models.items():
        rule = model.rule_for("micro") or "fixed"
        f1 = label_f1(model, rule)
        if len(f1) != len(names):
            continue
        ranked = sorted((j for j, v in enumerate(f1) if v is not None and (counts[j] or 0) > 0),
                        key=lambda j: (-f1[j], -(counts[j] or 0), names[j]))
        row = lambda j: {"label": names[j], "f1": fmt(f1[j], 3), "train": fmt(counts[j], 0)}  # noqa: E731
        out.append({"name": name, "rule": rule, "n": len(ranked),
                    "top": [row(j) for j in ranked[:k]], "bottom": [row(j) for j in ranked[-k:][::-1]]})
    return out


def build_context(record: RunRecord, figures: dict[str, Path]) -> dict[str, Any]:
    """Everything the template needs, pre-formatted so the template stays logic-light."""
    ms = record.models
    curves = [{"model": n, "uri": data_uri(figures[f"curves:{n}"])}
              for n in ms if f"curves:{n}" in figures]
    no_curves = [n for n in ms if f"curves:{n}" not in figures]
    rule_table = rule_rows(record)
    config = record.config
    return {
        "run_id": str(record.run_id or DASH),
        "created": str(record.created or DASH),
        "total_seconds": fmt(record.total_seconds, 0),
        "command": public(record.command or ""),
        "config": public(json.dumps(config or {}, indent=2, default=str)),
        "n_seeds": record.n_seeds,
        "seed": str(config.get("seed")) if config.get("seed") is not None else "",
        "bootstrap": fmt(config.get("bootstrap"), 0),
        "versions": {str(k): str(v) for k, v in record.versions.items()},
        "dataset": dataset_context(record),
        "models": model_overview(record),
        "headline": headline(record),
        "recommendation": recommendation(record),
        "test_metrics": TEST_AND_RESOURCES,
        "n_quality": len(TEST_METRICS),
        "objectives": [{"name": obj, "key": key, "label": "Micro F1" if obj == "micro" else "Macro F1",
                        "rows": objective_rows(record, obj)} for obj, key in OBJECTIVES.items()],
        "significance_method": str(record.significance_method or ""),
        "comparison": comparison_rows(record, "fixed"),
        "search": search_context(record),
        "rule_metrics": RULE_METRICS,
        "rule_rows": rule_table,
        "fallbacks": [r for r in rule_table if r.extra["fallback"]],
        "fallback_note": FALLBACK_NOTE,
        "max_chips": MAX_CHIPS,
        "extremes": label_extremes(record),
        "many_labels": len(record.dataset.labels) > MANY_LABELS,
        "figures": {k: data_uri(v) for k, v in figures.items() if ":" not in k},
        "calibration": calibration_rows(record),
        "calibration_method": CALIBRATION_METHOD,
        "attribution_note": ATTRIBUTION_NOTE,
        "reliability": [{"model": n, "uri": data_uri(figures[f"reliability:{n}"])}
                        for n in ms if f"reliability:{n}" in figures],
        "errors": error_context(record),
        "curves": curves,
        "no_curves": no_curves,
        "examples": examples(record),
    }


def _env() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(record: RunRecord, figures: dict[str, Path]) -> str:
    return _env().get_template("report.html.j2").render(**build_context(record, figures))


def write_report(record: RunRecord, run_dir: Path) -> Path:
    """Write ``run_dir/figures/*.png`` and ``run_dir/report.html``; return the HTML path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    figures = write_figures(record, run_dir)
    out = run_dir / "report.html"
    out.write_text(render_html(record, figures), encoding="utf-8")
    return out
