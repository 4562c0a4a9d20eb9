"""Load test of `mlbench serve`: N concurrent keep-alive clients for a bounded time, figures printed.

Starts the server in a child process on 127.0.0.1 (or targets ``--url``), then runs
``--clients`` asyncio clients, each sending ``--texts-per-request`` texts per request,
one request at a time, until ``--seconds`` pass or ``--max-requests`` are sent.  Prints
requests/s, docs/s, latency percentiles, the error count (non-200 answers, answers with
the wrong number of results, connection errors) and the server's mean batch size (from
/healthz), beside the model's own batch-256 throughput measured in this process.

    python benchmarks/serve_load.py --train reuters                 # MLP on Reuters, 16 clients, 30 s
    python benchmarks/serve_load.py --model runs/<run>/mlp_savedmodel --dataset reuters
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --clients 32 --seconds 10
    python benchmarks/serve_load.py --train reuters --bad-client --stall 300 --stall-seconds 20

``--bad-client`` adds a client sending one bad request per second (a lone surrogate, then an
oversize body, in turn), each of which must get its 4xx while no good request fails;
``--stall N`` then opens N connections that never finish their request head (half send
nothing, half half a head) for ``--stall-seconds`` while one normal client keeps
sending, and reports when the server closed them, its open file descriptors before,
during and after, and the normal client's latency meanwhile.

Why a hand-written HTTP/1.1 client (asyncio streams, ~40 lines) rather than httpx: on a
2-core machine the client shares the CPU with the server, and a lighter client leaves
more of it to the thing being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------- a model to serve
def load_texts(dataset: str, data_dir: str | None) -> tuple[object, list[str]]:
    """(corpus, test texts) of `dataset` ("reuters", "synthetic" or a registry name)."""
    if dataset == "synthetic":
        from mlbench.data.synthetic import synthetic_corpus

        corpus = synthetic_corpus(5000, seed=0)
    else:
        from mlbench.data import load_corpus

        default = REPO.parent / "shared" / "data" / "reuters21578"
        if data_dir is None and dataset == "reuters" and default.exists():
            data_dir = str(default)
        corpus = load_corpus(dataset, data_dir=data_dir)
    return corpus, list(corpus.test.texts)


def train_export(corpus, out: Path) -> Path:
    """Train the TF-IDF MLP (default settings) and export it as the driver would (fixed 0.5 rule)."""
    import numpy as np

    from baselines.tfidf_mlp import TfidfMLPTrack
    from mlbench.evaluation.thresholds import DecisionRule, save_thresholds
    from mlbench.labels import LabelSpace
    from mlbench.tracks import TrainSettings

    labels = LabelSpace.from_training_labels(corpus.train.labels)
    track = TfidfMLPTrack(TrainSettings(verbose=0))
    start = time.perf_counter()
    track.fit(corpus.train, corpus.val, labels)
    print(f"trained mlp on {len(corpus.train.texts)} docs, {len(labels)} labels in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    exported = track.export(out / "mlp_savedmodel", thresholds=np.full(len(labels), 0.5))
    save_thresholds(exported / "thresholds.json", {"fixed": DecisionRule("fixed", 0.5)}, labels.names,
                    best_rule="fixed")
    return exported


def direct_throughput(model_dir: Path, texts: Sequence[str], batch: int = 256, seconds: float = 3.0) -> float:
    """docs/s of the artifact's own ``predict`` at `batch` (the ceiling the server batches toward)."""
    from mlbench.serving.artifacts import load_artifact

    artifact = load_artifact(model_dir)
    docs = (list(texts) * (1 + 2 * batch // max(len(texts), 1)))[: max(2 * batch, len(texts))]
    artifact.predict(docs[:batch])
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, len(docs), batch):
            artifact.predict(docs[i:i + batch])
        n += len(docs)
    return n / (time.perf_counter() - start)


# --------------------------------------------------------------------------- the server process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int, *, window_ms: float, max_batch: int, header_timeout: float = 10.0,
                 timeout: float = 180.0) -> subprocess.Popen:
    """`serve(model_dir)` in a child process on 127.0.0.1:`port`; returns once /healthz answers."""
    code = ("import sys; from pathlib import Path; from mlbench.serving.server import serve; "
            f"serve(Path(sys.argv[1]), '127.0.0.1', {port}, log_level='warning', "
            f"batch_window_ms={window_ms!r}, max_batch={max_batch!r}, header_timeout_s={header_timeout!r})")
    proc = subprocess.Popen([sys.executable, "-c", code, str(model_dir)], cwd=REPO)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError(f"server did not answer /healthz within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
        return json.loads(r.read())


# --------------------------------------------------------------------------- the load
class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.docs = 0
        self.errors = 0
        self.first_errors: list[str] = []

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(what)


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str,
                body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive POST; (status, body). The server answers with Content-Length."""
    writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next((int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                   if k.strip().lower() == "content-length"), None)
    if length is None:
        raise RuntimeError("answer without Content-Length")
    return status, await reader.readexactly(length)


async def client(index: int, url: str, path: str, texts: Sequence[str], per_request: int, deadline: float,
                 budget: list[int], stats: Stats, tfserving: bool) -> None:
    host_port = url.split("://", 1)[1].rstrip("/")
    host, _, port = host_port.partition(":")
    reader = writer = None
    i = index * 7919  # each client walks the texts from its own offset
    while time.perf_counter() < deadline and budget[0] > 0:
        budget[0] -= 1
        batch = [texts[(i + j) % len(texts)] for j in range(per_request)]
        i += per_request
        body = json.dumps({"instances": batch} if tfserving else {"texts": batch}).encode()
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, int(port or 80))
            status, answer = await asyncio.wait_for(_post(reader, writer, host_port, path, body), 30)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, RuntimeError, ValueError) as err:
            stats.error(f"{type(err).__name__}: {err}")
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        stats.latencies.append(time.perf_counter() - start)
        if status != 200:
            stats.error(f"HTTP {status}: {answer[:200]!r}")
            continue
        got = json.loads(answer)["predictions" if tfserving else "results"]
        if len(got) != per_request:
            stats.error(f"{len(got)} results for {per_request} texts")
            continue
        stats.docs += per_request
    if writer is not None:
        writer.close()


async def run_load(url: str, texts: Sequence[str], *, clients: int, per_request: int, seconds: float,
                   max_requests: int, path: str, tfserving: bool,
                   bad_body_limit: int | None = None) -> tuple[Stats, float, Stats]:
    stats, bad = Stats(), Stats()
    budget = [max_requests]
    start = time.perf_counter()
    jobs = [client(c, url, path, texts, per_request, start + seconds, budget, stats, tfserving)
            for c in range(clients)]
    if bad_body_limit is not None:
        jobs.append(bad_client(url, start + seconds, bad, bad_body_limit))
    await asyncio.gather(*jobs)
    return stats, time.perf_counter() - start, bad


async def bad_client(url: str, deadline: float, stats: Stats, body_limit: int) -> None:
    """One bad request per second, in turn a lone surrogate and a body over the limit; each must get
    its 4xx (400 / 413), on a fresh connection (the server closes after a 413)."""
    host_port = url.split("://", 1)[1].rstrip("/")
    host, _, port = host_port.partition(":")
    bodies = [(b'{"texts": ["good text", "bad \\ud800 text"]}', 400),
              (b'{"texts": ["' + b"x" * (body_limit + 1) + b'"]}', 413)]
    i = 0
    while time.perf_counter() < deadline:
        body, want = bodies[i % len(bodies)]
        i += 1
        start = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(host, int(port or 80))
            try:
                status, _ = await asyncio.wait_for(_post(reader, writer, host_port, "/v1/predict", body), 30)
            finally:
                writer.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, RuntimeError) as err:
            if want == 413 and isinstance(err, (ConnectionResetError, BrokenPipeError)):
                status = 413  # closed while we were still sending: refused, as meant
            else:
                stats.error(f"bad client: {type(err).__name__}: {err}")
                status = None
        if status is not None:
            stats.latencies.append(time.perf_counter() - start)
            if status != want:
                stats.error(f"bad client: HTTP {status}, expected {want}")
            else:
                stats.docs += 1  # here: bad requests refused as they should be
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - start)))


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


async def stall(url: str, n: int, seconds: float, pid: int | None, texts: Sequence[str]) -> dict:
    """`n` connections that never finish a request head, held `seconds`, while one client keeps sending."""
    host_port = url.split("://", 1)[1].rstrip("/")
    host, _, port = host_port.partition(":")
    baseline = open_fds(pid) if pid else None
    closed_after: list[float] = []
    start = time.perf_counter()

    async def stalled(k: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port or 80))
        opened = time.perf_counter()
        if k % 2:
            writer.write(b"POST /v1/predict HTTP/1.1\r\nHost: " + host_port.encode() + b"\r\n")
        try:
            await asyncio.wait_for(reader.read(), seconds)  # returns at EOF: the server closed it
            closed_after.append(time.perf_counter() - opened)
        except (asyncio.TimeoutError, OSError):
            pass
        finally:
            writer.close()

    normal = Stats()
    tasks = [asyncio.create_task(stalled(k)) for k in range(n)]
    await asyncio.sleep(0.5)
    during = open_fds(pid) if pid else None
    await client(0, url, "/v1/predict", texts, 8, start + seconds, [10 ** 9], normal, False)
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.5)
    return {"stalled": n, "held_s": seconds, "closed_by_server": len(closed_after),
            "closed_after_s_median": percentile(closed_after, 50), "closed_after_s_max": max(closed_after, default=None),
            "fds_before": baseline, "fds_during": during, "fds_after": open_fds(pid) if pid else None,
            "normal_requests": len(normal.latencies), "normal_errors": normal.errors,
            "normal_p50_ms": 1000 * percentile(normal.latencies, 50),
            "normal_p99_ms": 1000 * percentile(normal.latencies, 99)}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help="an export folder to serve")
    src.add_argument("--train", choices=("reuters", "synthetic"),
                     help="train the TF-IDF MLP on this corpus and serve its export (default: reuters)")
    src.add_argument("--url", help="a running server (e.g. http://127.0.0.1:8000); nothing is started")
    p.add_argument("--dataset", default=None, help="texts to send (default: the --train corpus, else reuters)")
    p.add_argument("--data-dir")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--texts-per-request", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--max-requests", type=int, default=1_000_000)
    p.add_argument("--batch-window-ms", type=float, default=5.0)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--tfserving", action="store_true", help="load /v1/models/<name>:predict instead of /v1/predict")
    p.add_argument("--bad-client", action="store_true",
                   help="add a client sending one bad request per second (lone surrogate / oversize body)")
    p.add_argument("--stall", type=int, default=0, help="then hold this many stalled connections")
    p.add_argument("--stall-seconds", type=float, default=20.0)
    p.add_argument("--header-timeout", type=float, default=10.0, help="the server's --header-timeout")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.clients < 1 or args.texts_per_request < 1 or args.seconds <= 0 or args.max_requests < 1:
        p.error("--clients, --texts-per-request, --seconds and --max-requests must be positive")
    if not 0 <= args.stall <= 1000 or not 0 < args.stall_seconds <= 120:
        p.error("--stall must be in [0, 1000] and --stall-seconds in (0, 120] (bounded by design)")

    dataset = args.dataset or args.train or "reuters"
    corpus, texts = load_texts(dataset, args.data_dir)
    proc, reference, tmp = None, None, None
    try:
        if args.url:
            url = args.url.rstrip("/")
        else:
            if args.model is None:
                tmp = tempfile.TemporaryDirectory(prefix="serve-load-")
                args.model = train_export(corpus, Path(tmp.name))
            reference = direct_throughput(args.model, texts)
            port = free_port()
            proc = start_server(args.model, port, window_ms=args.batch_window_ms, max_batch=args.max_batch,
                                header_timeout=args.header_timeout)
            url = f"http://127.0.0.1:{port}"
        info = health(url)
        path = f"/v1/models/{info['model']}:predict" if args.tfserving else "/v1/predict"
        body_limit = None
        if args.bad_client:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/v1/info"), timeout=5) as r:
                body_limit = json.loads(r.read())["limits"]["max_body_bytes"]
        stats, elapsed, bad = asyncio.run(run_load(
            url, texts, clients=args.clients, per_request=args.texts_per_request, seconds=args.seconds,
            max_requests=args.max_requests, path=path, tfserving=args.tfserving, bad_body_limit=body_limit))
        after = health(url)
        stalled = None
        if args.stall:
            stalled = asyncio.run(stall(url, args.stall, args.stall_seconds, proc.pid if proc else None, texts))
    finally:
        if proc is not None:
            stop_server(proc)
        if tmp is not None:
            tmp.cleanup()

    n = len(stats.latencies)
    batches = after["batches"] - info["batches"]
    figures = {
        "model": info["model"], "track": info.get("track"), "texts_from": dataset, "path": path,
        "clients": args.clients, "texts_per_request": args.texts_per_request, "seconds": round(elapsed, 2),
        "requests": n, "requests_per_s": n / elapsed, "docs_per_s": stats.docs / elapsed,
        "errors": stats.errors, "p50_ms": 1000 * percentile(stats.latencies, 50),
        "p95_ms": 1000 * percentile(stats.latencies, 95), "p99_ms": 1000 * percentile(stats.latencies, 99),
        "server_batches": batches,
        "mean_batch": (after["texts"] - info["texts"]) / batches if batches else None,
        "direct_batch256_docs_per_s": reference, "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "bad_requests_refused": bad.docs if args.bad_client else None,
        "bad_client_errors": bad.errors if args.bad_client else None,
        "stall": stalled,
    }
    print(f"serve_load: {info['model']} ({info.get('track')}), {args.clients} clients x "
          f"{args.texts_per_request} texts/request, {elapsed:.1f} s, {path}")
    print(f"  requests {n} ({figures['requests_per_s']:.1f}/s), docs {stats.docs} "
          f"({figures['docs_per_s']:.0f}/s), errors {stats.errors}")
    print(f"  latency ms: p50 {figures['p50_ms']:.1f}  p95 {figures['p95_ms']:.1f}  p99 {figures['p99_ms']:.1f}")
    if batches:
        print(f"  server: {batches} predict calls, mean batch {figures['mean_batch']:.1f} texts")
    if reference:
        print(f"  the model's own predict at batch 256 (this process): {reference:.0f} docs/s")
    for line in stats.first_errors:
        print(f"  error: {line}")
    if args.bad_client:
        print(f"  bad client: {bad.docs} bad requests refused with their 4xx, {bad.errors} otherwise")
        for line in bad.first_errors:
            print(f"  bad client error: {line}")
    if stalled:
        print(f"  stall: {stalled['stalled']} connections held {stalled['held_s']:.0f} s; server closed "
              f"{stalled['closed_by_server']} (median {stalled['closed_after_s_median']:.2f} s, max "
              f"{stalled['closed_after_s_max'] or float('nan'):.2f} s after opening)")
        print(f"  server fds: before {stalled['fds_before']}, during {stalled['fds_during']}, after "
              f"{stalled['fds_after']}; normal client: {stalled['normal_requests']} requests, "
              f"{stalled['normal_errors']} errors, p50 {stalled['normal_p50_ms']:.1f} ms, "
              f"p99 {stalled['normal_p99_ms']:.1f} ms")
    print(f"  load average (1 min) at the end: {figures['load_average_1min']:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    failed = stats.errors or (args.bad_client and bad.errors) or (stalled and stalled["normal_errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
