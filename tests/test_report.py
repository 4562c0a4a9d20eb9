"""Report rendering on a synthetic RunRecord: content, best-of-column marks, embedding."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reports import render_html, screenshot, write_figures, write_report
from reports import record as R
from reports.html import RULE_METRICS, TEST_AND_RESOURCES, Cell, Row, comparison_rows, fmt, mark_best

CHROMIUM = Path("/usr/bin/chromium")
METRIC_KEYS = [m.key for m in R.TEST_METRICS]


def _metrics(rng: random.Random, n_labels: int, quality: float) -> dict:
    m = {k: round(min(1.0, max(0.0, quality + rng.uniform(-0.15, 0.1))), 4) for k in METRIC_KEYS}
    m["hamming_loss"] = round(rng.uniform(0.005, 0.05), 5)
    for g in R.GROUPS:
        m[f"{g}_f1_micro"] = round(quality * rng.uniform(0.4, 1.0), 4)
        m[f"{g}_f1_macro"] = round(quality * rng.uniform(0.2, 0.9), 4)
    m["head_labels"], m["medium_labels"], m["tail_labels"] = 5, n_labels - 11, 6
    return m


def make_record(n_labels: int = 20, seed: int = 0) -> dict:
    """Three variants: a Keras BCE MLP, a focal MLP, and an SVM without history."""
    rng = random.Random(seed)
    labels = [f"label<{i}>" if i == 3 else f"lab{i:03d}" for i in range(n_labels)]
    counts = sorted((int(3000 * math.exp(-0.35 * i * 20 / n_labels)) + 1 for i in range(n_labels)),
                    reverse=True)

    def rule(threshold, quality, fallback=()):
        return {"threshold": threshold, "val": _metrics(rng, n_labels, quality),
                "test": _metrics(rng, n_labels, quality),
                "per_label_f1_test": [round(rng.uniform(0, 1) * quality, 3) for _ in labels],
                "fallback_labels": list(fallback)}

    def history(epochs):
        return {k: [round(rng.uniform(0.1, 0.9), 3) for _ in range(epochs)]
                for k in ("loss", "val_loss", "binary_accuracy", "val_binary_accuracy",
                          "f1_micro", "val_f1_micro", "hamming_loss", "val_hamming_loss")}

    examples = [{"text": f"Document {i} about <b>markets</b> & prices " * 8,
                 "true": [labels[0], labels[i + 1]],
                 "top": [[labels[0], 0.97], [labels[5], 0.4], [labels[i + 1], 0.2]]} for i in range(3)]
    mlp = {"track": "mlp", "family": "baseline", "loss": "bce", "describe": {"hidden": [256]},
           "train_seconds": 12.3, "inference_docs_per_s": 5000.0, "size_bytes": 1.2e7,
           "parameters": 123456, "history": history(5),
           "rules": {"fixed": rule(0.5, 0.7), "global": rule(0.31, 0.72),
                     "per_label": rule([round(rng.uniform(0.1, 0.6), 2) for _ in labels], 0.75,
                                       fallback=[n_labels - 1, n_labels - 2])},
           "best_rule": "per_label", "examples": examples, "export_dir": "mlp_savedmodel"}
    focal = json.loads(json.dumps(mlp))
    focal.update(loss="focal", train_seconds=14.0, history=history(4), best_rule="global",
                 rules={"fixed": rule(0.5, 0.8), "global": rule(0.4, 0.85)})
    focal["rules"]["fixed"]["test"]["roc_auc_micro"] = None      # a null metric
    focal["rules"]["global"]["test"]["tail_f1_macro"] = None
    svm = {"track": "svm", "family": "baseline", "loss": None, "describe": {"C": 1.0},
           "train_seconds": 3.1, "inference_docs_per_s": None, "size_bytes": 4e6, "parameters": None,
           "history": {}, "rules": {"fixed": rule(0.5, 0.6), "balanced": rule(0.5, 0.62)},
           "examples": examples[:2], "export_dir": None}
    split = {"documents": 1000, "distinct_labels": n_labels, "label_cardinality": 1.24, "mean_words": 131.5}
    return {
        "run_id": "reuters-20261121-120501", "created": "2026-11-21T12:05:01",
        "command": "python run_all.py --dataset reuters --quick",
        "config": {"dataset": "reuters", "epochs": 5, "seed": 1, "quick": True},
        "versions": {"python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.15.1"},
        "dataset": {"name": "reuters", "source": "shared/data/reuters21578", "train": split,
                    "val": {**split, "documents": 200}, "test": {**split, "mean_words": None},
                    "labels": labels, "train_counts": counts,
                    "groups": {"head_min": 35, "tail_max": 8}, "split": "stratified"},
        "models": {"mlp": mlp, "mlp[focal]": focal, "svm": svm},
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    """Rendered once per module: figures are the slow part and the tests only read."""
    record = make_record()
    path = write_report(record, tmp_path_factory.mktemp("run"))
    return record, path, path.read_text(encoding="utf-8")


def _best_cells(html: str, col: str, rule: str) -> set[str]:
    """Models whose cell is marked best in the main (fixed-rule) comparison table."""
    pattern = re.compile(r'<td class="num best" data-table="test-fixed" data-col="%s" '
                         r'data-model="([^"]+)" data-rule="%s"' % (re.escape(col), re.escape(rule)))
    return set(pattern.findall(html))


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


def test_images_embedded_no_external_refs(report):
    _, path, html = report
    assert html.count("data:image/png;base64,") >= 6  # freq, per-label, group, scatter, 2 curves
    assert 'src="http' not in html and "href=\"http" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "file://" not in html and str(path.parent) not in html


def test_best_of_column_marked(report):
    record, _, html = report
    models = record["models"]
    for metric in R.TEST_METRICS:
        values = {n: R.num(m["rules"]["fixed"]["test"].get(metric.key)) for n, m in models.items()}
        values = {n: None if v is None else round(v, metric.digits) for n, v in values.items()}
        present = {n: v for n, v in values.items() if v is not None}
        target = (max if metric.higher_is_better else min)(present.values())
        expected = {n for n, v in present.items() if v == target} if len(present) > 1 else set()
        assert _best_cells(html, metric.key, "fixed") == expected, metric.key
    # cost columns: fastest training, highest throughput (svm's is null), smallest model
    assert _best_cells(html, "train_seconds", "fixed") == {"svm"}
    assert _best_cells(html, "inference_docs_per_s", "fixed") == {"mlp", "mlp[focal]"}  # a tie
    assert _best_cells(html, "size_mb", "fixed") == {"svm"}


def test_rule_table_marks_and_fallback(report):
    record, _, html = report
    configs = list(R.configurations(record))
    assert len(configs) == 7
    for metric in RULE_METRICS:
        split, key = ("val", metric.key[4:]) if metric.key.startswith("val_") else ("test", metric.key)
        values = [(n, r, R.num(res[split].get(key))) for n, r, res in configs]
        values = [(n, r, None if v is None else round(v, metric.digits)) for n, r, v in values]
        target = max(v for *_, v in values if v is not None)
        expected = {(n, r) for n, r, v in values if v == target}
        pattern = re.compile(r'<td class="num best" data-table="rules" data-col="%s" '
                             r'data-model="([^"]+)" data-rule="([^"]+)"' % re.escape(metric.key))
        assert set(pattern.findall(html)) == expected, metric.key
    assert "2 / 20" in html  # per_label fallback count
    assert "fell back to the global threshold" in html or "falls back to the global threshold" in html


def test_mark_best_at_shown_precision():
    metrics = [R.Metric("a", "A", digits=4), R.Metric("h", "H", higher_is_better=False, digits=4)]
    rows = [Row(n, [Cell("", a), Cell("", h)]) for n, a, h in
            (("x", 0.99591, 0.0041), ("y", 0.99589, None), ("z", 0.9, 0.00412))]
    mark_best(rows, metrics)
    assert [[c.best for c in r.cells] for r in rows] == [[True, True], [True, False], [False, True]]


def test_baseline_and_best_config():
    record = make_record()
    assert R.baseline_config(record) == ("mlp", "fixed")
    best = max(((n, r, res["val"]["f1_macro"]) for n, r, res in R.configurations(record)),
               key=lambda t: t[2])
    assert R.best_config(record) == best[:2]


def test_defensive_on_sparse_record(tmp_path):
    record = {"run_id": "x", "models": {"m": {"rules": {"fixed": {"test": {"f1_micro": None}}}},
                                        "broken": None}}
    html = write_report(record, tmp_path).read_text(encoding="utf-8")
    assert "m" in html and "—" in html
    assert write_report({}, tmp_path / "empty").is_file()
    assert fmt(float("nan")) == "—" and fmt("x") == "—" and fmt(1234.5, 1) == "1,234.5"


def test_comparison_rows_chosen_rule():
    rows = comparison_rows(make_record(), None)
    assert [r.rule for r in rows] == ["per_label", "global", "fixed"]
    assert len(rows[0].cells) == len(TEST_AND_RESOURCES)


def test_many_labels_figures(tmp_path):
    figures = write_figures(make_record(n_labels=120, seed=3), tmp_path)
    assert {"label_frequency", "per_label_f1", "group_f1", "f1_vs_frequency",
            "curves:mlp", "curves:mlp[focal]"} <= set(figures)
    assert "curves:svm" not in figures
    assert all(p.parent == tmp_path / "figures" and p.stat().st_size > 5000 for p in figures.values())


def test_cli_rerenders_only_report(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(make_record()), encoding="utf-8")
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


def test_best_config_uses_cross_fitted_validation_when_recorded():
    from reports.record import best_config

    record = {"models": {
        "mlp": {"rules": {"fixed": {"val": {"f1_macro": 0.40}, "val_cv": {"f1_macro": 0.40}},
                          "per_label": {"val": {"f1_macro": 0.55}, "val_cv": {"f1_macro": 0.35}}}},
        "svm": {"rules": {"fixed": {"val": {"f1_macro": 0.38}}}},
    }}
    assert best_config(record) == ("mlp", "fixed")  # in-sample 0.55 would have won
    del record["models"]["mlp"]["rules"]["per_label"]["val_cv"]
    assert best_config(record) == ("mlp", "per_label")  # older records: in-sample
