"""Model sizes, measured one way each: bytes on disk and bytes of parameters."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Iterable


def directory_size(path: str | Path) -> int:
    """Total bytes of the files under `path` (an exported model's size on disk)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def weights_size(weights: Iterable) -> int:
    """Bytes of a list of Keras variables / arrays at their own dtype."""
    import numpy as np

    total = 0
    for w in weights:
        dtype = np.dtype(getattr(getattr(w, "dtype", None), "name", None) or str(w.dtype))
        total += int(np.prod(w.shape)) * dtype.itemsize
    return total


def pickled_size(obj: object) -> int:
    """Bytes of a pickled Python object (scikit-learn / fastText models)."""
    return len(pickle.dumps(obj))
