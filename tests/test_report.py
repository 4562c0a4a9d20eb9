"""Report rendering on a synthetic RunRecord (built from mlbench.record's dataclasses):
the verdict tables, figures beside the right names, badges, health, search, embedding."""

from __future__ import annotations

import ast
import html as htmllib
import math
import random
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from mlbench.record import (
    LABEL_GROUPS, OBJECTIVES, RULES, SCHEMA_VERSION, TEST_METRICS, CalibrationResult, DatasetInfo,
    ErrorAnalysis, Metric, ModelResult, RuleResult, RunRecord, SearchResult, group_of,
)
from reports import render_html, screenshot, write_figures, write_report
from reports.format import num
from reports.html import (
    RULE_METRICS, TEST_AND_RESOURCES, Cell, Row, comparison_rows, fmt, mark_best, objective_rows,
)

CHROMIUM = Path("/usr/bin/chromium")
METRIC_KEYS = [m.key for m in TEST_METRICS]
REPORTS = Path(__file__).resolve().parents[1] / "reports"
METHOD = "95% intervals: percentile paired bootstrap over test documents (test fixture)."


def _metrics(rng: random.Random, n_labels: int, quality: float) -> dict:
    m = {k: round(min(1.0, max(0.0, quality + rng.uniform(-0.15, 0.1))), 4) for k in METRIC_KEYS}
    m["hamming_loss"] = round(rng.uniform(0.005, 0.05), 5)
    for g in LABEL_GROUPS:
        m[f"{g}_f1_micro"] = round(quality * rng.uniform(0.4, 1.0), 4)
        m[f"{g}_f1_macro"] = round(quality * rng.uniform(0.2, 0.9), 4)
    m["head_labels"], m["medium_labels"], m["tail_labels"] = 5, n_labels - 11, 6
    return m


def _choose_best(models: dict[str, ModelResult]) -> dict[str, dict[str, str]]:
    """As the experiment does: the highest cross-fitted val score among each model's chosen rule."""
    best = {}
    for obj, key in OBJECTIVES.items():
        name = max(models, key=lambda n: models[n].rules[models[n].chosen_rule[obj]].val_cv[key])
        best[obj] = {"model": name, "rule": models[name].chosen_rule[obj]}
    return best


def search_record() -> dict:
    """A `SearchResult.to_json()` as results.json holds it: a coordinate search that fitted 3 of 4 points."""
    grid = [{"hidden": [256], "dropout": 0.2}, {"hidden": [512, 256], "dropout": 0.2},
            {"hidden": [512, 256], "dropout": 0.5}]
    return {"track": "mlp", "objective": "micro", "metric": "f1_micro", "method": "coordinate",
            "evaluation": "validation (200 docs)", "space": {"hidden": [[256], [512, 256]], "dropout": [0.2, 0.5]},
            "budget": 3, "full_grid": 4, "grid": grid, "scores": [0.7, 0.71, 0.7312],
            "rules": ["global", "per_label", "global"], "chosen": grid[2], "score": 0.7312,
            "chosen_rule": "global", "seconds": 41.5}


def make_record(n_labels: int = 20, seed: int = 0, *, n_seeds: int = 3) -> RunRecord:
    """Three variants: a tuned BCE MLP with extra seeds, a focal MLP, an SVM with a notice."""
    rng = random.Random(seed)
    labels = [f"label<{i}>" if i == 3 else f"lab{i:03d}" for i in range(n_labels)]
    counts = sorted((int(3000 * math.exp(-0.35 * i * 20 / n_labels)) + 1 for i in range(n_labels)),
                    reverse=True)

    def rule(threshold, quality, fallback=()) -> RuleResult:
        test = _metrics(rng, n_labels, quality)
        ci = {k: [round(v - 0.03, 4), round(v + 0.02, 4)] for k, v in test.items()
              if k in METRIC_KEYS and k != "roc_auc_micro"}
        return RuleResult(threshold=threshold, fallback_labels=list(fallback),
                          val=_metrics(rng, n_labels, quality + 0.05), val_cv=_metrics(rng, n_labels, quality),
                          test=test, test_ci=ci,
                          per_label_f1_test=[round(rng.uniform(0, 1) * quality, 3) for _ in labels])

    def history(epochs: int) -> dict:
        return {k: [round(rng.uniform(0.1, 0.9), 3) for _ in range(epochs)]
                for k in ("loss", "val_loss", "binary_accuracy", "val_binary_accuracy",
                          "f1_micro", "val_f1_micro", "hamming_loss", "val_hamming_loss")}

    def seeds() -> list[dict]:
        return [{"seed": 43 + i, "micro": {"rule": "global", "f1_micro": round(rng.uniform(0.6, 0.8), 4)},
                 "macro": {"rule": "fixed", "f1_macro": round(rng.uniform(0.3, 0.5), 4)}}
                for i in range(n_seeds - 1)]

    examples = [{"text": f"Document {i} about <b>markets</b> & prices " * 8,
                 "true": [labels[0], labels[i + 1]],
                 "top": [[labels[0], 0.97], [labels[5], 0.4], [labels[i + 1], 0.2]]} for i in range(3)]
    per_label = [round(rng.uniform(0.1, 0.6), 2) for _ in labels]
    mlp = ModelResult(
        track="mlp", family="baseline", loss="bce", describe={"hidden": [256]},
        train_seconds=12.3, inference_docs_per_s=5000.0, size_bytes=12_000_000, parameters=123456,
        history=history(5),
        rules={"fixed": rule(0.5, 0.7), "global": rule(0.31, 0.72),
               "per_label": rule(per_label, 0.75, fallback=[n_labels - 1, n_labels - 2]),
               "scutfbr": rule(per_label, 0.74, fallback=[n_labels - 1])},
        chosen_rule={"micro": "per_label", "macro": "scutfbr"},
        examples=examples, export_dir="mlp_savedmodel",
        search=SearchResult.from_json(search_record()))
    mlp.seeds = seeds()
    focal = ModelResult(
        track="mlp", family="baseline", loss="focal", describe={"hidden": [256]}, train_seconds=14.0,
        inference_docs_per_s=5000.0, size_bytes=12_000_000, parameters=123456, history=history(4),
        rules={"fixed": rule(0.5, 0.8), "global": rule(0.4, 0.85)},
        chosen_rule={"micro": "global", "macro": "fixed"}, examples=examples, export_dir="mlp_focal")
    focal.seeds = seeds()
    focal.rules["fixed"].test["roc_auc_micro"] = None      # a null metric
    focal.rules["global"].test["tail_f1_macro"] = None
    svm = ModelResult(
        track="svm", family="baseline", describe={"C": 1.0}, train_seconds=3.1, size_bytes=4_000_000,
        rules={"fixed": rule(0.5, 0.6), "global": rule(0.45, 0.62), "per_label": rule(per_label, 0.63),
               "scutfbr": rule(per_label, 0.64)},
        chosen_rule={"micro": "fixed", "macro": "per_label"}, examples=examples[:2],
        notices=["LinearSVC did not converge for 3 of 20 labels <max_iter=1000>"])
    mlp.calibration, svm.calibration = (CalibrationResult.from_json(calibration_record(rng)) for _ in range(2))
    mlp.errors = ErrorAnalysis.from_json(errors_record(labels, explained=True))
    svm.errors = ErrorAnalysis.from_json(errors_record(labels, explained=False))
    models = {"mlp": mlp, "mlp[focal]": focal, "svm": svm}
    best = _choose_best(models)
    not_worse = {obj: {n: n == best[obj]["model"] or n == "mlp" for n in models} for obj in OBJECTIVES}
    split = {"documents": 1000, "distinct_labels": n_labels, "label_cardinality": 1.24, "mean_words": 131.5}
    health = {"findings": [
        {"check": "near_duplicates", "severity": "info", "count": 4, "message": "4 near-duplicate pairs",
         "examples": ["train 3 ~ train 9"]},
        {"check": "cross_split_duplicates", "severity": "error", "count": 2,
         "message": "2 test documents also in <train>", "examples": ["test 1 = train 5", "test 7 = train 2"]},
        {"check": "rare_labels", "severity": "warning", "count": 6, "message": "6 labels under 5 docs",
         "examples": labels[-6:]}],
        "stats": {"label_shift_jsd": {"train-test": 0.012}}, "seconds": 0.42}
    dataset = DatasetInfo(
        name="reuters", labels=labels, train_counts=counts, groups={"head_min": 35, "tail_max": 8},
        label_groups=[group_of(c, 35, 8) for c in counts],
        stats={"name": "reuters", "source": "shared/data/reuters21578", "train": split,
               "val": {**split, "documents": 200}, "test": {**split, "mean_words": None},
               "split": "given ModApte split; val drawn from train"},
        health=health)
    return RunRecord(
        run_id="reuters-20261121-120501", created="2026-11-21T12:05:01",
        command="python run_all.py --dataset reuters --quick",
        config={"dataset": "reuters", "epochs": 5, "seed": 42, "quick": True, "seeds": n_seeds,
                "bootstrap": 1000},
        versions={"python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.15.1"},
        dataset=dataset, models=models, best=best, not_worse=not_worse, significance_method=METHOD,
        total_seconds=99.0)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    """Rendered once per module (figures are the slow part; the tests only read).

    The typed RunRecord goes in, as the experiment passes it; tests read its JSON dict.
    """
    record = make_record()
    path = write_report(record, tmp_path_factory.mktemp("run"))
    return record.to_json(), path, path.read_text(encoding="utf-8")


def calibration_record(rng) -> dict:
    """A `ModelResult.calibration` as results.json holds it (`CalibrationResult`)."""
    def bins() -> dict:
        edges = [i / 15 for i in range(16)]
        mean = [round((i + 0.5) / 15, 3) for i in range(15)]
        return {"edges": edges, "mean_score": mean[:14] + [None],
                "frequency": [round(min(1.0, m * rng.uniform(0.5, 1.2)), 3) for m in mean[:14]] + [None],
                "count": [rng.randint(1, 5000) for _ in range(14)] + [0]}

    raw = {"brier": 0.0123, "log_loss": 0.0456, "ece": 0.0071, "ece_top5": 0.1234}
    cal = {"brier": 0.0111, "log_loss": 0.0401, "ece": 0.0032, "ece_top5": 0.0456}
    return {"method": "auto", "maps": {"platt": 15, "isotonic": 5}, "bins": 15, "raw": raw, "calibrated": cal,
            "reliability": {k: {"all": bins(), "top5": bins()} for k in ("raw", "calibrated")}}


def errors_record(labels: list[str], explained: bool) -> dict:
    """A `ModelResult.errors` as results.json holds it (`mlbench.evaluation.errors.error_analysis`)."""
    why = [["<b>markets</b>", 1.25], ["prices", -0.5]] if explained else None
    ex = {"doc": 3, "text": "Document about <b>markets</b> & prices", "true": [labels[3]],
          "predicted": [labels[0]], "score": 0.93, "threshold": 0.4, "label": labels[0], "explanation": why}
    return {"rule": "global", "errors": {"false_negatives": 40, "false_positives": 31},
            "confusions": [{"true": labels[3], "predicted": labels[0], "count": 7, "examples": [ex]}],
            "false_negatives": [{**ex, "label": labels[3], "train_count": 2, "score": 0.2}],
            "false_positives": [ex],
            "breakdown": {"single": {"documents": 2583, "f1_micro": 0.9012, "f1_macro": 0.41},
                          "multi": {"documents": 436, "f1_micro": 0.7734, "f1_macro": 0.35}},
            "overfitted_tokens": [["<b>markets</b>", 1.25, 1]] if explained else [],
            "explained": 3 if explained else 0,
            "explain_note": None if explained else "no explanations: no explainer for a FastText track"}


# ------------------------------------------------------------------------------ HTML readers
_CELL = re.compile(r'<td class="num( best)?" data-table="([^"]+)" data-col="([^"]+)" data-model="([^"]+)"'
                   r'(?: data-rule="([^"]*)")?(?: title="[^"]*")?>(.*?)</td>', re.S)


def cells(html: str, table: str) -> dict[tuple[str, str], dict]:
    """(model, column) -> {text, ci, best, rule} for one table's metric cells."""
    out = {}
    for best, tab, col, model, rule, inner in _CELL.findall(html):
        if tab != table:
            continue
        ci = re.search(r'<span class="ci">(.*?)</span>', inner)
        text = re.sub(r"<[^>]+>", "", re.sub(r'<span class="ci">.*?</span>', "", inner))
        out[(htmllib.unescape(model), col)] = {"text": htmllib.unescape(text), "best": bool(best),
                                               "ci": ci.group(1) if ci else "", "rule": rule}
    return out


def badges(html: str, table: str) -> dict[str, list[str]]:
    """model -> badge texts beside its name in one comparison table."""
    pattern = re.compile(r'<th class="left model" data-table="%s" data-name="([^"]+)">(.*?)</th>'
                         % re.escape(table), re.S)
    return {htmllib.unescape(n): re.findall(r'data-badge="([^"]+)"', inner)
            for n, inner in pattern.findall(html)}


def _best_cells(html: str, col: str, table: str = "test-fixed") -> set[str]:
    return {m for (m, c), v in cells(html, table).items() if c == col and v["best"]}


# ------------------------------------------------------------------------------ tests
def test_report_contents(report):
    record, path, html = report
    assert path.name == "report.html"
    for name in record["models"]:
        assert f'data-model="{name}"' in html
    assert "reuters-20261121-120501" in html and record["command"] in html
    assert "keras" in html and "3.15.1" in html
    # escaped, never raw markup from data
    assert "<b>markets</b>" not in html and "&lt;b&gt;markets&lt;/b&gt;" in html
    assert "label&lt;3&gt;" in html and "label<3>" not in html
    assert "—" in html  # nulls render as a dash
    assert "3 seeds" in html
    # the split statistics come from dataset.stats, notes included
    assert "given ModApte split; val drawn from train" in html and "shared/data/reuters21578" in html
    assert re.search(r"<th class=\"left\">val</th><td class=\"num\">200</td>", html)


def test_calibration_table_and_reliability_figures(report):
    record, _, html = report
    cal = re.findall(r'data-table="calibration" data-col="([^"]+)" data-model="([^"]+)">(.*?)</td>', html)
    got = {(htmllib.unescape(m), c): htmllib.unescape(t) for c, m, t in cal}
    assert {m for m, _ in got} == {"mlp", "svm"}  # mlp[focal] has no calibration record
    for name in ("mlp", "svm"):
        c = record["models"][name]["calibration"]
        for key in ("ece_top5", "ece", "brier", "log_loss"):
            assert got[(name, key)] == f"{c['raw'][key]:.4f} → {c['calibrated'][key]:.4f}"
    assert html.count("data-reliability=") == 2
    assert "15 uniform score bins (Guo et al. 2017)" in html and "five highest-scored" in html


def test_error_analysis_section(report):
    record, _, html = report
    section = html[html.index('<section id="errors">'):html.index('<section id="repro">')]
    assert 'data-errors-of="mlp"' in section and 'data-errors-of="svm"' in section
    assert 'data-errors-of="mlp[focal]"' not in section
    b = record["models"]["mlp"]["errors"]["breakdown"]
    assert f'data-breakdown="single-micro">{b["single"]["f1_micro"]:.3f}<' in section
    assert f'data-breakdown="multi-macro">{b["multi"]["f1_macro"]:.3f}<' in section
    assert "2,583" in section and "436" in section
    assert 'data-explain-note="svm">no explanations: no explainer for a FastText track' in section
    assert "&lt;b&gt;markets&lt;/b&gt;<span class=\"s\">+1.25</span>" in section
    assert "<b>markets</b>" not in section


def test_images_embedded_no_external_refs(report):
    _, path, html = report
    assert html.count("data:image/png;base64,") >= 6  # freq, per-label, group, scatter, 2 curves
    assert 'src="http' not in html and "href=\"http" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "file://" not in html and str(path.parent) not in html


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_objective_table_shows_each_models_chosen_rule_figures(report, objective):
    record, _, html = report
    table = cells(html, f"test-{objective}")
    for name, model in record["models"].items():
        rule = model["chosen_rule"][objective]
        result = model["rules"][rule]
        for metric in TEST_METRICS:
            cell = table[(name, metric.key)]
            assert cell["rule"] == rule
            assert cell["text"] == fmt(result["test"].get(metric.key), metric.digits), (name, metric.key)
            lo_hi = result["test_ci"].get(metric.key)
            expected_ci = "" if lo_hi is None else f"{lo_hi[0]:.{metric.digits}f}–{lo_hi[1]:.{metric.digits}f}"
            assert cell["ci"] == expected_ci, (name, metric.key)
        rule_cell = re.search(r'data-table="test-%s" data-rule-of="%s">([^<]*)</td>'
                              % (objective, re.escape(name)), html)
        assert rule_cell and rule_cell.group(1) == rule
    # the cell the brief names: macro table, model X, its macro-chosen rule's test macro-F1
    svm = record["models"]["svm"]
    if objective == "macro":
        assert table[("svm", "f1_macro")]["text"] == fmt(svm["rules"][svm["chosen_rule"]["macro"]]["test"]["f1_macro"])
        assert svm["chosen_rule"]["macro"] != svm["chosen_rule"]["micro"]  # the case that can go wrong


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_best_and_near_best_badges_follow_the_record(report, objective):
    record, _, html = report
    got = badges(html, f"test-{objective}")
    best = record["best"][objective]["model"]
    for name in record["models"]:
        expected = ["best"] if name == best else (["≈ best"] if record["not_worse"][objective][name] else [])
        assert got[name] == expected, (objective, name)
    assert METHOD in html
    assert any(b == ["≈ best"] for b in got.values())  # the fixture exercises the badge


def test_near_best_badges_move_with_not_worse(tmp_path):
    record = make_record()
    record.not_worse["micro"] = {n: n == "svm" or n == record.best["micro"]["model"] for n in record.models}
    record.not_worse.pop("macro")
    html = render_html(record, {})
    micro, macro = badges(html, "test-micro"), badges(html, "test-macro")
    best = record.best["micro"]["model"]
    assert micro == {n: ["best"] if n == best else ["≈ best"] if n == "svm" else [] for n in record.models}
    assert all("≈ best" not in b for b in macro.values())  # nothing tested → no claims


def test_headline_names_best_per_objective_with_its_own_figures(report):
    record, _, html = report
    for obj in OBJECTIVES:
        cfg = record["best"][obj]
        result = record["models"][cfg["model"]]["rules"][cfg["rule"]]
        block = re.search(r'<div data-headline="%s">(.*?)</div>' % obj, html, re.S).group(1)
        assert f"<strong>{htmllib.escape(cfg['model'])}</strong> with rule <strong>{cfg['rule']}</strong>" in block
        assert f"val micro-F1 {fmt(result['val_cv']['f1_micro'])}" in block
        assert f"val macro-F1 {fmt(result['val_cv']['f1_macro'])}" in block
        assert f"test micro-F1 {fmt(result['test']['f1_micro'])}" in block
        lo, hi = result["test_ci"]["f1_macro"]
        assert f"test macro-F1 {fmt(result['test']['f1_macro'])} (95% CI {lo:.3f}–{hi:.3f})" in block


def test_seed_mean_and_std(report):
    record, _, html = report
    for obj, key in OBJECTIVES.items():
        for name, model in record["models"].items():
            cell = re.search(r'data-table="test-%s" data-seeds-of="%s">([^<]*)</td>'
                             % (obj, re.escape(name)), html).group(1)
            if not model["seeds"]:
                assert cell == "single run"
                continue
            values = [model["rules"][model["chosen_rule"][obj]]["test"][key]]
            values += [s[obj][key] for s in model["seeds"]]
            assert cell == (f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} "
                            f"(n={len(values)})"), (obj, name)


def test_no_seed_column_for_one_seed():
    html = render_html(make_record(n_seeds=1), {})
    assert "data-seeds-of" not in html and "1 seed" in html and "over 1 seeds" not in html


def test_fixed_rule_table_in_details_marks_best(report):
    record, _, html = report
    assert re.search(r"<details>\s*<summary>Every model at the fixed 0.5 rule</summary>", html)
    table = cells(html, "test-fixed")
    models = record["models"]
    for metric in TEST_METRICS:
        values = {n: num(m["rules"]["fixed"]["test"].get(metric.key)) for n, m in models.items()}
        for n, v in values.items():
            assert table[(n, metric.key)]["text"] == fmt(v, metric.digits)
        values = {n: None if v is None else round(v, metric.digits) for n, v in values.items()}
        present = {n: v for n, v in values.items() if v is not None}
        target = (max if metric.higher_is_better else min)(present.values())
        expected = {n for n, v in present.items() if v == target} if len(present) > 1 else set()
        assert _best_cells(html, metric.key) == expected, metric.key
    # cost columns: fastest training, highest throughput (svm's is null), smallest model
    assert _best_cells(html, "train_seconds") == {"svm"}
    assert _best_cells(html, "inference_docs_per_s") == {"mlp", "mlp[focal]"}  # a tie
    assert _best_cells(html, "size_mb") == {"svm"}


def test_rule_table_marks_badges_and_fallback(report):
    record, _, html = report
    configs = [(n, r, res) for n, m in record["models"].items() for r, res in m["rules"].items()]
    assert len(configs) == 10 and {r for _, r, _ in configs} == set(RULES)
    for metric in RULE_METRICS:
        split, key = ("val_cv", metric.key[4:]) if metric.key.startswith("val_") else ("test", metric.key)
        values = [(n, r, num(res[split].get(key))) for n, r, res in configs]
        values = [(n, r, None if v is None else round(v, metric.digits)) for n, r, v in values]
        target = max(v for *_, v in values if v is not None)
        expected = {(n, r) for n, r, v in values if v == target}
        pattern = re.compile(r'<td class="num best" data-table="rules" data-col="%s" '
                             r'data-model="([^"]+)" data-rule="([^"]+)"' % re.escape(metric.key))
        assert set(pattern.findall(html)) == expected, metric.key
    section = html[html.index('id="rules"'):html.index('id="curves"')]
    rows = re.findall(r'<th class="left model">([^<]+)</th>\s*<td class="left">([a-z_]+)(.*?)</td>', section, re.S)
    got = {(htmllib.unescape(n), r): re.findall(r'data-badge="([^"]+)"', b) for n, r, b in rows}
    for name, model in record["models"].items():
        for rule in model["rules"]:
            chosen = {f"chosen ({o})" for o in OBJECTIVES if model["chosen_rule"][o] == rule}
            best = {f"best ({o})" for o in OBJECTIVES if record["best"][o] == {"model": name, "rule": rule}}
            assert {b for b in got[(name, rule)] if b != "baseline"} == chosen | best, (name, rule)
    assert "baseline" in got[("mlp", "fixed")]
    assert "2 / 20" in html and "1 / 20" in html  # per_label and scutfbr fallback counts
    assert "falls back to the global threshold" in html and "Fan &amp; Lin (2007)" in html


def test_model_variants_rules_and_notices(report):
    record, _, html = report
    for name, model in record["models"].items():
        for obj in OBJECTIVES:
            m = re.search(r'data-variant-rule="%s" data-model="%s">([^<]*)</td>' % (obj, re.escape(name)), html)
            assert m and m.group(1) == model["chosen_rule"][obj]
        notices = re.search(r'data-notices-of="%s">(.*?)</td>' % re.escape(name), html, re.S).group(1)
        if model["notices"]:
            assert all(htmllib.escape(n) in notices for n in model["notices"])
        else:
            assert "none" in notices
    assert "&lt;max_iter=1000&gt;" in html


def test_health_section(report, tmp_path):
    record, _, html = report
    section = html[html.index('id="health"'):html.index('id="comparison"')]
    checks = re.findall(r'<tr data-check="([^"]+)"><td class="left"><span class="badge (\w+)">', section)
    assert checks == [("cross_split_duplicates", "error"), ("rare_labels", "warning"),
                      ("near_duplicates", "info")]  # most severe first
    assert "1 error, 1 warning, 1 note (0.42 s)" in section
    assert "2 test documents also in &lt;train&gt;" in section and "test 7 = train 2" in section
    assert "label_shift_jsd" in section  # other keys are shown, not dropped
    empty = make_record()
    empty.dataset.health = {"findings": [], "seconds": 0.1}
    assert "No findings" in render_html(empty, {})
    empty.dataset.health = None
    assert "health check was not recorded" in render_html(empty, {})
    empty.dataset.health = {"findings": [None, {"severity": "odd", "message": "x"}]}
    assert '<span class="badge info">odd</span>' in render_html(empty, {})


def test_search_section(report):
    record, _, html = report
    section = html[html.index('id="search"'):html.index('id="rules"')]
    assert re.search(r'data-search-of="svm">not tuned \(--no-tune / --quick, or the track declares no '
                     r'search space\)', section)
    mlp = section[section.index('data-search-of="mlp"'):section.index("<h3>mlp[focal]</h3>")]
    assert "candidates: dropout</th><td>0.2, 0.5" in mlp and "candidates: hidden</th><td>[256], [512, 256]" in mlp
    assert "<code>hidden=[512, 256]</code>, <code>dropout=0.5</code>" in mlp
    assert "0.7312 (f1_micro, best rule global)" in mlp
    assert "coordinate: 3 of 4 grid points fitted (budget 3), scored on validation (200 docs)" in mlp
    assert "41.5" in mlp and "3 points tried" in mlp
    rows = re.findall(r'<tr>((?:<td class="num">[^<]*</td>)+)<td class="num">([^<]*)</td>'
                      r'<td class="left">([a-z_]+)(<span[^>]*>chosen)?', mlp)
    assert [(s, r, bool(c)) for _, s, r, c in rows] == [
        ("0.7000", "global", False), ("0.7100", "per_label", False), ("0.7312", "global", True)]
    assert re.findall(r'<td class="num">([^<]*)</td>', rows[0][0]) == ["[256]", "0.2"]


def test_search_renders_a_partial_record():
    """A search record missing fields (an older or a partial one) reads back with defaults
    and renders; a point without a score reads as a dash."""
    data = make_record().to_json()
    data["models"]["svm"]["search"] = {"space": {"C": [0.1, 1]}, "chosen": {"C": 1},
                                       "grid": [{"C": 0.1}, {"C": 0.5}, {"C": 1}], "scores": [0.5],
                                       "sampler": "new-key"}
    record = RunRecord.from_json(data)
    assert record.models["svm"].search == SearchResult(space={"C": [0.1, 1]}, chosen={"C": 1},
                                                       grid=[{"C": 0.1}, {"C": 0.5}, {"C": 1}], scores=[0.5])
    html = render_html(record, {})
    section = html[html.index('data-search-of="svm"'):html.index('id="rules"')]
    assert "candidates: C</th><td>0.1, 1" in section and "<code>C=1</code>" in section
    assert "3 points tried" in section and "(budget none)" in section


def test_search_fixture_matches_the_search_record():
    """The fixture above has exactly SearchResult's fields, so a schema change shows up here."""
    from dataclasses import fields

    assert set(search_record()) == {f.name for f in fields(SearchResult)}
    assert SearchResult.from_json(search_record()).to_json() == search_record()


def test_mark_best_at_shown_precision():
    metrics = [Metric("a", "A", digits=4), Metric("h", "H", higher_is_better=False, digits=4)]
    rows = [Row(n, [Cell("", a), Cell("", h)]) for n, a, h in
            (("x", 0.99591, 0.0041), ("y", 0.99589, None), ("z", 0.9, 0.00412))]
    mark_best(rows, metrics)
    assert [[c.best for c in r.cells] for r in rows] == [[True, True], [True, False], [False, True]]


def test_baseline_and_best_config_read_the_record():
    record = make_record()
    assert record.baseline_config() == ("mlp", "fixed")
    for obj in OBJECTIVES:
        assert record.best_config(obj) == (record.best[obj]["model"], record.best[obj]["rule"])
    record.best["macro"] = {"model": "svm", "rule": "no_such_rule"}
    assert record.best_config("macro") is None  # a stale pointer is not shown as the best


def test_objective_rows_chosen_rule():
    record = make_record()
    assert [r.rule for r in objective_rows(record, "micro")] == ["per_label", "global", "fixed"]
    assert [r.rule for r in objective_rows(record, "macro")] == ["scutfbr", "fixed", "per_label"]
    assert [r.rule for r in comparison_rows(record)] == ["fixed"] * 3
    assert len(objective_rows(record, "macro")[0].cells) == len(TEST_AND_RESOURCES)


def test_defensive_on_sparse_record(tmp_path):
    """Missing metrics, a chosen rule or a best pointer the record does not hold, no seeds."""
    record = RunRecord.from_json({
        "run_id": "x", "created": "", "command": "", "versions": {}, "schema_version": SCHEMA_VERSION,
        "models": {"m": {"track": "m", "family": "f", "rules": {"fixed": {"threshold": 0.5,
                                                                           "test": {"f1_micro": None}}},
                         "chosen_rule": {"micro": "gone"}}},
        "best": {"micro": {"model": "nope"}}, "not_worse": {"micro": {}},
        "config": {"seeds": 4}, "dataset": {"name": "", "labels": [], "train_counts": [], "groups": {},
                                            "label_groups": [], "health": "not a dict"}})
    html = write_report(record, tmp_path).read_text(encoding="utf-8")
    assert "m" in html and "—" in html and "single run" in html
    assert fmt(float("nan")) == "—" and fmt("x") == "—" and fmt(1234.5, 1) == "1,234.5"


def test_empty_record_renders(tmp_path):
    path = write_report(RunRecord("", "", "", {}, {}, DatasetInfo("", [], [], {}, [])), tmp_path / "empty")
    html = path.read_text(encoding="utf-8")
    assert path.is_file() and "Model comparison" in html and "health check was not recorded" in html


def test_sample_like_record_round_trips(tmp_path):
    """A record shaped like a real --quick run (no bootstrap, no search, no health) loads and renders."""
    record = make_record(n_seeds=1)
    record.not_worse, record.significance_method, record.dataset.health = {}, "", None
    for m in record.models.values():
        m.search, m.seeds = None, []
        for r in m.rules.values():
            r.test_ci = {}
    record.save(tmp_path)
    html = write_report(RunRecord.load(tmp_path), tmp_path).read_text(encoding="utf-8")
    assert "No significance test in this run" in html and 'data-badge="≈ best"' not in html
    assert '<span class="ci">' not in html
    assert html.count("not tuned (--no-tune") == 3


def test_report_imports_only_record_and_naming_from_mlbench():
    """The layer rule: the report reads the RunRecord, not the code that produced it."""
    for path in REPORTS.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                if name.split(".")[0] == "mlbench" and path.name != "__main__.py":
                    assert name in ("mlbench.record", "mlbench.naming"), (path.name, name)


def test_many_labels_figures(tmp_path):
    figures = write_figures(make_record(n_labels=120, seed=3), tmp_path)
    assert {"label_frequency", "per_label_f1", "group_f1", "f1_vs_frequency",
            "curves:mlp", "curves:mlp[focal]"} <= set(figures)
    assert "curves:svm" not in figures
    assert all(p.parent == tmp_path / "figures" and p.stat().st_size > 5000 for p in figures.values())


def test_thousands_of_labels_get_distributions_and_best_worst_tables(tmp_path):
    """Past `MANY_LABELS` the per-label figures are histograms of page height (not dozens
    of stacked panels), and the report lists each model's best and worst labels, read
    from the record."""
    from PIL import Image

    from reports import figures as F
    from reports.html import EXTREMES, label_extremes

    n = 5000
    assert n > F.MANY_LABELS
    record = make_record(n_labels=n, seed=5, n_seeds=1)
    data = record.to_json()
    for draw in (F.label_frequency, F.per_label_f1):
        path = draw(record, tmp_path / f"{draw.__name__}.png")
        with Image.open(path) as img:
            assert img.size[1] < 600, (draw.__name__, img.size)  # one panel, whatever the label count
    rows = label_extremes(record)
    names, counts = data["dataset"]["labels"], data["dataset"]["train_counts"]
    for row in rows:
        model = data["models"][row["name"]]
        f1 = model["rules"][row["rule"]]["per_label_f1_test"]
        assert f1[names.index(row["top"][0]["label"])] == max(f1)
        assert f1[names.index(row["bottom"][0]["label"])] == min(f1)
        assert float(row["top"][0]["f1"]) == pytest.approx(max(f1), abs=5e-4)
        assert float(row["bottom"][0]["f1"]) == pytest.approx(min(f1), abs=5e-4)
        assert len(row["top"]) == len(row["bottom"]) == EXTREMES and row["n"] == sum(c > 0 for c in counts)
    html = write_report(record, tmp_path).read_text(encoding="utf-8")
    assert html.count('class="extremes"') == len(rows) == len(data["models"])
    assert "best and worst of" in html and "How many labels reach each test F1" in html
    assert label_extremes(make_record(n_labels=40)) == []  # few labels: the dot plot


def test_per_label_figure_uses_micro_chosen_rule(monkeypatch, tmp_path):
    """The per-label plot draws each model's micro-chosen rule, and the f1-vs-frequency plot
    draws the baseline plus the best configuration of each objective."""
    from reports import figures as F

    record = make_record()
    drawn: list[tuple[str, str]] = []
    real = F.label_f1
    monkeypatch.setattr(F, "label_f1", lambda m, rule: drawn.append(
        (next(n for n, x in record.models.items() if x is m), rule)) or real(m, rule))
    F.per_label_f1(record, tmp_path / "a.png")
    assert drawn == [(n, m.chosen_rule["micro"]) for n, m in record.models.items()]
    drawn.clear()
    F.f1_vs_frequency(record, tmp_path / "b.png")
    expected = [("mlp", "fixed")] + [(b["model"], b["rule"]) for b in record.best.values()]
    assert drawn == list(dict.fromkeys(expected))


def test_cli_rerenders_only_report(tmp_path):
    make_record().save(tmp_path)
    (tmp_path / "keep.txt").write_text("untouched", encoding="utf-8")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "reports", str(tmp_path)], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "keep.txt", "report.html", "results.json"]
    assert (tmp_path / "keep.txt").read_text(encoding="utf-8") == "untouched"


def test_screenshot_missing_chromium(tmp_path):
    html = tmp_path / "r.html"
    html.write_text("<p>x</p>", encoding="utf-8")
    with pytest.raises(RuntimeError, match="Chromium not found"):
        screenshot(html, tmp_path / "x.png", chromium="/nonexistent/chromium-xyz")


def test_screenshot_name_stays_callable_after_cli_import(tmp_path):
    import reports
    import reports.screenshot as cli

    html = tmp_path / "r.html"
    html.write_text("<p>x</p>", encoding="utf-8")
    for fn in (reports.screenshot, cli):
        with pytest.raises(RuntimeError, match="Chromium not found"):
            fn(html, tmp_path / "x.png", chromium="/nonexistent/chromium-xyz")
    assert cli.main([str(html), str(tmp_path / "x.png"), "--chromium", "/nonexistent/c"]) == 1


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed")
def test_screenshot(report, tmp_path):
    _, path, _ = report
    png = screenshot(path, tmp_path / "shot.png", width=1400, height=3000, chromium=str(CHROMIUM))
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
