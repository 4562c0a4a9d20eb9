"""Raw-string SavedModels: export a text → logits pipeline, load it back, predict.

Every exported model has the same contract, whatever track made it:
``serving_default(texts: tf.string[None]) -> {"scores": float32[None, n_labels]}``
(probabilities), a ``labels()`` function returning the label names, and beside the
SavedModel files ``labels.json``, ``mlbench.json`` (metadata) and, once the driver
has tuned them, ``thresholds.json`` (decision rules applied by ``predict``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from mlbench.errors import InputError

LABELS_FILE = "labels.json"
META_FILE = "mlbench.json"
THRESHOLDS_FILE = "thresholds.json"


def _server_class():
    import tensorflow as tf

    class RawStringServer(tf.Module):
        """Applies `steps` in order to a batch of strings, then a sigmoid."""

        def __init__(self, steps: Sequence, label_names: Sequence[str]):
            super().__init__()
            self.steps = list(steps)
            self.label_names = tf.Variable(list(label_names), dtype=tf.string, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
        def serve(self, texts):
            x = texts
            for step in self.steps:
                x = step(x)
            return {"scores": tf.sigmoid(tf.cast(x, tf.float32))}

        @tf.function(input_signature=[])
        def labels(self):
            return self.label_names.read_value()

    return RawStringServer


def detach_optimizer(step):
    """A compiled Keras functional model → the same layers and weights, no optimizer.

    Why: `tf.saved_model.save` follows every tracked object, and a compiled model
    tracks its optimizer, whose Adam moments would triple the exported size.
    """
    import keras

    if isinstance(step, keras.Model) and getattr(step, "optimizer", None) is not None:
        return keras.Model(step.inputs, step.outputs, name=f"{step.name}_serving")
    return step


def export_raw_string_model(
    directory: str | Path,
    steps: Sequence,
    label_names: Sequence[str],
    *,
    track: str,
    metadata: dict | None = None,
    requires: Sequence[str] = (),
) -> Path:
    """Save ``sigmoid(steps[-1](…steps[0](texts)))`` as a SavedModel taking raw strings.

    `steps` are Keras layers/models (or tf.Modules) whose composition maps a
    string batch to logits: the text preprocessing travels inside the graph.
    `requires` names Python modules the loading process must import first
    (e.g. ``tensorflow_text`` for KerasHub tokenizers).
    """
    import tensorflow as tf

    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty; refusing to overwrite")
    server = _server_class()([detach_optimizer(s) for s in steps], label_names)
    tf.saved_model.save(
        server,
        str(directory),
        signatures={"serving_default": server.serve, "labels": server.labels},
    )
    (directory / LABELS_FILE).write_text(json.dumps(list(label_names), indent=1), encoding="utf-8")
    meta = {"track": track, "requires": list(requires), **(metadata or {})}
    (directory / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return directory


class ExportedModel:
    """A reloaded raw-string SavedModel with its label names and decision rules."""

    def __init__(self, directory: str | Path):
        import importlib

        self.directory = Path(directory)
        if not (self.directory / "saved_model.pb").exists():
            raise InputError(f"{self.directory}: not an exported model (no saved_model.pb)")
        meta_path = self.directory / META_FILE
        self.meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
        for module in self.meta.get("requires", []):
            importlib.import_module(module)  # registers custom ops before loading
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(self.directory))
        self._serve = self._loaded.signatures["serving_default"]
        self.labels: list[str] = json.loads(
            (self.directory / LABELS_FILE).read_text(encoding="utf-8")
        )
        self.rules = self._load_rules()

    def _load_rules(self) -> dict:
        path = self.directory / THRESHOLDS_FILE
        if not path.exists():
            return {}
        from mlbench.evaluation.thresholds import load_thresholds

        return load_thresholds(path)

    def threshold(self, rule: str | None = None) -> float | np.ndarray:
        """The threshold(s) of `rule` (default: the saved best rule, else 0.5)."""
        if not self.rules:
            return 0.5
        if rule is None:
            path = self.directory / THRESHOLDS_FILE
            rule = json.loads(path.read_text(encoding="utf-8")).get("best_rule", "fixed")
        if rule not in self.rules:
            raise InputError(f"{self.directory}: no decision rule {rule!r}; have {sorted(self.rules)}")
        return self.rules[rule].thresholds

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Per-label probabilities for raw strings, shape [len(texts), n_labels]."""
        tf = self._tf
        out = []
        for start in range(0, len(texts), batch_size):
            batch = tf.constant(list(texts[start : start + batch_size]), dtype=tf.string)
            out.append(self._serve(texts=batch)["scores"].numpy())
        if not out:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(out, axis=0)
