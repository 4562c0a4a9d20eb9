"""Several runs side by side: one self-contained HTML page and a Markdown table.

Why: a benchmark's users compare runs (two data sets, two protocols, before and after a
change); each run's report is an island.  Rows are data set × model × run, every model
under the rule it chose on cross-fitted validation per objective (the runs' own
choices, never re-chosen here), with the test 95% intervals and the costs.  Where runs
share a data set (same name, labels and test size) each later run's figures are also
given as differences to the first run's, with whether the two test intervals overlap.

Input is each run folder's results.json, read through `mlbench.record.RunRecord`, so a
record of another schema is refused with one line naming the file.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from jinja2 import Environment, FileSystemLoader

from mlbench.record import OBJECTIVES, ModelResult, RunRecord

from .format import num
from .html import DASH, TEMPLATES, ci_text, fmt, public
from .recommend import total_train_seconds


@dataclass
class Run:
    """One run folder's record and its label."""

    label: str
    record: RunRecord

    @property
    def dataset_key(self) -> tuple[str, int, int | None]:
        """Runs "share a data set" when name, label count and test size agree."""
        ds = self.record.dataset
        split = ds.stats.get("test")
        test = num(split.get("documents")) if isinstance(split, dict) else None
        return (str(ds.name or DASH), len(ds.labels), None if test is None else int(test))


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Each folder's record (InputError, one line, for a missing file or another schema).
    Labels are the folder names, made unique with the parent folder when two clash."""
    runs = []
    for p in paths:
        record = RunRecord.load(p)
        runs.append(Run(Path(p).resolve().name if Path(p).is_dir() else Path(p).resolve().parent.name, record))
    names = [r.label for r in runs]
    for r, p in zip(runs, paths):
        if names.count(r.label) > 1:
            r.label = public(str(Path(p)))
    return runs


def _figures(model: ModelResult, objective: str) -> dict[str, Any]:
    rule = model.rule_for(objective)
    key = OBJECTIVES[objective]
    if rule is None:
        return {"rule": DASH, "val": None, "test": None, "ci": None}
    result = model.rules[rule]
    return {"rule": rule, "val": num(result.validation.get(key)), "test": num(result.test.get(key)),
            "ci": result.ci(key)}


def rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """data set × model × run rows (data sets and models in first-seen order).

    Each row: ``dataset``, ``model``, ``run``, per objective ``{rule, val, test, ci}`` and
    ``delta`` (vs the first run of the data set holding the model: ``{val, test, overlap}``),
    ``train_s`` (members included), ``docs_per_s``, ``size_mb``."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.dataset_key, []).append(run)
    out = []
    for key, members in groups.items():
        names = list(dict.fromkeys(n for run in members for n in run.record.models))
        for name in names:
            ref = None
            for run in members:
                model = run.record.models.get(name)
                if model is None:
                    continue
                size = num(model.size_bytes)
                row = {"dataset": key[0], "dataset_key": key, "model": name, "run": run.label,
                       "objectives": {o: _figures(model, o) for o in OBJECTIVES},
                       "train_s": total_train_seconds(run.record, name)[0],
                       "docs_per_s": num(model.inference_docs_per_s),
                       "size_mb": None if size is None else size / 1e6, "delta": None}
                if ref is None:
                    ref = row
                else:
                    row["delta"] = {o: _delta(ref["objectives"][o], row["objectives"][o]) for o in OBJECTIVES}
                out.append(row)
    return out


def _delta(ref: dict, new: dict) -> dict[str, Any]:
    """new − ref on validation and test; ``overlap``: the two test 95% intervals overlap
    (None when either is missing) — a hint, not a test of the difference."""
    sub = lambda a, b: None if a is None or b is None else a - b  # noqa: E731
    overlap = None
    if ref["ci"] is not None and new["ci"] is not None:
        overlap = ref["ci"][0] <= new["ci"][1] and new["ci"][0] <= ref["ci"][1]
    return {"val": sub(new["val"], ref["val"]), "test": sub(new["test"], ref["test"]), "overlap": overlap}


def _signed(value: float | None) -> str:
    return DASH if value is None else f"{value:+.3f}"


def _cell(fig: dict) -> str:
    ci = ci_text(fig["ci"])
    return fmt(fig["test"]) + (f" [{ci}]" if ci else "")


def markdown(runs: Sequence[Run]) -> str:
    """A README-ready table: one line per data set × model × run; Δ vs the data set's first run."""
    head = ["data set", "model", "run", "micro rule", "micro-F1 test [95% CI]", "val", "Δ test",
            "macro rule", "macro-F1 test [95% CI]", "val", "Δ test", "train s", "docs/s", "MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows(runs):
        cells = [r["dataset"], r["model"], f"`{r['run']}`"]
        for o in OBJECTIVES:
            f = r["objectives"][o]
            d = (r["delta"] or {}).get(o)
            cells += [f"`{f['rule']}`", _cell(f), fmt(f["val"]), "" if d is None else _signed(d["test"])]
        cells += [fmt(r["train_s"], 0), fmt(r["docs_per_s"], 0), fmt(r["size_mb"], 1)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def figure_uri(runs: Sequence[Run]) -> str | None:
    """Per data set: test micro-F1 (95% CI bars) against docs/s (log), one colour per run."""
    from matplotlib.figure import Figure

    from .figures import MARKERS, _colour, log_x

    table = [r for r in rows(runs) if r["docs_per_s"] and r["objectives"]["micro"]["test"] is not None]
    if not table:
        return None
    datasets = list(dict.fromkeys(r["dataset_key"] for r in table))
    labels = [run.label for run in runs]
    fig = Figure(figsize=(5.2 * len(datasets), 3.8))
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, key in zip(axes, datasets):
        for r in (r for r in table if r["dataset_key"] == key):
            i = labels.index(r["run"])
            f = r["objectives"]["micro"]
            err = None if f["ci"] is None else [[max(0.0, f["test"] - f["ci"][0])], [max(0.0, f["ci"][1] - f["test"])]]
            ax.errorbar([r["docs_per_s"]], [f["test"]], yerr=err, fmt=MARKERS[i % len(MARKERS)],
                        color=_colour(i), capsize=3, label=r["run"])
            ax.annotate(r["model"], (r["docs_per_s"], f["test"]), textcoords="offset points",
                        xytext=(5, 3), fontsize=8)
        log_x(ax)
        ax.set_xlabel("docs/s (log)")
        ax.set_ylabel("test micro-F1")
        ax.set_title(key[0], fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        handles, names = ax.get_legend_handles_labels()
        seen = dict(zip(names, handles))
        ax.legend(seen.values(), seen.keys(), fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def render(runs: Sequence[Run]) -> str:
    """The self-contained comparison page (inline CSS and figure, autoescaped)."""
    table = []
    for r in rows(runs):
        objs = {}
        for o in OBJECTIVES:
            f, d = r["objectives"][o], (r["delta"] or {}).get(o)
            objs[o] = {"rule": f["rule"], "test": fmt(f["test"]), "ci": ci_text(f["ci"]), "val": fmt(f["val"]),
                       "d_test": "" if d is None else _signed(d["test"]),
                       "d_val": "" if d is None else _signed(d["val"]),
                       "overlap": None if d is None else d["overlap"]}
        table.append({"dataset": r["dataset"], "model": r["model"], "run": r["run"], "objectives": objs,
                      "first": r["delta"] is None, "train_s": fmt(r["train_s"], 0),
                      "docs_per_s": fmt(r["docs_per_s"], 0), "size_mb": fmt(r["size_mb"], 1)})
    info = [{"label": run.label, "dataset": run.dataset_key[0], "created": str(run.record.created or DASH),
             "command": public(run.record.command or DASH),
             "models": len(run.record.models), "bootstrap": fmt(run.record.config.get("bootstrap"), 0)}
            for run in runs]
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("compare.html.j2").render(runs=info, rows=table, objectives=list(OBJECTIVES),
                                                      figure=figure_uri(runs))


def write(paths: Sequence[str | Path], html_path: Path, md_path: Path | None = None) -> list[Path]:
    """Write the comparison page (and the Markdown table); return the paths written."""
    runs = load_runs(paths)
    html_path.write_text(render(runs), encoding="utf-8")
    written = [html_path]
    if md_path is not None:
        md_path.write_text(markdown(runs), encoding="utf-8")
        written.append(md_path)
    return written
