"""Device and precision policy: where the Keras tracks run and in which dtype (one home).

`--device auto|cpu|gpu` is applied once by the driver before any model is built;
every track asks `gpu_visible()` and `resolve_precision()` here, so "a GPU is
present" and "mixed precision on" mean one thing across the suite.
"""

from __future__ import annotations

from typing import Any, Callable

from mlbench.errors import InputError

DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def _logical_gpus() -> list:
    import tensorflow as tf

    return list(tf.config.list_logical_devices("GPU"))


#: the one GPU probe; tests replace it to fake a GPU on a CPU machine
gpu_probe: Callable[[], list] = _logical_gpus


def gpu_visible() -> bool:
    """True when TensorFlow (after `configure_device`) sees at least one GPU."""
    return bool(gpu_probe())


def resolve_precision(option: Any) -> str:
    """The Keras dtype policy named by a ``mixed_precision`` option.

    ``"auto"``: ``mixed_bfloat16`` when a GPU is visible, else ``float32`` (on CPU
    mixed precision only adds casts); ``True``/``"bf16"``: ``mixed_bfloat16``
    everywhere; ``"fp16"``: ``mixed_float16`` (needs loss scaling); ``False`` /
    ``None``: ``float32``; or a policy name from `PRECISIONS`.
    """
    value = option.strip().lower() if isinstance(option, str) else option
    if value in (None, False, "", "float32", "off", "none", "false", "0"):
        return "float32"
    if value == "auto":
        return "mixed_bfloat16" if gpu_visible() else "float32"
    if value in (True, "bf16", "true", "1", "on", "mixed_bfloat16"):
        return "mixed_bfloat16"
    if value in ("fp16", "mixed_float16"):
        return "mixed_float16"
    raise ValueError(f"mixed_precision must be auto, true/false, bf16, fp16 or one of "
                     f"{', '.join(PRECISIONS)}; got {option!r}")


def configure_device(mode: str = "auto", *, cpu_devices: int | None = None,
                     strategy: str | None = None) -> str:
    """Hide or require GPUs; return a short description of what will be used.

    Must run before any model is built (TensorFlow fixes visible devices at its
    first use).  `auto` uses a GPU when TensorFlow sees one.  `cpu_devices` > 1
    splits the CPU into that many logical devices (`--cpu-devices`, for
    `--strategy mirrored` without GPUs); `strategy` (`--strategy`) is made here, at
    start-up, because MultiWorkerMirroredStrategy must exist before TensorFlow runs an
    op (`mlbench.keras.strategy`).
    """
    if mode not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}, got {mode!r}")
    from mlbench.runtime import import_tensorflow

    tf = import_tensorflow()
    if cpu_devices is not None and cpu_devices > 1:
        from mlbench.keras.strategy import configure_cpu_devices

        configure_cpu_devices(cpu_devices)

    gpus = tf.config.list_physical_devices("GPU")
    if mode == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    if mode == "gpu" and not gpus:
        raise InputError("--device gpu: TensorFlow sees no GPU on this machine (try --device auto)")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised
    if strategy not in (None, "default"):
        from mlbench.keras.strategy import make_strategy, replicas

        made = make_strategy(strategy)
        where = f"gpu ({len(gpus)})" if gpus else "cpu"
        return f"{where}, {strategy} strategy over {replicas(made)} replicas"
    if gpus:
        return f"gpu ({len(gpus)}: {', '.join(g.name for g in gpus)})"
    return f"cpu ({cpu_devices} logical devices)" if cpu_devices and cpu_devices > 1 else "cpu"
