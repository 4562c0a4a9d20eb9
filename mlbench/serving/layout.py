"""The export folder's layout: file, format and signature names, side files, the Artifact protocol.

Every export folder, whatever wrote it, holds the model itself and the same side files:

* the model: a raw-string SavedModel (``saved_model.pb`` + ``variables/``; format
  ``"savedmodel"``), a fastText ``model.bin`` (``"fasttext"``) or an ONNX ``model.onnx``
  (``"onnx"``, with its text front end beside it);
* ``labels.json``: the score columns' label names, in order;
* ``mlbench.json``: track, ``format``, the thresholds baked into ``decisions``, the
  Python modules to import before loading (``requires``) and what the writer adds;
* ``thresholds.json`` (once the driver has fitted decision rules) and
  ``calibration.json`` (once it has fitted a calibration map).

A SavedModel answers the signatures below (`signature_outputs`): ``serving_default``
and ``decisions`` take ``texts`` tf.string [None] and return ``scores`` float32 [None, L]
(+ ``labels`` int32 [None, L] for ``decisions``, + ``probabilities`` float32 [None, L]
when calibrated); ``explain`` also takes ``labels`` int32 [None, K].

Why one module: the SavedModel, ONNX and fastText readers and writers, the ensemble's
writer and the server all import their names from here and nothing of each other, so
a file or signature name has one definition and no reader needs another to load.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from mlbench.errors import InputError
from mlbench.evaluation.calibration import Calibration
from mlbench.evaluation.thresholds import load_thresholds

__all__ = [
    "LABELS_FILE", "META_FILE", "THRESHOLDS_FILE", "CALIBRATION_FILE", "SAVEDMODEL_FILE",
    "SAVEDMODEL_ENTRIES", "FASTTEXT_MODEL_FILE", "ONNX_MODEL_FILE", "SAVEDMODEL_FORMAT",
    "FASTTEXT_FORMAT", "ONNX_FORMAT", "SERVE_SIGNATURE", "DECISIONS_SIGNATURE", "EXPLAIN_SIGNATURE",
    "INPUT_NAME", "EXPLAIN_LABELS_INPUT", "SCORES", "LABELS_OUTPUT", "PROBABILITIES",
    "signature_outputs", "decision_thresholds", "text_input_spec", "decision_labels", "read_json",
    "read_meta", "read_labels", "write_meta", "write_side_files", "import_requirements", "write_calibration",
    "read_calibration", "saved_rules", "best_rule_name", "saved_threshold", "Artifact", "explanations",
]

# -- files ------------------------------------------------------------------------------------------
LABELS_FILE = "labels.json"
META_FILE = "mlbench.json"
THRESHOLDS_FILE = "thresholds.json"
CALIBRATION_FILE = "calibration.json"
SAVEDMODEL_FILE = "saved_model.pb"
#: the files and folders `tf.saved_model.save` writes; everything else in an export is a side file
SAVEDMODEL_ENTRIES = frozenset({SAVEDMODEL_FILE, "variables", "assets", "fingerprint.pb"})
FASTTEXT_MODEL_FILE = "model.bin"
ONNX_MODEL_FILE = "model.onnx"

# -- formats (mlbench.json's "format") -------------------------------------------------------------
SAVEDMODEL_FORMAT = "savedmodel"
FASTTEXT_FORMAT = "fasttext"
ONNX_FORMAT = "onnx"

# -- signatures, their inputs and outputs -----------------------------------------------------------
SERVE_SIGNATURE = "serving_default"
DECISIONS_SIGNATURE = "decisions"
EXPLAIN_SIGNATURE = "explain"
INPUT_NAME = "texts"
EXPLAIN_LABELS_INPUT = "labels"  # ``explain``'s second input: score columns int32 [None, K]
SCORES = "scores"
LABELS_OUTPUT = "labels"
PROBABILITIES = "probabilities"


def signature_outputs(calibrated: bool) -> dict[str, list[str]]:
    """{signature: output names} of the two signatures every SavedModel export answers."""
    extra = [PROBABILITIES] if calibrated else []
    return {SERVE_SIGNATURE: [SCORES, *extra], DECISIONS_SIGNATURE: [SCORES, LABELS_OUTPUT, *extra]}


def decision_thresholds(thresholds: float | np.ndarray | None, n_labels: int) -> np.ndarray:
    """The cut-offs baked into ``decisions``: float32 [n_labels] (None → 0.5 everywhere).

    A scalar is broadcast; anything else must have shape [n_labels] and be finite.
    """
    t = np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64)
    if t.ndim == 0:
        t = np.full(n_labels, float(t))
    if t.shape != (n_labels,):
        raise ValueError(f"thresholds must be a scalar or shape [{n_labels}], got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("thresholds must be finite")
    return t.astype(np.float32)


def text_input_spec() -> list:
    """The input signature of ``serving_default`` and ``decisions``: [tf.string [None] "texts"]."""
    import tensorflow as tf

    return [tf.TensorSpec([None], tf.string, name=INPUT_NAME)]


def decision_labels(scores, cutoffs: np.ndarray):
    """``decisions``' ``labels`` output: int32 [B, L] = scores [B, L] >= cutoffs [L].

    The cut-offs are a constant made inside the graph (not a capture): the v1 session
    loader TF Serving uses then needs no feed for them."""
    import tensorflow as tf

    return tf.cast(scores >= tf.constant(cutoffs, dtype=tf.float32), tf.int32)


# -- side files ---------------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    """A JSON side file; InputError naming it when missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None


def read_meta(directory: Path, *, required: bool = True) -> dict:
    """mlbench.json of an export folder (``{}`` when absent and not `required`)."""
    path = Path(directory) / META_FILE
    if not required and not path.exists():
        return {}
    return read_json(path)


def read_labels(directory: Path) -> list[str]:
    """labels.json of an export folder: the score columns' names [L]."""
    return [str(n) for n in read_json(Path(directory) / LABELS_FILE)]


def write_meta(directory: Path, meta: dict) -> None:
    """Write mlbench.json into `directory` (one-space indent, as always)."""
    (Path(directory) / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def write_side_files(directory: Path, label_names: Sequence[str], meta: dict) -> None:
    """Write labels.json and mlbench.json into `directory` (one-space indent, as always)."""
    (Path(directory) / LABELS_FILE).write_text(json.dumps([str(n) for n in label_names], indent=1),
                                               encoding="utf-8")
    write_meta(directory, meta)


def import_requirements(directory: Path) -> dict:
    """mlbench.json of an export (empty if absent), after importing its `requires`
    (custom ops, e.g. ``tensorflow_text``, must be registered before a SavedModel loads)."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    for module in meta.get("requires", []):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise InputError(f"{directory}: loading this model needs `{module}` ({err})") from None
    return meta


def write_calibration(export_dir: Path, cal: Calibration) -> Path:
    """Write ``calibration.json`` (atomically) into `export_dir`; return its path."""
    path = Path(export_dir) / CALIBRATION_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cal.to_json(), indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def read_calibration(export_dir: Path) -> Calibration | None:
    """The export's calibration map, or None when it has no calibration.json."""
    path = Path(export_dir) / CALIBRATION_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read the calibration ({err})") from None
    return Calibration.from_json(data, source=str(path))


# -- decision rules ---------------------------------------------------------------------------------
def saved_rules(directory: Path, labels: Sequence[str]) -> dict:
    """{rule name: DecisionRule} of thresholds.json (empty when the driver wrote none)."""
    path = Path(directory) / THRESHOLDS_FILE
    return load_thresholds(path, labels) if path.exists() else {}


def best_rule_name(directory: Path) -> str | None:
    """thresholds.json's ``best_rule`` ("fixed" when it names none); None without the file."""
    path = Path(directory) / THRESHOLDS_FILE
    if not path.exists():
        return None
    return str(read_json(path).get("best_rule", "fixed"))


def saved_threshold(directory: Path, labels: Sequence[str], meta: dict,
                    rule: str | None = None) -> float | np.ndarray:
    """The threshold(s) of `rule` from thresholds.json (default: its best rule);
    without that file, the thresholds stored in mlbench.json at export; else 0.5."""
    directory = Path(directory)
    if (directory / THRESHOLDS_FILE).exists():
        rules = saved_rules(directory, labels)
        name = rule or best_rule_name(directory)
        if name not in rules:
            raise InputError(f"{directory}: no decision rule {name!r}; have {sorted(rules)}")
        return rules[name].thresholds
    if rule is not None and rule != "fixed":
        raise InputError(f"{directory}: no {THRESHOLDS_FILE}, so no decision rule {rule!r}")
    stored = meta.get("thresholds")
    if stored is None or rule == "fixed":
        return 0.5
    return np.asarray(stored, dtype=np.float64) if isinstance(stored, list) else float(stored)


# -- what every reader answers ------------------------------------------------------------------------
class Artifact(Protocol):
    """What `predict`, a server or a benchmark needs from an exported model; every reader
    (`export.ExportedModel`, `fasttext_artifact.FastTextArtifact`, `onnx_artifact.OnnxArtifact`)
    implements all of it."""

    directory: Path
    labels: list[str]  # score-column names [L]
    meta: dict  # mlbench.json

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Scores float32 [len(texts), L] in [0, 1]."""

    def threshold(self, rule: str | None = None) -> float | np.ndarray:
        """The cut-off(s) of `rule` (`saved_threshold`)."""

    @property
    def has_calibration(self) -> bool:
        """Whether `probabilities` can answer (a graph output or calibration.json)."""

    def probabilities(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Calibrated probabilities float32 [len(texts), L]; InputError when uncalibrated."""


def explanations(artifact: Artifact, texts: Sequence[str],
                 labels: Sequence[Sequence[int]]) -> list[dict[str, list[tuple[str, float]]]]:
    """Per document {label name: [(token, weight), ...]} for the score columns
    `labels[i]`, from an export's ``explain`` signature; InputError naming the folder
    for an artifact without one (fastText and ONNX exports, tracks without an explainer)."""
    if not getattr(artifact, "has_explanations", False):
        directory = getattr(artifact, "directory", "this model")
        track = getattr(artifact, "meta", {}).get("track", "?")
        raise InputError(f"{directory}: this export has no explanations (track {track!r}, format "
                         f"{getattr(artifact, 'meta', {}).get('format', '?')!r}); the SavedModel "
                         "exports of tracks with an explainer have them")
    return artifact.explain(texts, labels)
