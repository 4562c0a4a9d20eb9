"""Independent fits on a Dask cluster: ``--dask SCHEDULER_ADDRESS`` or ``--dask local``.

Why: the linear tracks' fits are many and independent (one per label chunk, per
cross-fitting fold, per search point) and one machine's cores bound them.  Inside
`dask_cluster` (the command line enters it around the whole run), `map_tasks` sends
each call to the Dask workers as one task and gathers the results in the order given;
outside it runs the calls here, one after the other.  A task is the same function on
the same arguments either way, so a cluster run's margins and choices equal a local
run's.

Futures, not joblib's ``"dask"`` backend: joblib scatters a large argument to *one*
worker, so losing that worker fails the whole call.  Here each large argument is
broadcast to every worker once per `map_tasks` call, and the scheduler reruns a lost
worker's tasks on the others: a run loses nothing while one worker is left.

Workers need the same packages (``pip install 'mlbench[dask]'`` plus the suite) and
nothing else: the data travels with the tasks.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from mlbench.errors import InputError

__all__ = ["CONNECT_TIMEOUT_S", "is_address", "dask_cluster", "active_client", "cluster_threads", "map_tasks"]

#: seconds `dask_cluster` waits for the scheduler, and then for its first worker
CONNECT_TIMEOUT_S = 10
#: a `map_tasks` call that lost its shared data with a worker is sent again this many times
RETRIES = 3
#: arguments at least this large (`dask.sizeof`) are scattered once instead of sent per task
SCATTER_BYTES = 100_000

_ADDRESS = re.compile(r"^(?:(?:tcp|tls)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*):(\d{1,5})$")
_CLIENT: Any = None  # the `distributed.Client` of the active `dask_cluster`, else None


def is_address(value: Any) -> bool:
    """Whether `value` is ``local`` or a scheduler address ``[tcp://|tls://]host:port``."""
    if value == "local":
        return True
    match = _ADDRESS.match(value) if isinstance(value, str) else None
    return bool(match) and 0 < int(match.group(1)) < 65536


@contextmanager
def dask_cluster(address: str | None, *, n_workers: int | None = None) -> Iterator[Any]:
    """Connect to the scheduler at `address` (``local``: start a `LocalCluster` of
    `n_workers` single-threaded processes on 127.0.0.1, default one per core) and make
    it the one `map_tasks` uses until the block ends; then close what was opened.
    `address` None: nothing happens (yields None).  Raises InputError (one line) when
    the extra is missing, the scheduler does not answer or no worker joins in
    `CONNECT_TIMEOUT_S` seconds."""
    global _CLIENT
    if address is None:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise InputError(f"--dask {address}: needs the dask extra (pip install 'mlbench[dask]')") from err
    cluster = None
    if address == "local":
        cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as err:
            raise InputError(f"--dask {address}: could not connect within {CONNECT_TIMEOUT_S} s") from err
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError as err:
            raise InputError(f"--dask {address}: the scheduler answered but no worker joined within "
                             f"{CONNECT_TIMEOUT_S} s (start one with: dask worker {client.scheduler.address})"
                             ) from err
        _CLIENT = client
        yield client
    finally:
        _CLIENT = None
        client.close()
        if cluster is not None:
            cluster.close()


def active_client() -> Any:
    """The active cluster's `distributed.Client`, or None (fits run here)."""
    return _CLIENT


def cluster_threads() -> int:
    """Worker threads of the active cluster (tasks it runs at once); 0 without one."""
    return sum(_CLIENT.nthreads().values()) if _CLIENT is not None else 0


def _sequential(fn: Callable, *args: Any) -> Any:
    """`fn(*args)` in a worker, with joblib kept serial: the parallelism is across tasks,
    and a process pool inside a (daemonic) worker process is not allowed."""
    from joblib import parallel_config

    with parallel_config(backend="sequential"):
        return fn(*args)


def map_tasks(fn: Callable, calls: Sequence[tuple]) -> list:
    """``[fn(*args) for args in calls]``, on the cluster when one is active.

    `fn` must be importable by name on the workers (a module-level function).  An
    argument object of at least `SCATTER_BYTES` is broadcast to every worker once and
    shared by all calls that pass that same object; results come back in call order; a
    task's exception is raised here.  A worker lost mid-call costs nothing: the scheduler
    reruns its tasks elsewhere, and should the loss take shared data with it (killed while
    the data was being broadcast) the call is sent again, up to `RETRIES` times (the
    tasks are deterministic, so a retried result is the same).
    """
    client = _CLIENT
    if client is None:
        return [fn(*args) for args in calls]
    from concurrent.futures import CancelledError

    for attempt in range(RETRIES + 1):
        try:
            return _map_once(client, fn, calls)
        except (CancelledError, OSError):  # lost data / a connection cut by the worker's death
            if attempt == RETRIES:
                raise
    raise AssertionError("unreachable")


def _map_once(client: Any, fn: Callable, calls: Sequence[tuple]) -> list:
    from dask.sizeof import sizeof

    shared: dict[int, Any] = {}  # id(argument) → its future (the calls keep the objects alive)

    def ship(arg: Any) -> Any:
        if id(arg) in shared:
            return shared[id(arg)]
        if arg is None or isinstance(arg, (bool, int, float, str)) or sizeof(arg) < SCATTER_BYTES:
            return arg
        [shared[id(arg)]] = client.scatter([arg], broadcast=True, hash=False)
        return shared[id(arg)]

    futures: list = []
    try:
        futures = [client.submit(_sequential, fn, *[ship(a) for a in args], pure=False) for args in calls]
        return client.gather(futures)
    finally:
        client.cancel(futures + list(shared.values()))
