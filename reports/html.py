"""Turn a RunRecord plus its figures into one self-contained HTML page.

Why self-contained: the report is mailed around, attached to PRs and opened
from CI artifacts, so images are inlined as base64 data URIs and the CSS lives
in the page — there is nothing to resolve relative to the run folder.
"""

from __future__ import annotations

import base64
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from . import record as R
from .figures import write_figures

TEMPLATES = Path(__file__).parent / "templates"
DASH = "—"

RESOURCE_METRICS: tuple[R.Metric, ...] = (
    R.Metric("train_seconds", "Train s", higher_is_better=False, digits=1),
    R.Metric("inference_docs_per_s", "Docs/s", digits=0),
    R.Metric("size_mb", "Size MB", higher_is_better=False, digits=1),
)
VAL_METRICS: tuple[R.Metric, ...] = (
    R.Metric("val_f1_micro", "Val micro"),
    R.Metric("val_f1_macro", "Val macro"),
)
TEST_AND_RESOURCES = R.TEST_METRICS + RESOURCE_METRICS
RULE_METRICS = VAL_METRICS + R.GROUP_METRICS
FALLBACK_NOTE = (
    "The per-label rule tunes one threshold per label on the validation split. A label "
    "with too few positive validation documents to tune on (fewer than min_positives, 2 "
    "by default) falls back to the global threshold instead, so its predictions match the "
    "global rule; the “Fallback” column counts those labels."
)


@dataclass
class Cell:
    """One table cell: display text, best-of-column flag, full-precision tooltip."""

    text: str
    value: float | None = None
    best: bool = False
    title: str = ""


@dataclass
class Row:
    name: str
    cells: list[Cell]
    rule: str = ""
    badges: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers to fixed digits with thousands separators; anything missing to a dash."""
    v = R.num(value)
    if v is None:
        return DASH
    return f"{v:,.{digits}f}"


def mark_best(rows: Sequence[Row], metrics: Sequence[R.Metric]) -> None:
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


def _cells(values: dict, metrics: Sequence[R.Metric]) -> list[Cell]:
    out = []
    for m in metrics:
        v = R.num(values.get(m.key))
        out.append(Cell(fmt(v, m.digits), v, title="" if v is None else repr(v)))
    return out


def _resources(model: dict) -> dict[str, float | None]:
    size = R.num(model.get("size_bytes"))
    return {
        "train_seconds": R.num(model.get("train_seconds")),
        "inference_docs_per_s": R.num(model.get("inference_docs_per_s")),
        "size_mb": None if size is None else size / 1e6,
    }


def comparison_rows(record: dict, rule: str | None = "fixed") -> list[Row]:
    """Model × test-metric rows for one rule (None: each model's chosen best_rule)."""
    metrics = TEST_AND_RESOURCES
    rows = []
    for name, model in R.models(record).items():
        used = rule or str(model.get("best_rule") or "fixed")
        values = {**R.split_metrics(model, used), **_resources(model)}
        rows.append(Row(name, _cells(values, metrics), rule=used if used in R.rules(model) else DASH))
    mark_best(rows, metrics)
    return rows



def threshold_text(threshold: Any) -> str:
    """A scalar threshold as a number; a per-label vector as its median and range."""
    if isinstance(threshold, (list, tuple)):
        vals = [v for v in (R.num(t) for t in threshold) if v is not None]
        if not vals:
            return DASH
        return f"per label: median {statistics.median(vals):.2f} ({min(vals):.2f}–{max(vals):.2f})"
    return fmt(threshold, 2)


def rule_rows(record: dict) -> list[Row]:
    """(variant × rule) rows: validation F1 plus total/head/medium/tail test F1."""
    names = R.labels(record)
    base, best = R.baseline_config(record), R.best_config(record)
    models = R.models(record)
    rows = []
    for name, rule, result in R.configurations(record):
        val = R.validation(result)
        values = {"val_f1_micro": val.get("f1_micro"), "val_f1_macro": val.get("f1_macro"),
                  **R.as_dict(result.get("test"))}
        badges = []
        if models[name].get("best_rule") == rule:
            badges.append("chosen")
        if (name, rule) == base:
            badges.append("baseline")
        if (name, rule) == best:
            badges.append("best val macro-F1")
        raw_fb = result.get("fallback_labels")
        fallback = [_label_name(x, names) for x in R.as_list(raw_fb)]
        if raw_fb is None or (not fallback and rule in ("fixed", "global")):
            fb_text = DASH
        else:
            fb_text = f"{len(fallback)}" + (f" / {len(names)}" if names else "")
        rows.append(Row(name, _cells(values, RULE_METRICS), rule=rule, badges=badges,
                        extra={"threshold": threshold_text(result.get("threshold")),
                               "fallback": fallback, "fallback_text": fb_text}))
    mark_best(rows, RULE_METRICS)
    return rows


def _label_name(x: Any, names: Sequence[str]) -> str:
    if isinstance(x, int) and 0 <= x < len(names):
        return names[x]
    return str(x)


def dataset_context(record: dict) -> dict[str, Any]:
    """Split statistics, label-group sizes and any extra dataset notes."""
    ds = R.as_dict(record.get("dataset"))
    splits = []
    for split in ("train", "val", "test"):
        s = R.as_dict(ds.get(split))
        if s:
            splits.append({"split": split, "documents": fmt(s.get("documents"), 0),
                           "distinct_labels": fmt(s.get("distinct_labels"), 0),
                           "label_cardinality": fmt(s.get("label_cardinality"), 2),
                           "mean_words": fmt(s.get("mean_words"), 1)})
    groups = R.label_groups(record)
    known = {"name", "source", "train", "val", "test", "labels", "train_counts", "groups"}
    notes = {str(k): _plain(v) for k, v in ds.items() if k not in known}
    thresholds = R.as_dict(ds.get("groups"))
    return {
        "name": str(ds.get("name") or DASH),
        "source": str(ds.get("source") or ""),
        "splits": splits,
        "n_labels": len(R.labels(record)),
        "group_sizes": {g: groups.count(g) for g in R.GROUPS if g in groups},
        "thresholds": {str(k): _plain(v) for k, v in thresholds.items()},
        "notes": notes,
    }


def _plain(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def model_overview(record: dict) -> list[dict[str, str]]:
    out = []
    for name, m in R.models(record).items():
        params = R.num(m.get("parameters"))
        out.append({
            "name": name, "track": str(m.get("track") or DASH), "family": str(m.get("family") or DASH),
            "loss": str(m.get("loss") or DASH), "parameters": fmt(params, 0),
            "best_rule": str(m.get("best_rule") or DASH), "export_dir": str(m.get("export_dir") or DASH),
            "describe": json.dumps(m.get("describe") or {}, indent=2, default=str),
        })
    return out


def examples(record: dict) -> list[dict[str, Any]]:
    """Sample documents grouped by text, one prediction row per model.

    Why group: the runner samples the same test documents for every model, so a
    reviewer compares models on one document instead of hunting across lists.
    """
    docs: dict[str, dict[str, Any]] = {}
    for name, model in R.models(record).items():
        for ex in R.as_list(model.get("examples")):
            if not isinstance(ex, dict):
                continue
            text = str(ex.get("text") or "")
            true = [str(t) for t in R.as_list(ex.get("true"))]
            doc = docs.setdefault(text, {"text": _excerpt(text), "true": true, "preds": []})
            top = []
            for pair in R.as_list(ex.get("top")):
                pair = R.as_list(pair)
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


def _excerpt(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def headline(record: dict) -> dict[str, str] | None:
    """Best configuration vs baseline, on the metrics the choice was made for."""
    base, best = R.baseline_config(record), R.best_config(record)
    if not best:
        return None
    ms = R.models(record)

    def summary(cfg: tuple[str, str]) -> dict[str, str]:
        test = R.split_metrics(ms[cfg[0]], cfg[1])
        val = R.validation(R.as_dict(R.rules(ms[cfg[0]]).get(cfg[1])))
        return {"name": f"{cfg[0]} / {cfg[1]}", "val_macro": fmt(val.get("f1_macro")),
                "test_micro": fmt(test.get("f1_micro")), "test_macro": fmt(test.get("f1_macro"))}

    return {"best": summary(best), "baseline": summary(base) if base else None}


def build_context(record: dict, figures: dict[str, Path]) -> dict[str, Any]:
    """Everything the template needs, pre-formatted so the template stays logic-light."""
    ms = R.models(record)
    curves = [{"model": n, "uri": data_uri(figures[f"curves:{n}"])}
              for n in ms if f"curves:{n}" in figures]
    no_curves = [n for n in ms if f"curves:{n}" not in figures]
    rule_table = rule_rows(record)
    chosen = comparison_rows(record, None)
    return {
        "run_id": str(record.get("run_id") or DASH),
        "created": str(record.get("created") or DASH),
        "total_seconds": fmt(record.get("total_seconds"), 0),
        "command": str(record.get("command") or ""),
        "config": json.dumps(record.get("config") or {}, indent=2, default=str),
        "versions": {str(k): str(v) for k, v in R.as_dict(record.get("versions")).items()},
        "dataset": dataset_context(record),
        "models": model_overview(record),
        "headline": headline(record),
        "test_metrics": TEST_AND_RESOURCES,
        "n_quality": len(R.TEST_METRICS),
        "comparison": comparison_rows(record, "fixed"),
        "comparison_chosen": chosen if any(r.rule not in ("fixed", DASH) for r in chosen) else [],
        "rule_metrics": RULE_METRICS,
        "rule_rows": rule_table,
        "fallbacks": [r for r in rule_table if r.extra["fallback"]],
        "fallback_note": FALLBACK_NOTE,
        "figures": {k: data_uri(v) for k, v in figures.items() if not k.startswith("curves:")},
        "curves": curves,
        "no_curves": no_curves,
        "examples": examples(record),
    }


def _env() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(record: dict, figures: dict[str, Path]) -> str:
    return _env().get_template("report.html.j2").render(**build_context(record, figures))


def write_report(record: dict, run_dir: Path) -> Path:
    """Write ``run_dir/figures/*.png`` and ``run_dir/report.html``; return the HTML path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    figures = write_figures(record, run_dir)
    out = run_dir / "report.html"
    out.write_text(render_html(record, figures), encoding="utf-8")
    return out
