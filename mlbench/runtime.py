"""Process set-up that must happen before TensorFlow is imported (one place).

TensorFlow's C++ start-up writes lines to stderr before its logging is configured
(oneDNN notes, "Could not find cuda drivers", "failed call to cuInit" on a machine
without a GPU), so TF_CPP_MIN_LOG_LEVEL cannot silence them.  `import_tensorflow`
imports it and probes the devices with file descriptor 2 redirected to a buffer,
then replays every line that is not one of those known start-up notices.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}

#: start-up notices that say nothing about the run (matched per line)
_NOISE = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cudart_stub|cuda_platform|failed call to cuInit"
    r"|cpu_feature_guard|This TensorFlow binary is optimized|rebuild TensorFlow with the appropriate"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered"
    r"|TF-TRT Warning|absl::InitializeLog\(\) is called")

_started = False


def set_environment() -> None:
    """Defaults for TensorFlow/Keras (a user's own settings win)."""
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def import_tensorflow():
    """Import TensorFlow and list its devices quietly; return the module."""
    global _started
    set_environment()
    if _started or "tensorflow" in sys.modules:
        import tensorflow as tf

        _started = True
        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as buf:
        os.dup2(buf.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe happens here
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            for line in buf.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not _NOISE.search(line):
                    print(line, file=sys.stderr)
    _started = True
    return tf
