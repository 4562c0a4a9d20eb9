"""Distribution strategies for the Keras tracks (`--strategy`, `--cpu-devices`): one home.

Why TensorFlow's own engine: `tf.distribute` already does the all-reduce, the
per-replica split of every batch and the multi-worker rendezvous; the tracks only
have to follow its rules, stated here once:

* `default`: no distribution (TensorFlow's default strategy, one device);
* `mirrored`: `tf.distribute.MirroredStrategy` over the visible GPUs, or over
  ``--cpu-devices N`` logical CPU devices (created by `configure_cpu_devices`, which
  `mlbench.keras.device.configure_device` calls before TensorFlow initialises);
* `multiworker`: `tf.distribute.MultiWorkerMirroredStrategy` on the cluster named by
  the ``TF_CONFIG`` environment variable (checked by `parse_tf_config`).

Rules every Keras track follows:

* model, optimizer and metrics are created (and compiled) under ``strategy.scope()``
  (`fit_scope`);
* ``--batch-size`` is per replica: the global batch is per-replica batch × replicas
  (`global_batch_size`);
* learning rate: unchanged — the per-example gradient is averaged over the global
  batch, so one step on N replicas equals one single-device step on the same global
  batch; scale it yourself (linear rule: lr × replicas) if you grow the global batch;
* only the chief (`is_chief`) writes checkpoints, exports and the run folder; other
  workers keep theirs in scratch folders removed at exit (`checkpoint_dir`,
  `mlbench.experiment.worker_scratch`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from mlbench.errors import InputError

STRATEGIES = ("default", "mirrored", "multiworker")

_cache: dict[str, Any] = {}


def check_options(strategy: str, cpu_devices: int | None) -> None:
    """InputError for a bad `--strategy` / `--cpu-devices` pair (imports no TensorFlow)."""
    if strategy not in STRATEGIES:
        raise InputError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if cpu_devices is not None:
        if not isinstance(cpu_devices, int) or isinstance(cpu_devices, bool) or not 1 <= cpu_devices <= 64:
            raise InputError(f"--cpu-devices: expected an integer from 1 to 64, got {cpu_devices!r}")
    if strategy == "multiworker":
        parse_tf_config()


def parse_tf_config(raw: str | None = None) -> dict:
    """The validated ``TF_CONFIG`` (cluster + task); InputError saying what is wrong."""
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
    if not raw:
        raise InputError("--strategy multiworker: TF_CONFIG is not set (expected JSON "
                         '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}})')
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InputError(f"--strategy multiworker: TF_CONFIG is not valid JSON ({err.msg} at char {err.pos})") from None
    cluster = cfg.get("cluster") if isinstance(cfg, dict) else None
    task = cfg.get("task") if isinstance(cfg, dict) else None
    if not isinstance(cluster, dict) or not cluster.get("worker") and not cluster.get("chief"):
        raise InputError('--strategy multiworker: TF_CONFIG needs "cluster" with a "worker" list of host:port')
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise InputError(f"--strategy multiworker: TF_CONFIG cluster.{kind} must be a list of host:port, "
                             f"got {addresses!r}")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise InputError(f"--strategy multiworker: TF_CONFIG task.type must name a cluster job "
                         f"({', '.join(cluster)}), got {None if not isinstance(task, dict) else task.get('type')!r}")
    index = task.get("index")
    if not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise InputError(f"--strategy multiworker: TF_CONFIG task.index must be 0..{len(cluster[task['type']]) - 1}, "
                         f"got {index!r}")
    return cfg


def configure_cpu_devices(n: int) -> None:
    """Split the CPU into `n` logical devices; must run before TensorFlow initialises."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        raise InputError(f"--cpu-devices {n}: TensorFlow is already initialised in this process "
                         "(logical devices are fixed at first use; set them in a fresh process)") from None


def make_strategy(name: str = "default", cpu_devices: int | None = None):
    """The `tf.distribute.Strategy` named `name` (see the module doc), made once per process."""
    check_options(name, cpu_devices)
    if name in _cache:
        return _cache[name]
    import tensorflow as tf

    if cpu_devices and cpu_devices > 1:
        configure_cpu_devices(cpu_devices)
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(devices)
        _patch_keras_distributed()
    else:
        parse_tf_config()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _patch_keras_distributed()
    _cache[name] = strategy
    return strategy


def _patch_keras_distributed() -> None:
    """Work around two Keras 3.15 bugs in `fit` under tf.distribute (keras-team/keras#20585,
    tensorflow/tensorflow#72388), only while a strategy is in use.

    1. the symbolic build MEAN-reduces the first input batch across replicas: that
       fails when the batch splits unevenly (AddN of [6, T] and [5, T]: length buckets
       end in partial batches) and, across workers, on any PerReplica ("unsupported
       type"); the first local replica's batch has the shapes the build needs;
    2. under MultiWorkerMirroredStrategy the step's scalar logs are reduced with
       ``axis=0`` ("Invalid reduction dimension 0 for input with 0 dimensions"); they
       are reduced with ``axis=None``.
    The training step itself (gradients, all-reduce, optimizer) is TensorFlow's, unchanged.
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as keras_trainer

    if getattr(keras_trainer, "_mlbench_distribute_patch", False):
        return
    multi_worker = keras_trainer._collective_all_reduce_multi_worker
    reduce_per_replica = keras_trainer.reduce_per_replica
    symbolic_build = keras_trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_logs(values, strategy, reduction="auto"):
        if reduction in ("auto", "mean") and multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None:
            return symbolic_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tree.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v, batch)
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    keras_trainer.reduce_per_replica = reduce_logs
    keras_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    keras_trainer._mlbench_distribute_patch = True


def replicas(strategy: Any) -> int:
    """Replicas that share one global batch (1 for the default strategy)."""
    return int(getattr(strategy, "num_replicas_in_sync", 1))


def global_batch_size(per_replica: int, strategy: Any) -> int:
    """The rule: global batch = per-replica batch × replicas."""
    return int(per_replica) * replicas(strategy)


def is_chief(strategy: Any = None) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    cluster = resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and int(resolver.task_id or 0) == 0 and "chief" not in cluster


def checkpoint_dir(workdir: Path, strategy: Any) -> Path:
    """Where this process writes checkpoints: `workdir` on the chief, elsewhere a scratch
    folder removed when the process exits."""
    if is_chief(strategy):
        return Path(workdir)
    scratch = Path(tempfile.mkdtemp(prefix=f"mlbench-worker{strategy.cluster_resolver.task_id}-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return scratch


def strategy_for(settings: Any):
    """The strategy a track's `TrainSettings` names (made on first use)."""
    return make_strategy(getattr(settings, "strategy", "default") or "default")


@contextlib.contextmanager
def fit_scope(settings: Any) -> Iterator[Any]:
    """``strategy.scope()`` of `settings.strategy`; yields the strategy."""
    strategy = strategy_for(settings)
    with strategy.scope():
        yield strategy
