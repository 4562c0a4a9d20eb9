"""One validated boundary: every bad option is one `error:` line, exit 2, before data or TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from mlbench.config import RunConfig
from mlbench.errors import InputError

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}

#: a probe that fails if the option check imported TensorFlow or read the dataset
PROBE = """
import sys
from mlbench_cli import main
code = main(sys.argv[1:])
assert "tensorflow" not in sys.modules, "TensorFlow was imported before the option was checked"
sys.exit(code)
"""

#: the same probe over many argument lists in ONE process (a Python start per case cost
#: most of this file's time): each case's exit code and stderr, and whether TensorFlow
#: had been imported by then (by this case or any before it)
BATCH_PROBE = """
import contextlib, io, json, sys
from mlbench_cli import main
out = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exit_:
            code = exit_.code
    out.append({"code": code, "stderr": err.getvalue(), "tensorflow": "tensorflow" in sys.modules})
print(json.dumps(out))
"""

BAD_RUN_OPTIONS = [
    (["--models", "nope"], "unknown model 'nope'"),
    (["--models", ","], "--models"),
    (["--loss", "hinge"], "--loss"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "-3"], "--batch-size"),
    (["--seed", "-1"], "--seed"),
    (["--seeds", "0"], "--seeds"),
    (["--bootstrap", "5"], "--bootstrap"),
    (["--head-min", "5", "--tail-max", "8"], "--tail-max"),
    (["--max-docs", "0"], "--max-docs"),
    (["--max-length", "2"], "--max-length"),
    (["--encoder", "./no/such/folder"], "--encoder"),
    (["--label-sep", ""], "--label-sep"),
    (["--select", "weighted"], "--select"),
    (["--device", "tpu"], "--device"),
    (["--epochs", "three"], "--epochs"),
]


def run(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=120)


def _one_error_line(proc: subprocess.CompletedProcess, expect: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def bad_run_results(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Every `BAD_RUN_OPTIONS` case run by `BATCH_PROBE`; case i writes under ROOT/i."""
    import json

    root = tmp_path_factory.mktemp("bad_options")
    cases = [["run", "--dataset", str(root / str(i) / "missing.csv"), "--out", str(root / str(i) / "runs"),
              *args] for i, (args, _) in enumerate(BAD_RUN_OPTIONS)]
    proc = subprocess.run([sys.executable, "-c", BATCH_PROBE, json.dumps(cases)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", range(len(BAD_RUN_OPTIONS)), ids=[a[0] for a, _ in BAD_RUN_OPTIONS])
def test_bad_run_option_fails_before_data_and_tensorflow(bad_run_results, case):
    # the dataset file does not exist either: the option must be reported first
    root, results = bad_run_results
    got = results[case]
    assert not got["tensorflow"], "TensorFlow was imported before the option was checked"
    _one_error_line(subprocess.CompletedProcess([], got["code"], "", got["stderr"]), BAD_RUN_OPTIONS[case][1])
    assert not (root / str(case) / "runs").exists()


def test_out_naming_a_file_is_one_error_line(tmp_path):
    (tmp_path / "taken").write_text("mine")
    proc = run(["run", "--dataset", "reuters", "--out", str(tmp_path / "taken")], tmp_path)
    _one_error_line(proc, "is a file")
    assert (tmp_path / "taken").read_text() == "mine"  # nothing a user wrote is touched


@pytest.mark.parametrize("args, expect", [
    (["predict", "--model", "/no/such/model", "x"], "/no/such/model"),
    (["predict", "--model", ".", "--top-k", "0", "x"], "--top-k"),
    (["report", "/no/such/run"], "no results.json"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_subcommand_input_is_one_error_line(tmp_path, args, expect):
    proc = subprocess.run([sys.executable, "-m", "mlbench", *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)
    _one_error_line(proc, expect)


def test_validate_accepts_the_defaults_and_quick_turns_tuning_off():
    cfg = RunConfig(dataset="reuters").validate()
    assert cfg.tuning
    assert not RunConfig(dataset="reuters", quick=True).tuning
    assert not RunConfig(dataset="reuters", tune=False).tuning
    with pytest.raises(InputError, match="--seeds"):
        RunConfig(dataset="reuters", seeds=True).validate()  # a bool is not a count
