"""`OnnxArtifact`: an ONNX export folder read like every other exported model.

The folder (written by `mlbench.serving.onnx_export.export_onnx`) holds model.onnx
(the numeric core), the text front end (`mlbench.serving.text_frontend`),
labels.json, mlbench.json (``"format": "onnx"``) and usually thresholds.json.
``predict`` runs front end → onnxruntime on raw strings; only onnxruntime and NumPy
are needed (no TensorFlow).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from mlbench.errors import InputError

ONNX_FORMAT = "onnx"
MODEL_FILE = "model.onnx"
META_FILE = "mlbench.json"
LABELS_FILE = "labels.json"


def is_onnx_folder(directory: str | Path) -> bool:
    """True when `directory`/mlbench.json says ``"format": "onnx"``."""
    path = Path(directory) / META_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == ONNX_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class OnnxArtifact:
    """An ONNX export: ``.labels``, ``.predict(texts)`` → [n, L], ``.threshold(rule)``."""

    def __init__(self, directory: str | Path, *, threads: int | None = None):
        """`threads`: onnxruntime intra-op threads (None: onnxruntime's default, all cores)."""
        self.directory = Path(directory)
        try:
            self.meta: dict = json.loads((self.directory / META_FILE).read_text(encoding="utf-8"))
            self.labels: list[str] = [str(n) for n in json.loads(
                (self.directory / LABELS_FILE).read_text(encoding="utf-8"))]
        except FileNotFoundError as err:
            raise InputError(f"{self.directory}: not an ONNX export ({err.filename} missing)") from None
        except ValueError as err:
            raise InputError(f"{self.directory}: not valid JSON ({err})") from None
        if self.meta.get("format") != ONNX_FORMAT:
            raise InputError(f"{self.directory}: not an ONNX export (format {self.meta.get('format')!r})")
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError(f"{self.directory}: an ONNX model needs onnxruntime "
                             "(pip install onnxruntime==1.31.1)") from None
        from mlbench.serving.text_frontend import load_frontend

        self.frontend = load_frontend(self.directory)
        model_path = self.directory / self.meta.get("model_file", MODEL_FILE)
        if not model_path.exists():
            raise InputError(f"{model_path}: ONNX model file not found")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Per-label probabilities for raw strings, float32 [len(texts), n_labels]."""
        texts = list(texts)
        out = [self.session.run(["scores"], self.frontend.feeds(texts[i : i + batch_size]))[0]
               for i in range(0, len(texts), batch_size)]
        if not out:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(out, axis=0).astype(np.float32, copy=False)

    def threshold(self, rule: str | None = None) -> float | np.ndarray:
        """The threshold(s) of `rule` (default: thresholds.json's best rule; without it,
        the thresholds stored at export; else 0.5)."""
        from mlbench.serving.artifacts import saved_threshold

        return saved_threshold(self.directory, self.labels, self.meta, rule)
