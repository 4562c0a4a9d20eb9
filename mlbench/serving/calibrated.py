"""Calibrated probabilities inside an exported SavedModel, beside its raw scores.

Why: decision rules are fitted on the raw scores (every F1 figure stays as it was),
but a client reading "0.9" wants a probability.  `add_calibration` takes any raw-string
export (`mlbench.serving.export`) and re-saves it with the validation-fitted
calibration map (`mlbench.evaluation.calibration.calibration_layer`) in the graph:

* ``serving_default(texts[None]) -> {"scores", "probabilities"}`` (float32 [None, L] each);
* ``decisions(texts) -> {"scores", "labels", "probabilities"}`` (labels: raw-score rule);
* ``explain`` (when the export has it) carried over unchanged;
* ``calibration.json`` beside it (`Calibration.to_json()`), which readers without the
  graph outputs (a fastText export) apply in Python.

The re-save goes to a temporary folder beside the export and is swapped in only when
complete, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlbench.evaluation.calibration import Calibration, calibration_layer
from mlbench.serving.layout import (CALIBRATION_FILE, DECISIONS_SIGNATURE, EXPLAIN_LABELS_INPUT,
                                    EXPLAIN_SIGNATURE, LABELS_OUTPUT, PROBABILITIES, SAVEDMODEL_ENTRIES,
                                    SCORES, SERVE_SIGNATURE, import_requirements, read_calibration,
                                    signature_outputs, text_input_spec, write_calibration, write_meta)

__all__ = ["add_calibration", "write_calibration", "read_calibration", "CALIBRATION_FILE",
           "PROBABILITIES"]


def add_calibration(export_dir: Path, cal: Calibration) -> None:
    """Re-save the SavedModel in `export_dir` with a ``probabilities`` output on both
    signatures (= ``calibration_layer(cal)(scores)``) and write calibration.json.

    Works on any export whose signatures take ``texts`` and return ``scores`` [None, L]
    (``decisions`` also ``labels``); other files in the folder are kept.  The result runs
    under `tf.saved_model.load` and the v1 session loader (`export.session_run`).
    """
    import tensorflow as tf

    export_dir = Path(export_dir)
    meta = import_requirements(export_dir)
    loaded = tf.saved_model.load(str(export_dir))
    serve_fn = loaded.signatures[SERVE_SIGNATURE]
    decide_fn = loaded.signatures.get(DECISIONS_SIGNATURE)
    n_labels = int(serve_fn.structured_outputs[SCORES].shape[-1])
    if n_labels != cal.n_labels:
        raise ValueError(f"{export_dir}: the model has {n_labels} labels, the calibration {cal.n_labels}")

    module = tf.Module()
    module.model = loaded  # its variables and tables are saved with the new graph
    module.calibration = calibration_layer(cal)
    spec = text_input_spec()

    @tf.function(input_signature=spec)
    def serve(texts):
        scores = serve_fn(texts=texts)[SCORES]
        return {SCORES: scores, PROBABILITIES: module.calibration(scores)}

    signatures = {SERVE_SIGNATURE: serve}
    if decide_fn is not None:
        @tf.function(input_signature=spec)
        def decisions(texts):
            out = decide_fn(texts=texts)
            return {SCORES: out[SCORES], LABELS_OUTPUT: out[LABELS_OUTPUT],
                    PROBABILITIES: module.calibration(out[SCORES])}

        signatures[DECISIONS_SIGNATURE] = decisions
    explain_fn = loaded.signatures.get(EXPLAIN_SIGNATURE)
    if explain_fn is not None:  # carried over unchanged: attributions are in logit units
        @tf.function(input_signature=[spec[0], tf.TensorSpec([None, None], tf.int32, name=EXPLAIN_LABELS_INPUT)])
        def explain(texts, labels):
            return explain_fn(texts=texts, **{EXPLAIN_LABELS_INPUT: labels})

        signatures[EXPLAIN_SIGNATURE] = explain

    tmp = export_dir.with_name(f".{export_dir.name}.calibrating")
    old = export_dir.with_name(f".{export_dir.name}.uncalibrated")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    try:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        for entry in export_dir.iterdir():
            if entry.name in SAVEDMODEL_ENTRIES or (tmp / entry.name).exists():
                continue
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
        meta = {**meta, "calibrated": True, "outputs": {**meta.get("outputs", {}), **signature_outputs(True)}}
        write_meta(tmp, meta)
        write_calibration(tmp, cal)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    del loaded, module
    export_dir.rename(old)  # two renames: at every instant one complete export exists
    tmp.rename(export_dir)
    shutil.rmtree(old, ignore_errors=True)
