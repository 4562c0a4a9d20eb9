"""``--dask`` (`mlbench.cluster`): the linear tracks' independent fits on a real Dask
cluster (a ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1) give
exactly the local run's scores and choices, and a worker killed mid-run loses nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import pytest

from conftest import REPO

pytest.importorskip("distributed")

#: each process gets this long to start, and the whole run this long to finish
START_S, RUN_S = 60, 120
#: a `SlowSVM` fit's extra seconds: long enough for the kill to land mid-run
DELAY_S = 0.3

try:  # a track the workers import by name (tests/ is on their path)
    from baselines.svm import LinearSVMTrack
except ImportError:  # pragma: no cover - scikit-learn is a core dependency
    LinearSVMTrack = object


class GridSVM(LinearSVMTrack):
    """The SVM track with a grid of four points (one batch of independent fits)."""

    name = "grid_svm"
    search_space: ClassVar[dict[str, list]] = {"C": [0.5, 2.0], "class_weight": [None, "balanced"]}
    search_budget: ClassVar[int | None] = None


class SlowSVM(GridSVM):
    """`GridSVM` with a pause in each fit: the kill lands while fits are running."""

    name = "slow_svm"

    def fit_features(self, *args: Any, **kwargs: Any) -> dict:
        time.sleep(DELAY_S)
        return super().fit_features(*args, **kwargs)


@pytest.fixture(autouse=True)
def tracks_registered(monkeypatch):
    from mlbench import tracks

    monkeypatch.setitem(tracks._REGISTRY, "grid_svm", "test_dask:GridSVM")
    monkeypatch.setitem(tracks._REGISTRY, "slow_svm", "test_dask:SlowSVM")


def _dask(*args: str, log: Path) -> subprocess.Popen:
    """A ``dask`` command in a session of its own (its logs in `log`), run with this checkout
    and tests/ importable."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests"),
                                                       os.environ.get("PYTHONPATH", "")]))
    exe = shutil.which("dask")
    cmd = [exe] if exe else [sys.executable, "-m", "dask"]
    return subprocess.Popen([*cmd, *args], stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """End a process this test started (its own session), politely then not."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def real_cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, subprocess.Popen]]]:
    """(scheduler address, {worker name: its process}): ``dask scheduler`` and two
    single-thread ``dask worker`` processes (no nanny: a killed worker stays dead) on
    127.0.0.1; every process is stopped when the block ends, whatever happened."""
    from distributed import Client

    procs: list[subprocess.Popen] = []
    file = tmp_path / "scheduler.json"
    try:
        procs.append(_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                           "--scheduler-file", str(file), log=tmp_path / "scheduler.log"))
        deadline = time.monotonic() + START_S
        while not file.exists() or not file.read_text():
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        workers = {}
        for name in ("w1", "w2"):
            workers[name] = _dask("worker", "--scheduler-file", str(file), "--host", "127.0.0.1",
                                  "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name,
                                  "--death-timeout", str(START_S), log=tmp_path / f"{name}.log")
            procs.append(workers[name])
        with Client(scheduler_file=str(file), timeout=START_S) as client:
            client.wait_for_workers(2, timeout=START_S)
            address = client.scheduler.address
        assert address.startswith("tcp://127.0.0.1:")
        yield address, workers
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.fixture
def corpus():
    from mlbench.data.synthetic import synthetic_corpus

    return synthetic_corpus(240, seed=7, vocab_size=1500, n_labels=8, median_words=30)


def _setup(corpus, k: int = 3):
    from mlbench.labels import LabelSpace
    from mlbench.protocol import make_folds, pool_split

    labels = LabelSpace.from_training_labels(corpus.train.labels)
    pool = pool_split(corpus)
    return labels, pool, make_folds(labels.encode(pool.labels), k, seed=42)


def _runs(name: str, corpus, *, holdout: bool = True) -> dict[str, Any]:
    """What a cluster run must reproduce: the cross-fitted search (out-of-fold scores, the
    grid it tried and its choice, the refit's test margins) and the holdout search (here
    k-fold on train: the validation split is small)."""
    from mlbench.protocol import cross_fit
    from mlbench.tracks import TrainSettings
    from mlbench.tuning import search

    labels, pool, folds = _setup(corpus)
    settings = TrainSettings(seed=1, n_jobs=1)  # locally no process pool for these tiny fits
    fit = cross_fit(name, settings, pool, labels, folds, tune=True, objective="micro")
    runs = {"oof": fit.oof, "search": {k: v for k, v in fit.search.items() if k != "seconds"},
            "test": fit.track.decision_function(corpus.test.texts)}
    if holdout:
        track, result = search(name, settings, corpus.train, corpus.val, labels, objective="micro")
        runs.update(holdout=(result.grid, result.scores, result.rules, result.chosen),
                    holdout_test=track.decision_function(corpus.test.texts))
    return runs


def _assert_same(local: dict[str, Any], remote: dict[str, Any]) -> None:
    # the same functions on the same arrays on the same CPU: bit for bit, not approximately
    assert remote.keys() == local.keys()
    for key in ("oof", "test", "holdout_test"):
        if key in local:
            np.testing.assert_array_equal(remote[key], local[key], err_msg=key)
    assert remote["search"] == local["search"] and remote.get("holdout") == local.get("holdout")


@pytest.mark.slow
def test_a_cluster_run_equals_the_local_run(tmp_path, corpus):
    from distributed import get_task_stream

    from mlbench.cluster import dask_cluster

    local = _runs("grid_svm", corpus)
    assert len(local["search"]["grid"]) == 4 and len(set(local["search"]["scores"])) > 1  # a real choice
    with real_cluster(tmp_path) as (address, _workers), dask_cluster(address) as client:
        with get_task_stream(client) as stream:
            remote = _runs("grid_svm", corpus)
    _assert_same(local, remote)
    # the fits did run there, on both workers: folds × points, and label chunks
    tasks = [t for t in stream.data if t["key"].startswith("_sequential")]
    assert len(tasks) >= 3 * len(local["search"]["grid"])
    assert len({t["worker"] for t in tasks}) == 2


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_nothing(tmp_path, corpus):
    from distributed import Client

    from mlbench.cluster import dask_cluster

    local = _runs("slow_svm", corpus, holdout=False)
    with real_cluster(tmp_path) as (address, workers):
        seen: dict[str, Any] = {}

        def kill_w2_while_it_works() -> None:
            """SIGKILL worker w2 once tasks have finished and it is running one."""
            with Client(address, timeout=START_S) as watcher:
                w2 = next(a for a, w in watcher.scheduler_info()["workers"].items() if w["name"] == "w2")
                deadline = time.monotonic() + RUN_S
                while time.monotonic() < deadline:
                    done = watcher.run_on_scheduler(
                        lambda dask_scheduler: sum(t.state == "memory" and t.key.startswith("_sequential")
                                                   for t in dask_scheduler.tasks.values()))
                    busy = watcher.processing().get(w2, [])
                    if done >= 2 and busy:
                        seen["busy"] = list(busy)
                        workers["w2"].send_signal(signal.SIGKILL)
                        return
                    time.sleep(0.02)

        killer = threading.Thread(target=kill_w2_while_it_works, daemon=True)
        with dask_cluster(address) as client:
            killer.start()
            started = time.monotonic()
            remote = _runs("slow_svm", corpus, holdout=False)
            killer.join(RUN_S)
            assert time.monotonic() - started < RUN_S
            survivors = [w["name"] for w in client.scheduler_info()["workers"].values()]
    assert seen.get("busy"), "w2 was never killed while running a task: the test proved nothing"
    assert workers["w2"].poll() == -signal.SIGKILL and survivors == ["w1"]
    _assert_same(local, remote)


def test_bad_addresses_fail_in_one_line(monkeypatch):
    from mlbench import cluster
    from mlbench.config import RunConfig
    from mlbench.errors import InputError

    for good in ("local", "tcp://10.0.0.5:8786", "scheduler.internal:8786", "tls://[::1]:8786"):
        assert cluster.is_address(good), good
    for bad in ("tcp://host", "http://10.0.0.5:8786", "10.0.0.5:99999", "", 8786):
        assert not cluster.is_address(bad), bad
        with pytest.raises(InputError, match="--dask: expected local or a scheduler address"):
            RunConfig(dataset="reuters", dask=bad).validate()
    # nothing listens on a port just closed: the connection fails within the timeout, in one line
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    started = time.monotonic()
    with pytest.raises(InputError, match=rf"^--dask tcp://127.0.0.1:{port}: could not connect within 1 s$"):
        with cluster.dask_cluster(f"tcp://127.0.0.1:{port}"):
            pass
    assert time.monotonic() - started < 10
    assert cluster.active_client() is None


def test_a_cli_run_with_a_bad_address_exits_2_in_one_line(capsys):
    from mlbench_cli import main

    assert main(["run", "--dataset", "reuters", "--dask", "tcp://nohost"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --dask: expected local or a scheduler address") and "\n" not in err


@pytest.mark.parametrize("budget", [None, 4, 7])
def test_prefetch_is_told_exactly_the_points_the_search_then_scores(budget):
    """The coordinate search's sweeps and the grid, batched for the cluster: the points
    prefetched are the points scored (none wasted, none missed), in the same order and
    with the same choice as without prefetching."""
    from mlbench.tracks import TrainSettings
    from mlbench.tuning import SearchResult, explore, grid_points

    space = {"a": [1, 2, 3], "b": ["x", "y"], "c": [0.1, 0.2]}

    def run(prefetch):
        scored = []

        def score(point):  # a bumpy landscape, so the coordinate search moves and stops
            scored.append(dict(point))
            return float((point["a"] * 7 + len(point["b"]) * 3 + point["c"] * 10) % 5), "fixed"

        result = SearchResult(track="t", objective="micro", metric="micro_f1", method="none",
                              evaluation="test", space=space, budget=budget, full_grid=len(grid_points(space)))
        explore(result, TrainSettings(), score, "t", lambda _m: None, 0.0, prefetch=prefetch)
        return scored, result

    batches: list[list[dict]] = []
    plain, plain_result = run(None)
    batched, batched_result = run(lambda points: batches.append([dict(p) for p in points]))
    assert batched == plain and batched_result.chosen == plain_result.chosen
    prefetched = [p for batch in batches for p in batch]
    first = [] if budget is None else [plain[0]]  # the coordinate search's start is scored alone
    assert sorted(map(str, first + prefetched)) == sorted(map(str, plain))
    assert any(len(batch) > 1 for batch in batches)


def test_a_call_whose_shared_data_died_with_a_worker_is_sent_again(monkeypatch):
    """A worker killed while a call's arguments were being broadcast can take their only
    copy: the call is sent again (the tasks are deterministic), at most `RETRIES` times."""
    from concurrent.futures import CancelledError

    from mlbench import cluster

    tries = []

    def flaky(client, fn, calls):
        tries.append(len(calls))
        if len(tries) <= cluster.RETRIES:
            raise CancelledError("lost with its worker")
        return [fn(*args) for args in calls]

    monkeypatch.setattr(cluster, "_CLIENT", object())  # "a cluster is active"
    monkeypatch.setattr(cluster, "_map_once", flaky)
    assert cluster.map_tasks(abs, [(-1,), (-2,)]) == [1, 2] and len(tries) == cluster.RETRIES + 1

    def lost(client, fn, calls):
        tries.append(len(calls))
        raise CancelledError("lost with its worker")

    tries.clear()
    monkeypatch.setattr(cluster, "_map_once", lost)
    with pytest.raises(CancelledError):  # past the retries the error is the caller's
        cluster.map_tasks(abs, [(-1,)])
    assert len(tries) == cluster.RETRIES + 1
    # a task's own error is not retried
    monkeypatch.setattr(cluster, "_map_once", lambda client, fn, calls: tries.append(1) or 1 / 0)
    tries.clear()
    with pytest.raises(ZeroDivisionError):
        cluster.map_tasks(abs, [(-1,)])
    assert len(tries) == 1


def test_dask_local_starts_and_closes_a_local_cluster():
    from mlbench import cluster

    with cluster.dask_cluster("local", n_workers=1) as client:
        assert cluster.active_client() is client and cluster.cluster_threads() == 1
        workers = list(client.scheduler_info()["workers"])
        assert all(w.startswith("tcp://127.0.0.1:") for w in workers) and len(workers) == 1
        assert cluster.map_tasks(divmod, [(7, 2), (9, 4)]) == [(3, 1), (2, 1)]
    assert cluster.active_client() is None and client.status == "closed"
