"""`mlbench serve`: one exported model behind a JSON API, TF Serving's REST API and a web page.

    POST /v1/predict                    {"texts": [...], "top_k": 5, "rule": "best", "explain": false}
    POST /v1/models/<name>:predict      TensorFlow Serving REST ({"instances": ...} / {"inputs": ...})
    GET  /v1/models/<name>              TF Serving model status
    GET  /v1/models/<name>/metadata     signatures, labels, track, decision rules, the run's test metrics
    GET  /healthz, GET /                liveness; the page (static files, no CDN)

Why one process with one model: the model is loaded once and kept warm, and every
request's texts go through one asyncio micro-batcher (`MicroBatcher`) that runs one
``predict`` on a single worker thread for all texts that arrived within
``batch_window_ms`` (or ``max_batch`` texts), so concurrent clients share batch-sized
TensorFlow calls instead of queueing single-text ones.  TF calls never run on the
event loop.  Request bodies are parsed by hand (not pydantic) so every bad input gets
a 4xx ``{"error": ..., "field": ...}`` naming the field, and the per-request limits
apply before anything reaches the model.

This is the edge layer (like the command line): the only module under ``mlbench/``
allowed to import the web framework, and nothing in the core imports it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from mlbench.errors import InputError

log = logging.getLogger("mlbench.serving")

STATIC_DIR = Path(__file__).with_name("static")
SAVEDMODEL_SUFFIX = "_savedmodel"
BEST = "best"
SERVE_SIGNATURE = "serving_default"
DECISIONS_SIGNATURE = "decisions"
INPUT_NAME = "texts"
MODEL_VERSION = "1"
PREDICT_FIELDS = ("texts", "top_k", "rule", "explain")
TFS_FIELDS = ("instances", "inputs", "signature_name")

__all__ = ["create_app", "serve", "MicroBatcher", "ApiError", "model_name_of"]


# --------------------------------------------------------------------------- errors
class ApiError(Exception):
    """A client error answered as ``{"error": message, "field": field}`` with `status`."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        return JSONResponse(body, status_code=self.status)


def _kind(value: Any) -> str:
    """The JSON type name of a parsed value, for "expected X, got Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__)


# --------------------------------------------------------------------------- micro-batching
@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Collects texts from concurrent requests and scores them in one `predict` call.

    A batch closes `window_s` after its oldest text arrived, or as soon as `max_batch`
    texts wait; a request's texts are never split across batches (one request larger
    than `max_batch` is a batch of its own).  `predict` runs on `executor` while the
    next batch collects, so under load batches fill up without waiting for the window.
    """

    def __init__(self, predict: Callable[[list[str]], np.ndarray], *, window_s: float,
                 max_batch: int, executor: ThreadPoolExecutor):
        self._predict, self.window_s, self.max_batch, self._executor = predict, window_s, max_batch, executor
        self._queue: deque[_Pending] = deque()
        self._waiting = 0  # texts in the queue
        self._arrived = asyncio.Event()  # the queue became non-empty
        self._full = asyncio.Event()  # max_batch texts wait
        self._task: asyncio.Task | None = None
        self.batches = 0  # counters for /healthz and the tests
        self.texts = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mlbench-batcher")
        self._task.add_done_callback(lambda _: self._fail_waiting())

    def _fail_waiting(self) -> None:
        """A stopped worker must not leave requests waiting forever: fail them (-> 500)."""
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the batching worker stopped"))
        self._waiting = 0

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_waiting()

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def predict(self, texts: list[str]) -> np.ndarray:
        """Scores [len(texts), L] for `texts`, computed in a shared batch."""
        if not self.alive:
            raise RuntimeError("the batching worker is not running")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(texts, future))
        self._waiting += len(texts)
        self._arrived.set()
        if self._waiting >= self.max_batch:
            self._full.set()
        return await future

    def _take(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        n = len(batch[0].texts)
        while self._queue and n + len(self._queue[0].texts) <= self.max_batch:
            item = self._queue.popleft()
            batch.append(item)
            n += len(item.texts)
        self._waiting -= n
        if self._waiting < self.max_batch:
            self._full.clear()
        if not self._queue:
            self._arrived.clear()
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            left = self._queue[0].arrived + self.window_s - time.perf_counter()
            if left > 0 and self._waiting < self.max_batch:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._full.wait(), left)
            batch = self._take()
            texts = [t for item in batch for t in item.texts]
            try:
                scores = await loop.run_in_executor(self._executor, self._predict, texts)
            except Exception as err:  # every waiting request gets the error (-> 500), the loop lives on
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(err)
                continue
            self.batches += 1
            self.texts += len(texts)
            start = 0
            for item in batch:
                stop = start + len(item.texts)
                if not item.future.done():  # a client that went away cancelled its future
                    item.future.set_result(scores[start:stop])
                start = stop


# --------------------------------------------------------------------------- the model
def model_name_of(model_dir: Path) -> str:
    """The served name of an export folder: ``RUN/mlp_savedmodel`` → ``mlp``."""
    name = Path(model_dir).resolve().name
    return name[: -len(SAVEDMODEL_SUFFIX)] if name.endswith(SAVEDMODEL_SUFFIX) and len(name) > len(
        SAVEDMODEL_SUFFIX) else name


@dataclass
class ServedModel:
    """The loaded artifact and everything about it computed once at start-up."""

    directory: Path
    name: str
    artifact: Any
    labels: list[str]
    meta: dict
    rules: dict[str, np.ndarray]  # rule name -> float32 [L]; "best" included
    best_rule: str  # the rule "best" stands for
    baked: np.ndarray  # the thresholds of the SavedModel's ``decisions`` signature
    calibration: Any = None  # the validation-fitted map of calibration.json (None: raw scores only)

    @classmethod
    def load(cls, model_dir: Path, name: str | None = None) -> "ServedModel":
        from mlbench.record import RULES
        from mlbench.serving.artifacts import THRESHOLDS_FILE, load_artifact

        directory = Path(model_dir)
        artifact = load_artifact(directory)
        labels = [str(n) for n in artifact.labels]
        n = len(labels)
        rules: dict[str, np.ndarray] = {}
        for rule in RULES:
            try:
                rules[rule] = np.broadcast_to(np.asarray(artifact.threshold(rule), np.float32), (n,)).copy()
            except InputError:
                continue  # this export has no such rule
        best_rule = "export"
        path = directory / THRESHOLDS_FILE
        if path.exists():
            with contextlib.suppress(ValueError, OSError):
                best_rule = str(json.loads(path.read_text(encoding="utf-8")).get("best_rule", "fixed"))
        rules[BEST] = np.broadcast_to(np.asarray(artifact.threshold(None), np.float32), (n,)).copy()
        meta = dict(getattr(artifact, "meta", {}) or {})
        stored = meta.get("thresholds")
        baked = (np.broadcast_to(np.asarray(stored, np.float32), (n,)).copy() if stored is not None
                 else rules[BEST])
        from mlbench.serving.calibrated import read_calibration

        model = cls(directory, name or model_name_of(directory), artifact, labels, meta, rules,
                    best_rule, baked, read_calibration(directory))
        model.predict([""])  # warm-up: the first TF call pays for graph set-up, not a client
        return model

    def predict(self, texts: list[str]) -> np.ndarray:
        scores = np.asarray(self.artifact.predict(texts), dtype=np.float32)
        if scores.shape != (len(texts), len(self.labels)):
            raise RuntimeError(f"model returned scores of shape {scores.shape} for {len(texts)} texts")
        return scores

    def probabilities(self, scores: np.ndarray) -> np.ndarray | None:
        """Calibrated probabilities [n, L] of raw `scores` (None without calibration.json)."""
        return None if self.calibration is None else self.calibration.apply(scores).astype(np.float32)

    @property
    def explains(self) -> bool:
        return bool(getattr(self.artifact, "has_explanations", False))

    def explain(self, texts: list[str], labels: list[list[int]]) -> list[dict]:
        """{label: [{"token", "weight"}, ...]} per text (`artifacts.explanations`)."""
        from mlbench.serving.artifacts import explanations

        return [{label: [{"token": tok, "weight": w} for tok, w in pairs] for label, pairs in doc.items()}
                for doc in explanations(self.artifact, texts, labels)]

    def run_metrics(self) -> dict | None:
        """Test metrics of this export's variant from the run's results.json (None if absent)."""
        from mlbench.record import RunRecord

        try:
            record = RunRecord.load(self.directory.resolve().parent)
        except InputError:
            return None
        for variant, result in record.models.items():
            if result.export_dir == self.directory.resolve().name:
                return {"run_id": record.run_id, "variant": variant, "rule": result.best_rule,
                        "test": result.test_metrics()}
        return None


# --------------------------------------------------------------------------- request parsing
async def _read_json(request: Request, max_bytes: int) -> Any:
    """The parsed JSON body; 413 past `max_bytes` (checked while reading), 400 if malformed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"request body of {declared} bytes is over the limit of {max_bytes}", "body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body is over the limit of {max_bytes} bytes", "body")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "empty request body; expected a JSON object", "body")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, bad UTF-8, huge ints, deep nesting
        raise ApiError(400, f"request body is not valid JSON ({type(err).__name__}: {str(err)[:200]})",
                       "body") from None


def _object(body: Any, allowed: Sequence[str]) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, f"expected a JSON object, got {_kind(body)}", "body")
    for key in body:
        if key not in allowed:
            raise ApiError(400, f"unknown field {key!r}; expected {', '.join(allowed)}", str(key))
    return body


def _check_texts(texts: list[str], where: str, max_texts: int, max_chars: int) -> list[str]:
    if not texts:
        raise ApiError(400, "expected at least one text, got an empty list", where)
    if len(texts) > max_texts:
        raise ApiError(413, f"{len(texts)} texts is over the limit of {max_texts} per request", where)
    for i, text in enumerate(texts):
        if len(text) > max_chars:
            raise ApiError(413, f"text of {len(text)} characters is over the limit of {max_chars}",
                           f"{where}[{i}]")
    return texts


def _text_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ApiError(400, f"expected an array of strings, got {_kind(value)}", where)
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise ApiError(400, f"expected a string, got {_kind(text)}", f"{where}[{i}]")
    return value


def _tfs_string(value: Any, where: str) -> str:
    """One TF Serving string element: a JSON string or ``{"b64": "..."}`` (UTF-8 text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise ApiError(400, "b64 value is not base64-encoded UTF-8 text", where) from None
    raise ApiError(400, f"expected a string or {{\"b64\": ...}}, got {_kind(value)}", where)


def _tfs_texts(body: dict) -> tuple[list[str], bool]:
    """(texts, row format?) from a TF Serving predict body."""
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise ApiError(400, "expected exactly one of 'instances' (row format) or 'inputs' (columnar format)",
                       "instances" if has_rows else "body")
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise ApiError(400, f"expected an array, got {_kind(rows)}", "instances")
        texts = []
        for i, row in enumerate(rows):
            if isinstance(row, dict) and "b64" not in row:  # named input: {"texts": "..."}
                if set(row) != {INPUT_NAME}:
                    raise ApiError(400, f"expected an object with the one input {INPUT_NAME!r}, got keys "
                                        f"{sorted(row)}", f"instances[{i}]")
                row = row[INPUT_NAME]
            texts.append(_tfs_string(row, f"instances[{i}]"))
        return texts, True
    cols = body["inputs"]
    where = "inputs"
    if isinstance(cols, dict):
        if set(cols) != {INPUT_NAME}:
            raise ApiError(400, f"expected an object with the one input {INPUT_NAME!r}, got keys {sorted(cols)}",
                           "inputs")
        cols, where = cols[INPUT_NAME], f"inputs.{INPUT_NAME}"
    if not isinstance(cols, list):
        raise ApiError(400, f"expected an array of strings, got {_kind(cols)}", where)
    return [_tfs_string(v, f"{where}[{i}]") for i, v in enumerate(cols)], False


# --------------------------------------------------------------------------- the app
class InternalErrors:
    """ASGI middleware: an unexpected exception → 500 ``{"error", "request_id"}``, logged with that id.

    Why not ``app.exception_handler(Exception)``: Starlette re-raises after that
    handler answers, and uvicorn then drops the client's keep-alive connection.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as err:
            request_id = uuid.uuid4().hex[:16]
            log.error("request %s failed: %s %s", request_id, scope.get("method"), scope.get("path"),
                      exc_info=(type(err), err, err.__traceback__))
            if started:  # too late for a clean answer; the server closes this connection
                raise
            await JSONResponse({"error": "internal server error", "request_id": request_id},
                               status_code=500)(scope, receive, send)


def _signature_def(n_labels: int) -> dict:
    """TF Serving's metadata description of the two exported signatures."""
    def tensor(name: str, dtype: str, dims: list[int]) -> dict:
        return {"dtype": dtype, "name": name, "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}}

    texts = {INPUT_NAME: tensor(f"{SERVE_SIGNATURE}_{INPUT_NAME}:0", "DT_STRING", [-1])}
    scores = tensor("scores", "DT_FLOAT", [-1, n_labels])
    return {"signature_def": {
        SERVE_SIGNATURE: {"inputs": texts, "outputs": {"scores": scores},
                          "method_name": "tensorflow/serving/predict"},
        DECISIONS_SIGNATURE: {"inputs": texts, "outputs": {
            "scores": scores, "labels": tensor("labels", "DT_INT32", [-1, n_labels])},
            "method_name": "tensorflow/serving/predict"},
    }}


def _rule_json(t: np.ndarray) -> float | list[float]:
    return float(t[0]) if np.all(t == t[0]) else [float(v) for v in t]


def create_app(model_dir: Path, *, max_texts: int = 256, max_chars: int = 100_000,
               batch_window_ms: float = 5.0, max_batch: int = 256, model_name: str | None = None,
               max_body_bytes: int | None = None, max_explain: int = 16) -> FastAPI:
    """The ASGI app serving the export in `model_dir` (loaded now, so a bad folder fails here).

    `max_texts` / `max_chars` bound one request (413 past them), `max_explain` one
    request with ``"explain": true``; the body limit defaults
    to what `max_texts` texts of `max_chars` JSON-escaped characters can take.
    """
    for key, value in (("max_texts", max_texts), ("max_chars", max_chars), ("max_batch", max_batch),
                       ("max_explain", max_explain)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"serve: {key} must be a positive integer, got {value!r}")
    if not batch_window_ms >= 0:
        raise InputError(f"serve: batch_window_ms must be >= 0, got {batch_window_ms!r}")
    body_limit = max_body_bytes or max_texts * (6 * max_chars + 16) + 65_536
    model = ServedModel.load(Path(model_dir), model_name)
    n_labels = len(model.labels)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlbench-predict")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = MicroBatcher(model.predict, window_s=batch_window_ms / 1000.0,
                                         max_batch=max_batch, executor=executor)
        app.state.batcher.start()
        log.info("serving %s (%s, %d labels) from %s", model.name, model.meta.get("track", "?"),
                 n_labels, model.directory)
        try:
            yield
        finally:
            await app.state.batcher.stop()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title=f"mlbench serve: {model.name}", lifespan=lifespan)
    app.state.model = model
    app.state.limits = {"max_texts": max_texts, "max_chars": max_chars, "max_batch": max_batch,
                        "max_explain": max_explain,
                        "batch_window_ms": batch_window_ms, "max_body_bytes": body_limit}

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return err.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"method {request.method} not allowed on {request.url.path}"}.get(
            err.status_code, str(err.detail))
        return JSONResponse({"error": message}, status_code=err.status_code, headers=err.headers)

    def check_name(name: str, version: str | None = None) -> None:
        if name != model.name:
            raise ApiError(404, f"Servable not found for request: Latest({name}); this server has "
                                f"{model.name!r}", "model")
        if version is not None and version != MODEL_VERSION:
            raise ApiError(404, f"Servable not found for request: Specific({name}, {version})", "version")

    async def scores_of(request: Request, texts: list[str]) -> np.ndarray:
        return await request.app.state.batcher.predict(texts)

    # -- the JSON API -------------------------------------------------------------------
    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        body = _object(await _read_json(request, body_limit), PREDICT_FIELDS)
        if "texts" not in body:
            raise ApiError(400, "missing field 'texts' (an array of strings)", "texts")
        texts = _check_texts(_text_list(body["texts"], "texts"), "texts", max_texts, max_chars)
        top_k = body.get("top_k", 5)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ApiError(400, f"expected a positive integer, got {json.dumps(top_k)[:50]}", "top_k")
        rule = body.get("rule", BEST)
        if not isinstance(rule, str) or rule not in model.rules:
            raise ApiError(400, f"unknown decision rule {json.dumps(rule)[:50]}; this model has "
                                f"{', '.join(sorted(model.rules))}", "rule")
        explain = body.get("explain", False)
        if not isinstance(explain, bool):
            raise ApiError(400, f"expected true or false, got {json.dumps(explain)[:50]}", "explain")
        if explain and not model.explains:
            raise ApiError(400, f"this model ({model.meta.get('track', '?')}) has no explanations; "
                                "svm, mlp and encoder SavedModel exports have them", "explain")
        if explain and len(texts) > max_explain:
            raise ApiError(413, f"at most {max_explain} texts per request with explain (integrated "
                                f"gradients cost many forward passes), got {len(texts)}", "texts")
        thresholds = model.rules[rule]
        scores = await scores_of(request, texts)
        probs = model.probabilities(scores)
        k = min(top_k, n_labels)
        order = np.argsort(-scores if probs is None else -probs, axis=1, kind="stable")[:, :k]
        passed = scores >= thresholds
        why: list[dict | None] = [None] * len(texts)
        if explain:  # on the model's worker thread, never on the event loop
            from mlbench.explain.tracks import predicted_labels

            picked = predicted_labels(scores, thresholds)
            why = await asyncio.get_running_loop().run_in_executor(executor, model.explain, texts, picked)
        labels, t_list = model.labels, thresholds.tolist()
        p_rows = [None] * len(texts) if probs is None else probs.tolist()

        def entry(row: list, p_row: list | None, j: int) -> dict:
            out = {"label": labels[j], "score": row[j], "threshold": t_list[j]}
            if p_row is not None:
                out["probability"] = p_row[j]
            return out

        results = []
        for row, p_row, top, ok, reasons in zip(scores.tolist(), p_rows, order.tolist(), passed, why):
            result = {
                "labels": [entry(row, p_row, j) for j in np.flatnonzero(ok).tolist()],
                "top_k": [{**entry(row, p_row, j), "passed": row[j] >= t_list[j]} for j in top],
            }
            if reasons is not None:
                result["explanations"] = reasons
            results.append(result)
        return JSONResponse({"model": model.name, "rule": model.best_rule if rule == BEST else rule,
                             "calibrated": probs is not None, "results": results})

    # -- TensorFlow Serving's REST API --------------------------------------------------
    async def tfs_predict(request: Request, name: str, version: str | None) -> JSONResponse:
        check_name(name, version)
        body = _object(await _read_json(request, body_limit), TFS_FIELDS)
        signature = body.get("signature_name", SERVE_SIGNATURE)
        if signature not in (SERVE_SIGNATURE, DECISIONS_SIGNATURE):
            raise ApiError(400, f"Serving signature name: {json.dumps(signature)[:60]} not found in signature "
                                f"def; have {SERVE_SIGNATURE}, {DECISIONS_SIGNATURE}", "signature_name")
        texts, rows = _tfs_texts(body)
        _check_texts(texts, "instances" if rows else "inputs", max_texts, max_chars)
        scores = await scores_of(request, texts)
        if signature == SERVE_SIGNATURE:
            values = scores.tolist()
            return JSONResponse({"predictions": values} if rows else {"outputs": values})
        decided = (scores >= model.baked).astype(np.int32).tolist()
        if rows:
            return JSONResponse({"predictions": [{"scores": s, "labels": d}
                                                 for s, d in zip(scores.tolist(), decided)]})
        return JSONResponse({"outputs": {"scores": scores.tolist(), "labels": decided}})

    @app.post("/v1/models/{name}:predict")
    async def tfs_predict_latest(name: str, request: Request) -> JSONResponse:
        return await tfs_predict(request, name, None)

    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def tfs_predict_version(name: str, version: str, request: Request) -> JSONResponse:
        return await tfs_predict(request, name, version)

    status_body = {"model_version_status": [{"version": MODEL_VERSION, "state": "AVAILABLE",
                                             "status": {"error_code": "OK", "error_message": ""}}]}

    @app.get("/v1/models/{name}")
    async def tfs_status(name: str) -> JSONResponse:
        check_name(name)
        return JSONResponse(status_body)

    @app.get("/v1/models/{name}/versions/{version}")
    async def tfs_status_version(name: str, version: str) -> JSONResponse:
        check_name(name, version)
        return JSONResponse(status_body)

    @app.get("/v1/models/{name}/metadata")
    async def tfs_metadata(name: str) -> JSONResponse:
        check_name(name)
        return JSONResponse({
            "model_spec": {"name": model.name, "signature_name": "", "version": MODEL_VERSION},
            "metadata": {"signature_def": _signature_def(n_labels)},
            "track": model.meta.get("track"),
            "labels": model.labels,
            "thresholds": {"best_rule": model.best_rule,
                           "rules": {r: _rule_json(t) for r, t in model.rules.items() if r != BEST},
                           DECISIONS_SIGNATURE: _rule_json(model.baked)},
            "run": model.run_metrics(),
            "calibrated": model.calibration is not None,
            "explain": model.meta.get("explain") if model.explains else None,
            "limits": app.state.limits,
        })

    # -- health and the page ------------------------------------------------------------
    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        batcher: MicroBatcher = request.app.state.batcher
        body = {"status": "ok" if batcher.alive else "batcher stopped", "model": model.name,
                "track": model.meta.get("track"), "labels": n_labels, "rules": sorted(model.rules),
                "explain": model.explains, "calibrated": model.calibration is not None,
                "batches": batcher.batches, "texts": batcher.texts}
        return JSONResponse(body, status_code=200 if batcher.alive else 503)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(InternalErrors)
    return app


def serve(model_dir: Path, host: str = "127.0.0.1", port: int = 8000, *, model_name: str | None = None,
          log_level: str = "info", **limits: Any) -> None:
    """Serve the export in `model_dir` until interrupted (one process, one worker).

    One worker on purpose: each worker would load its own copy of the model, and the
    micro-batcher only batches requests that reach the same process.
    """
    import uvicorn

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(Path(model_dir), model_name=model_name, **limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=10)
