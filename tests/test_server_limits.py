"""What an operator can expose: `mlbench serve`'s limits, timeouts and header checks, on a real
uvicorn server on 127.0.0.1 (raw sockets where a client must misbehave).  Timeouts are set to
fractions of a second here so each test stays bounded."""

from __future__ import annotations

import json
import socket
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from mlbench.serving.server import create_app, default_body_limit  # noqa: E402
from test_server import corpus, export_dir, running  # noqa: E402,F401  (module fixtures)

HEAD_TIMEOUT, BODY_TIMEOUT = 0.6, 0.6


@pytest.fixture(scope="module")
def url(export_dir):
    app = create_app(export_dir, max_texts=8, max_chars=500, max_in_flight=2,
                     header_timeout_s=HEAD_TIMEOUT, body_timeout_s=BODY_TIMEOUT)
    with running(app) as base:
        yield base


def _connect(url: str) -> socket.socket:
    host, port = url.split("://", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(closed by the server within `seconds`, what it sent first)."""
    sock.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True, got
            got += chunk
    except socket.timeout:
        return False, got
    except ConnectionResetError:
        return True, got


def _ok(client: httpx.Client) -> None:
    r = client.post("/v1/predict", json={"texts": ["ba bi bo"]})
    assert r.status_code == 200, r.text


@pytest.mark.slow
def test_stalled_heads_and_bodies_are_closed_at_their_timeouts(url):
    silent = _connect(url)  # connects, sends nothing
    slow = _connect(url)  # sends half a head
    slow.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    stalled = _connect(url)  # a full head, then half the body it announced
    stalled.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{\"texts\": [")
    start = time.monotonic()
    closed, got = _closed_within(silent, 10 * HEAD_TIMEOUT)
    assert closed and got == b""
    closed, got = _closed_within(slow, 10 * HEAD_TIMEOUT)
    assert closed and got.startswith(b"HTTP/1.1 408")
    closed, got = _closed_within(stalled, 10 * BODY_TIMEOUT)
    assert closed and got.startswith(b"HTTP/1.1 408") and b"request body not received" in got
    assert time.monotonic() - start < 8 * HEAD_TIMEOUT  # at the timeout, not at some later sweep
    for sock in (silent, slow, stalled):
        sock.close()
    with httpx.Client(base_url=url, timeout=10) as client:
        _ok(client)


def test_requests_past_the_in_flight_limit_get_429_with_retry_after(url):
    holders = []
    for _ in range(2):  # two requests in flight, each waiting for the rest of its body
        sock = _connect(url)
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50\r\n\r\n{")
        holders.append(sock)
    time.sleep(0.15)
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.post("/v1/predict", json={"texts": ["x"]})
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
        assert client.get("/healthz").status_code == 200  # health checks are never refused
        for sock in holders:
            sock.close()
        deadline = time.monotonic() + 5
        while client.post("/v1/predict", json={"texts": ["x"]}).status_code == 429:
            assert time.monotonic() < deadline, "in-flight slots were not released"
            time.sleep(0.05)
        _ok(client)


def test_json_content_type_host_and_origin_are_required(url):
    with httpx.Client(base_url=url, timeout=10) as client:
        body = json.dumps({"texts": ["x"]})
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            r = client.post("/v1/predict", content=body, headers={"content-type": ctype})
            assert r.status_code == 415 and r.json()["field"] == "Content-Type", ctype
        r = client.post("/v1/models/svm:predict", content=json.dumps({"instances": ["x"]}))
        assert r.status_code == 415  # no content type at all
        r = client.post("/v1/predict", content=body,
                        headers={"content-type": "application/json; charset=utf-8"})
        assert r.status_code == 200
        for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example"):  # DNS rebinding
            r = client.post("/v1/predict", json={"texts": ["x"]}, headers={"host": host})
            assert r.status_code == 400 and r.json()["field"] == "Host", host
        for host in ("localhost", "LOCALHOST:8000", "[::1]:80", "127.0.0.1"):
            assert client.get("/healthz", headers={"host": host}).status_code == 200, host
        r = client.post("/v1/predict", json={"texts": ["x"]}, headers={"origin": "https://evil.example"})
        assert r.status_code == 403 and r.json()["field"] == "Origin"
        port = url.rsplit(":", 1)[1]
        r = client.post("/v1/predict", json={"texts": ["x"]}, headers={"origin": f"http://localhost:{port}"})
        assert r.status_code == 200  # the page itself


def test_no_docs_security_headers_everywhere_and_body_limit(url, export_dir):
    with httpx.Client(base_url=url, timeout=10) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert client.get(path).status_code == 404, path
        answers = [client.get("/"), client.get("/static/app.js"), client.get("/healthz"),
                   client.get("/nope"), client.post("/v1/predict", json={"texts": []}),
                   client.post("/v1/predict", json={"texts": ["x"]}, headers={"host": "evil.example"}),
                   client.get("/v1/models/svm/metadata"), client.get("/v2/health/live")]
        for r in answers:
            assert r.headers["x-content-type-options"] == "nosniff", r.url
            assert "default-src 'self'" in r.headers["content-security-policy"], r.url
        r = client.post("/v1/predict", content=b"{\"texts\": [\"" + b"x" * 100_000 + b"\"]}",
                        headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["field"] == "body"
        assert "max-body-bytes" in r.json()["error"]
    assert default_body_limit(8, 500) == 8 * 500 * 2 + 65_536
    from mlbench.serving.server import Settings

    assert Settings().check().max_body_bytes < 8 * 2 ** 20  # the defaults: a few MB, not 147 MiB
    app = create_app(export_dir, openapi=True)
    from starlette.testclient import TestClient

    with TestClient(app, base_url="http://localhost") as local:
        spec = local.get("/openapi.json")
        assert spec.status_code == 200 and "/v1/predict" in spec.json()["paths"]
        assert local.get("/docs").status_code == 404  # its page would load scripts from a CDN
