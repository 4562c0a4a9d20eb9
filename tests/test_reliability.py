"""Reliability: kill-and-resume, two runs into one --out, the same seed twice.

The kill tests train the MLP on a synthetic corpus written to a CSV, SIGKILL the run
while its second epoch is in progress (under ``--protocol cv``: the second epoch of
fold 3), resume it with ``run_all.py --resume`` and compare the final test metrics with
an uninterrupted run of the same seed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from corpus_files import write_corpus_csv

#: kill-and-resume runs end to end: CI only (`-m "not slow"` leaves them out)
pytestmark = pytest.mark.slow

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1", "PYTHONUNBUFFERED": "1"}
#: TensorFlow on CPU with 2 intra-op threads: float sums may reorder between runs
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def corpus_csv(tmp_path_factory) -> Path:
    from mlbench.data.synthetic import synthetic_corpus

    corpus = synthetic_corpus(3000, seed=3, n_labels=12, vocab_size=6000, median_words=60)
    return write_corpus_csv(corpus, tmp_path_factory.mktemp("data") / "synthetic.csv")


def base_args(data: Path, out: Path, protocol: str = "holdout") -> list[str]:
    return ["run_all.py", "--dataset", str(data), "--label-sep", "|", "--models", "mlp,svm",
            "--no-tune", "--epochs", "4", "--bootstrap", "0", "--no-report", "--out", str(out),
            "--protocol", protocol]


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=600)


def test_kill_during_second_epoch_then_resume_matches_an_uninterrupted_run(corpus_csv, tmp_path):
    reference = run(base_args(corpus_csv, tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr[-3000:]
    ref = json.loads((Path(reference.stdout.split()[-1]) / "results.json").read_text())

    proc = subprocess.Popen([sys.executable, *base_args(corpus_csv, tmp_path / "killed")], cwd=REPO,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir, seen, deadline = None, [], time.monotonic() + 300
    for line in proc.stdout:  # Keras prints "Epoch 2/4" when the second epoch starts
        seen.append(line)
        if line.startswith("run folder: "):
            run_dir = Path(line.split(": ", 1)[1].strip())
        if line.startswith("Epoch 2/") or time.monotonic() > deadline:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and run_dir is not None, "".join(seen[-20:])
    partial = json.loads((run_dir / "results.json").read_text())
    assert partial["status"] == "running" and partial["models"] == {}
    assert (run_dir / "checkpoints").is_dir()

    resumed = run(["run_all.py", "--resume", str(run_dir), "--no-report"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 1/4" not in resumed.stdout  # restarted from the epoch-1 checkpoint
    final = json.loads((run_dir / "results.json").read_text())
    assert final["status"] == "finished"
    assert [e["event"] for e in final["events"]] == ["started", "interrupted", "resumed", "finished"]
    for variant in ("mlp", "svm"):
        for rule, result in ref["models"][variant]["rules"].items():
            for key, value in result["test"].items():
                got = final["models"][variant]["rules"][rule]["test"][key]
                assert got == pytest.approx(value, abs=TOLERANCE), (variant, rule, key)
    assert len(final["models"]["mlp"]["history"]["loss"]) == len(ref["models"]["mlp"]["history"]["loss"])


def test_resume_refuses_a_conflicting_option_and_a_missing_run(corpus_csv, tmp_path):
    proc = run(["run_all.py", "--resume", str(tmp_path / "nothing")])
    assert proc.returncode == 2 and "no results.json" in proc.stderr
    done = run(base_args(corpus_csv, tmp_path / "runs")[:-2] + ["--models", "svm", "--out", str(tmp_path / "runs")])
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = done.stdout.split()[-1]
    proc = run(["run_all.py", "--resume", run_dir, "--seed", "7"])
    assert proc.returncode == 2 and "seed" in proc.stderr and "conflicts" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_runs_into_one_out_never_share_a_folder_and_same_seed_same_metrics(corpus_csv, tmp_path):
    args = base_args(corpus_csv, tmp_path / "runs")
    args[args.index("mlp,svm")] = "svm"
    procs = [subprocess.Popen([sys.executable, *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][1][-2000:]
    dirs = [Path(o[0].split()[-1]) for o in outs]
    assert dirs[0] != dirs[1] and all(d.parent == tmp_path / "runs" for d in dirs)
    a, b = (json.loads((d / "results.json").read_text()) for d in dirs)
    assert a["models"]["svm"]["rules"] == b["models"]["svm"]["rules"]


def test_kill_in_fold_three_then_resume_starts_at_fold_three(corpus_csv, tmp_path):
    """--protocol cv: folds 1-2 are kept on disk, fold 3 restarts from its epoch checkpoint."""
    reference = run(base_args(corpus_csv, tmp_path / "ref", "cv"))
    assert reference.returncode == 0, reference.stderr[-3000:]
    ref = json.loads((Path(reference.stdout.split()[-1]) / "results.json").read_text())

    proc = subprocess.Popen([sys.executable, *base_args(corpus_csv, tmp_path / "killed", "cv")], cwd=REPO,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir, seen, deadline, in_fold_3 = None, [], time.monotonic() + 400, False
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("run folder: "):
            run_dir = Path(line.split(": ", 1)[1].strip())
        in_fold_3 = in_fold_3 or "fold 2/5 fitted" in line
        if (in_fold_3 and line.startswith("Epoch 2/")) or time.monotonic() > deadline:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and run_dir is not None and in_fold_3, "".join(seen[-20:])
    assert sorted(p.name for p in (run_dir / "folds" / "mlp").glob("*/fold*.npz")) == \
        ["fold0.npz", "fold1.npz"]

    resumed = run(["run_all.py", "--resume", str(run_dir), "--no-report"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "mlp defaults: fold 1/5 fitted" not in log and "mlp defaults: fold 2/5 fitted" not in log
    assert "mlp defaults: fold 3/5 fitted" in log
    first_epoch = next(l for l in resumed.stdout.splitlines() if l.startswith("Epoch "))
    assert first_epoch.startswith("Epoch 2/")  # fold 3 went on from its epoch-1 checkpoint
    final = json.loads((run_dir / "results.json").read_text())
    assert final["status"] == "finished" and final["models"]["mlp"]["protocol"] == "cv"
    for variant in ("mlp", "svm"):
        for rule, result in ref["models"][variant]["rules"].items():
            for key, value in result["test"].items():
                got = final["models"][variant]["rules"][rule]["test"][key]
                assert got == pytest.approx(value, abs=TOLERANCE), (variant, rule, key)
