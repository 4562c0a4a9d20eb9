"""Exact attributions for a linear model over TF-IDF features (the SVM track).

Why exact: a linear margin is ``m_l(x) = sum_j x_j W[j, l] + b_l``, so ``x_j W[j, l]``
is each n-gram's whole share of the margin — no approximation, no baseline choice.
They sum exactly to ``margin - bias``.  Attributions are in margin units (the SVM's
score is ``sigmoid(score_scale · margin)``; the sign and ranking are the same).

The track is read defensively (its fit may change): it needs ``vectorizer`` (a fitted
scikit-learn vectorizer with ``transform`` and ``get_feature_names_out``) and ``model``
(a linear model with ``coef_``/``intercept_``, or a one-vs-rest of such, whose outputs
are the label columns ``_columns``; other labels have the constant margins ``_constant``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["LinearAttribution", "LinearExplainer", "is_linear_track"]


def is_linear_track(track: Any) -> bool:
    """True when `track` looks like a fitted TF-IDF + linear model track."""
    vec = getattr(track, "vectorizer", None)
    return vec is not None and hasattr(vec, "vocabulary_") and hasattr(track, "model")


@dataclass
class LinearAttribution:
    """One document's exact attributions.

    ``features`` [k] are the document's non-zero n-grams, ``values`` [k, L] their
    contributions ``x_j · W[j, l]``, ``bias`` [L] and ``margin`` [L] with
    ``values.sum(0) + bias == margin``.
    """

    features: list[str]
    values: np.ndarray
    bias: np.ndarray
    margin: np.ndarray


class LinearExplainer:
    """Reads the per-label weight vectors of a fitted linear track once; explains documents."""

    def __init__(self, track: Any):
        if not is_linear_track(track):
            raise TypeError(f"{type(track).__name__} is not a fitted TF-IDF + linear track")
        self.track = track
        self.vectorizer = track.vectorizer
        self.names = np.asarray(self.vectorizer.get_feature_names_out(), dtype=object)
        n_labels = len(track.labels) if getattr(track, "labels", None) is not None else None
        model = getattr(track, "model", None)
        coef, intercept = self._read(model)  # [k, V] (dense or sparse), [k]
        columns = getattr(track, "_columns", None)
        k = 0 if coef is None else coef.shape[0]
        columns = np.arange(k) if columns is None else np.asarray(columns, dtype=np.int64)
        if len(columns) != k:
            raise TypeError(f"the linear model has {k} outputs for {len(columns)} label columns")
        if n_labels is None:
            n_labels = int(columns.max()) + 1 if k else 0
        constant = getattr(track, "_constant", None)
        self.bias = (np.full(n_labels, -1.0) if constant is None
                     else np.asarray(constant, dtype=np.float64).copy())
        self.coef, self.columns, self.n_labels = coef, columns, n_labels
        if k:
            self.bias[columns] = intercept
        self.weighted = np.zeros(n_labels, dtype=bool)
        self.weighted[columns] = True

    @staticmethod
    def _read(model: Any) -> tuple[Any, np.ndarray]:
        """(coef [k, V], intercept [k]) of a linear model or a one-vs-rest of them."""
        if model is None:
            return None, np.zeros(0)
        if hasattr(model, "coef_"):
            coef = model.coef_
            coef = coef if hasattr(coef, "tocsr") else np.atleast_2d(np.asarray(coef, np.float64))
            b = np.broadcast_to(np.asarray(model.intercept_, np.float64), (coef.shape[0],))
            return coef, np.array(b)
        estimators = getattr(model, "estimators_", None)
        if estimators is not None and all(hasattr(e, "coef_") for e in estimators):
            coef = np.vstack([np.asarray(e.coef_, np.float64).reshape(1, -1) for e in estimators])
            return coef, np.array([float(np.ravel(e.intercept_)[0]) for e in estimators])
        raise TypeError(f"cannot read linear weights from {type(model).__name__} (no coef_)")

    def explain_rows(self, x: Any) -> list[LinearAttribution]:
        """Attributions of rows `x` [n, V] already vectorized by the track's vectorizer."""
        from scipy import sparse

        x = sparse.csr_matrix(x, dtype=np.float64)
        out = []
        for i in range(x.shape[0]):
            lo, hi = x.indptr[i], x.indptr[i + 1]
            cols, vals = x.indices[lo:hi], x.data[lo:hi]
            values = np.zeros((cols.size, self.n_labels))
            if self.coef is not None and cols.size:
                w = self.coef[:, cols]
                w = w.toarray() if hasattr(w, "toarray") else np.asarray(w)
                values[:, self.columns] = vals[:, None] * w.T
            margin = values.sum(axis=0) + self.bias
            out.append(LinearAttribution([str(n) for n in self.names[cols]], values, self.bias.copy(), margin))
        return out

    def explain(self, texts: Sequence[str]) -> list[LinearAttribution]:
        """Attributions of raw `texts` (vectorized as the track does)."""
        return self.explain_rows(self.vectorizer.transform(list(texts)))
