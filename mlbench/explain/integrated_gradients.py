"""Integrated gradients (Sundararajan et al. 2017), hand-written with `tf.GradientTape`.

``IG_i(x) = (x_i - x'_i) · ∫_0^1 ∂f(x' + α (x - x')) / ∂x_i dα`` for a scalar function f
(one label's logit) and a baseline x'.  The integral is the trapezoid rule on `steps`
equal intervals (steps + 1 points, gradients in batches); completeness
``sum_i IG_i = f(x) - f(x')`` then holds up to the quadrature error, which
`completeness_gap` reports.

Two uses in this suite (`mlbench.explain.tracks`):

* the TF-IDF MLP over its TF-IDF input, baseline the all-zero vector.  Its first layer
  (`baselines.sparse_layers.SparseDense`) gives no gradient for its input values, so the
  path goes through the dense equivalent ``x @ W + b`` built from the same kernel;
  restricted to the document's non-zero features (the others have x = x' = 0 and
  attribution 0), which is the same function, only cheaper;
* the Transformer encoder over its token embeddings, baseline the padding token's
  embedding at every position (the padding mask stays that of the real tokens).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["integrated_gradients", "completeness_gap"]


def integrated_gradients(f: Callable, x, baseline, steps: int = 64, *, batch_size: int = 33) -> np.ndarray:
    """Attributions with the shape of `x` (one example, no batch axis).

    `f` maps a batch of inputs [m, *x.shape] (float32 tensor) to [m] logits of one label;
    `baseline` has the shape of `x`; `steps` >= 1 trapezoid intervals.
    """
    import tensorflow as tf

    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = tf.convert_to_tensor(x, tf.float32)
    baseline = tf.convert_to_tensor(baseline, tf.float32)
    if x.shape != baseline.shape:
        raise ValueError(f"x {x.shape} and baseline {baseline.shape} differ in shape")
    alphas = np.linspace(0.0, 1.0, int(steps) + 1)
    weights = np.full(alphas.size, 1.0 / steps)
    weights[[0, -1]] *= 0.5  # trapezoid rule
    delta = x - baseline
    total = tf.zeros_like(x, dtype=tf.float64)
    extra = [1] * len(x.shape)
    for start in range(0, alphas.size, batch_size):
        a = tf.constant(alphas[start:start + batch_size], tf.float32)
        w = tf.constant(weights[start:start + batch_size], tf.float64)
        path = baseline[None] + tf.reshape(a, [-1, *extra]) * delta[None]
        with tf.GradientTape() as tape:
            tape.watch(path)
            out = f(path)
        grads = tape.gradient(out, path)
        if grads is None:
            raise ValueError("f gives no gradient for its input: build it from differentiable ops")
        total += tf.reduce_sum(tf.cast(grads, tf.float64) * tf.reshape(w, [-1, *extra]), axis=0)
    return (tf.cast(delta, tf.float64) * total).numpy()


def completeness_gap(f: Callable, x, baseline, attributions: np.ndarray) -> tuple[float, float]:
    """(sum of attributions, f(x) - f(baseline)): equal up to the quadrature error."""
    import tensorflow as tf

    both = tf.stack([tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(baseline, tf.float32)])
    fx, fb = (float(v) for v in np.asarray(f(both), dtype=np.float64))
    return float(np.sum(attributions)), fx - fb
