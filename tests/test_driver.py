"""End-to-end runs of run_all.py and the predict command, plus bad-input handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=900)


def check_run_folder(run_dir: Path, variants: list[str], n_labels: int | None = None) -> dict:
    record = json.loads((run_dir / "results.json").read_text())
    assert list(record["models"]) == variants
    assert record["versions"]["tensorflow"].startswith("2.21")
    if n_labels is not None:
        assert len(record["dataset"]["labels"]) == n_labels
    assert record["schema_version"] == 2 and record["status"] == "finished"
    for name, entry in record["models"].items():
        for rule in ("fixed", "global", "per_label", "scutfbr"):
            test = entry["rules"][rule]["test"]
            assert 0.0 <= test["f1_micro"] <= 1.0 and 0.0 <= test["hamming_loss"] <= 1.0
        assert entry["train_seconds"] > 0 and entry["inference_docs_per_s"] > 0
        assert len(entry["examples"][0]["top"]) == 3
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64" in html and all(v in html for v in variants)
    assert (run_dir / "figures").is_dir() and any((run_dir / "figures").glob("*.png"))
    assert (run_dir / "history").is_dir()
    return record


@pytest.mark.slow
def test_quick_run_on_arxiv_sample_then_predict(arxiv_sample, tmp_path):
    proc = run_cli("run_all.py", "--dataset", "arxiv", "--data-dir", str(arxiv_sample.parent),
                   "--models", "mlp,svm", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[mlp: train] done in" in proc.stderr  # one progress line per phase
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    record = check_run_folder(run_dir, ["mlp", "svm"])
    assert record["models"]["mlp"]["history"]["val_loss"]
    assert record["models"]["mlp"]["rules"]["fixed"]["test"]["f1_micro"] > 0.3  # learned something

    export = run_dir / "mlp_savedmodel"
    thresholds = json.loads((export / "thresholds.json").read_text())
    assert thresholds["best_rule"] == record["models"]["mlp"]["chosen_rule"]["micro"]
    pred = run_cli("-m", "mlbench", "predict", "--model", str(export), "--top-k", "3",
                   "Convolutional networks for image segmentation and object detection")
    assert pred.returncode == 0, pred.stderr[-2000:]
    lines = [l for l in pred.stdout.splitlines() if l.startswith("  ")]
    assert len(lines) == 3
    assert all(l.split()[-2] in record["dataset"]["labels"] for l in lines)

    # a second run never reuses the folder
    again = run_cli("run_all.py", "--dataset", "arxiv", "--data-dir", str(arxiv_sample.parent),
                    "--models", "svm", "--quick", "--out", str(tmp_path), "--no-report")
    assert again.returncode == 0, again.stderr[-2000:]
    assert Path(again.stdout.strip().splitlines()[-1]) != run_dir
    assert (run_dir / "report.html").exists()


@pytest.mark.slow
def test_quick_run_on_reuters(reuters_dir, tmp_path):
    proc = run_cli("run_all.py", "--dataset", "reuters", "--data-dir", str(reuters_dir),
                   "--models", "mlp,svm", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = check_run_folder(Path(proc.stdout.strip().splitlines()[-1]), ["mlp", "svm"], n_labels=90)
    assert record["dataset"]["stats"]["test"]["documents"] == 3019
    assert record["models"]["svm"]["rules"]["fixed"]["test"]["f1_micro"] > 0.75


def _bad(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "name, content, extra, expect",
    [
        ("missing.csv", None, [], "missing.csv"),
        ("nocol.csv", b"body,labels\nhello,a\n", [], "'text'"),
        ("empty.csv", b"text,labels\nhello,a\n,b\n", [], "row 3"),
        ("badlabels.csv", b"text,labels\nhello,\"['a', \"\n", [], "row 2"),
        ("latin1.csv", b"text,labels\nhello,a\ncaf\xe9 au lait,b\n", [], "row 3"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, name, content, extra, expect):
    path = tmp_path / name if content is None else _bad(tmp_path, name, content)
    proc = run_cli("run_all.py", "--dataset", str(path), "--models", "svm", "--out", str(tmp_path / "runs"),
                   *extra)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err_lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(err_lines) == 1 and name in err_lines[0] and expect in err_lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_unknown_model_and_device_errors(tmp_path):
    proc = run_cli("run_all.py", "--dataset", "arxiv", "--models", "nope", "--out", str(tmp_path))
    assert proc.returncode == 2 and "unknown model 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_predict_rejects_a_folder_that_is_not_a_model(tmp_path):
    proc = run_cli("-m", "mlbench", "predict", "--model", str(tmp_path), "hello")
    assert proc.returncode == 2 and "not an exported model" in proc.stderr


def test_new_run_dir_never_reuses(tmp_path):
    from mlbench.experiment import new_run_dir

    dirs = {new_run_dir(tmp_path, "reuters") for _ in range(3)}
    assert len(dirs) == 3 and all(d.is_dir() for d in dirs)
