"""Request parsing for `mlbench serve`: bodies in, validated Python values out, or an `ApiError`.

Why by hand (not pydantic): every bad input gets a 4xx ``{"error": ..., "field": ...}``
naming the field in the API's own words (``texts[3]``, ``instances[0].labels``), and the
per-request limits apply before anything reaches the model.  Every text passes
`mlbench.serving.text_checks` here, where the request is parsed, so a text the model
cannot take never joins a batch shared with other clients.

Three dialects: mlbench's own ``/v1/predict``, TensorFlow Serving's REST predict
(``instances`` rows / ``inputs`` columns, any of the SavedModel's signatures) and the
Open Inference Protocol v2 (KServe, Triton: a ``BYTES`` input as JSON or as the binary
tensor extension).  No web framework here.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from mlbench.serving.text_checks import text_problem

__all__ = ["ApiError", "Limits", "parse_json", "PredictRequest", "parse_predict", "TfsRequest",
           "parse_tfs", "V2Request", "parse_v2"]


class ApiError(Exception):
    """A client error answered as ``{"error": message, "field": field}`` with HTTP `status`."""

    def __init__(self, status: int, message: str, field: str | None = None, *,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


@dataclass(frozen=True)
class Limits:
    """What one request may hold (413 past them)."""

    max_texts: int
    max_chars: int
    max_explain: int


def _kind(value: Any) -> str:
    """The JSON type name of a parsed value, for "expected X, got Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__)


def _short(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)[:50]


# --------------------------------------------------------------------------- JSON bodies
def parse_json(raw: bytes) -> Any:
    """The parsed JSON body; 400 naming the place where it stops being JSON."""
    if not raw.strip():
        raise ApiError(400, "empty request body; expected a JSON object", "body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, f"request body is not UTF-8 (invalid byte at offset {err.start})", "body") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ApiError(400, f"request body is not valid JSON: {err.msg.lower()} at line {err.lineno}, "
                            f"column {err.colno}", "body") from None
    except RecursionError:
        raise ApiError(400, "request body is not valid JSON: nested too deeply", "body") from None
    except ValueError:  # e.g. an integer with too many digits
        raise ApiError(400, "request body is not valid JSON: a number is too large", "body") from None


def _object(body: Any, allowed: Sequence[str], where: str = "body") -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, f"expected a JSON object, got {_kind(body)}", where)
    for key in body:
        if key not in allowed:
            raise ApiError(400, f"unknown field {key!r}; expected {', '.join(allowed)}", str(key))
    return body


def check_texts(texts: list[str], where: str, limits: Limits,
                item: Callable[[int], str] | None = None) -> list[str]:
    """`texts` within the limits and each one scoreable (`text_checks`); else the 4xx naming it
    (`where` for the list, ``item(i)`` for text i, default ``where[i]``)."""
    item = item or (lambda i: f"{where}[{i}]")
    if not texts:
        raise ApiError(400, "expected at least one text, got an empty list", where)
    if len(texts) > limits.max_texts:
        raise ApiError(413, f"{len(texts)} texts is over the limit of {limits.max_texts} per request", where)
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise ApiError(413, f"text of {len(text)} characters is over the limit of {limits.max_chars}",
                           item(i))
        problem = text_problem(text)
        if problem is not None:
            raise ApiError(400, f"text {problem}", item(i))
    return texts


def _text_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ApiError(400, f"expected an array of strings, got {_kind(value)}", where)
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise ApiError(400, f"expected a string, got {_kind(text)}", f"{where}[{i}]")
    return value


# --------------------------------------------------------------------------- /v1/predict
@dataclass
class PredictRequest:
    texts: list[str]
    top_k: int
    rule: str
    explain: bool


PREDICT_FIELDS = ("texts", "top_k", "rule", "explain")


def parse_predict(body: Any, limits: Limits, rules: Sequence[str], explains: bool, track: str) -> PredictRequest:
    """``{"texts": [...], "top_k": 5, "rule": "best", "explain": false}`` checked field by field."""
    body = _object(body, PREDICT_FIELDS)
    if "texts" not in body:
        raise ApiError(400, "missing field 'texts' (an array of strings)", "texts")
    texts = check_texts(_text_list(body["texts"], "texts"), "texts", limits)
    top_k = body.get("top_k", 5)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ApiError(400, f"expected a positive integer, got {_short(top_k)}", "top_k")
    rule = body.get("rule", "best")
    if not isinstance(rule, str) or rule not in rules:
        raise ApiError(400, f"unknown decision rule {_short(rule)}; this model has "
                            f"{', '.join(sorted(rules))}", "rule")
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise ApiError(400, f"expected true or false, got {_short(explain)}", "explain")
    if explain and not explains:
        raise ApiError(400, f"this model ({track}) has no explanations; SavedModel exports of tracks "
                            "with an explainer have them", "explain")
    if explain and len(texts) > limits.max_explain:
        raise ApiError(413, f"at most {limits.max_explain} texts per request with explain (integrated "
                            f"gradients cost many forward passes), got {len(texts)}", "texts")
    return PredictRequest(texts, top_k, rule, explain)


# --------------------------------------------------------------------------- TF Serving REST
TFS_FIELDS = ("signature_name", "instances", "inputs")


@dataclass
class TfsRequest:
    signature: str
    texts: list[str]
    extra: dict[str, np.ndarray]  # the signature's other inputs (explain: labels int32 [n, K])
    rows: bool  # row format (instances → predictions) or columnar (inputs → outputs)


def _tfs_string(value: Any, where: str) -> str:
    """One TF Serving string element: a JSON string or ``{"b64": "..."}`` (UTF-8 text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise ApiError(400, "b64 value is not base64-encoded UTF-8 text", where) from None
    raise ApiError(400, f"expected a string or {{\"b64\": ...}}, got {_kind(value)}", where)


def _int_matrix(rows: list, where: str) -> np.ndarray:
    """A rectangular int32 [n, K] from JSON arrays of integers (explain's ``labels``)."""
    if not isinstance(rows, list):
        raise ApiError(400, f"expected an array, got {_kind(rows)}", where)
    width = None
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise ApiError(400, f"expected an array of label indices, got {_kind(row)}", f"{where}[{i}]")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ApiError(400, f"rows of different lengths ({width} and {len(row)}); pad with -1",
                           f"{where}[{i}]")
        for v in row:
            if not isinstance(v, int) or isinstance(v, bool) or not -1 <= v < 2 ** 31:
                raise ApiError(400, f"expected label indices (integers, -1 pads), got {_short(v)}",
                               f"{where}[{i}]")
    return np.asarray(rows, dtype=np.int32).reshape(len(rows), width or 0)


def parse_tfs(body: Any, limits: Limits, signatures: dict[str, dict], n_labels: int) -> TfsRequest:
    """A TF Serving predict body for one of `signatures` (TF Serving's metadata form).

    Row format: ``instances`` is a list with one element per example, a bare value when
    the signature has one input, else an object naming every input.  Columnar:
    ``inputs`` is the bare value (one input) or an object of inputs.  Strings may be
    ``{"b64": ...}``."""
    body = _object(body, TFS_FIELDS)
    signature = body.get("signature_name", "serving_default")
    usable = sorted(k for k, v in signatures.items() if v.get("method_name") == "tensorflow/serving/predict")
    if not isinstance(signature, str) or signature not in usable:
        raise ApiError(400, f"Serving signature name: {_short(signature)} not found in signature def; "
                            f"have {', '.join(usable)}", "signature_name")
    names = sorted(signatures[signature]["inputs"])
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise ApiError(400, "expected exactly one of 'instances' (row format) or 'inputs' (columnar format)",
                       "instances" if has_rows else "body")
    columns: dict[str, Any]
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise ApiError(400, f"expected an array, got {_kind(rows)}", "instances")
        columns = {name: [] for name in names}
        for i, row in enumerate(rows):
            named = isinstance(row, dict) and "b64" not in row
            if len(names) > 1 or named:
                if not named or set(row) != set(names):
                    raise ApiError(400, f"expected an object with the inputs {', '.join(names)}, got "
                                        f"{_kind(row) if not named else sorted(row)}", f"instances[{i}]")
                for name in names:
                    columns[name].append(row[name])
            else:
                columns[names[0]].append(row)
        where = {name: "instances" for name in names}
        item = {name: (lambda i, n=name: f"instances[{i}]" + (f".{n}" if len(names) > 1 else "")) for name in names}
    else:
        cols = body["inputs"]
        if isinstance(cols, dict) and "b64" not in cols:
            if set(cols) != set(names):
                raise ApiError(400, f"expected an object with the inputs {', '.join(names)}, got keys "
                                    f"{sorted(cols)}", "inputs")
            columns = dict(cols)
            where = {name: f"inputs.{name}" for name in names}
        elif len(names) == 1:
            columns, where = {names[0]: cols}, {names[0]: "inputs"}
        else:
            raise ApiError(400, f"expected an object with the inputs {', '.join(names)}", "inputs")
        item = {name: (lambda i, n=name: f"{where[n]}[{i}]") for name in names}
    text_col = columns["texts"]
    if not isinstance(text_col, list):
        raise ApiError(400, f"expected an array of strings, got {_kind(text_col)}", where["texts"])
    texts = [_tfs_string(v, item["texts"](i)) for i, v in enumerate(text_col)]
    check_texts(texts, where["texts"], limits, item["texts"])
    extra = {}
    for name in names:
        if name == "texts":
            continue
        if name != "labels":
            raise ApiError(400, f"input {name!r} of signature {signature!r} is not supported", where[name])
        if len(texts) > limits.max_explain:
            raise ApiError(413, f"at most {limits.max_explain} texts per request with explain, got "
                                f"{len(texts)}", where["texts"])
        matrix = _int_matrix(columns[name], where[name])
        if matrix.shape[0] != len(texts):
            raise ApiError(400, f"{matrix.shape[0]} label rows for {len(texts)} texts", where[name])
        if matrix.size and (matrix.max() >= n_labels):
            raise ApiError(400, f"label index {int(matrix.max())} is out of range (the model has {n_labels} "
                                "labels)", where[name])
        extra[name] = matrix
    return TfsRequest(signature, texts, extra, has_rows)


# --------------------------------------------------------------------------- Open Inference Protocol v2
V2_FIELDS = ("id", "parameters", "inputs", "outputs")


@dataclass
class V2Request:
    id: str | None
    texts: list[str]
    outputs: list[str] | None  # requested output names (None: all)
    input_name: str
    binary: dict[str, bool]  # output name -> answer it as binary data (the binary tensor extension)
    binary_default: bool = False  # ``binary_data_output`` for outputs that do not say


def _v2_bytes(raw: bytes, count: int, where: str) -> list[bytes]:
    """The binary tensor extension's BYTES layout: per element a 4-byte little-endian length, then bytes."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ApiError(400, "binary BYTES data ends inside an element's length", where)
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise ApiError(400, "binary BYTES data ends inside an element", where)
        out.append(raw[pos:pos + size])
        pos += size
    if len(out) != count:
        raise ApiError(400, f"binary data holds {len(out)} elements, the shape says {count}", where)
    return out


def parse_v2(raw: bytes, header_length: str | None, limits: Limits, input_name: str,
             output_names: Sequence[str]) -> V2Request:
    """An inference request: JSON, or JSON + binary tensors when ``Inference-Header-Content-Length``
    is given.  One input (`input_name`, datatype ``BYTES``, shape [n] or [n, 1]) of UTF-8 texts."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(raw):
            raise ApiError(400, "Inference-Header-Content-Length is not a length within the body",
                           "Inference-Header-Content-Length")
        raw, binary = raw[:int(header_length)], raw[int(header_length):]
    body = _object(parse_json(raw), V2_FIELDS)
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ApiError(400, f"expected a string, got {_kind(request_id)}", "id")
    if not isinstance(body.get("parameters", {}), dict):
        raise ApiError(400, f"expected an object, got {_kind(body['parameters'])}", "parameters")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise ApiError(400, f"expected an array with the one input {input_name!r}", "inputs")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise ApiError(400, f"expected an object, got {_kind(tensor)}", "inputs[0]")
    if tensor.get("name") != input_name:
        raise ApiError(400, f"unknown input {_short(tensor.get('name'))}; this model has {input_name!r}",
                       "inputs[0].name")
    if tensor.get("datatype") != "BYTES":
        raise ApiError(400, f"expected datatype \"BYTES\", got {_short(tensor.get('datatype'))}",
                       "inputs[0].datatype")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or (len(shape) == 2 and shape[1] != 1)):
        raise ApiError(400, f"expected shape [n] or [n, 1], got {_short(shape)}", "inputs[0].shape")
    n = shape[0]
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "expected an object", "inputs[0].parameters")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
            raise ApiError(400, f"binary_data_size {_short(size)} does not match the {len(binary)} binary bytes "
                                "after the JSON header", "inputs[0].parameters.binary_data_size")
        if n > limits.max_texts:
            raise ApiError(413, f"{n} texts is over the limit of {limits.max_texts} per request",
                           "inputs[0].data")
        elements: list[Any] = _v2_bytes(binary, n, "inputs[0].data")
    else:
        data = tensor.get("data")
        if not isinstance(data, list):
            raise ApiError(400, f"expected an array of strings, got {_kind(data)}", "inputs[0].data")
        elements = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in data]  # [[s], ...] for [n, 1]
        if len(elements) != n:
            raise ApiError(400, f"{len(elements)} elements for shape {shape}", "inputs[0].data")
    texts = []
    for i, value in enumerate(elements):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, "element is not UTF-8 text", f"inputs[0].data[{i}]") from None
        elif not isinstance(value, str):
            raise ApiError(400, f"expected a string, got {_kind(value)}", f"inputs[0].data[{i}]")
        texts.append(value)
    check_texts(texts, "inputs[0].data", limits)
    wanted = body.get("outputs")
    names: list[str] | None = None
    binary: dict[str, bool] = {}
    if wanted is not None:
        if not isinstance(wanted, list):
            raise ApiError(400, f"expected an array, got {_kind(wanted)}", "outputs")
        names = []
        for i, out in enumerate(wanted):
            name = out.get("name") if isinstance(out, dict) else None
            if name not in output_names:
                raise ApiError(400, f"unknown output {_short(name)}; this model has {', '.join(output_names)}",
                               f"outputs[{i}].name")
            flag = (out.get("parameters") or {}).get("binary_data") if isinstance(out.get("parameters"), dict) \
                else None
            if flag is not None:
                if not isinstance(flag, bool):
                    raise ApiError(400, f"expected true or false, got {_short(flag)}",
                                   f"outputs[{i}].parameters.binary_data")
                binary[name] = flag
            names.append(name)
    default = body.get("parameters", {}).get("binary_data_output", False)
    if not isinstance(default, bool):
        raise ApiError(400, f"expected true or false, got {_short(default)}", "parameters.binary_data_output")
    return V2Request(request_id, texts, names, input_name, binary, default)
