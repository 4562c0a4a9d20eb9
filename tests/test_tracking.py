"""`mlbench run --mlflow --tensorboard DIR` on the real arXiv sample (quick MLP): the MLflow
SQLite store read back with MlflowClient, the logged pyfunc called on raw strings, and the
Keras TensorBoard event files read back with TensorFlow's summary iterator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlbench.record import OBJECTIVES, RunRecord

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, request) -> tuple[Path, Path, Path]:
    """One quick run (2 epochs of the MLP) logged to the default SQLite store under --out."""
    from conftest import ARXIV_SAMPLE

    if not ARXIV_SAMPLE.exists():
        pytest.skip(f"real data not found at {ARXIV_SAMPLE}")
    out = tmp_path_factory.mktemp("runs")
    board = out.parent / "tb"
    cmd = [sys.executable, "run_all.py", "--dataset", "arxiv", "--data-dir", str(ARXIV_SAMPLE.parent),
           "--models", "mlp", "--quick", "--epochs", "2", "--bootstrap", "200", "--out", str(out),
           "--tensorboard", str(board), "--mlflow"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1]), out, board


@pytest.mark.slow
def test_mlflow_store_holds_the_record(tracked_run):
    from mlflow.tracking import MlflowClient

    run_dir, out, _ = tracked_run
    record = RunRecord.load(run_dir)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("mlbench-arxiv")
    parents = client.search_runs([exp.experiment_id], f"tags.`mlbench.run_id` = '{record.run_id}'")
    parent = next(r for r in parents if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.params["config.dataset"] == "arxiv" and parent.data.params["config.epochs"] == "2"
    assert parent.data.metrics["total_seconds"] == pytest.approx(record.total_seconds)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"results.json", "report.html"}
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(c.data.tags["mlbench.variant"] for c in children) == sorted(record.models)
    for child in children:
        model = record.models[child.data.tags["mlbench.variant"]]
        m, p = child.data.metrics, child.data.params
        assert m["train_seconds"] == pytest.approx(model.train_seconds)
        for obj, key in OBJECTIVES.items():
            rule = model.chosen_rule[obj]
            result = model.rules[rule]
            assert p[f"rule.{obj}"] == rule
            assert m[f"{obj}.test.{key}"] == pytest.approx(result.test[key])
            lo, hi = result.test_ci[key]
            assert (m[f"{obj}.test.{key}.ci_low"], m[f"{obj}.test.{key}.ci_high"]) == pytest.approx((lo, hi))
            assert m[f"{obj}.val.{key}"] == pytest.approx(result.val_cv[key])


@pytest.mark.slow
def test_logged_pyfunc_scores_raw_strings_like_the_export(tracked_run):
    from mlbench.serving.artifacts import load_artifact

    run_dir, out, _ = tracked_run
    record = RunRecord.load(run_dir)
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("mlbench-arxiv")
    logged = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    assert len(logged) == len(record.models)
    texts = ["We prove a bound on the regret of online convex optimisation.",
             "A convolutional network segments galaxies in survey images."]
    pyfunc = mlflow.pyfunc.load_model(logged[0].model_uri)
    frame = pyfunc.predict(texts)
    export = load_artifact(run_dir / record.models["mlp"].export_dir)
    assert list(frame.columns) == ["labels", *export.labels] and len(frame) == len(texts)
    # the same SavedModel in the same process on the same batch: float32 round-off only
    np.testing.assert_allclose(frame[export.labels].to_numpy(np.float32), export.predict(texts), atol=1e-6)
    cut = np.broadcast_to(export.threshold(None), (len(export.labels),))
    for row, labels in zip(export.predict(texts), frame["labels"]):
        assert list(labels) == [n for n, s, t in zip(export.labels, row, cut) if s >= t]


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_keras_curves(tracked_run):
    import tensorflow as tf

    run_dir, _, board = tracked_run
    history = RunRecord.load(run_dir).models["mlp"].history
    fits = sorted((board / "mlp").glob("fit-*"))
    # --quick: no search; --protocol cv (the default, 2 folds under --quick): 2 fold fits, then the refit
    assert [f.name for f in fits] == ["fit-1", "fit-2", "fit-3"]

    def curve(split: str, tag: str) -> list[float]:
        values = {}
        for path in sorted((fits[0] / split).glob("events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for v in event.summary.value:
                    if v.tag == tag:
                        values[event.step] = float(tf.make_ndarray(v.tensor))
        return [values[k] for k in sorted(values)]

    # one point per epoch, the values Keras logged (float32 written, float64 in the record);
    # the record's curves are fold 1's (the refit reads no validation)
    assert curve("train", "epoch_loss") == pytest.approx(history["loss"], rel=1e-6)
    assert curve("validation", "epoch_loss") == pytest.approx(history["val_loss"], rel=1e-6)


def test_mlflow_missing_is_one_line_before_training(monkeypatch, capsys):
    """Without the extra, `run --mlflow` stops before any data loads, in one line (exit 2)."""
    from mlbench_cli import main

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    assert main(["run", "--dataset", "nonexistent.csv", "--mlflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --mlflow needs the tracking extra: pip install 'mlbench[tracking]'"]


def test_default_store_lives_under_out(tmp_path):
    from mlbench.tracking.mlflow_log import default_uri, flat

    assert default_uri(tmp_path) == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert flat("config", {"a": {"b": 1}, "c": [1, 2], "d": "x"}) == {
        "config.a.b": "1", "config.c": "[1, 2]", "config.d": "x"}
