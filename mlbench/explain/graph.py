"""Explanations as a TensorFlow graph: one code path for `explain(track, …)`, for the
``explain`` signature of an exported SavedModel, and so for `predict --explain` and the
server's ``"explain": true``.

Why in the graph: an export is all a deployment has (no fitted Python track), and TF
Serving clients can call the signature too.  The contract::

    explain(texts: string [B], labels: int32 [B, K]) -> {
        "tokens":  string  [B, K, top_n]  n-grams / tokens with the largest |weight| ("" pads),
        "weights": float32 [B, K, top_n]  their signed attributions (logit units),
        "total":   float32 [B, K]         sum over every feature of the document,
        "delta":   float32 [B, K]         f(x) − f(baseline) (completeness: total ≈ delta),
        "logit":   float32 [B, K]}        f(x), the label's logit

``labels`` are the score columns to explain per document; −1 pads (that row comes
back empty).  A track supplies `AttributionParts` for one document — its feature
names [n], its features x [n, …], a baseline of the same shape and the function
``f: [m, n, …] → [m, L]`` logits — and `GraphExplainer` integrates the gradient along
the straight path (trapezoid rule, `steps` intervals, all K labels in one backward
pass).  For a linear f one step is exact: the attributions are ``x_j · W[j, l]``.
A token's weight is summed over its embedding dimensions and its occurrences.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from mlbench.serving.layout import EXPLAIN_LABELS_INPUT as LABELS_INPUT
from mlbench.serving.layout import EXPLAIN_SIGNATURE, INPUT_NAME

__all__ = ["GraphExplainer", "path_attributions", "top_by_name", "decode", "EXPLAIN_SIGNATURE",
           "LABELS_INPUT", "TOP_N"]

#: tokens kept per explained label in the graph output
TOP_N = 10

#: parts(text: tf.string scalar) -> (names [n] string, x [n, ...], baseline [n, ...], f)
AttributionParts = Callable[[Any], tuple[Any, Any, Any, Callable]]


def trapezoid(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas [steps + 1], weights [steps + 1]) of the trapezoid rule on [0, 1]."""
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    alphas = np.linspace(0.0, 1.0, int(steps) + 1).astype(np.float32)
    weights = np.full(alphas.size, 1.0 / steps, dtype=np.float32)
    weights[[0, -1]] *= 0.5
    return alphas, weights


def path_attributions(f: Callable, x, baseline, labels, steps: int):
    """Integrated gradients of several labels of one input.

    x, baseline: [n, ...] float32 (static rank); labels: int32 [K] (>= 0);
    f: [m, n, ...] → [m, L] logits.  Returns (attributions [K, n, ...],
    delta [K] = f(x) − f(baseline), logit [K] = f(x)), float32.
    """
    import tensorflow as tf

    alphas, weights = trapezoid(steps)
    s = alphas.size
    x = tf.convert_to_tensor(x, tf.float32)
    baseline = tf.convert_to_tensor(baseline, tf.float32)
    labels = tf.convert_to_tensor(labels, tf.int32)
    rank = len(x.shape)
    k = tf.shape(labels)[0]
    diff = x - baseline
    path = baseline[None] + tf.reshape(tf.constant(alphas), [s] + [1] * rank) * diff[None]  # [S, n, ...]
    flat = tf.reshape(tf.tile(path[None], [k, 1] + [1] * rank), tf.concat([[k * s], tf.shape(x)], 0))
    with tf.GradientTape() as tape:
        tape.watch(flat)
        out = tf.cast(f(flat), tf.float32)  # [K·S, L]
        picked = tf.gather(out, tf.repeat(labels, s), axis=1, batch_dims=1)  # [K·S]
        objective = tf.reduce_sum(picked * tf.tile(tf.constant(weights), [k]))
    grads = tape.gradient(objective, flat, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    grads = tf.reshape(grads, tf.concat([[k, s], tf.shape(x)], 0))
    attributions = diff[None] * tf.reduce_sum(grads, axis=1)  # the weights are in the objective
    picked = tf.reshape(picked, [k, s])
    return attributions, picked[:, -1] - picked[:, 0], picked[:, -1]


def top_by_name(names, attributions, top_n: int):
    """Per label the `top_n` names with the largest |summed weight|.

    names: string [n]; attributions: [K, n].  Returns (tokens string [K, top_n],
    weights float32 [K, top_n]), "" / 0 padding; ties keep the first-seen name.
    """
    import tensorflow as tf

    unique, index = tf.unique(names)
    u = tf.shape(unique)[0]
    summed = tf.transpose(tf.math.unsorted_segment_sum(tf.transpose(attributions), index, u))  # [K, u]
    take = tf.minimum(top_n, u)
    _, order = tf.math.top_k(tf.abs(summed), k=take)
    tokens = tf.gather(unique, order)
    weights = tf.gather(summed, order, batch_dims=1)
    pad = [[0, 0], [0, top_n - take]]
    return tf.pad(tokens, pad, constant_values=""), tf.pad(weights, pad)


class GraphExplainer:
    """``explain(texts [B], labels [B, K])`` for one track (see the module docstring).

    Not a `tf.Module`: it holds the track's layers only through `parts`, so an export
    saves each weight once (the endpoint captures what it uses).  `describe()` goes
    into the export's mlbench.json.
    """

    def __init__(self, parts: AttributionParts, *, steps: int, method: str, baseline: str,
                 features: str, top_n: int = TOP_N):
        trapezoid(steps)  # validates steps
        if int(top_n) < 1:
            raise ValueError(f"top_n must be >= 1, got {top_n}")
        self.parts, self.steps, self.top_n = parts, int(steps), int(top_n)
        self.method, self.baseline, self.features = method, baseline, features
        self._eager: Callable | None = None

    def describe(self) -> dict:
        return {"method": self.method, "steps": self.steps, "baseline": self.baseline,
                "features": self.features, "top_n": self.top_n, "units": "logit",
                "inputs": [INPUT_NAME, LABELS_INPUT],
                "outputs": ["tokens", "weights", "total", "delta", "logit"]}

    def input_signature(self) -> list:
        import tensorflow as tf

        return [tf.TensorSpec([None], tf.string, name=INPUT_NAME),
                tf.TensorSpec([None, None], tf.int32, name=LABELS_INPUT)]

    def __call__(self, texts, labels) -> dict:
        import tensorflow as tf

        top_n = self.top_n

        def one(args):
            text, wanted = args
            names, x, base, f = self.parts(text)
            att, delta, logit = path_attributions(f, x, base, tf.maximum(wanted, 0), self.steps)
            rank = len(att.shape)
            if rank > 2:  # token embeddings: one weight per token
                att = tf.reduce_sum(att, axis=list(range(2, rank)))
            tokens, weights = top_by_name(names, att, top_n)
            keep = wanted >= 0
            zero = tf.zeros_like(delta)
            return {"tokens": tf.where(keep[:, None], tokens, ""),
                    "weights": tf.where(keep[:, None], weights, 0.0),
                    "total": tf.where(keep, tf.reduce_sum(att, axis=1), zero),
                    "delta": tf.where(keep, delta, zero), "logit": tf.where(keep, logit, zero)}

        spec = {"tokens": tf.TensorSpec([None, top_n], tf.string),
                "weights": tf.TensorSpec([None, top_n], tf.float32),
                "total": tf.TensorSpec([None], tf.float32), "delta": tf.TensorSpec([None], tf.float32),
                "logit": tf.TensorSpec([None], tf.float32)}
        return tf.map_fn(one, (texts, tf.cast(labels, tf.int32)), fn_output_signature=spec)

    def run(self, texts: Sequence[str], labels: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Eager call (one traced graph, reused): numpy outputs as in the contract."""
        import tensorflow as tf

        if self._eager is None:
            self._eager = tf.function(self.__call__, input_signature=self.input_signature())
        out = self._eager(tf.constant(list(texts), tf.string), tf.constant(pad_labels(labels), tf.int32))
        return {k: v.numpy() for k, v in out.items()}


def pad_labels(labels: Sequence[Sequence[int]]) -> np.ndarray:
    """Ragged per-document label ids → int32 [B, max K] padded with −1 (K >= 1)."""
    width = max([1, *(len(row) for row in labels)])
    out = np.full((len(labels), width), -1, dtype=np.int32)
    for i, row in enumerate(labels):
        out[i, :len(row)] = list(row)
    return out


def decode(outputs: dict[str, np.ndarray], labels: Sequence[Sequence[int]],
           label_names: Sequence[str], top_n: int | None = None) -> list[dict[str, list[tuple[str, float]]]]:
    """Graph outputs → per document {label name: [(token, weight), ...]} in the order of
    `labels` (padding and empty tokens dropped; at most `top_n` pairs)."""
    out = []
    for i, row in enumerate(labels):
        doc = {}
        for j, label in enumerate(row):
            pairs = [(_text(t), float(w)) for t, w in zip(outputs["tokens"][i, j], outputs["weights"][i, j])
                     if _text(t)]
            doc[str(label_names[int(label)])] = pairs[:top_n] if top_n else pairs
        out.append(doc)
    return out


def _text(token: Any) -> str:
    return token.decode("utf-8", "replace") if isinstance(token, bytes) else str(token)
