"""`mlbench serve`: a real uvicorn server on 127.0.0.1, every endpoint, bad input, batching, the page.

One tiny LinearSVM export (synthetic corpus) is trained per module and served from a
background thread; scores are checked against the artifact itself, so a server that
mixed up rows, rules or batches would fail here.  The operator limits (timeouts, in-flight
cap, Host checks) are in test_server_limits.py; TF Serving and v2 answers in
test_server_protocols.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from mlbench.errors import InputError  # noqa: E402
from mlbench.serving.server import MicroBatcher, create_app, model_name_of, server_config  # noqa: E402

N_LABELS = 8
MAX_TEXTS, MAX_CHARS = 8, 500
MAX_EXPLAIN = 4
CHROMIUM = Path("/usr/bin/chromium")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def corpus():
    from mlbench.data.synthetic import synthetic_corpus

    return synthetic_corpus(400, seed=0, n_labels=N_LABELS, vocab_size=2000, median_words=30)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, corpus) -> Path:
    """RUN/svm_savedmodel with three decision rules (best: global) and the run's results.json."""
    from baselines.svm import LinearSVMTrack
    from mlbench.evaluation.thresholds import DecisionRule, save_thresholds
    from mlbench.labels import LabelSpace
    from mlbench.record import DatasetInfo, ModelResult, RuleResult, RunRecord

    run = tmp_path_factory.mktemp("run")
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    assert len(labels) == N_LABELS
    track = LinearSVMTrack()
    track.fit(corpus.train, corpus.val, labels)
    exported = track.export(run / "svm_savedmodel", thresholds=np.full(N_LABELS, 0.5))
    rules = {"fixed": DecisionRule("fixed", 0.5), "global": DecisionRule("global", 0.3),
             "per_label": DecisionRule("per_label", np.linspace(0.2, 0.6, N_LABELS))}
    save_thresholds(exported / "thresholds.json", rules, labels.names, best_rule="global")
    record = RunRecord(
        run_id=run.name, created="2026-01-01T00:00:00", command="test", config={}, versions={},
        dataset=DatasetInfo(name="synthetic", labels=labels.names, train_counts=[1] * N_LABELS,
                            groups={"head_min": 35, "tail_max": 8}, label_groups=["tail"] * N_LABELS),
        models={"svm": ModelResult(track="svm", family="baseline", chosen_rule={"micro": "global"},
                                   rules={"global": RuleResult(threshold=0.3, test={"f1_micro": 0.625})},
                                   export_dir=exported.name)})
    record.save(run)
    return exported


@pytest.fixture(scope="module")
def artifact(export_dir):
    from mlbench.serving.artifacts import load_artifact

    return load_artifact(export_dir)


@contextmanager
def running(app, timeout: float = 30.0):
    """Serve `app` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="module")
def served(export_dir):
    app = create_app(export_dir, max_texts=MAX_TEXTS, max_chars=MAX_CHARS, batch_window_ms=20.0,
                     max_batch=64, max_explain=MAX_EXPLAIN)
    with running(app) as url, httpx.Client(base_url=url, timeout=20.0) as client:
        yield app, url, client


@pytest.fixture
def client(served):
    return served[2]


def good_request_works(client, artifact, text="ba bi bo fresh text") -> None:
    """The server still answers correctly (called after each bad request)."""
    r = client.post("/v1/predict", json={"texts": [text]})
    assert r.status_code == 200, r.text
    got = [e["score"] for e in r.json()["results"][0]["top_k"]]
    assert got == pytest.approx(sorted(artifact.predict([text])[0].tolist(), reverse=True)[:5], abs=1e-6)


# --------------------------------------------------------------------------- the JSON API
def test_predict_applies_each_rule_and_ranks_top_k(client, artifact, corpus):
    texts = list(corpus.test.texts[:5])
    want = artifact.predict(texts)
    per_label = np.linspace(0.2, 0.6, N_LABELS)
    for rule, name, thresholds in (("best", "global", np.full(N_LABELS, 0.3)),
                                   ("fixed", "fixed", np.full(N_LABELS, 0.5)),
                                   ("per_label", "per_label", per_label)):
        r = client.post("/v1/predict", json={"texts": texts, "top_k": 3, "rule": rule})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "svm" and body["rule"] == name
        assert len(body["results"]) == len(texts)
        for row, result in zip(want, body["results"]):
            by_score = np.argsort(-row, kind="stable")  # predicted labels come ordered by score
            passing = [artifact.labels[j] for j in by_score if row[j] >= thresholds[j]]
            assert [e["label"] for e in result["labels"]] == passing
            for e in result["labels"]:
                j = artifact.labels.index(e["label"])
                assert e["score"] == pytest.approx(row[j], abs=1e-6)
                assert e["threshold"] == pytest.approx(thresholds[j], abs=1e-6)
            top = [e["label"] for e in result["top_k"]]
            assert top == [artifact.labels[j] for j in np.argsort(-row, kind="stable")[:3]]
            assert [e["passed"] for e in result["top_k"]] == [e["label"] in passing for e in result["top_k"]]
    # the rules really differ on these texts (else the loop above proves little)
    assert len({json.dumps(client.post("/v1/predict", json={"texts": texts, "rule": r}).json()["results"])
                for r in ("global", "fixed", "per_label")}) == 3
    # top_k past the label count returns every label; an empty text is a valid document
    r = client.post("/v1/predict", json={"texts": [""], "top_k": 100})
    assert r.status_code == 200 and len(r.json()["results"][0]["top_k"]) == N_LABELS


# --------------------------------------------------------------------------- TF Serving REST
def test_explain_returns_the_exports_attributions_for_the_predicted_labels(served, client, artifact,
                                                                          corpus, monkeypatch):
    from mlbench.explain.tracks import predicted_labels

    texts = list(corpus.test.texts[:MAX_EXPLAIN])
    plain = client.post("/v1/predict", json={"texts": texts})
    assert plain.status_code == 200 and all("explanations" not in r for r in plain.json()["results"])
    r = client.post("/v1/predict", json={"texts": texts, "explain": True, "rule": "fixed"})
    assert r.status_code == 200, r.text
    picked = predicted_labels(artifact.predict(texts), 0.5)  # the "fixed" rule's labels, else the top one
    want = artifact.explain(texts, picked)
    for result, ids, doc in zip(r.json()["results"], picked, want):
        got = result["explanations"]
        assert list(got) == [artifact.labels[j] for j in ids] == list(doc)
        for label, pairs in got.items():
            assert [p["token"] for p in pairs] == [t for t, _ in doc[label]]
            assert [p["weight"] for p in pairs] == pytest.approx([w for _, w in doc[label]], abs=1e-6)
            assert [abs(p["weight"]) for p in pairs] == sorted((abs(p["weight"]) for p in pairs), reverse=True)
    # a model without the explain signature: a 400 naming the field, and the server lives on
    monkeypatch.setattr(served[0].state.model.artifact, "_explain", None)
    r = client.post("/v1/predict", json={"texts": texts[:1], "explain": True})
    assert r.status_code == 400 and r.json()["field"] == "explain" and "no explanations" in r.json()["error"]
    good_request_works(client, artifact)


def test_calibrated_export_answers_probabilities(export_dir, artifact, corpus, tmp_path):
    from starlette.testclient import TestClient

    from mlbench.evaluation.calibration import fit_calibration
    from mlbench.serving.calibrated import write_calibration

    folder = tmp_path / "svm_savedmodel"
    shutil.copytree(export_dir, folder)
    val = list(corpus.val.texts)
    y = np.zeros((len(val), N_LABELS), dtype=np.int8)
    index = {name: j for j, name in enumerate(artifact.labels)}
    for i, names in enumerate(corpus.val.labels):
        for name in names:
            y[i, index[name]] = 1
    cal = fit_calibration(y, artifact.predict(val))
    write_calibration(folder, cal)
    texts = list(corpus.test.texts[:3])
    with TestClient(create_app(folder, max_texts=MAX_TEXTS), base_url="http://localhost") as local:
        body = local.post("/v1/predict", json={"texts": texts, "top_k": N_LABELS}).json()
        assert local.get("/v1/info").json()["calibrated"] is True
    assert body["calibrated"] is True
    probs = cal.apply(artifact.predict(texts))
    for row, result in zip(probs, body["results"]):
        got = {e["label"]: e["probability"] for e in result["top_k"]}
        assert got == pytest.approx({artifact.labels[j]: float(row[j]) for j in range(N_LABELS)}, abs=1e-6)
        assert [e["label"] for e in result["top_k"]] == [artifact.labels[j] for j in np.argsort(-row, kind="stable")]


def test_tf_serving_predict_row_and_columnar_formats(client, artifact, corpus):
    texts = list(corpus.test.texts[:3])
    want = artifact.predict(texts)
    b64 = [{"b64": base64.b64encode(t.encode()).decode()} for t in texts]
    for body in ({"instances": texts}, {"instances": [{"texts": t} for t in texts]}, {"instances": b64},
                 {"instances": texts, "signature_name": "serving_default"}):
        r = client.post("/v1/models/svm:predict", json=body)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["predictions"], want, atol=1e-6)
    for body in ({"inputs": texts}, {"inputs": {"texts": texts}}):
        r = client.post("/v1/models/svm/versions/1:predict", json=body)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["outputs"], want, atol=1e-6)

    decided = artifact.decide(texts)  # the SavedModel's own `decisions` signature
    r = client.post("/v1/models/svm:predict", json={"instances": texts, "signature_name": "decisions"})
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    np.testing.assert_array_equal([p["labels"] for p in rows], decided)
    np.testing.assert_allclose([p["scores"] for p in rows], want, atol=1e-6)
    r = client.post("/v1/models/svm:predict", json={"inputs": texts, "signature_name": "decisions"})
    np.testing.assert_array_equal(r.json()["outputs"]["labels"], decided)


def test_tf_serving_status_metadata_and_unknown_models(client, export_dir):
    r = client.get("/v1/models/svm")
    assert r.status_code == 200
    assert r.json() == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                  "status": {"error_code": "OK", "error_message": ""}}]}
    meta = client.get("/v1/models/svm/metadata").json()
    assert set(meta) == {"model_spec", "metadata"}  # TF Serving's answer, nothing added
    assert meta["model_spec"] == {"name": "svm", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]
    assert set(sig) == {"serving_default", "decisions", "explain", "__saved_model_init_op"}
    assert sig["serving_default"]["outputs"]["scores"]["tensor_shape"]["dim"][1]["size"] == str(N_LABELS)
    assert client.get("/v1/models/svm/versions/1/metadata").json() == meta
    info = client.get("/v1/info").json()  # what mlbench adds: labels, rules, the run's metrics
    assert info["model"] == "svm" and info["track"] == "svm"
    assert info["labels"] == json.loads((export_dir / "labels.json").read_text())
    th = info["thresholds"]
    assert th["best_rule"] == "global" and th["rules"]["global"] == pytest.approx(0.3)
    assert th["rules"]["per_label"] == pytest.approx(np.linspace(0.2, 0.6, N_LABELS).tolist())
    assert info["run"]["variant"] == "svm" and info["run"]["test"] == {"f1_micro": 0.625}

    results = export_dir.parent / "results.json"  # a run folder without results.json is fine
    moved = results.rename(export_dir.parent / "results.json.away")
    try:
        r = client.get("/v1/info")
        assert r.status_code == 200 and r.json()["run"] is None
    finally:
        moved.rename(results)

    for method, path in (("GET", "/v1/models/mlp"), ("GET", "/v1/models/mlp/metadata"),
                         ("POST", "/v1/models/mlp:predict"), ("POST", "/v1/models/svm/versions/2:predict"),
                         ("GET", "/v1/models/svm/versions/7")):
        r = client.request(method, path, json={"instances": ["x"]})
        assert r.status_code == 404, (path, r.text)
        assert "not found" in r.json()["error"]
    assert client.get("/no/such/page").status_code == 404
    assert "error" in client.get("/no/such/page").json()


# --------------------------------------------------------------------------- bad input
TOO_MANY = {"texts": ["a"] * (MAX_TEXTS + 1)}
BAD = [
    ("/v1/predict", b"{not json", 400, "body"),
    ("/v1/predict", b"", 400, "body"),
    ("/v1/predict", b"\xff\xfe", 400, "body"),
    ("/v1/predict", b"[" * 20_000, 400, "body"),  # nesting past the parser's recursion limit
    ("/v1/predict", ["a list"], 400, "body"),
    ("/v1/predict", {}, 400, "texts"),
    ("/v1/predict", {"text": ["typo"]}, 400, "text"),
    ("/v1/predict", {"texts": "not a list"}, 400, "texts"),
    ("/v1/predict", {"texts": ["ok", 3]}, 400, "texts[1]"),
    ("/v1/predict", {"texts": [None]}, 400, "texts[0]"),
    ("/v1/predict", {"texts": []}, 400, "texts"),
    ("/v1/predict", TOO_MANY, 413, "texts"),
    ("/v1/predict", {"texts": ["ok", "x" * (MAX_CHARS + 1)]}, 413, "texts[1]"),
    ("/v1/predict", b'{"texts": ["ok", "bad \\ud800 text"]}', 400, "texts[1]"),  # lone surrogate
    ("/v1/predict", b'{"texts": ["a\\u0000b"]}', 400, "texts[0]"),  # NUL
    ("/v1/predict", {"texts": ["ok"], "top_k": "5"}, 400, "top_k"),
    ("/v1/predict", {"texts": ["ok"], "top_k": 0}, 400, "top_k"),
    ("/v1/predict", {"texts": ["ok"], "top_k": True}, 400, "top_k"),
    ("/v1/predict", {"texts": ["ok"], "top_k": 2.5}, 400, "top_k"),
    ("/v1/predict", {"texts": ["ok"], "rule": "scutfbr"}, 400, "rule"),  # a known rule this export lacks
    ("/v1/predict", {"texts": ["ok"], "rule": 1}, 400, "rule"),
    ("/v1/predict", {"texts": ["ok"], "explain": "yes"}, 400, "explain"),
    ("/v1/predict", {"texts": ["ok"] * (MAX_EXPLAIN + 1), "explain": True}, 413, "texts"),
    ("/v1/models/svm:predict", {}, 400, "body"),
    ("/v1/models/svm:predict", {"instances": ["a"], "inputs": ["a"]}, 400, "instances"),
    ("/v1/models/svm:predict", {"instances": "a"}, 400, "instances"),
    ("/v1/models/svm:predict", {"instances": []}, 400, "instances"),
    ("/v1/models/svm:predict", {"instances": ["a", 1.5]}, 400, "instances[1]"),
    ("/v1/models/svm:predict", {"instances": [{"text": "a"}]}, 400, "instances[0]"),
    ("/v1/models/svm:predict", {"instances": [{"b64": "%%%"}]}, 400, "instances[0]"),
    ("/v1/models/svm:predict", {"inputs": {"other": ["a"]}}, 400, "inputs"),
    ("/v1/models/svm:predict", {"inputs": ["a", ["nested"]]}, 400, "inputs[1]"),
    ("/v1/models/svm:predict", {"instances": ["a"], "signature_name": "classify"}, 400, "signature_name"),
    ("/v1/models/svm:predict", {"instances": ["a"], "extra": 1}, 400, "extra"),
    ("/v1/models/svm:predict", {"instances": ["a"] * (MAX_TEXTS + 1)}, 413, "instances"),
    ("/v1/models/svm:predict", b'{"instances": ["ok", "\\udc80"]}', 400, "instances[1]"),
    ("/v1/models/svm:predict", b'{"inputs": {"texts": ["ok", "\\ud800"]}}', 400, "inputs.texts[1]"),
    ("/v1/models/svm:predict", {"instances": [{"texts": "a"}], "signature_name": "explain"}, 400, "instances[0]"),
    ("/v1/models/svm:predict", {"inputs": {"texts": ["a"], "labels": [[0], [1]]}, "signature_name": "explain"},
     400, "inputs.labels"),
    ("/v1/models/svm:predict", {"inputs": {"texts": ["a"], "labels": [[99]]}, "signature_name": "explain"},
     400, "inputs.labels"),
    ("/v2/models/svm/infer", {"inputs": [{"name": "texts", "datatype": "BYTES", "shape": [1],
                                          "data": ["\ud800"]}]}, 400, "inputs[0].data[0]"),
    ("/v2/models/svm/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}]},
     400, "inputs[0].name"),
    ("/v2/models/svm/infer", {"inputs": [{"name": "texts", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
     400, "inputs[0].datatype"),
    ("/v2/models/svm/infer", {"inputs": [{"name": "texts", "datatype": "BYTES", "shape": [2], "data": ["a"]}]},
     400, "inputs[0].data"),
    ("/v2/models/svm/infer", {"inputs": [{"name": "texts", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                              "outputs": [{"name": "logits"}]}, 400, "outputs[0].name"),
]


@pytest.mark.parametrize("path, body, status, field", BAD, ids=[f"{i}-{b[3]}" for i, b in enumerate(BAD)])
def test_bad_input_is_a_4xx_naming_the_field_and_the_server_lives_on(client, artifact, path, body,
                                                                     status, field):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post(path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    payload = r.json()
    assert payload["field"] == field and isinstance(payload["error"], str) and payload["error"]
    for internal in ("Error", "Traceback", "Expecting", "codec", "surrogates not allowed"):
        assert internal not in payload["error"], payload  # the API's own words, no Python internals
    good_request_works(client, artifact)


def test_oversized_body_is_refused_while_reading(export_dir, artifact):
    app = create_app(export_dir, max_body_bytes=10_000)
    with running(app) as url, httpx.Client(base_url=url, timeout=20.0) as client:
        r = client.post("/v1/predict", json={"texts": ["x" * 20_000]})
        assert r.status_code == 413 and r.json()["field"] == "body"

        def chunks():  # no content-length: the limit is enforced on the stream itself
            for _ in range(20):
                yield b" " * 1000

        r = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["field"] == "body"
        assert client.get("/v1/models/svm").status_code == 200


def test_internal_error_is_a_500_with_one_logged_line(served, client, artifact, monkeypatch):
    app = served[0]
    model = app.state.model

    def broken(*args, **kwargs):
        raise RuntimeError("simulated model failure")

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("mlbench.serving").addHandler(handler)
    try:
        monkeypatch.setattr(model.artifact, "signature_outputs", broken)
        r = client.post("/v1/predict", json={"texts": ["boom"]})
        assert r.status_code == 500
        request_id = r.json()["request_id"]
        assert r.json()["error"] == "internal server error" and "simulated" not in r.text
        monkeypatch.undo()
        bad = client.post("/v1/predict", json={"texts": [3]})
        assert bad.status_code == 400
    finally:
        logging.getLogger("mlbench.serving").removeHandler(handler)
    lines = [rec for rec in records if rec.levelno >= logging.WARNING]
    assert len(lines) == 2, [rec.getMessage() for rec in lines]  # one line per failed request
    assert request_id in lines[0].getMessage() and "simulated model failure" in lines[0].getMessage()
    assert "texts[0]" in lines[1].getMessage() and "400" in lines[1].getMessage()
    assert not any(rec.exc_info for rec in lines)  # no traceback
    good_request_works(client, artifact)
    assert client.get("/healthz").json()["status"] == "ok"


def test_a_text_the_model_fails_on_fails_only_its_own_request(served, artifact, corpus, monkeypatch):
    """Concurrent requests share batches; when one request makes the batch fail, the batch is
    retried request by request and only that request fails."""
    model = served[0].state.model
    real = model.artifact.signature_outputs

    def fragile(name, texts, **inputs):
        if any("POISON" in t for t in texts):
            raise RuntimeError("cannot score this")
        return real(name, texts, **inputs)

    monkeypatch.setattr(model.artifact, "signature_outputs", fragile)
    texts = list(corpus.test.texts[:12])
    want = artifact.predict(texts)
    before = served[0].state.batcher.retried
    for _ in range(3):  # rounds of 12 good requests + 1 poisoned + 1 lone surrogate, all at once
        barrier = threading.Barrier(len(texts) + 2)

        def one(body):
            with httpx.Client(base_url=served[1], timeout=20.0) as c:
                barrier.wait(10)
                return c.post("/v1/predict", content=body, headers={"content-type": "application/json"})

        bodies = [json.dumps({"texts": [t], "top_k": N_LABELS}).encode() for t in texts]
        bodies += [b'{"texts": ["POISON pill"]}', b'{"texts": ["\\ud800"]}']
        with ThreadPoolExecutor(len(bodies)) as pool:
            got = list(pool.map(one, bodies))
        for row, r in zip(want, got[:len(texts)]):
            assert r.status_code == 200, r.text
            scores = {e["label"]: e["score"] for e in r.json()["results"][0]["top_k"]}
            np.testing.assert_allclose([scores[n] for n in artifact.labels], row, atol=1e-6)
        assert got[-2].status_code == 500 and got[-1].status_code == 400
        assert got[-1].json()["field"] == "texts[0]"
    assert served[0].state.batcher.retried > before  # the poisoned batches were retried


# --------------------------------------------------------------------------- batching
def test_concurrent_requests_are_batched_and_score_like_one_by_one(served, client, corpus):
    app = served[0]
    texts = list(corpus.test.texts[:24])
    alone = [client.post("/v1/predict", json={"texts": [t], "top_k": N_LABELS}).json() for t in texts]
    before = app.state.batcher.batches
    barrier = threading.Barrier(len(texts))

    def one(text):
        with httpx.Client(base_url=served[1], timeout=20.0) as c:
            barrier.wait(10)
            return c.post("/v1/predict", json={"texts": [text], "top_k": N_LABELS}).json()

    with ThreadPoolExecutor(len(texts)) as pool:
        together = list(pool.map(one, texts))
    batches = app.state.batcher.batches - before
    assert batches < len(texts), "concurrent requests were not micro-batched"

    def scores(result):
        return {e["label"]: e["score"] for e in result["results"][0]["top_k"]}

    for a, b in zip(alone, together):
        sa, sb = scores(a), scores(b)
        assert sa.keys() == sb.keys()
        np.testing.assert_allclose([sb[k] for k in sa], list(sa.values()), atol=1e-6)


def test_micro_batcher_fills_batches_without_splitting_requests():
    batches: list[list[str]] = []

    def fake_predict(texts):
        batches.append(list(texts))
        return np.array([[float(t)] for t in texts])

    requests = [[str(10 * i + j) for j in range(3)] for i in range(10)] + [[str(900 + j) for j in range(9)]]

    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fake_predict, window_s=0.05, max_batch=8, executor=pool)
            batcher.start()
            out = await asyncio.gather(*(batcher.predict(r) for r in requests))
            await batcher.stop()
            with pytest.raises(RuntimeError, match="not running"):  # a stopped batcher fails fast
                await batcher.predict(["late"])
            return out

    out = asyncio.run(main())
    for texts, scores in zip(requests, out):  # every request got its own rows back, in order
        assert scores[:, 0].tolist() == [float(t) for t in texts]
    assert [t for b in batches for t in b] == [t for r in requests for t in r]  # arrival order kept
    whole = {tuple(r) for r in requests}
    for batch in batches:  # a batch is whole requests, at most max_batch texts unless one big request
        parts = [tuple(batch[i:i + 3]) for i in range(0, len(batch), 3)]
        assert tuple(batch) in whole or (len(batch) <= 8 and all(p in whole for p in parts)), batch
    assert len(batches) == 6  # 3+3 per batch (a third request would pass 8), then the big one alone


# --------------------------------------------------------------------------- health, page, set-up
def test_healthz_and_page_are_served_locally(client):
    h = client.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["model"] == "svm"
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere


def test_create_app_checks_its_folder_and_limits(tmp_path, export_dir):
    with pytest.raises(InputError, match="no such model folder"):
        create_app(tmp_path / "missing")
    with pytest.raises(InputError, match="max_texts"):
        create_app(export_dir, max_texts=0)
    assert model_name_of(Path("runs/x/mlp_savedmodel")) == "mlp"
    assert model_name_of(Path("runs/x/fasttext_model")) == "fasttext"  # the non-SavedModel export
    assert model_name_of(Path("runs/x/custom")) == "custom"
    copy = tmp_path / "svm_balanced_savedmodel"
    shutil.copytree(export_dir, copy)
    app = create_app(copy, model_name="tagger")
    assert app.state.model.name == "tagger"
    with running(app) as url:
        assert httpx.get(f"{url}/v1/models/tagger", timeout=10).status_code == 200
        assert httpx.get(f"{url}/v1/models/svm_balanced", timeout=10).status_code == 404


@pytest.mark.slow
def test_page_draws_label_bars_in_headless_chromium(served, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"chromium not found at {CHROMIUM}")
    from reports.chromium import FLAGS

    url = served[1]
    seen: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=[f for f in FLAGS if f != "--headless"], timeout=30_000)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.on("request", lambda req: seen.append(req.url))
            page.goto(url + "/", timeout=15_000)
            page.wait_for_function("document.querySelectorAll('#rule option').length > 1", timeout=10_000)
            page.fill("#text", "bide babi boti do baba bati du te kudi fi debe bali")
            page.select_option("#rule", "global")
            page.click("#predict")
            page.wait_for_selector(".bar-row", timeout=10_000)
            bars = page.locator(".bar-row")
            assert bars.count() == N_LABELS  # top_k 10 on the page, 8 labels
            assert page.locator(".bar-threshold").count() == N_LABELS
            left = page.locator(".bar-threshold").first.evaluate("e => e.style.left")
            assert left == "30%"  # the global rule's threshold, marked on the bar
            assert page.locator("#status").inner_text() == ""
            assert page.locator(".why-token").count() == 0  # explanations only when asked for
            page.check("#explain")
            page.click("#predict")
            page.wait_for_selector(".why-token", timeout=20_000)
            assert page.locator(".why-label").count() >= 1
            first = page.locator(".why-token").first.inner_text()
            assert first.split()[0] in "bide babi boti do baba bati du te kudi fi debe bali"
            page.screenshot(path=str(tmp_path / "serve_page.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "serve_page.png").stat().st_size > 0
    assert seen and all(u.startswith(url) for u in seen), seen  # no CDN, nothing off the server
