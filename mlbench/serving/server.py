"""`mlbench serve`: one exported model behind a JSON API, TF Serving's REST API, the Open Inference
Protocol v2 and a web page.

    POST /v1/predict                          {"texts": [...], "top_k": 5, "rule": "best", "explain": false}
    GET  /v1/info                             labels, decision rules, the run's test metrics, limits
    POST /v1/models/<name>[/versions/1]:predict   TensorFlow Serving REST (every signature of the export)
    GET  /v1/models/<name>[/versions/1][/metadata] TF Serving model status / metadata
    GET  /v2, /v2/health/live, /v2/health/ready   Open Inference Protocol v2 (KServe, Triton)
    GET  /v2/models/<name>[/ready], POST /v2/models/<name>/infer
    GET  /healthz, GET /                      liveness; the page (static files, no CDN)

Why one process with one model: the model is loaded once and kept warm, and every
request's texts go through one asyncio micro-batcher (`served_model.MicroBatcher`)
that runs one model call on a single worker thread for all texts that arrived within
``batch_window_ms``; TF calls never run on the event loop.

What an operator gets by default (each a `serve` flag): bodies bounded by what
``max_texts`` texts of ``max_chars`` real characters take; at most ``max_in_flight``
requests at once (then 429 with Retry-After); a request head must arrive within
``header_timeout_s`` and a body within ``body_timeout_s`` (stalled connections are
closed); POST bodies must be JSON (415); the Host header must name this server
(against DNS rebinding) and a browser's Origin must too (against cross-site posts);
no /docs (its page loads scripts from a CDN), /openapi.json only when asked; CSP and
``nosniff`` on every response; one log line per failed request.

This is the edge layer (like the command line): the only module under ``mlbench/``
allowed to import the web framework.  Parsing lives in `api_requests`, the model calls
in `served_model`, the answers' shapes in `api_responses`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles

from mlbench.errors import InputError
from mlbench.serving import api_responses as answers
from mlbench.serving.api_requests import ApiError, Limits, parse_json, parse_predict, parse_tfs, parse_v2
from mlbench.serving.layout import DECISIONS_SIGNATURE, EXPLAIN_LABELS_INPUT, EXPLAIN_SIGNATURE, INPUT_NAME, SCORES
from mlbench.serving.served_model import MODEL_VERSION, MicroBatcher, ServedModel, model_name_of

log = logging.getLogger("mlbench.serving")

STATIC_DIR = Path(__file__).with_name("static")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: UTF-8 bytes per character the default body limit allows (Latin scripts, JSON escapes of quotes
#: and newlines); clients sending ``\\uXXXX`` escapes or CJK text can raise --max-body-bytes
BODY_BYTES_PER_CHAR = 2
BODY_OVERHEAD = 65_536
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer")]
HEALTH_PATHS = frozenset({"/healthz", "/v2/health/live", "/v2/health/ready"})

__all__ = ["create_app", "serve", "server_config", "Settings", "MicroBatcher", "ApiError", "model_name_of",
           "default_body_limit"]


def default_body_limit(max_texts: int, max_chars: int) -> int:
    """Bytes a body may hold: `max_texts` texts of `max_chars` characters of real text, plus JSON."""
    return max_texts * max_chars * BODY_BYTES_PER_CHAR + BODY_OVERHEAD


@dataclass
class Settings:
    """The operator's choices (every one a `mlbench serve` flag)."""

    max_texts: int = 128
    max_chars: int = 20_000
    max_explain: int = 16
    batch_window_ms: float = 5.0
    max_batch: int = 256
    max_body_bytes: int | None = None  # None: default_body_limit(max_texts, max_chars)
    max_in_flight: int = 32
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    allowed_hosts: Sequence[str] = LOCAL_HOSTS  # "*" allows any
    openapi: bool = False

    def check(self) -> "Settings":
        for key in ("max_texts", "max_chars", "max_batch", "max_explain", "max_in_flight"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"serve: {key} must be a positive integer, got {value!r}")
        if self.max_body_bytes is None:
            self.max_body_bytes = default_body_limit(self.max_texts, self.max_chars)
        elif not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1024:
            raise InputError(f"serve: max_body_bytes must be an integer >= 1024, got {self.max_body_bytes!r}")
        if not self.batch_window_ms >= 0:
            raise InputError(f"serve: batch_window_ms must be >= 0, got {self.batch_window_ms!r}")
        for key in ("header_timeout_s", "body_timeout_s", "keep_alive_s"):
            if not getattr(self, key) > 0:
                raise InputError(f"serve: {key} must be > 0 seconds, got {getattr(self, key)!r}")
        hosts = [h.strip().lower() for h in self.allowed_hosts if h.strip()]
        if not hosts:
            raise InputError("serve: allowed_hosts is empty; name the hosts clients use, or '*'")
        self.allowed_hosts = tuple(hosts)
        return self

    @property
    def limits(self) -> Limits:
        return Limits(self.max_texts, self.max_chars, self.max_explain)


# --------------------------------------------------------------------------- the guard (ASGI middleware)
def _host_name(value: str) -> str:
    """``example.com:8000`` → ``example.com``; ``[::1]:80`` → ``[::1]``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """Every HTTP request passes here: Host and Origin allow-lists, the in-flight limit, security
    headers on every answer, a 500 for an unexpected exception, one log line per failed request.

    Why not ``app.exception_handler(Exception)``: Starlette re-raises after that handler
    answers, and uvicorn then logs a traceback and drops the keep-alive connection.
    """

    def __init__(self, app: Any, settings: Settings):
        self.app, self.settings = app, settings
        self.any_host = "*" in settings.allowed_hosts
        self.in_flight = 0
        self.refused = 0  # 429 answers, for /healthz

    def _allowed(self, host: str) -> bool:
        return self.any_host or _host_name(host) in self.settings.allowed_hosts

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, started, error_body = 0, False, bytearray()

        async def guarded_send(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            elif message["type"] == "http.response.body" and status >= 400 and len(error_body) < 1024:
                error_body.extend(message.get("body", b"")[:1024])
            await send(message)

        method, path = scope.get("method", "?"), scope.get("path", "?")
        try:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
            host = headers.get("host", "")
            origin = headers.get("origin")
            if not self._allowed(host):
                raise ApiError(400, f"host {host[:100]!r} is not served here (allowed: "
                                    f"{', '.join(self.settings.allowed_hosts)}; see --allowed-host)", "Host")
            if origin is not None and method not in ("GET", "HEAD") and not self._allowed(
                    urlsplit(origin).netloc if origin != "null" else ""):
                raise ApiError(403, f"cross-origin request from {origin[:100]!r} refused", "Origin")
            if path in HEALTH_PATHS:
                await self.app(scope, receive, guarded_send)
            elif self.in_flight >= self.settings.max_in_flight:
                self.refused += 1
                raise ApiError(429, f"server busy: {self.settings.max_in_flight} requests in flight; "
                                    "retry after 1 s", None, headers={"Retry-After": "1"})
            else:
                self.in_flight += 1
                try:
                    await self.app(scope, receive, guarded_send)
                finally:
                    self.in_flight -= 1
        except ApiError as err:
            if not started:
                await JSONResponse(err.body(), status_code=err.status, headers=err.headers)(
                    scope, receive, guarded_send)
        except ClientDisconnect:
            log.info("%s %s: the client went away", method, path)
            return
        except Exception as err:
            request_id = uuid.uuid4().hex[:16]
            log.error("request %s failed: %s %s: %s: %s", request_id, method, path, type(err).__name__,
                      str(err)[:300], exc_info=log.isEnabledFor(logging.DEBUG))
            if started:  # too late for a clean answer; the server closes this connection
                raise
            await JSONResponse({"error": "internal server error", "request_id": request_id},
                               status_code=500)(scope, receive, guarded_send)
            return
        if 400 <= status < 500:
            log.warning("%s %s -> %d %s", method, path, status,
                        bytes(error_body[:300]).decode("utf-8", "replace"))


# --------------------------------------------------------------------------- reading a request
JSON_TYPE = "application/json"


def _require_content_type(request: Request, also: Sequence[str | None] = ()) -> None:
    """415 unless the body is declared JSON (a browser cannot send that cross-site without CORS)."""
    declared = request.headers.get("content-type")
    media = declared.split(";", 1)[0].strip().lower() if declared is not None else None
    if media == JSON_TYPE or media in also:
        return
    raise ApiError(415, f"expected Content-Type: {JSON_TYPE}, got "
                        f"{(declared or 'none')[:60]!r}", "Content-Type")


async def _read_body(request: Request, settings: Settings) -> bytes:
    """The raw body: 413 past the limit (checked while reading), 408 when it stalls."""
    limit = settings.max_body_bytes
    close = {"Connection": "close"}  # the rest of the body is not read: do not reuse the connection
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over the limit of {limit} bytes "
                            "(--max-body-bytes)", "body", headers=close)

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body is over the limit of {limit} bytes (--max-body-bytes)",
                               "body", headers=close)
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), settings.body_timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, f"request body not received within {settings.body_timeout_s:g} s", "body",
                       headers=close) from None


async def _json_body(request: Request, settings: Settings) -> Any:
    _require_content_type(request)
    return parse_json(await _read_body(request, settings))


# --------------------------------------------------------------------------- the app
def create_app(model_dir: Path, *, model_name: str | None = None, settings: Settings | None = None,
               **options: Any) -> FastAPI:
    """The ASGI app serving the export in `model_dir` (loaded now, so a bad folder fails here).

    `settings` (or its fields as keyword `options`) are the operator's limits.
    """
    settings = (settings or Settings(**options)).check()
    model = ServedModel.load(Path(model_dir), model_name)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlbench-predict")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = MicroBatcher(model.outputs, window_s=settings.batch_window_ms / 1000.0,
                                         max_batch=settings.max_batch, executor=executor)
        app.state.batcher.start()
        log.info("serving %s (%s, %d labels) from %s", model.name, model.meta.get("track", "?"),
                 len(model.labels), model.directory)
        try:
            yield
        finally:
            await app.state.batcher.stop()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title=f"mlbench serve: {model.name}", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.openapi else None)
    app.state.model, app.state.settings = model, settings
    app.state.limits = {k: v for k, v in asdict(settings).items() if k != "allowed_hosts"}

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"method {request.method} not allowed on {request.url.path}"}.get(
            err.status_code, "request refused")
        return JSONResponse({"error": message}, status_code=err.status_code, headers=err.headers)

    _add_v1_routes(app, model, settings, executor)
    _add_tfs_routes(app, model, settings, executor)
    _add_v2_routes(app, model, settings)
    _add_page_and_health(app, model)
    app.add_middleware(Guard, settings=settings)
    return app


def _batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


def _add_v1_routes(app: FastAPI, model: ServedModel, settings: Settings, executor: ThreadPoolExecutor) -> None:
    """mlbench's own JSON API."""

    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        req = parse_predict(await _json_body(request, settings), settings.limits, list(model.rules),
                            model.explains, model.meta.get("track", "?"))
        out = await _batcher(request).predict(req.texts)
        why = None
        if req.explain:  # on the model's worker thread, never on the event loop
            from mlbench.explain.tracks import predicted_labels

            picked = predicted_labels(out[SCORES], model.rules[req.rule])
            why = await asyncio.get_running_loop().run_in_executor(executor, model.explain, req.texts, picked)
        return JSONResponse(answers.predict_results(model, out, req.rule, req.top_k, why))

    @app.get("/v1/info")
    async def info() -> JSONResponse:
        return JSONResponse(answers.info(model, app.state.limits))


def _check_name(model: ServedModel, name: str, version: str | None = None) -> None:
    if name != model.name:
        raise ApiError(404, f"Servable not found for request: Latest({name}); this server has "
                            f"{model.name!r}", "model")
    if version is not None and version != MODEL_VERSION:
        raise ApiError(404, f"Servable not found for request: Specific({name}, {version})", "version")


def _add_tfs_routes(app: FastAPI, model: ServedModel, settings: Settings, executor: ThreadPoolExecutor) -> None:
    """TensorFlow Serving's REST API, answering what TF Serving answers for the same SavedModel."""

    async def tfs_predict(request: Request, name: str, version: str | None) -> JSONResponse:
        _check_name(model, name, version)
        req = parse_tfs(await _json_body(request, settings), settings.limits, model.signature_defs,
                        len(model.labels))
        if req.signature == EXPLAIN_SIGNATURE:
            out = await asyncio.get_running_loop().run_in_executor(
                executor, model.explain_outputs, req.texts, req.extra[EXPLAIN_LABELS_INPUT])
        else:
            out = await _batcher(request).predict(req.texts)
            if req.signature == DECISIONS_SIGNATURE:
                out = model.decisions(out)
        return JSONResponse(answers.tfs_predictions(out, req.rows))

    @app.post("/v1/models/{name}:predict")
    async def tfs_predict_latest(name: str, request: Request) -> JSONResponse:
        return await tfs_predict(request, name, None)

    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def tfs_predict_version(name: str, version: str, request: Request) -> JSONResponse:
        return await tfs_predict(request, name, version)

    @app.get("/v1/models/{name}")
    async def tfs_status(name: str) -> JSONResponse:
        _check_name(model, name)
        return JSONResponse(answers.tfs_status())

    @app.get("/v1/models/{name}/versions/{version}")
    async def tfs_status_version(name: str, version: str) -> JSONResponse:
        _check_name(model, name, version)
        return JSONResponse(answers.tfs_status())

    @app.get("/v1/models/{name}/metadata")
    async def tfs_metadata(name: str) -> JSONResponse:
        _check_name(model, name)
        return JSONResponse(answers.tfs_metadata(model))

    @app.get("/v1/models/{name}/versions/{version}/metadata")
    async def tfs_metadata_version(name: str, version: str) -> JSONResponse:
        _check_name(model, name, version)
        return JSONResponse(answers.tfs_metadata(model))


def _add_v2_routes(app: FastAPI, model: ServedModel, settings: Settings) -> None:
    """The Open Inference Protocol v2 (KServe, Triton) over HTTP/REST."""
    outputs = answers.v2_outputs(model)

    def v2_check(name: str, version: str | None = None) -> None:
        if name != model.name or (version is not None and version not in ("", MODEL_VERSION)):
            raise ApiError(404, f"unknown model {name!r}" + (f" version {version!r}" if version else "")
                           + f"; this server has {model.name!r} version {MODEL_VERSION}", "model")

    @app.get("/v2")
    async def v2_server() -> JSONResponse:
        return JSONResponse(answers.v2_server())

    @app.get("/v2/health/live")
    async def v2_live() -> JSONResponse:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready")
    async def v2_ready(request: Request) -> JSONResponse:
        ready = _batcher(request).alive
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def metadata(name: str, version: str | None = None) -> JSONResponse:
        v2_check(name, version)
        return JSONResponse(answers.v2_model(model))

    async def ready(request: Request, name: str, version: str | None = None) -> JSONResponse:
        v2_check(name, version)
        alive = _batcher(request).alive
        return JSONResponse({"name": model.name, "ready": alive}, status_code=200 if alive else 503)

    async def infer(request: Request, name: str, version: str | None = None) -> JSONResponse:
        v2_check(name, version)
        # Triton's clients send no Content-Type (binary tensors: octet-stream); a browser's
        # cross-site post is refused by the Origin check before this point
        _require_content_type(request, also=(None, "application/octet-stream"))
        req = parse_v2(await _read_body(request, settings),
                       request.headers.get("inference-header-content-length"), settings.limits,
                       INPUT_NAME, outputs)
        out = await _batcher(request).predict(req.texts)
        answer, raw = answers.v2_infer(model, out, req.id, req.outputs, req.binary, req.binary_default)
        if not raw:
            return JSONResponse(answer)
        head = JSONResponse(answer).body
        return Response(head + raw, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(len(head))})

    app.add_api_route("/v2/models/{name}", metadata, methods=["GET"])
    app.add_api_route("/v2/models/{name}/versions/{version}", metadata, methods=["GET"])
    app.add_api_route("/v2/models/{name}/ready", ready, methods=["GET"])
    app.add_api_route("/v2/models/{name}/versions/{version}/ready", ready, methods=["GET"])
    app.add_api_route("/v2/models/{name}/infer", infer, methods=["POST"])
    app.add_api_route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"])


def _add_page_and_health(app: FastAPI, model: ServedModel) -> None:
    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        batcher = _batcher(request)
        body = {"status": "ok" if batcher.alive else "batcher stopped", "model": model.name,
                "track": model.meta.get("track"), "labels": len(model.labels), "rules": sorted(model.rules),
                "explain": model.explains, "calibrated": model.calibrated,
                "batches": batcher.batches, "texts": batcher.texts, "retried_batches": batcher.retried}
        return JSONResponse(body, status_code=200 if batcher.alive else 503)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


# --------------------------------------------------------------------------- uvicorn
def _timed_protocol(header_timeout_s: float) -> type:
    """uvicorn's httptools protocol, plus a deadline for each request head.

    uvicorn closes idle keep-alive connections but waits forever for a connection that
    opens and sends nothing, or sends its head a byte at a time; here the head of every
    request (from the connection, or from its first byte on a kept-alive one) must be
    complete within `header_timeout_s`, else the connection is closed (408 when part of
    a head came).
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0
        timed_out = 0  # connections closed at the deadline (class-wide, for tests and benchmarks)

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # a new request starts on a kept-alive connection
            self._head_bytes += len(data)
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            type(self).timed_out += 1
            if self.transport.is_closing():
                return
            if self._head_bytes:
                body = b'{"error":"request head not received within %g s","field":"headers"}' % header_timeout_s
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                     b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            self.transport.close()

    return TimedHttpToolsProtocol


def server_config(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info",
                  **extra: Any) -> Any:
    """The uvicorn configuration `serve` runs `app` with (its settings' timeouts), for tests too."""
    import uvicorn

    settings: Settings = app.state.settings
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          http=_timed_protocol(settings.header_timeout_s),
                          timeout_keep_alive=settings.keep_alive_s, timeout_graceful_shutdown=10,
                          server_header=False, **extra)


def serve(model_dir: Path, host: str = "127.0.0.1", port: int = 8000, *, model_name: str | None = None,
          log_level: str = "info", **options: Any) -> None:
    """Serve the export in `model_dir` until interrupted (one process, one worker).

    One worker on purpose: each worker would load its own copy of the model, and the
    micro-batcher only batches requests that reach the same process.  A specific `host`
    to listen on joins the Host allow-list.
    """
    import uvicorn

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(**options)
    name = f"[{host}]" if ":" in host else host.lower()
    if host not in ("0.0.0.0", "::", "") and name not in settings.allowed_hosts and "*" not in settings.allowed_hosts:
        settings.allowed_hosts = (*settings.allowed_hosts, name)
    app = create_app(Path(model_dir), model_name=model_name, settings=settings)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C (or SIGINT) after a graceful shutdown
        uvicorn.Server(server_config(app, host, port, log_level=log_level)).run()

