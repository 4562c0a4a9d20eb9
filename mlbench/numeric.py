"""Small numeric helpers shared by every track (one home each)."""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32 out (same shape as `x`).

    Written with tanh so large |x| never overflows ``exp``.
    """
    # in place on one float64 buffer: the same operations in the same order as
    # 0.5 * (1 + tanh(0.5 x)), without a fresh n × L array per step
    y = np.multiply(np.asarray(x, dtype=np.float64), 0.5)
    np.tanh(y, out=y)
    y += 1.0
    y *= 0.5
    return y.astype(np.float32)
