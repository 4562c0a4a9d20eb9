"""Integrated gradients (Sundararajan et al. 2017) of one scalar function.

``IG_i(x) = (x_i - x'_i) · ∫_0^1 ∂f(x' + α (x - x')) / ∂x_i dα`` for a scalar function f
(one label's logit) and a baseline x'.  The integral is the trapezoid rule on `steps`
equal intervals; completeness ``sum_i IG_i = f(x) - f(x')`` then holds up to the
quadrature error, which `completeness_gap` reports.  The computation is
`mlbench.explain.graph.path_attributions` (the one the tracks and exports use), for a
single label.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mlbench.explain.graph import path_attributions

__all__ = ["integrated_gradients", "completeness_gap"]


def integrated_gradients(f: Callable, x, baseline, steps: int = 64) -> np.ndarray:
    """Attributions with the shape of `x` (one example, no batch axis).

    `f` maps a batch of inputs [m, *x.shape] (float32 tensor) to [m] logits of one label;
    `baseline` has the shape of `x`; `steps` >= 1 trapezoid intervals.
    """
    import tensorflow as tf

    x = np.asarray(x, np.float32)
    baseline = np.asarray(baseline, np.float32)
    if x.shape != baseline.shape:
        raise ValueError(f"x {x.shape} and baseline {baseline.shape} differ in shape")
    att, _, _ = path_attributions(lambda p: tf.reshape(f(p), [-1, 1]), x, baseline,
                                  tf.constant([0], tf.int32), steps)
    return att.numpy()[0]


def completeness_gap(f: Callable, x, baseline, attributions: np.ndarray) -> tuple[float, float]:
    """(sum of attributions, f(x) - f(baseline)): equal up to the quadrature error."""
    import tensorflow as tf

    both = tf.stack([tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(baseline, tf.float32)])
    fx, fb = (float(v) for v in np.asarray(f(both), dtype=np.float64))
    return float(np.sum(attributions)), fx - fb
