"""One reader for every exported artifact: `load_artifact(directory)`.

An export folder (`mlbench.serving.layout`) holds a raw-string SavedModel
(``saved_model.pb``; read by `mlbench.serving.export.ExportedModel`), a fastText model
(``mlbench.json`` with ``"format": "fasttext"``; `fasttext_artifact.FastTextArtifact`)
or an ONNX model (``"format": "onnx"``; `onnx_artifact.OnnxArtifact`).  All of them
answer the `layout.Artifact` protocol: ``.labels`` (names, score-column order),
``.predict(texts)`` (scores [n, n_labels] in [0, 1]), ``.threshold(rule=None)`` (the
decision rule saved in ``thresholds.json``, else thresholds stored at export, else
0.5), ``.has_calibration`` and ``.probabilities(texts)``.

This module only dispatches; the readers import `layout` and nothing of each other.
The names below them are re-exported so ``from mlbench.serving.artifacts import …``
keeps working.
"""

from __future__ import annotations

from pathlib import Path

from mlbench.errors import InputError
from mlbench.serving.export import ExportedModel
from mlbench.serving.fasttext_artifact import FastTextArtifact, fasttext_label, fasttext_line, fasttext_scores
from mlbench.serving.layout import (FASTTEXT_FORMAT, META_FILE, ONNX_FORMAT, SAVEDMODEL_FILE, Artifact,
                                    explanations, read_meta, saved_threshold)
from mlbench.serving.onnx_artifact import OnnxArtifact

__all__ = [
    "Artifact",
    "FastTextArtifact",
    "load_artifact",
    "fasttext_line",
    "fasttext_label",
    "fasttext_scores",
    "saved_threshold",
    "explanations",
]


def load_artifact(directory: str | Path) -> Artifact:
    """Open any exported model folder by what it contains.

    saved_model.pb → `ExportedModel`; mlbench.json with format "fasttext" →
    `FastTextArtifact`, with format "onnx" → `OnnxArtifact`; anything else → InputError
    naming the folder.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: no such model folder")
    if (directory / SAVEDMODEL_FILE).exists():
        return ExportedModel(directory)
    fmt = read_meta(directory, required=False).get("format")
    if fmt == FASTTEXT_FORMAT:
        return FastTextArtifact(directory)
    if fmt == ONNX_FORMAT:
        return OnnxArtifact(directory)
    raise InputError(f"{directory}: not an exported model (no saved_model.pb, no fastText or ONNX {META_FILE})")
