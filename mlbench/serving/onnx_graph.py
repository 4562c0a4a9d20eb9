"""ONNX graph pieces written with `onnx.helper` (no TensorFlow): the self-contained
linear text model and the output heads every ONNX export carries.

* `linear_text_graph` — raw strings [N] → ``logits`` / ``scores`` [N, L] in ONE graph,
  for any scikit-learn ``TfidfVectorizer`` (default word analyzer) + linear model:

  ``StringNormalizer`` (LOWER, locale ``C.UTF-8``) → onnxruntime's ``com.microsoft``
  ``Tokenizer`` (every maximal run of ≥ 2 Python word characters, the class enumerated
  from Python's ``re`` as in `baselines.linear_export`) → ONNX ``TfIdfVectorizer``
  (TF counts of the vocabulary's n-grams) → binary / sublinear tf, × idf, l2 / l1 row
  norm → ``X @ W + b`` → sigmoid.  The string nodes are those skl2onnx (1.20) emits for
  a ``CountVectorizer``, written here rather than converted with it: skl2onnx computes
  sublinear tf as ``log(1 + tf)`` where scikit-learn has ``1 + log(tf)``, its default
  token regex ``[a-zA-Z0-9_]+`` keeps one-letter tokens (which break bigrams), and its
  n-gram splitter refuses a vocabulary whose bigrams lack their unigrams
  (``max_features``); so export needs no converter beyond ``onnx``.
  With ``int8`` the weights are stored as int8 with one scale per label column and
  dequantised in the graph (``DequantizeLinear``): weight-only, so the TF-IDF input is
  never quantised.

  What differs from scikit-learn: lower-casing.  ``StringNormalizer`` maps one code
  point to one (glibc's ``towlower`` under C.UTF-8), Python's ``str.lower`` follows
  Unicode's full and context rules (U+0130 "İ" → "i̇", a word-final "Σ" → "ς");
  `lowercase_mismatches` lists the code points where the two differ one by one on this
  machine (here only U+0130; recorded in the export's mlbench.json).  The locale must
  exist where the model runs (C.UTF-8 does on most Linux images).
* `add_heads` — beside ``scores`` [N, L]: ``probabilities`` (the validation-fitted
  `mlbench.evaluation.calibration.Calibration`, computed in float64 like
  `Calibration.apply`) and ``labels`` (int32, ``scores >= thresholds``, the decision
  rule a SavedModel's ``decisions`` signature bakes in), so a plain onnxruntime client
  gets the same three answers as a TF Serving client.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

STRING_INPUT = "texts"
LOCALE = "C.UTF-8"
MS_DOMAIN = "com.microsoft"

__all__ = ["linear_text_graph", "add_heads", "int8_matmul_weights", "lowercase_mismatches",
           "STRING_INPUT", "LOCALE"]


class _Graph:
    """A list of nodes and initializers under unique names (prefix ``mlbench_``)."""

    def __init__(self, prefix: str = "mlbench"):
        self.nodes: list = []
        self.initializers: list = []
        self.prefix = prefix
        self._count = 0

    def name(self, what: str) -> str:
        self._count += 1
        return f"{self.prefix}_{what}_{self._count}"

    def const(self, value: np.ndarray, what: str = "const") -> str:
        from onnx import numpy_helper

        name = self.name(what)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], *, out: str | None = None, domain: str = "",
           **attrs: Any) -> str:
        from onnx import helper

        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.name(op_type),
                                           domain=domain, **attrs))
        return out


# -- the self-contained linear text model ------------------------------------------------------
def _ngram_pool(vocabulary: Sequence[str], ngram_range: tuple[int, int]) -> dict[str, Any]:
    """``TfIdfVectorizer`` attributes for `vocabulary` (column order): pool strings grouped
    by n-gram width (1, 2, …), the start of each width in the pool, and each pool
    n-gram's output column."""
    lo, hi = ngram_range
    by_width: dict[int, list[tuple[list[str], int]]] = {n: [] for n in range(1, hi + 1)}
    for column, term in enumerate(vocabulary):
        tokens = term.split(" ")
        if not lo <= len(tokens) <= hi or not all(tokens):
            raise ValueError(f"vocabulary term {term!r} is not a {lo}..{hi}-gram of single-space-joined tokens")
        by_width[len(tokens)].append((tokens, column))
    pool: list[str] = []
    counts: list[int] = []
    indexes: list[int] = []
    for n in range(1, hi + 1):
        counts.append(len(pool))
        for tokens, column in by_width[n]:
            pool.extend(tokens)
            indexes.append(column)
    return {"pool_strings": pool, "ngram_counts": counts, "ngram_indexes": indexes,
            "min_gram_length": lo, "max_gram_length": hi}


def _int8_columns(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 [V, L], float32 scale [L]): symmetric per-column quantisation, |error| ≤ scale/2."""
    scale = (np.max(np.abs(weights), axis=0) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(weights / scale), -127, 127).astype(np.int8)
    return q, scale


def linear_text_graph(vocabulary: Sequence[str], idf: np.ndarray, weights: np.ndarray, bias: np.ndarray,
                      *, word_class: str, ngram_range: Sequence[int] = (1, 1), sublinear_tf: bool = False,
                      norm: str | None = "l2", lowercase: bool = True, binary: bool = False,
                      int8: bool = False, opset: int = 18):
    """An `onnx.ModelProto`: ``texts`` string [N] → ``logits``, ``scores`` float32 [N, L].

    `vocabulary` [V] in column order (n-grams joined by one space), `idf` [V], `weights`
    [V, L] and `bias` [L] in logit units; `word_class` an RE2 character class equal to
    the tokenizer's ``\\w`` (`mlbench.serving.word_class.python_word_class`).
    """
    from onnx import TensorProto, helper

    vocabulary = [str(t) for t in vocabulary]
    weights = np.asarray(weights, np.float32)
    n_features, n_labels = weights.shape
    if len(vocabulary) != n_features or np.shape(idf) != (n_features,) or np.shape(bias) != (n_labels,):
        raise ValueError(f"vocabulary {len(vocabulary)}, idf {np.shape(idf)}, weights {weights.shape} and "
                         f"bias {np.shape(bias)} do not match")
    if norm not in ("l1", "l2", None):
        raise ValueError(f"norm must be 'l1', 'l2' or None, got {norm!r}")
    lo, hi = int(ngram_range[0]), int(ngram_range[1])
    g = _Graph()
    x = STRING_INPUT
    if lowercase:
        x = g.op("StringNormalizer", [x], case_change_action="LOWER", is_case_sensitive=0, locale=LOCALE)
    pad = "#"  # never a token: not a word character
    tokens = g.op("Tokenizer", [x], domain=MS_DOMAIN, mark=0, mincharnum=1, pad_value=pad,
                  tokenexp=f"{word_class}{word_class}+")
    counts = g.op("TfIdfVectorizer", [tokens], mode="TF", max_skip_count=0,
                  **_ngram_pool(vocabulary, (lo, hi)))  # float32 [N, V]
    zero = g.const(np.float32(0.0), "zero")
    one = g.const(np.float32(1.0), "one")
    tf_ = counts
    if binary:
        tf_ = g.op("Min", [tf_, one])
    elif sublinear_tf:  # scikit-learn: 1 + log(tf) where tf > 0, else 0
        tf_ = g.op("Where", [g.op("Greater", [tf_, zero]), g.op("Add", [one, g.op("Log", [tf_])]), zero])
    values = g.op("Mul", [tf_, g.const(np.asarray(idf, np.float32), "idf")])
    if norm is not None:
        if norm == "l2":
            size = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [values, values]), g.const(np.array([1]), "axis")],
                                      keepdims=1)])
        else:
            size = g.op("ReduceSum", [g.op("Abs", [values]), g.const(np.array([1]), "axis")], keepdims=1)
        # a non-empty row has norm ≥ its smallest idf (≥ 1); an empty row stays 0 (scikit-learn)
        values = g.op("Div", [values, g.op("Max", [size, g.const(np.float32(1e-12), "tiny")])])
    if int8:
        q, scale = _int8_columns(weights)
        w = g.op("DequantizeLinear", [g.const(q, "weights_int8"), g.const(scale, "weights_scale"),
                                      g.const(np.zeros(n_labels, np.int8), "weights_zero")], axis=1)
    else:
        w = g.const(weights, "weights")
    logits = g.op("Add", [g.op("MatMul", [values, w]), g.const(np.asarray(bias, np.float32), "bias")],
                  out="logits")
    g.op("Sigmoid", [logits], out="scores")
    graph = helper.make_graph(
        g.nodes, "linear_text_model",
        [helper.make_tensor_value_info(STRING_INPUT, TensorProto.STRING, [None])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, n_labels]) for name in ("logits", "scores")],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(MS_DOMAIN, 1)],
                              producer_name="mlbench")
    model.ir_version = min(model.ir_version, 9)  # what onnxruntime 1.31 reads for opset 18
    return model


def int8_matmul_weights(model) -> int:
    """Store every float32 2-D initializer read only as a ``MatMul`` weight as int8 with a
    scale per output column, dequantised in the graph (``DequantizeLinear``, axis 1):
    weight-only, so activations are never quantised.  In place; returns how many."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    g = _Graph("mlbench_int8")
    done = 0
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2 or node.input[1] not in inits:
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if weight.dtype != np.float32 or weight.ndim != 2 or readers[node.input[1]] != 1:
            continue
        q, scale = _int8_columns(weight)
        graph.initializer.remove(inits[node.input[1]])
        node.input[1] = g.op("DequantizeLinear", [g.const(q, "weights_int8"), g.const(scale, "weights_scale"),
                                                  g.const(np.zeros(len(scale), np.int8), "weights_zero")], axis=1)
        done += 1
    graph.initializer.extend(g.initializers)
    for dq in reversed(g.nodes):  # before every reader: nodes stay in topological order
        graph.node.insert(0, dq)
    return done


# -- heads: probabilities and labels ------------------------------------------------------------
def _calibrated(g: _Graph, scores: str, cal: Any) -> str:
    """float32 [N, L] probabilities of `scores` under `cal` (`Calibration`), in float64.

    Platt / temperature / identity labels: ``sigmoid(a · logit(clip(s)) + b)``; isotonic
    labels: linear interpolation between knots, clipped outside them (as ``np.interp``),
    written as ``y_0 + Σ_k (y_{k+1} − y_k) · clip((s − x_k) / (x_{k+1} − x_k), 0, 1)`` over
    the isotonic columns only, then scattered back.
    """
    from onnx import TensorProto

    from mlbench.evaluation.calibration import EPS

    a, b = cal.slopes_and_biases()
    s = g.op("Cast", [scores], to=TensorProto.DOUBLE)
    c = g.op("Clip", [s, g.const(np.float64(EPS), "eps"), g.const(np.float64(1.0 - EPS), "one_minus_eps")])
    z = g.op("Sub", [g.op("Log", [c]), g.op("Log", [g.op("Sub", [g.const(np.float64(1.0), "one"), c])])])
    out = g.op("Sigmoid", [g.op("Add", [g.op("Mul", [z, g.const(a, "platt_a")]), g.const(b, "platt_b")])])
    iso = [l for l, k in enumerate(cal.kinds) if k == "isotonic"]
    if iso:
        width = max(len(cal.knots[l][0]) for l in iso)
        kx = np.array([list(cal.knots[l][0]) + [cal.knots[l][0][-1]] * (width - len(cal.knots[l][0]))
                       for l in iso], np.float64)  # [Li, K], padded with the last knot
        ky = np.array([list(cal.knots[l][1]) + [cal.knots[l][1][-1]] * (width - len(cal.knots[l][1]))
                       for l in iso], np.float64)
        if width == 1:  # a single knot: a constant
            kx, ky = np.concatenate([kx, kx], 1), np.concatenate([ky, ky], 1)
        gap = np.diff(kx, axis=1)
        inv_gap = np.divide(1.0, gap, out=np.zeros_like(gap), where=gap > 0)
        columns = g.const(np.array(iso, np.int64), "isotonic_columns")
        si = g.op("Unsqueeze", [g.op("Gather", [s, columns], axis=1), g.const(np.array([2]), "axis")])
        t = g.op("Clip", [g.op("Mul", [g.op("Sub", [si, g.const(kx[:, :-1], "knots_x")]),
                                       g.const(inv_gap, "knots_inv_gap")]),
                          g.const(np.float64(0.0), "zero"), g.const(np.float64(1.0), "one")])
        rise = g.op("ReduceSum", [g.op("Mul", [t, g.const(np.diff(ky, axis=1), "knots_dy")]),
                                  g.const(np.array([2]), "axis")], keepdims=0)
        interp = g.op("Add", [rise, g.const(ky[:, 0], "knots_y0")])  # [N, Li]
        index = g.op("Expand", [g.op("Unsqueeze", [columns, g.const(np.array([0]), "axis")]),
                                g.op("Shape", [interp])])
        out = g.op("ScatterElements", [out, index, interp], axis=1)
    return g.op("Cast", [out], to=TensorProto.FLOAT, out="probabilities")


def add_heads(model, *, calibration: Any = None, thresholds: float | np.ndarray = 0.5) -> None:
    """Add ``probabilities`` (when `calibration` is given) and ``labels`` (int32,
    ``scores >= thresholds``, thresholds a scalar or [L]) outputs beside the model's
    ``scores`` [N, L] output, in place."""
    from onnx import TensorProto, helper

    outputs = {o.name: o for o in model.graph.output}
    if "scores" not in outputs:
        raise ValueError(f"the ONNX model has no 'scores' output (has {sorted(outputs)})")
    n_labels = outputs["scores"].type.tensor_type.shape.dim[-1].dim_value or None
    g = _Graph("mlbench_head")
    added = []
    if calibration is not None:
        if n_labels is not None and calibration.n_labels != n_labels:
            raise ValueError(f"the model has {n_labels} labels, the calibration {calibration.n_labels}")
        added.append((_calibrated(g, "scores", calibration), TensorProto.FLOAT))
    cut = np.asarray(thresholds, np.float32)
    at_least = g.op("GreaterOrEqual", ["scores", g.const(cut, "thresholds")])
    added.append((g.op("Cast", [at_least], to=TensorProto.INT32, out="labels"), TensorProto.INT32))
    model.graph.node.extend(g.nodes)
    model.graph.initializer.extend(g.initializers)
    model.graph.output.extend(helper.make_tensor_value_info(name, dtype, [None, n_labels])
                              for name, dtype in added)


# -- what the graph's lower-casing does differently --------------------------------------------
def lowercase_mismatches(limit: int = 0x110000) -> list[int]:
    """Code points (below `limit`) whose lower case under onnxruntime's ``StringNormalizer``
    (locale C.UTF-8) differs from Python's ``str.lower`` on this machine."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    node = helper.make_node("StringNormalizer", ["x"], ["y"], case_change_action="LOWER",
                            is_case_sensitive=0, locale=LOCALE)
    graph = helper.make_graph([node], "lower", [helper.make_tensor_value_info("x", TensorProto.STRING, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.STRING, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = min(model.ir_version, 9)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    points = [c for c in range(1, limit) if not 0xD800 <= c <= 0xDFFF]
    chars = np.array([chr(c) for c in points], dtype=object)
    got = session.run(None, {"x": chars})[0]
    return [c for c, ch, low in zip(points, chars, got) if low != ch.lower()]
