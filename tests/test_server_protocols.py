"""`mlbench serve` speaks TF Serving's REST API and the Open Inference Protocol v2 as their servers do.

A calibrated export (the kind every run writes: ``serving_default`` → {probabilities,
scores}, plus ``decisions`` and ``explain``) is served on 127.0.0.1.  TF Serving answers
are compared with the SavedModel run under the v1 session loader TF Serving's C++
server uses (`export.session_run`), in the JSON shapes of TF Serving's REST API; the v2
endpoints are driven by Triton's own client, `tritonclient.http.InferenceServerClient`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from mlbench.serving.server import create_app  # noqa: E402
from test_server import N_LABELS, corpus, export_dir, running  # noqa: E402,F401  (module fixtures)

#: the session loader and tf.function run the same float32 graph, but may fuse ops differently
ATOL = 1e-6


@pytest.fixture(scope="module")
def calibrated_dir(tmp_path_factory, export_dir, corpus) -> Path:
    """A copy of the SVM export re-saved with validation-fitted calibration, as a run writes it."""
    from mlbench.evaluation.calibration import fit_calibration
    from mlbench.serving.artifacts import load_artifact
    from mlbench.serving.calibrated import add_calibration

    folder = tmp_path_factory.mktemp("cal") / "svm_savedmodel"
    shutil.copytree(export_dir, folder)
    artifact = load_artifact(export_dir)
    val = list(corpus.val.texts)
    y = np.zeros((len(val), N_LABELS), dtype=np.int8)
    index = {name: j for j, name in enumerate(artifact.labels)}
    for i, names in enumerate(corpus.val.labels):
        for name in names:
            y[i, index[name]] = 1
    add_calibration(folder, fit_calibration(y, artifact.predict(val)))
    return folder


@pytest.fixture(scope="module")
def url(calibrated_dir):
    app = create_app(calibrated_dir, max_texts=16, max_chars=2000, max_explain=4)
    with running(app) as base:
        yield base


@pytest.fixture(scope="module")
def texts(corpus):
    return list(corpus.test.texts[:4])


def _close(got, want, atol=ATOL):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), atol=atol)


# --------------------------------------------------------------------------- TF Serving REST
def test_serving_default_answers_every_output_in_tf_serving_shapes(url, calibrated_dir, texts):
    from mlbench.serving.export import session_run

    want = session_run(calibrated_dir, texts)  # what TF Serving computes for this SavedModel
    assert set(want) == {"probabilities", "scores"}
    with httpx.Client(base_url=url, timeout=30) as client:
        rows = client.post("/v1/models/svm:predict", json={"instances": texts}).json()["predictions"]
        assert isinstance(rows, list) and len(rows) == len(texts)
        for i, row in enumerate(rows):  # several outputs → one object per instance
            assert set(row) == {"probabilities", "scores"}
            _close(row["scores"], want["scores"][i])
            _close(row["probabilities"], want["probabilities"][i])
        cols = client.post("/v1/models/svm/versions/1:predict", json={"inputs": {"texts": texts}}).json()
        assert set(cols) == {"outputs"} and set(cols["outputs"]) == {"probabilities", "scores"}
        _close(cols["outputs"]["scores"], want["scores"])
        _close(cols["outputs"]["probabilities"], want["probabilities"])
        assert client.post("/v1/models/svm:predict", json={"inputs": texts}).json() == cols


def test_decisions_and_explain_signatures_match_the_session_loader(url, calibrated_dir, texts):
    from mlbench.serving.export import session_run

    want = session_run(calibrated_dir, texts, signature="decisions")
    assert set(want) == {"labels", "probabilities", "scores"}
    labels = np.array([[0, 2], [1, -1], [3, 4], [5, 0]], dtype=np.int32)
    why = session_run(calibrated_dir, texts, signature="explain", labels=labels)
    with httpx.Client(base_url=url, timeout=60) as client:
        rows = client.post("/v1/models/svm:predict", json={"instances": texts, "signature_name": "decisions"})
        rows = rows.json()["predictions"]
        assert [set(r) for r in rows] == [set(want)] * len(texts)
        np.testing.assert_array_equal([r["labels"] for r in rows], want["labels"])
        _close([r["probabilities"] for r in rows], want["probabilities"])
        body = {"signature_name": "explain",
                "instances": [{"texts": t, "labels": row} for t, row in zip(texts, labels.tolist())]}
        r = client.post("/v1/models/svm:predict", json=body)
        assert r.status_code == 200, r.text
        got = r.json()["predictions"]
        assert [set(g) for g in got] == [set(why)] * len(texts)
        for i, g in enumerate(got):
            tokens = [[t.decode() for t in k] for k in why["tokens"][i]]
            assert g["tokens"] == tokens  # strings come back as UTF-8 text
            _close(g["weights"], why["weights"][i], atol=1e-5)  # attributions: summed in another order
        cols = client.post("/v1/models/svm:predict", json={
            "signature_name": "explain", "inputs": {"texts": texts, "labels": labels.tolist()}}).json()["outputs"]
        _close(cols["total"], why["total"], atol=1e-5)


def test_metadata_lists_every_signature_of_the_saved_model(url, calibrated_dir):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(calibrated_dir))
    with httpx.Client(base_url=url, timeout=30) as client:
        meta = client.get("/v1/models/svm/metadata").json()
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert set(loaded.signatures) <= set(sigs)
    for name, fn in loaded.signatures.items():
        assert set(sigs[name]["outputs"]) == set(fn.structured_outputs), name
        assert set(sigs[name]["inputs"]) == {s.name for s in fn.structured_input_signature[1].values()}, name
        assert sigs[name]["method_name"] == "tensorflow/serving/predict"
    assert sigs["serving_default"]["inputs"]["texts"]["dtype"] == "DT_STRING"
    assert sigs["serving_default"]["outputs"]["probabilities"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""}, {"size": str(N_LABELS), "name": ""}]


# --------------------------------------------------------------------------- Open Inference Protocol v2
def test_open_inference_protocol_with_tritons_client(url, calibrated_dir, texts):
    httpclient = pytest.importorskip("tritonclient.http")
    from mlbench.serving.artifacts import load_artifact

    artifact = load_artifact(calibrated_dir)
    scores, probs = artifact.predict(texts), artifact.probabilities(texts)
    best = artifact.threshold()
    client = httpclient.InferenceServerClient(url=url.split("://", 1)[1], connection_timeout=30,
                                              network_timeout=30)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("svm") and not client.is_model_ready("mlp")
        meta = client.get_model_metadata("svm")
        assert meta["name"] == "svm" and meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "texts", "datatype": "BYTES", "shape": [-1]}]
        assert [o["name"] for o in meta["outputs"]] == ["scores", "probabilities", "decisions"]
        data = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
        for binary in (True, False):  # the binary tensor extension (the client's default), then JSON
            inp = httpclient.InferInput("texts", [len(texts)], "BYTES")
            inp.set_data_from_numpy(data, binary_data=binary)
            outputs = None if binary else [httpclient.InferRequestedOutput(n, binary_data=False)
                                           for n in ("scores", "probabilities", "decisions")]
            result = client.infer("svm", [inp], outputs=outputs, request_id="req-7")
            assert result.get_response()["id"] == "req-7"
            sent = result.get_output("scores")  # binary asked (the client's default) → binary answered
            assert ("binary_data_size" in sent.get("parameters", {})) == binary and ("data" in sent) != binary
            _close(result.as_numpy("scores"), scores)
            _close(result.as_numpy("probabilities"), probs)
            np.testing.assert_array_equal(result.as_numpy("decisions"), (scores >= best).astype(np.int32))
        inp = httpclient.InferInput("texts", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([["\u00e9t\u00e9 oil".encode()]], dtype=np.object_))
        only = client.infer("svm", [inp], outputs=[httpclient.InferRequestedOutput("scores")])
        assert only.as_numpy("probabilities") is None
        _close(only.as_numpy("scores"), artifact.predict(["\u00e9t\u00e9 oil"]))
        from tritonclient.utils import InferenceServerException

        bad = httpclient.InferInput("texts", [1], "BYTES")
        bad.set_data_from_numpy(np.array([b"\xff\xfe"], dtype=np.object_))
        with pytest.raises(InferenceServerException, match="not UTF-8"):
            client.infer("svm", [bad])
    finally:
        client.close()


# --------------------------------------------------------------------------- the page on a calibrated export
@pytest.mark.slow
def test_page_shows_one_quantity_orders_by_it_and_clears_errors(url, calibrated_dir, tmp_path):
    """Bar length and number are both the calibrated probability; labels come highest first; an
    error replaces the bars and is gone on the next good request (headless Chromium)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"chromium not found at {chromium}")
    from mlbench.serving.artifacts import load_artifact
    from reports.chromium import FLAGS

    artifact = load_artifact(calibrated_dir)
    text = "bide babi boti do baba bati du te kudi fi debe bali"
    probs = artifact.probabilities([text])[0]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True,
                                     args=[f for f in FLAGS if f != "--headless"], timeout=30_000)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(url + "/", timeout=15_000)
            page.wait_for_function("document.querySelectorAll('#rule option').length > 1", timeout=10_000)
            page.fill("#text", text)
            page.click("#predict")
            page.wait_for_selector(".bar-row", timeout=10_000)
            rows = page.eval_on_selector_all(".bar-row", """rows => rows.map(r => ({
                label: r.dataset.label, width: r.querySelector('.bar-fill').style.width,
                number: r.querySelector('.bar-score').textContent}))""")
            assert len(rows) == N_LABELS
            want = {artifact.labels[j]: float(probs[j]) for j in range(N_LABELS)}
            for row in rows:  # bar and number: the same probability
                assert float(row["width"].rstrip("%")) == pytest.approx(100 * want[row["label"]], abs=1e-3)
                assert row["number"] == f"{want[row['label']]:.3f}"
            shown = [want[r["label"]] for r in rows]
            assert shown == sorted(shown, reverse=True)
            assert page.locator("#quantity").inner_text() == "calibrated probability"
            chosen = page.locator("#chosen").inner_text()
            if ":" in chosen:
                named = [s.strip() for s in chosen.split(":", 1)[1].split(",")]
                assert [want[n] for n in named] == sorted((want[n] for n in named), reverse=True)
            page.fill("#text", "x" * 3000)  # over max_chars: a 413 from the server
            page.click("#predict")
            page.wait_for_selector("#status.error", timeout=10_000)
            assert "over the limit" in page.locator("#status").inner_text()
            assert page.locator(".bar-row").count() == 0  # no stale bars under the error
            page.fill("#text", text)
            page.click("#predict")
            page.wait_for_selector(".bar-row", timeout=10_000)
            page.wait_for_function("document.getElementById('status').textContent === ''", timeout=10_000)
            assert page.locator("#status.error").count() == 0
            page.screenshot(path=str(tmp_path / "calibrated_page.png"), full_page=True)
        finally:
            browser.close()
