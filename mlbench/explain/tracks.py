"""`explain(track, texts)`: the top n-grams / tokens behind each predicted label.

Every explainable track hands out its in-graph explainer (`Track.explainer()`, see
`mlbench.explain.graph`): the same code its SavedModel export runs as the ``explain``
signature, so a fitted track and a deployed export explain alike.  What each one
computes is declared on the track (`Track.explains`): exact attributions
``tfidf_j · W[j, l]`` for the linear tracks, integrated gradients over the input
(TF-IDF vector or token embeddings) for the Keras ones.

Weights are in logit units: positive pushes the label up.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mlbench.explain.graph import GraphExplainer, decode

__all__ = ["explain", "explainer_of", "predicted_labels"]


def predicted_labels(scores: np.ndarray, threshold: float | np.ndarray = 0.5) -> list[list[int]]:
    """Per document the label ids with ``score >= threshold``, highest first; a document
    with none gets its top-scored label (so each one is explained)."""
    s = np.asarray(scores)
    out = []
    for row in s:
        ids = np.flatnonzero(row >= threshold)
        ids = ids[np.argsort(-row[ids], kind="stable")] if ids.size else np.array([int(np.argmax(row))])
        out.append([int(i) for i in ids])
    return out


def explainer_of(track: Any, top_n: int | None = None) -> GraphExplainer:
    """The track's explainer; TypeError naming the track (and those that have one) when it has none."""
    from mlbench.tracks import explainable_tracks

    make = getattr(track, "explainer", None)
    explainer = make(top_n) if callable(make) else None
    if explainer is None:
        raise TypeError(f"no explainer for a {type(track).__name__} track "
                        f"({', '.join(explainable_tracks())} have one)")
    return explainer


def explain(track: Any, texts: Sequence[str], *, top_n: int = 10, threshold: float | np.ndarray = 0.5,
            explainer: GraphExplainer | None = None) -> list[dict[str, list[tuple[str, float]]]]:
    """Per document, {predicted label name: [(n-gram or token, weight), ...]} with the
    `top_n` largest |weights| (logit units).  Predicted: ``score >= threshold`` (scalar
    or [L]), else the top label.  Pass `explainer` to reuse one (its graph is traced once)."""
    texts = list(texts)
    if not texts:
        return []
    labels = getattr(track, "labels", None)
    if labels is None:
        raise RuntimeError("fit the track before explaining it")
    explainer = explainer or explainer_of(track, top_n)
    picked = predicted_labels(track.predict_scores(texts), threshold)
    return decode(explainer.run(texts, picked), picked, list(labels.names), top_n)
