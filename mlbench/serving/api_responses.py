"""Response shaping for `mlbench serve`: model outputs in, JSON-ready dicts out (no web framework).

The TF Serving shapes follow its REST API: row format answers ``predictions`` with one
entry per instance (the bare value when the signature has one output, else an object
of outputs); columnar answers ``outputs`` (the bare value, else an object).  String
outputs are UTF-8 strings, or ``{"b64": ...}`` when the output name ends in ``_bytes``.
The Open Inference Protocol answers named tensors with a flat ``data`` array.
"""

from __future__ import annotations

import base64
from typing import Any, Sequence

import numpy as np

from mlbench.serving.layout import DECISIONS_SIGNATURE, INPUT_NAME, PROBABILITIES, SCORES
from mlbench.serving.served_model import BEST, MODEL_VERSION, Outputs, ServedModel

__all__ = ["predict_results", "tfs_predictions", "tfs_status", "tfs_metadata", "info", "v2_server",
           "v2_model", "v2_outputs", "v2_infer"]


# --------------------------------------------------------------------------- /v1/predict
def predict_results(model: ServedModel, out: Outputs, rule: str, top_k: int,
                    why: Sequence[dict | None] | None = None) -> dict:
    """mlbench's own answer: per text the labels passing `rule` and the `top_k` labels, both ordered
    by the shown quantity (probability when calibrated, else score; ties by score)."""
    scores = out[SCORES]
    probs = model.probabilities(out)
    thresholds = model.rules[rule]
    shown = scores if probs is None else probs
    order = np.lexsort((-scores, -shown), axis=1) if scores.size else np.zeros_like(scores, dtype=np.int64)
    passed = scores >= thresholds
    labels, t_list = model.labels, thresholds.tolist()
    t_prob = model.threshold_probabilities(thresholds)
    tp_list = None if t_prob is None else t_prob.tolist()
    p_rows = [None] * len(scores) if probs is None else probs.tolist()
    why = why or [None] * len(scores)
    k = min(top_k, len(labels))

    def entry(row: list, p_row: list | None, j: int) -> dict:
        item = {"label": labels[j], "score": row[j], "threshold": t_list[j]}
        if p_row is not None:
            item["probability"] = p_row[j]
            item["threshold_probability"] = tp_list[j]
        return item

    results = []
    for row, p_row, ranked, ok, reasons in zip(scores.tolist(), p_rows, order.tolist(), passed.tolist(), why):
        result = {
            "labels": [entry(row, p_row, j) for j in ranked if ok[j]],
            "top_k": [{**entry(row, p_row, j), "passed": ok[j]} for j in ranked[:k]],
        }
        if reasons is not None:
            result["explanations"] = reasons
        results.append(result)
    return {"model": model.name, "rule": model.best_rule if rule == BEST else rule,
            "calibrated": probs is not None, "results": results}


# --------------------------------------------------------------------------- TF Serving REST
def _json_values(name: str, value: np.ndarray) -> Any:
    if value.dtype.kind in "SO":  # DT_STRING
        if name.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode("ascii")}, otypes=[object])(
                value).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b),
                            otypes=[object])(value).tolist()
    return value.tolist()


def tfs_predictions(out: Outputs, rows: bool) -> dict:
    """TF Serving's predict answer for a signature's outputs [n, ...] each."""
    names = sorted(out)
    values = {name: _json_values(name, out[name]) for name in names}
    if rows:
        if len(names) == 1:
            return {"predictions": values[names[0]]}
        n = len(values[names[0]])
        return {"predictions": [{name: values[name][i] for name in names} for i in range(n)]}
    return {"outputs": values[names[0]] if len(names) == 1 else values}


def tfs_status() -> dict:
    return {"model_version_status": [{"version": MODEL_VERSION, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def tfs_metadata(model: ServedModel) -> dict:
    """GetModelMetadataResponse as TF Serving's REST API writes it: every signature of the SavedModel."""
    return {"model_spec": {"name": model.name, "signature_name": "", "version": MODEL_VERSION},
            "metadata": {"signature_def": {"signature_def": model.signature_defs}}}


def _rule_json(t: np.ndarray) -> float | list[float]:
    return float(t[0]) if np.all(t == t[0]) else [float(v) for v in t]


def info(model: ServedModel, limits: dict) -> dict:
    """What mlbench adds beside the TF Serving metadata: labels (score columns), rules, the run's metrics."""
    return {
        "model": model.name,
        "track": model.meta.get("track"),
        "labels": model.labels,
        "thresholds": {"best_rule": model.best_rule,
                       "rules": {r: _rule_json(t) for r, t in model.rules.items() if r != BEST},
                       DECISIONS_SIGNATURE: _rule_json(model.baked)},
        "run": model.run_metrics(),
        "calibrated": model.calibrated,
        "explain": model.meta.get("explain") if model.explains else None,
        "signatures": sorted(model.signature_defs),
        "limits": limits,
    }


# --------------------------------------------------------------------------- Open Inference Protocol v2
V2_DECISIONS = "decisions"


def v2_server() -> dict:
    """Server metadata: the binary tensor extension is understood on input and output."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("mlbench")
    except PackageNotFoundError:
        ours = "unknown"
    return {"name": "mlbench", "version": ours, "extensions": ["binary_tensor_data"]}


def v2_outputs(model: ServedModel) -> list[str]:
    """The output tensors an inference answers: scores, probabilities (calibrated exports), decisions."""
    return [SCORES] + ([PROBABILITIES] if model.calibrated else []) + [V2_DECISIONS]


def v2_model(model: ServedModel) -> dict:
    n = len(model.labels)
    dtypes = {SCORES: "FP32", PROBABILITIES: "FP32", V2_DECISIONS: "INT32"}
    platform = "tensorflow_savedmodel" if hasattr(model.artifact, "signature_outputs") else "mlbench"
    return {"name": model.name, "versions": [MODEL_VERSION], "platform": platform,
            "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": o, "datatype": dtypes[o], "shape": [-1, n]} for o in v2_outputs(model)]}


def v2_infer(model: ServedModel, out: Outputs, request_id: str | None, wanted: list[str] | None,
             binary: dict[str, bool] | None = None, binary_default: bool = False) -> tuple[dict, bytes]:
    """The inference answer: each requested output as a named tensor [n, L], flat row-major ``data``,
    or, where the client asked for binary data, little-endian bytes after the JSON (the binary
    tensor extension: ``parameters.binary_data_size`` per tensor, parts in output order).

    ``decisions`` are the labels passing the server's best decision rule (1/0)."""
    probs = model.probabilities(out)
    tensors = {SCORES: out[SCORES]}
    if probs is not None:
        tensors[PROBABILITIES] = probs
    tensors[V2_DECISIONS] = (out[SCORES] >= model.rules[BEST]).astype(np.int32)
    dtypes = {SCORES: ("FP32", "<f4"), PROBABILITIES: ("FP32", "<f4"), V2_DECISIONS: ("INT32", "<i4")}
    names = wanted if wanted is not None else v2_outputs(model)
    answer: dict[str, Any] = {"model_name": model.name, "model_version": MODEL_VERSION}
    if request_id is not None:
        answer["id"] = request_id
    answer["outputs"], parts = [], []
    for name in names:
        datatype, layout = dtypes[name]
        tensor = {"name": name, "datatype": datatype, "shape": list(tensors[name].shape)}
        if (binary or {}).get(name, binary_default):
            raw = np.ascontiguousarray(tensors[name], dtype=layout).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            parts.append(raw)
        else:
            tensor["data"] = tensors[name].reshape(-1).tolist()
        answer["outputs"].append(tensor)
    return answer, b"".join(parts)
