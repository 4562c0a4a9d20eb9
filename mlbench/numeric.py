"""Small numeric helpers shared by every track (one home each)."""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32 out (same shape as `x`).

    Written with tanh so large |x| never overflows ``exp``.
    """
    return (0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))).astype(np.float32)
