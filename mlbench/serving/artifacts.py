"""One reader for every exported artifact: `load_artifact(directory)`.

An export folder holds either a raw-string SavedModel (``saved_model.pb``; read by
`mlbench.serving.export.ExportedModel`) or a fastText model (``mlbench.json`` with
``"format": "fasttext"``; read by `FastTextArtifact`).  Both answer the same three
questions: ``.labels`` (names, score-column order), ``.predict(texts)`` (scores
[n, n_labels] in [0, 1]) and ``.threshold(rule=None)`` (the decision rule saved in
``thresholds.json``, else thresholds stored at export, else 0.5).

The fastText text cleaning and scoring live here, not in the track, so the track
and a served model cannot drift apart: `baselines.fasttext_track` imports them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from mlbench.errors import InputError

LABELS_FILE = "labels.json"
META_FILE = "mlbench.json"
THRESHOLDS_FILE = "thresholds.json"
FASTTEXT_MODEL_FILE = "model.bin"
FASTTEXT_FORMAT = "fasttext"

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


class Artifact(Protocol):
    """What `predict`, a server or a benchmark needs from an exported model."""

    labels: list[str]

    def predict(self, texts: Sequence[str]) -> np.ndarray: ...

    def threshold(self, rule: str | None = None) -> float | np.ndarray: ...

    def probabilities(self, texts: Sequence[str]) -> np.ndarray: ...


# -- fastText text and label conventions ------------------------------------------------------
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
    from mlbench.numeric import sigmoid

    out = np.zeros((len(lines), n_labels), dtype=np.float32)
    if not len(lines):
        return out
    columns = np.array([int(t.rsplit("__", 1)[-1]) for t in model.get_labels()], dtype=np.int64)
    output = np.asarray(model.get_output_matrix(), dtype=np.float64)  # [n_model_labels, dim]
    hidden = np.stack([model.get_sentence_vector(line) for line in lines]).astype(np.float64)
    out[:, columns] = sigmoid(hidden @ output.T)
    return out


# -- decision rules ---------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None


def saved_threshold(directory: Path, labels: Sequence[str], meta: dict,
                    rule: str | None = None) -> float | np.ndarray:
    """The threshold(s) of `rule` from thresholds.json (default: its best rule);
    without that file, the thresholds stored in mlbench.json at export; else 0.5."""
    path = directory / THRESHOLDS_FILE
    if path.exists():
        from mlbench.evaluation.thresholds import load_thresholds

        rules = load_thresholds(path, labels)
        name = rule or _read_json(path).get("best_rule", "fixed")
        if name not in rules:
            raise InputError(f"{directory}: no decision rule {name!r}; have {sorted(rules)}")
        return rules[name].thresholds
    if rule is not None and rule != "fixed":
        raise InputError(f"{directory}: no {THRESHOLDS_FILE}, so no decision rule {rule!r}")
    stored = meta.get("thresholds")
    if stored is None or rule == "fixed":
        return 0.5
    return np.asarray(stored, dtype=np.float64) if isinstance(stored, list) else float(stored)


# -- fastText artifact ------------------------------------------------------------------------
class FastTextArtifact:
    """An exported fastText folder: model.bin + labels.json + mlbench.json (+ thresholds.json)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.meta: dict = _read_json(self.directory / META_FILE)
        if self.meta.get("format") != FASTTEXT_FORMAT:
            raise InputError(f"{self.directory}: not a fastText export (format {self.meta.get('format')!r})")
        self.labels: list[str] = [str(n) for n in _read_json(self.directory / LABELS_FILE)]
        model_path = self.directory / self.meta.get("model_file", FASTTEXT_MODEL_FILE)
        if not model_path.exists():
            raise InputError(f"{model_path}: fastText model file not found")
        try:
            import fasttext
        except ImportError:
            raise InputError(f"{self.directory}: a fastText model needs `pip install fasttext-wheel==0.9.2`") from None
        import contextlib
        import io

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
        from mlbench.serving.calibrated import CALIBRATION_FILE

        return (self.directory / CALIBRATION_FILE).exists()

    def probabilities(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """calibration.json applied to the scores: float32 [len(texts), n_labels]."""
        from mlbench.serving.calibrated import read_calibration

        cal = read_calibration(self.directory)
        if cal is None:
            raise InputError(f"{self.directory}: exported without calibration (no calibration.json)")
        return cal.apply(self.predict(texts, batch_size)).astype(np.float32)


def explanations(artifact: Artifact, texts: Sequence[str],
                 labels: Sequence[Sequence[int]]) -> list[dict[str, list[tuple[str, float]]]]:
    """Per document {label name: [(token, weight), ...]} for the score columns
    `labels[i]`, from an export's ``explain`` signature; InputError naming the folder
    for an artifact without one (fastText, ONNX, ensemble and pretrained exports)."""
    if not getattr(artifact, "has_explanations", False):
        directory = getattr(artifact, "directory", "this model")
        track = getattr(artifact, "meta", {}).get("track", "?")
        from mlbench.tracks import explainable_tracks

        raise InputError(f"{directory}: this export has no explanations (track {track!r}, format "
                         f"{getattr(artifact, 'meta', {}).get('format', '?')!r}); SavedModel exports "
                         f"of {', '.join(explainable_tracks())} have them")
    return artifact.explain(texts, labels)


def load_artifact(directory: str | Path) -> Artifact:
    """Open any exported model folder by what it contains.

    saved_model.pb → `ExportedModel`; mlbench.json with format "fasttext" →
    `FastTextArtifact`, with format "onnx" → `OnnxArtifact`; anything else → InputError
    naming the folder.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: no such model folder")
    if (directory / "saved_model.pb").exists():
        from mlbench.serving.export import ExportedModel

        return ExportedModel(directory)
    meta_path = directory / META_FILE
    fmt = _read_json(meta_path).get("format") if meta_path.exists() else None
    if fmt == FASTTEXT_FORMAT:
        return FastTextArtifact(directory)
    if fmt == "onnx":
        from mlbench.serving.onnx_artifact import OnnxArtifact

        return OnnxArtifact(directory)
    raise InputError(f"{directory}: not an exported model (no saved_model.pb, no fastText or ONNX {META_FILE})")
