"""Raw-string SavedModels that TensorFlow Serving can load: export, reload, predict.

Every exported model has the same contract, whatever track made it:

* ``serving_default(texts: tf.string[None]) -> {"scores": float32[None, L]}``
  (per-label probabilities);
* ``decisions(texts) -> {"scores": float32[None, L], "labels": int32[None, L]}``
  with ``labels = scores >= thresholds`` for the thresholds given at export (the
  best decision rule's, else 0.5), so a TF Serving client gets label sets without
  Python;
* beside the SavedModel files: ``labels.json`` (score-column names), ``mlbench.json``
  (track, format, the thresholds baked into ``decisions``, modules to import before
  loading) and, once the driver has tuned them, ``thresholds.json``.

Why `keras.export.ExportArchive` and not ``tf.saved_model.save`` of a `tf.Module`
holding the Keras layers: the latter reloads with ``tf.saved_model.load`` but not
with the v1 session loader TensorFlow Serving's C++ server uses ("Could not find
variable dense_0/kernel"); ExportArchive tracks the variables themselves, leaves the
optimizer out and writes graphs the session loader runs.  `session_run` is that
check (what ``saved_model_cli run`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mlbench.errors import InputError
from mlbench.explain.graph import decode, pad_labels
from mlbench.serving.layout import (CALIBRATION_FILE, DECISIONS_SIGNATURE, EXPLAIN_LABELS_INPUT,
                                    EXPLAIN_SIGNATURE, INPUT_NAME, LABELS_OUTPUT, PROBABILITIES,
                                    SAVEDMODEL_FILE, SAVEDMODEL_FORMAT, SCORES, SERVE_SIGNATURE,
                                    decision_labels, decision_thresholds, explanations,
                                    import_requirements, read_calibration, read_labels, saved_rules,
                                    saved_threshold, text_input_spec, write_side_files)

__all__ = ["export_raw_string_model", "ExportedModel", "session_run", "detach_optimizer",
           "decision_thresholds"]


def detach_optimizer(step):
    """A compiled Keras functional model → the same layers and weights, no optimizer.

    Why: a compiled model tracks its optimizer, whose Adam moments would triple the
    exported size if anything followed that reference.
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
    thresholds: float | np.ndarray | None = None,
    metadata: dict | None = None,
    requires: Sequence[str] = (),
    explainer: Any = None,
) -> Path:
    """Save ``sigmoid(steps[-1](…steps[0](texts)))`` as a raw-string SavedModel.

    `steps` are Keras layers/models or `tf.Module`s whose composition maps a string
    batch [B] to float logits [B, L]: the text preprocessing travels inside the graph.
    `thresholds` ([L] or scalar; None → 0.5) become the ``decisions`` signature's
    cut-offs.  `requires` names Python modules the loading process must import
    first (e.g. ``tensorflow_text`` for KerasHub tokenizers).  `explainer` (a
    `mlbench.explain.graph.GraphExplainer` over the same layers) adds the ``explain``
    signature: texts [None] and labels int32 [None, K] → top tokens and weights.
    """
    import tensorflow as tf
    from keras.export import ExportArchive

    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty; refusing to overwrite")
    names = [str(n) for n in label_names]
    cutoffs = decision_thresholds(thresholds, len(names))
    steps = [detach_optimizer(s) for s in steps]

    archive = ExportArchive()
    for step in steps:
        if _is_keras_layer(step):
            # not archive.track(step): it lists the Keras variables beside the tf.Variables the
            # endpoints capture, and the checkpoint then stores every weight twice. The captured
            # variables are saved anyway; only lookup tables need tracking.
            for resource in _lookup_resources(step):
                archive.track(resource)
        else:
            archive.track(step)
    variables = [v for s in steps if isinstance(s, tf.Module) and not _is_keras_layer(s)
                 for v in s.variables]
    if variables:  # plain tf.Modules: make their variables part of the saved object graph
        archive.add_variable_collection("module_variables", variables)

    def scores(texts):
        x = texts
        for step in steps:
            x = step(x)
        return tf.sigmoid(tf.cast(x, tf.float32))

    def serve(texts):
        return {SCORES: scores(texts)}

    def decisions(texts):
        s = scores(texts)
        return {SCORES: s, LABELS_OUTPUT: decision_labels(s, cutoffs)}

    spec = text_input_spec()
    archive.add_endpoint(SERVE_SIGNATURE, serve, input_signature=spec)
    archive.add_endpoint(DECISIONS_SIGNATURE, decisions, input_signature=spec)
    signatures = [SERVE_SIGNATURE, DECISIONS_SIGNATURE]
    if explainer is not None:
        archive.add_endpoint(EXPLAIN_SIGNATURE, explainer.__call__,
                             input_signature=explainer.input_signature())
        signatures.append(EXPLAIN_SIGNATURE)
    archive.write_out(str(directory), verbose=False)

    meta = {"track": track, "format": SAVEDMODEL_FORMAT, "requires": list(requires),
            "signatures": signatures, "thresholds": [float(v) for v in cutoffs],
            **({"explain": explainer.describe()} if explainer is not None else {}), **(metadata or {})}
    write_side_files(directory, names, meta)
    return directory


def _lookup_resources(layer: Any) -> list:
    """The TF resources (lookup tables) reachable from a Keras layer, variables excluded."""
    import tensorflow as tf

    found = []
    for obj in tf.train.TrackableView(layer).descendants():
        if isinstance(obj, tf.saved_model.experimental.TrackableResource) and not isinstance(
                obj, tf.Variable):
            found.append(obj)
    return found


def _is_keras_layer(obj: Any) -> bool:
    import keras

    return isinstance(obj, keras.layers.Layer)


def session_run(directory: str | Path, texts: Sequence[str], *,
                signature: str = SERVE_SIGNATURE, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run one signature under the v1 session loader TF Serving's C++ server uses.

    The same path as ``saved_model_cli run --tag_set serve``: the MetaGraph is
    imported into a fresh graph, variables restored by name, tables initialised by
    the SavedModel's init op.  `labels` feeds ``explain``.  Returns {output name: array}.
    """
    import tensorflow as tf

    directory = Path(directory)
    import_requirements(directory)
    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        meta_graph = v1.saved_model.loader.load(session, ["serve"], str(directory))
        sig = meta_graph.signature_def[signature]
        feed = {sig.inputs[INPUT_NAME].name: np.asarray(list(texts), dtype=object)}
        if labels is not None:  # the ``explain`` signature's second input, int32 [B, K]
            feed[sig.inputs[EXPLAIN_LABELS_INPUT].name] = np.asarray(labels, dtype=np.int32)
        keys = sorted(sig.outputs)
        values = session.run([sig.outputs[k].name for k in keys], feed_dict=feed)
    return dict(zip(keys, values))


class ExportedModel:
    """A reloaded raw-string SavedModel with its label names and decision rules."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        if not (self.directory / SAVEDMODEL_FILE).exists():
            raise InputError(f"{self.directory}: not an exported model (no {SAVEDMODEL_FILE})")
        self.meta = import_requirements(self.directory)
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(self.directory))
        self._serve = self._loaded.signatures[SERVE_SIGNATURE]
        self._decide: Callable | None = self._loaded.signatures.get(DECISIONS_SIGNATURE)
        self._explain: Callable | None = self._loaded.signatures.get(EXPLAIN_SIGNATURE)
        self.labels: list[str] = read_labels(self.directory)

    @property
    def rules(self) -> dict:
        """The decision rules of thresholds.json (empty when the driver wrote none)."""
        return saved_rules(self.directory, self.labels)

    def threshold(self, rule: str | None = None) -> float | np.ndarray:
        """The threshold(s) of `rule` (default: thresholds.json's best rule; without
        that file, the thresholds baked in at export; else 0.5)."""
        return saved_threshold(self.directory, self.labels, self.meta, rule)

    def _batches(self, texts: Sequence[str], batch_size: int, fn: Callable) -> list[dict]:
        tf = self._tf
        return [fn(texts=tf.constant(list(texts[i : i + batch_size]), dtype=tf.string))
                for i in range(0, len(texts), batch_size)]

    def _stacked(self, texts: Sequence[str], batch_size: int, fn: Callable, key: str, dtype) -> np.ndarray:
        """Output `key` of signature `fn` over every batch, stacked: [len(texts), n_labels]."""
        out = [b[key].numpy() for b in self._batches(texts, batch_size, fn)]
        if not out:
            return np.zeros((0, len(self.labels)), dtype=dtype)
        return np.concatenate(out, axis=0)

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Per-label probabilities for raw strings, float32 [len(texts), n_labels]."""
        return self._stacked(texts, batch_size, self._serve, SCORES, np.float32)

    @property
    def signature_names(self) -> list[str]:
        """The SavedModel's callable signatures (``serving_default``, ``decisions``, maybe ``explain``)."""
        return sorted(self._loaded.signatures)

    def signature_outputs(self, name: str, texts: Sequence[str], **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of signature `name` for `texts` (plus its other `inputs`), as
        TF Serving would compute them: {output name: array [len(texts), ...]}, one call."""
        tf = self._tf
        fn = self._loaded.signatures[name]
        feed = {INPUT_NAME: tf.constant(list(texts), tf.string),
                **{k: tf.constant(v) for k, v in inputs.items()}}
        return {k: v.numpy() for k, v in fn(**feed).items()}

    @property
    def has_calibration(self) -> bool:
        """Whether the export carries calibrated probabilities (graph output or calibration.json)."""
        return PROBABILITIES in self._serve.structured_outputs or (self.directory / CALIBRATION_FILE).exists()

    def probabilities(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Calibrated per-label probabilities, float32 [len(texts), n_labels]: the graph's
        ``probabilities`` output, else calibration.json applied to the scores; InputError
        for an export made without calibration."""
        if PROBABILITIES in self._serve.structured_outputs:
            return self._stacked(texts, batch_size, self._serve, PROBABILITIES, np.float32)
        cal = read_calibration(self.directory)
        if cal is None:
            raise InputError(f"{self.directory}: exported without calibration (no calibration.json); "
                             "use its raw scores (--raw) or re-run the experiment")
        return cal.apply(self.predict(texts, batch_size)).astype(np.float32)

    def decide(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Labels the ``decisions`` signature predicts (thresholds baked in at export):
        int32 [len(texts), n_labels]; older exports without it: ``scores >= 0.5``."""
        if self._decide is None:
            return (self.predict(texts, batch_size) >= 0.5).astype(np.int32)
        return self._stacked(texts, batch_size, self._decide, LABELS_OUTPUT, np.int32)

    @property
    def has_explanations(self) -> bool:
        """Whether the export carries the ``explain`` signature (tracks with an explainer)."""
        return self._explain is not None

    def explain(self, texts: Sequence[str], labels: Sequence[Sequence[int]], *,
                batch_size: int = 16) -> list[dict[str, list[tuple[str, float]]]]:
        """Per document {label name: [(token, weight), ...]} for the score columns
        `labels[i]` of document i, from the export's ``explain`` signature
        (`mlbench.explain.graph`); see `layout.explanations` for exports without one."""
        if self._explain is None:
            return explanations(self, texts, labels)  # raises the InputError naming the folder
        tf = self._tf
        out: list[dict] = []
        for i in range(0, len(texts), batch_size):
            rows = [list(r) for r in labels[i:i + batch_size]]
            got = self._explain(texts=tf.constant(list(texts[i:i + batch_size]), tf.string),
                                **{EXPLAIN_LABELS_INPUT: tf.constant(pad_labels(rows), tf.int32)})
            out += decode({k: v.numpy() for k, v in got.items()}, rows, self.labels)
        return out
