"""`FastTextArtifact`: an exported fastText folder read like every other exported model.

The folder (written by the fastText track) holds model.bin, labels.json, mlbench.json
(``"format": "fasttext"``) and maybe thresholds.json / calibration.json
(`mlbench.serving.layout`).  The fastText text cleaning and scoring live here, not in
the track, so the track and a served model cannot drift apart: the track imports them.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlbench.errors import InputError
from mlbench.numeric import sigmoid
from mlbench.serving.layout import (CALIBRATION_FILE, FASTTEXT_FORMAT, FASTTEXT_MODEL_FILE, read_calibration,
                                    read_labels, read_meta, saved_threshold)

__all__ = ["FastTextArtifact", "fasttext_line", "fasttext_label", "fasttext_scores"]

_SPACE = re.compile(r"[\s\x00]+")  # fastText splits on these; a newline would end the document
_PUNCT = re.compile(r"([.,!?;:()\"'/\[\]{}<>])")


def fasttext_line(text: str, *, lowercase: bool = True) -> str:
    """One document → one fastText input line (no newline inside, punctuation split off).

    fastText reads one document per line and splits words on whitespace only, so
    newlines and control whitespace become single spaces; punctuation is separated
    (as in fastText's own tutorial) so "oil." and "oil" are one word.
    """
    line = _PUNCT.sub(r" \1 ", str(text))
    line = _SPACE.sub(" ", line).strip()
    return line.lower() if lowercase else line


def fasttext_label(index: int) -> str:
    """The fastText token of label column `index` (``__label__<index>``).

    Label names may hold spaces or any character; an index token is always safe, and
    labels.json maps columns back to names.
    """
    return f"__label__{int(index)}"


def fasttext_scores(model: Any, lines: Sequence[str], n_labels: int) -> np.ndarray:
    """OVA per-label probabilities of every label: float32 [len(lines), n_labels].

    Why not ``model.predict(lines, k=-1, threshold=0)``: in fasttext-wheel 0.9.2 the
    list form returns each row's top probability repeated for every label, the
    string form raises under numpy 2, and fastText's own sigmoid is a 512-entry table
    (many tied scores) plus a 1e-5 offset.  The OVA model is
    ``sigmoid(output_matrix · hidden)`` with ``hidden`` the mean of the line's word and
    n-gram vectors, which `get_sentence_vector` returns for a supervised model; we
    compute it exactly.  Columns follow `fasttext_label`; labels fastText never saw
    in training score 0.
    """
    out = np.zeros((len(lines), n_labels), dtype=np.float32)
    if not len(lines):
        return out
    columns = np.array([int(t.rsplit("__", 1)[-1]) for t in model.get_labels()], dtype=np.int64)
    output = np.asarray(model.get_output_matrix(), dtype=np.float64)  # [n_model_labels, dim]
    hidden = np.stack([model.get_sentence_vector(line) for line in lines]).astype(np.float64)
    out[:, columns] = sigmoid(hidden @ output.T)
    return out


class FastTextArtifact:
    """An exported fastText folder: model.bin + labels.json + mlbench.json (+ thresholds.json)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.meta: dict = read_meta(self.directory)
        if self.meta.get("format") != FASTTEXT_FORMAT:
            raise InputError(f"{self.directory}: not a fastText export (format {self.meta.get('format')!r})")
        self.labels: list[str] = read_labels(self.directory)
        model_path = self.directory / self.meta.get("model_file", FASTTEXT_MODEL_FILE)
        if not model_path.exists():
            raise InputError(f"{model_path}: fastText model file not found")
        try:
            import fasttext  # optional extra: only this reader needs it
        except ImportError:
            raise InputError(f"{self.directory}: a fastText model needs `pip install fasttext-wheel==0.9.2`") from None

        with contextlib.redirect_stderr(io.StringIO()):  # load_model prints an API-change notice
            self.model = fasttext.load_model(str(model_path))
        self.lowercase = bool(self.meta.get("lowercase", True))

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Per-label probabilities for raw strings, float32 [len(texts), n_labels]."""
        lines = [fasttext_line(t, lowercase=self.lowercase) for t in texts]
        return fasttext_scores(self.model, lines, len(self.labels))

    def threshold(self, rule: str | None = None) -> float | np.ndarray:
        """The threshold(s) of `rule` (default: the best rule on validation, else 0.5)."""
        return saved_threshold(self.directory, self.labels, self.meta, rule)

    @property
    def has_calibration(self) -> bool:
        return (self.directory / CALIBRATION_FILE).exists()

    def probabilities(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """calibration.json applied to the scores: float32 [len(texts), n_labels]."""
        cal = read_calibration(self.directory)
        if cal is None:
            raise InputError(f"{self.directory}: exported without calibration (no calibration.json)")
        return cal.apply(self.predict(texts, batch_size)).astype(np.float32)
