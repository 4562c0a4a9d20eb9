"""`OnnxArtifact`: an ONNX export folder read like every other exported model.

The folder (written by `mlbench.serving.onnx_export.export_onnx`) holds model.onnx,
labels.json, mlbench.json (``"format": "onnx"``), the text front end
(`mlbench.serving.text_frontend`; for a self-contained graph only ``frontend.json``
saying ``"strings"``) and, copied from the SavedModel, thresholds.json and
calibration.json.  model.onnx answers ``scores``, ``labels`` (the best decision rule)
and, when calibrated, ``probabilities``; ``predict`` / ``probabilities`` run
front end → onnxruntime on raw strings, with only onnxruntime and NumPy (no TensorFlow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mlbench.errors import InputError
from mlbench.serving.layout import (CALIBRATION_FILE, ONNX_FORMAT, ONNX_MODEL_FILE, PROBABILITIES, SCORES,
                                    read_calibration, read_labels, read_meta, saved_threshold)
from mlbench.serving.text_frontend import load_frontend

__all__ = ["OnnxArtifact", "is_onnx_folder"]


def is_onnx_folder(directory: str | Path) -> bool:
    """True when `directory`/mlbench.json says ``"format": "onnx"``."""
    try:
        return read_meta(Path(directory)).get("format") == ONNX_FORMAT
    except (InputError, OSError, AttributeError):
        return False


def _accumulating_scatter(model_path: Path) -> bool:
    """Whether the model has a ScatterND / ScatterElements node that adds into its output."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return any(n.op_type in ("ScatterND", "ScatterElements")
               and any(a.name == "reduction" and a.s not in (b"", b"none") for a in n.attribute)
               for n in model.graph.node)


class OnnxArtifact:
    """An ONNX export: ``.labels``, ``.predict(texts)`` → [n, L], ``.probabilities(texts)``,
    ``.threshold(rule)`` (the `mlbench.serving.layout.Artifact` protocol)."""

    def __init__(self, directory: str | Path, *, threads: int | None = None):
        """`threads`: onnxruntime intra-op threads (None: onnxruntime's default, all cores;
        always 1 for a model that sums with a scatter, see below)."""
        self.directory = Path(directory)
        self.meta: dict = read_meta(self.directory)
        self.labels: list[str] = read_labels(self.directory)
        if self.meta.get("format") != ONNX_FORMAT:
            raise InputError(f"{self.directory}: not an ONNX export (format {self.meta.get('format')!r})")
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError(f"{self.directory}: an ONNX model needs onnxruntime "
                             "(pip install onnxruntime==1.31.1)") from None
        self.frontend = load_frontend(self.directory)
        model_path = self.directory / self.meta.get("model_file", ONNX_MODEL_FILE)
        if not model_path.exists():
            raise InputError(f"{model_path}: ONNX model file not found")
        if _accumulating_scatter(model_path):
            # onnxruntime 1.31 runs ScatterND(reduction="add") over several threads with no
            # lock: rows that share an index lose updates now and then (seen: scores 0.1-0.3
            # off under load, never on one thread), so the TF-IDF cores run on one thread
            threads = 1
        self.threads = threads
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def outputs(self, texts: Sequence[str], batch_size: int = 256) -> dict[str, np.ndarray]:
        """Every output of model.onnx over `texts`, batches stacked: {name: [len(texts), L]}."""
        texts = list(texts)
        names = self.output_names
        batches = [self.session.run(names, self.frontend.feeds(texts[i : i + batch_size]))
                   for i in range(0, len(texts), batch_size)]
        if not batches:
            return {n: np.zeros((0, len(self.labels)), dtype=np.float32) for n in names}
        return {n: np.concatenate([b[k] for b in batches], axis=0) for k, n in enumerate(names)}

    def _stacked(self, texts: Sequence[str], batch_size: int, name: str) -> np.ndarray:
        """Output `name` over `texts`: float32 [len(texts), n_labels]."""
        texts = list(texts)
        out = [self.session.run([name], self.frontend.feeds(texts[i : i + batch_size]))[0]
               for i in range(0, len(texts), batch_size)]
        if not out:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(out, axis=0).astype(np.float32, copy=False)

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Per-label scores for raw strings, float32 [len(texts), n_labels]."""
        return self._stacked(texts, batch_size, SCORES)

    @property
    def has_calibration(self) -> bool:
        """Whether the folder carries calibrated probabilities (graph output or calibration.json)."""
        return PROBABILITIES in self.output_names or (self.directory / CALIBRATION_FILE).exists()

    def probabilities(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Calibrated per-label probabilities, float32 [len(texts), n_labels]: the graph's
        ``probabilities`` output, else calibration.json applied to the scores; InputError
        for a model exported without calibration."""
        if PROBABILITIES in self.output_names:
            return self._stacked(texts, batch_size, PROBABILITIES)
        cal = read_calibration(self.directory)
        if cal is None:
            raise InputError(f"{self.directory}: exported without calibration (no calibration.json); "
                             "use its raw scores (--raw)")
        return cal.apply(self.predict(texts, batch_size)).astype(np.float32)

    def threshold(self, rule: str | None = None) -> float | np.ndarray:
        """The threshold(s) of `rule` (default: thresholds.json's best rule; without it,
        the thresholds stored at export; else 0.5)."""
        return saved_threshold(self.directory, self.labels, self.meta, rule)
