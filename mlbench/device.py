"""`--device auto|cpu|gpu`: pick where the Keras tracks run, before they build."""

from __future__ import annotations

from mlbench.errors import InputError

DEVICES = ("auto", "cpu", "gpu")


def configure_device(mode: str = "auto") -> str:
    """Hide or require GPUs; return a short description of what will be used.

    Must run before any model is built (TensorFlow fixes visible devices at its
    first use).  `auto` uses a GPU when TensorFlow sees one.
    """
    if mode not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}, got {mode!r}")
    import tensorflow as tf

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
    return f"gpu ({len(gpus)}: {', '.join(g.name for g in gpus)})" if gpus else "cpu"


def gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))
