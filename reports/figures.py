"""Matplotlib figures for a run report, written as PNGs into ``run_dir/figures``.

Why the object API (``matplotlib.figure.Figure``) instead of pyplot: it renders
through Agg without touching global backend state, so importing this module
never changes how the caller's own plots behave and nothing leaks between runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from mlbench.naming import slug
from mlbench.record import LABEL_GROUPS, OBJECTIVES, ModelResult, RunRecord

from .format import num

DPI = 100
GROUP_COLOURS = {"head": "#2b6cb0", "medium": "#d69e2e", "tail": "#c53030", None: "#718096"}
MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*")
GROUP_SHADE = {"head": "#ebf4ff", "medium": "#fffaf0", "tail": "#fff5f5"}
ROLE_STYLE = (("#718096", "o"), ("#dd6b20", "^"), ("#805ad5", "s"))  # baseline, 1st best, 2nd best
CURVES = (("loss", "Loss"), ("binary_accuracy", "Binary accuracy"), ("f1_micro", "Micro-F1"))


def _colour(i: int) -> str:
    palette = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795",
               "#b7791f", "#4a5568", "#e53e3e", "#3182ce"]
    return palette[i % len(palette)]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


PAGE_WIDTH = 12.8        # inches at DPI: about the report's content width, so no downscaling
MAX_PER_PANEL = 75       # labels per stacked panel: names stay >= ~7 pt with 150 labels
#: above this many labels the per-label figures become distributions (one bar or marker
#: per label would need dozens of panels); the report lists the top / bottom labels instead
MANY_LABELS = 300


def _panels(n_labels: int) -> list[range]:
    """Split label positions into equal stacked panels.

    Why panels instead of one very wide figure: a sideways-scrolling image hides
    the tail labels in screenshots and prints; stacking keeps every name legible
    at page width.
    """
    k = max(1, math.ceil(n_labels / MAX_PER_PANEL))
    size = math.ceil(n_labels / k)
    return [range(i, min(i + size, n_labels)) for i in range(0, n_labels, size)]


def _label_font(per_panel: int) -> float:
    return 8.0 if per_panel <= 40 else 7.0 if per_panel <= 60 else 6.5


def _shade_groups(ax, groups: Sequence[str | None], span: range) -> None:
    """Shade contiguous head/medium/tail runs so the regions read at a glance."""
    idx = list(span)
    start = 0
    for i in range(1, len(idx) + 1):
        if i == len(idx) or groups[idx[i]] != groups[idx[start]]:
            g = groups[idx[start]]
            if g in GROUP_SHADE:
                a, b = idx[start], idx[i - 1]
                ax.axvspan(a - 0.5, b + 0.5, color=GROUP_SHADE[g], zorder=0, lw=0)
                ax.text((a + b) / 2, 1.0, g, transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=8, color=GROUP_COLOURS[g])
            start = i


def _label_ticks(ax, names: Sequence[str], span: range, per_panel: int) -> None:
    ax.set_xticks(list(span))
    ax.set_xticklabels([names[i] for i in span], rotation=90, fontsize=_label_font(per_panel))
    # every panel gets the same x extent so a label column has the same width throughout
    ax.set_xlim(span.start - 0.6, span.start + per_panel - 0.4)


def _label_figure(n_labels: int, panel_height: float):
    """A page-wide figure with one axes per panel of labels."""
    spans = _panels(n_labels)
    fig = Figure(figsize=(PAGE_WIDTH, panel_height * len(spans) + 0.4), layout="constrained")
    axes = fig.subplots(len(spans), 1, squeeze=False)[:, 0]
    return fig, list(zip(axes, spans)), max(len(s) for s in spans)


def label_groups(record: RunRecord) -> list[str | None]:
    """head / medium / tail per label as the experiment recorded it (None when unknown)."""
    names, stored = record.dataset.labels, record.dataset.label_groups
    return ([g if g in LABEL_GROUPS else None for g in stored] if len(stored) == len(names)
            else [None] * len(names))


def label_f1(model: ModelResult, rule: str) -> list[float | None]:
    """Per-label test F1 [L] of `model` under `rule` (empty when the rule is not recorded)."""
    result = model.rules.get(rule)
    return [num(x) for x in result.per_label_f1_test] if result is not None else []


def label_frequency(record: RunRecord, path: Path) -> Path | None:
    """Training documents per label in label order (log-y), coloured by group."""
    names, counts = record.dataset.labels, [num(c) for c in record.dataset.train_counts]
    if not names or len(counts) != len(names):
        return None
    groups = label_groups(record)
    if len(names) > MANY_LABELS:
        return _frequency_histogram(counts, groups, path)
    fig, panels, per_panel = _label_figure(len(names), 3.2)
    positive = [c for c in counts if c and c > 0]
    for ax, span in panels:
        heights = [counts[i] if counts[i] and counts[i] > 0 else math.nan for i in span]
        ax.bar(list(span), heights, width=0.8, zorder=2,
               color=[GROUP_COLOURS.get(groups[i], "#718096") for i in span])
        ax.set_yscale("log")
        if positive:  # same y range on every panel, so bar heights compare across panels
            ax.set_ylim(min(positive) * 0.7, max(positive) * 1.4)
        ax.set_ylabel("training docs (log)")
        _label_ticks(ax, names, span, per_panel)
        ax.grid(axis="y", alpha=0.3, zorder=1)
    present = [g for g in LABEL_GROUPS if g in groups]
    if present:
        from matplotlib.patches import Patch

        panels[0][0].legend(handles=[Patch(color=GROUP_COLOURS[g], label=g) for g in present],
                            fontsize=8, loc="upper right")
    panels[0][0].set_title("Label frequency (training split, labels in frequency order)", fontsize=10)
    return _save(fig, path)


def _frequency_histogram(counts: Sequence[int | None], groups: Sequence[str | None], path: Path) -> Path:
    """How many labels have how many training documents (log-spaced bins), stacked by group."""
    positive = [c for c in counts if c and c > 0]
    top = max(positive, default=1)
    edges = [10 ** (k / 4) for k in range(0, int(4 * math.log10(top)) + 2)]  # 4 bins a decade
    fig = Figure(figsize=(PAGE_WIDTH * 0.75, 3.6), layout="constrained")
    ax = fig.subplots()
    bottom = [0] * (len(edges) - 1)
    for g in [*LABEL_GROUPS, None]:
        vals = [c for c, gg in zip(counts, groups) if gg == g and c and c > 0]
        if not vals:
            continue
        hist = [sum(lo <= v < hi for v in vals) for lo, hi in zip(edges, edges[1:])]
        ax.bar(edges[:-1], hist, width=[hi - lo for lo, hi in zip(edges, edges[1:])], align="edge",
               bottom=bottom, color=GROUP_COLOURS.get(g, "#718096"), label=g or "no group", zorder=2,
               edgecolor="white", linewidth=0.5)
        bottom = [b + h for b, h in zip(bottom, hist)]
    ax.set_xscale("log")
    ax.set_xlabel("training documents of the label (log)")
    ax.set_ylabel("labels")
    ax.grid(axis="y", alpha=0.3, zorder=1)
    ax.legend(fontsize=8, loc="upper right")
    zero = sum(1 for c in counts if not c)
    ax.set_title(f"Label frequency: {len(counts):,} labels (training split)"
                 + (f"; {zero:,} with no training document" if zero else ""), fontsize=10)
    return _save(fig, path)


def training_curves(name: str, model: ModelResult, path: Path) -> Path | None:
    """Loss, binary accuracy and micro-F1 per epoch, train vs validation."""
    history = model.history
    if not model.has_history:
        return None
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (key, title) in zip(axes, CURVES):
        drawn = False
        for prefix, style, label in (("", "-", "train"), ("val_", "--", "validation")):
            ys = [num(v) for v in history.get(prefix + key) or []]
            if ys:
                xs = range(1, len(ys) + 1)
                ax.plot(xs, [math.nan if y is None else y for y in ys], style, marker="o",
                        markersize=3, label=label)
                drawn = True
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes,
                    color="#718096")
    return _save(fig, path)


def per_label_f1(record: RunRecord, path: Path) -> Path | None:
    """Per-label test F1 of every model under its micro-chosen rule, labels in frequency order.

    A dot plot rather than grouped bars: with 90–150 labels and several models,
    bars become slivers while distinct markers stay separable. With many labels a
    running mean per model shows the head-to-tail trend through the scatter.
    """
    names = record.dataset.labels
    series = [(f"{n} ({rule})", label_f1(m, rule)) for n, m, rule in _micro_chosen(record)]
    series = [(n, f) for n, f in series if len(f) == len(names) and any(v is not None for v in f)]
    if not names or not series:
        return None
    if len(names) > MANY_LABELS:
        return _f1_histogram(series, len(names), path)
    groups = label_groups(record)
    fig, panels, per_panel = _label_figure(len(names), 3.4)
    window = max(5, len(names) // 15) if len(names) >= 40 else 0
    for ax, span in panels:
        _shade_groups(ax, groups, span)
        for i, (name, f1) in enumerate(series):
            ys = [math.nan if f1[j] is None else f1[j] for j in span]
            dodge = (i - (len(series) - 1) / 2) * min(0.22, 0.66 / len(series))  # models side by side
            ax.plot([j + dodge for j in span], ys, ls="none", marker=MARKERS[i % len(MARKERS)], markersize=4,
                    alpha=0.75 if window else 0.9, color=_colour(i), label=name, zorder=3)
            if window:
                ax.plot(list(span), [_running_mean(f1, j, window) for j in span],
                        color=_colour(i), lw=1.4, alpha=0.9, zorder=4)
        ax.set_ylim(-0.03, 1.05)
        ax.set_ylabel("test F1 (micro-chosen rule)")
        ax.grid(axis="both", alpha=0.25)
        _label_ticks(ax, names, span, per_panel)
    handles, labels_ = panels[0][0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="outside upper center", ncol=min(len(series), 6),
               fontsize=8, frameon=False)
    return _save(fig, path)


def _f1_histogram(series: Sequence[tuple[str, Sequence[float | None]]], n_labels: int, path: Path) -> Path:
    """How many labels reach which test F1 (bins of 0.05), one step line per model."""
    edges = [k / 20 for k in range(21)]
    fig = Figure(figsize=(PAGE_WIDTH * 0.75, 3.8), layout="constrained")
    ax = fig.subplots()
    for i, (name, f1) in enumerate(series):
        vals = [v for v in f1 if v is not None]
        hist = [sum(lo <= v < hi or (hi == 1.0 and v == 1.0) for v in vals) for lo, hi in zip(edges, edges[1:])]
        ax.stairs(hist, edges, color=_colour(i), lw=1.6, label=f"{name}: {len(vals):,} labels")
    ax.set_xlim(0, 1)
    ax.set_xlabel("test F1 of the label (micro-chosen rule)")
    ax.set_ylabel("labels")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc="upper center")
    ax.set_title(f"Per-label F1 over {n_labels:,} labels", fontsize=10)
    return _save(fig, path)


def _micro_chosen(record: RunRecord) -> list[tuple[str, ModelResult, str]]:
    """(name, model, rule) with each model's rule chosen for micro-F1 (fixed when none recorded)."""
    return [(n, m, m.rule_for("micro") or "fixed") for n, m in record.models.items()]


def _test(model: ModelResult, rule: str) -> dict:
    result = model.rules.get(rule)
    return result.test if result is not None else {}


def _running_mean(values: Sequence[float | None], j: int, window: int) -> float:
    """Centred mean over the neighbouring labels, ignoring missing values."""
    half = window // 2
    vals = [v for v in values[max(0, j - half): j + half + 1] if v is not None]
    return sum(vals) / len(vals) if vals else math.nan


def group_f1(record: RunRecord, path: Path) -> Path | None:
    """Total/head/medium/tail micro- and macro-F1 per model (test, micro-chosen rule)."""
    ms = _micro_chosen(record)
    cats = [("", "total"), ("head_", "head"), ("medium_", "medium"), ("tail_", "tail")]
    if not any(num(_test(m, rule).get(f"{p}f1_{a}")) is not None
               for _, m, rule in ms for p, _ in cats for a in ("micro", "macro")):
        return None
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    width = 0.8 / len(ms)
    for ax, avg in zip(axes, ("micro", "macro")):
        for i, (name, model, rule) in enumerate(ms):
            metrics = _test(model, rule)
            name = f"{name} ({rule})"
            for j, (prefix, _) in enumerate(cats):
                v = num(metrics.get(f"{prefix}f1_{avg}"))
                x = j - 0.4 + width * (i + 0.5)
                if v is None:
                    ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7,
                            rotation=90, color="#718096")
                else:
                    ax.bar(x, v, width=width * 0.95, color=_colour(i),
                           label=name if j == 0 else None, zorder=2)
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([c for _, c in cats])
        ax.set_title(f"{avg}-F1 by label group (test, micro-chosen rule)", fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3, zorder=1)
    axes[0].set_ylabel("F1")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def f1_vs_frequency(record: RunRecord, path: Path) -> Path | None:
    """Per-label test F1 against training frequency: baseline vs the best per objective.

    Why: it shows where a better loss or decision rule actually helps — usually in
    the rare-label tail, which a micro-averaged number hides.
    """
    names, counts = record.dataset.labels, [num(c) for c in record.dataset.train_counts]
    ms = record.models
    roles: dict[tuple[str, str], list[str]] = {}  # one series per configuration, all its roles named
    base = record.baseline_config()
    if base:
        roles[base] = ["baseline"]
    for obj in OBJECTIVES:
        cfg = record.best_config(obj)
        if cfg is not None:
            roles.setdefault(cfg, []).append(f"best {obj}")
    configs = [(" = ".join(r), cfg) for cfg, r in roles.items()]
    if not names or len(counts) != len(names) or not configs:
        return None
    fig = Figure(figsize=(10, 4.6))
    ax = fig.subplots()
    drawn = False
    for i, (role, (model, rule)) in enumerate(configs):
        f1 = label_f1(ms[model], rule)
        if len(f1) != len(names):
            continue
        pts = [(c, f) for c, f in zip(counts, f1) if c is not None and c > 0 and f is not None]
        if not pts:
            continue
        colour, marker = ROLE_STYLE[i if base else i + 1]  # at most 3 configurations
        ax.scatter([c for c, _ in pts], [f for _, f in pts], s=18, alpha=0.7, color=colour,
                   marker=marker, zorder=3,
                   label=f"{role}: {model} / {rule}")
        xs, ys = _binned_mean(pts)
        ax.plot(xs, ys, color=colour, lw=1.5, alpha=0.9, zorder=2)
        drawn = True
    if not drawn:
        return None
    for key, g in (("head_min", "head"), ("tail_max", "tail")):
        v = num(record.dataset.groups.get(key))
        if v is not None and v > 0:
            ax.axvline(v, color=GROUP_COLOURS[g], ls=":", lw=1)
            ax.text(v, 1.02, f"{key}={v:g}", color=GROUP_COLOURS[g], fontsize=8,
                    ha="center", transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("training documents per label (log)")
    ax.set_ylabel("test F1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=len(configs), frameon=False)
    ax.set_title("Per-label F1 vs training frequency (lines: mean over log-spaced bins)",
                 fontsize=10, pad=14)
    return _save(fig, path)


def _binned_mean(pts: list[tuple[float, float]], bins: int = 8) -> tuple[list[float], list[float]]:
    """Mean F1 in log-spaced frequency bins: a trend line robust to label noise."""
    lo, hi = math.log10(min(c for c, _ in pts)), math.log10(max(c for c, _ in pts))
    if hi - lo < 1e-9:
        return [pts[0][0]], [sum(f for _, f in pts) / len(pts)]
    edges = [lo + (hi - lo) * k / bins for k in range(bins + 1)]
    xs, ys = [], []
    for a, b in zip(edges, edges[1:]):
        inside = [f for c, f in pts if a <= math.log10(c) <= b]
        if inside:
            xs.append(10 ** ((a + b) / 2))
            ys.append(sum(inside) / len(inside))
    return xs, ys


def _bins_points(bins: dict) -> tuple[list[float], list[float], list[float]]:
    """(mean score, observed frequency, count) of the non-empty bins of one reliability diagram."""
    ms, fr, ct = (bins.get(k) or [] for k in ("mean_score", "frequency", "count"))
    pts = [(num(m), num(f), num(c)) for m, f, c in zip(ms, fr, ct)]
    pts = [(m, f, c) for m, f, c in pts if m is not None and f is not None and c]
    return [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]


def reliability(name: str, model: ModelResult, path: Path) -> Path | None:
    """Reliability diagrams of one model on test, raw vs calibrated scores: every
    (document, label) pair, and each document's five highest-scored labels."""
    cal = model.calibration
    if cal is None or not cal.reliability:
        return None
    rel = cal.reliability
    fig = Figure(figsize=(10.5, 4.2))
    axes = fig.subplots(1, 2)
    for ax, (part, title) in zip(axes, (("all", "all (document, label) pairs"),
                                        ("top5", "top-5 labels per document"))):
        ax.plot([0, 1], [0, 1], color="#a0aec0", lw=1, ls="--", label="perfect calibration")
        for kind, colour, marker in (("raw", "#dd6b20", "o"), ("calibrated", "#2b6cb0", "s")):
            xs, ys, counts = _bins_points((rel.get(kind) or {}).get(part) or {})
            if not xs:
                continue
            scores = cal.raw if kind == "raw" else cal.calibrated
            ece = num(scores.ece if part == "all" else scores.ece_top5)
            label = f"{kind} (ECE {ece:.3f})" if ece is not None else kind
            sizes = [12 + 8 * math.log10(c) for c in counts]
            ax.plot(xs, ys, color=colour, lw=1.5, label=label)
            ax.scatter(xs, ys, s=sizes, color=colour, marker=marker, zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean score in bin")
        ax.set_ylabel("observed frequency of true labels")
        ax.set_title(title, fontsize=11)
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.suptitle(f"{name}: reliability on test (15 uniform bins; marker area ~ log bin count)", fontsize=12)
    return _save(fig, path)


def log_x(ax) -> None:
    """A log x axis labelled at 1, 2, 5 × 10^k in plain numbers (throughputs often span
    less than a decade, where the default shows one tick or none)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def quality_vs_throughput(record: RunRecord, path: Path) -> Path | None:
    """Per objective: test F1 with its 95% interval (bars) and cross-fitted validation F1
    (hollow) against serving throughput on a log axis; dominated models drawn faded.
    None when fewer than one model has both a throughput and a figure."""
    from .recommend import candidates, mark_dominated

    panels = [(obj, mark_dominated(candidates(record, obj))) for obj in OBJECTIVES]
    if not any(c.docs_per_s and (c.test is not None or c.val is not None) for _, cs in panels for c in cs):
        return None
    fig = Figure(figsize=(PAGE_WIDTH * 0.8, 4.2))
    axes = fig.subplots(1, len(panels))
    for ax, (obj, cands) in zip(axes, panels):
        for i, c in enumerate(cands):
            if not c.docs_per_s:
                continue
            colour, alpha = _colour(i), (0.35 if c.dominated_by else 1.0)
            if c.test is not None:
                err = None if c.ci is None else [[max(0.0, c.test - c.ci[0])], [max(0.0, c.ci[1] - c.test)]]
                ax.errorbar([c.docs_per_s], [c.test], yerr=err, fmt=MARKERS[i % len(MARKERS)], color=colour,
                            alpha=alpha, capsize=4, markersize=8, label=c.name)
            if c.val is not None:
                ax.plot([c.docs_per_s], [c.val], MARKERS[i % len(MARKERS)], mfc="none", color=colour,
                        alpha=alpha, markersize=10)
            y = c.test if c.test is not None else c.val
            ax.annotate(c.name, (c.docs_per_s, y), textcoords="offset points", xytext=(7, 4), fontsize=9,
                        alpha=alpha)
        log_x(ax)
        ax.set_xlabel("serving throughput, docs/s (log)")
        ax.set_ylabel(f"{obj}-F1")
        ax.set_title(f"{obj}-F1 under each model's {obj}-chosen rule", fontsize=11)
        ax.grid(True, which="both", alpha=0.25)
    fig.suptitle("Quality vs throughput: filled = test (95% CI bars), hollow = cross-fitted validation; "
                 "faded = dominated", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def write_figures(record: RunRecord, run_dir: Path) -> dict[str, Path]:
    """Render every figure the data supports into ``run_dir/figures``; name -> path.

    Names: ``label_frequency``, ``per_label_f1``, ``group_f1``, ``f1_vs_frequency``, ``quality_vs_throughput``
    and ``curves:<model>`` per Keras model, ``reliability:<model>`` per calibrated model.
    Figures without data are skipped.
    """
    out_dir = Path(run_dir) / "figures"
    out: dict[str, Path] = {}
    for name, fn in (("label_frequency", label_frequency), ("per_label_f1", per_label_f1),
                     ("group_f1", group_f1), ("f1_vs_frequency", f1_vs_frequency),
                     ("quality_vs_throughput", quality_vs_throughput)):
        path = fn(record, out_dir / f"{name}.png")
        if path is not None:
            out[name] = path
    used: set[str] = set()
    for name, model in record.models.items():
        stem = f"curves_{slug(name)}"
        while stem in used:  # two names that slug alike (mlp[a] / mlp(a)) keep separate files
            stem += "_"
        used.add(stem)
        path = training_curves(name, model, out_dir / f"{stem}.png")
        if path is not None:
            out[f"curves:{name}"] = path
        path = reliability(name, model, out_dir / f"reliability_{stem[len('curves_'):]}.png")
        if path is not None:
            out[f"reliability:{name}"] = path
    return out
