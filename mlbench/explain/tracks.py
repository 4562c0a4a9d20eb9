"""`explain(track, texts)`: the top n-grams / tokens behind each predicted label.

One entry point for every track it can explain, chosen by what the fitted track
holds (duck typing, so the core never imports a track module):

* a TF-IDF + linear track (``svm``): exact attributions (`mlbench.explain.linear`);
* the TF-IDF MLP (``mlp``): integrated gradients over its TF-IDF input from the
  all-zero vector, through the dense equivalent of its first layer;
* the from-scratch encoder (``encoder``): integrated gradients over its token
  embeddings from the padding token's embedding; a token's weight is the sum over
  its embedding dimensions and over its occurrences.

Weights are in logit (margin) units: positive pushes the label up.  Quadrature:
`MLP_STEPS` (256) for the MLP, whose ReLU kinks along the path make the trapezoid
error first order in 1/steps, `ENCODER_STEPS` (64) for the smooth encoder.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from mlbench.explain.integrated_gradients import integrated_gradients
from mlbench.explain.linear import LinearExplainer, is_linear_track

__all__ = ["explain", "mlp_attribution_fn", "encoder_attribution_fn", "predicted_labels",
           "MLP_STEPS", "ENCODER_STEPS"]

MLP_STEPS = 256
ENCODER_STEPS = 64


# ----------------------------------------------------------------------------- MLP
def _is_mlp(track: Any) -> bool:
    return getattr(track, "classifier", None) is not None and getattr(track, "vectorizer", None) is not None


def mlp_attribution_fn(track: Any, text: str) -> tuple[list[str], np.ndarray, Callable[[int], Callable]]:
    """For one document: (its non-zero feature names [k], its TF-IDF values x [k],
    label → f) where f maps [m, k] TF-IDF values to [m] logits of that label.

    f is the MLP with the first layer written as ``relu(x @ W[features] + b)`` from the
    same kernel (the sparse layer gives no input gradient); the remaining Dense layers
    are called as they are (Dropout is the identity at inference).
    """
    import keras
    import tensorflow as tf

    feats = track.vectorizer(tf.constant([text]))
    if isinstance(feats, tf.SparseTensor):
        cols = feats.indices[:, 1].numpy()
        vals = feats.values.numpy()
    else:
        row = np.asarray(feats)[0]
        cols = np.flatnonzero(row)
        vals = row[cols]
    order = np.argsort(cols, kind="stable")
    cols, vals = cols[order], vals[order].astype(np.float32)
    dense = getattr(track, "dense_vectorizer", None)
    vocab = dense.get_vocabulary() if dense is not None else track.vectorizer.get_vocabulary()
    names = [str(vocab[int(c)]) for c in cols]

    model = track.classifier
    first = model.get_layer("dense_0")
    kernel = tf.gather(tf.convert_to_tensor(first.kernel), cols)  # [k, units]
    bias = tf.convert_to_tensor(first.bias)
    act = first.activation
    rest = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense) and layer is not first]

    def for_label(label: int) -> Callable:
        def f(x):
            h = act(tf.matmul(tf.cast(x, tf.float32), kernel) + bias)
            for layer in rest:
                h = tf.cast(layer(h), tf.float32)
            return h[:, label]

        return f

    return names, vals, for_label


# ----------------------------------------------------------------------------- encoder
def _is_encoder(track: Any) -> bool:
    model = getattr(track, "model", None)
    if model is None or not hasattr(track, "_tokenize"):
        return False
    try:
        model.get_layer("encoder_backbone")
    except (ValueError, AttributeError):
        return False
    return True


def encoder_attribution_fn(track: Any, text: str) -> tuple[list[str], np.ndarray, np.ndarray, Callable[[int], Callable]]:
    """For one document: (its tokens [T], token embeddings [T, D], padding-token
    baseline [T, D], label → f) with f mapping [m, T, D] token embeddings to [m] logits.

    f reruns the encoder from its embedding sum on: position embeddings added, each
    block with the real tokens' padding mask, final norm, masked mean pooling, logits
    (dropout off).
    """
    import tensorflow as tf

    ids, lengths = track._tokenize([text])
    n = max(int(lengths[0]), 1)
    ids = np.asarray(ids)[:, :n].astype(np.int32)
    vocab = track.vectorizer.get_vocabulary()
    tokens = [str(vocab[int(i)]) for i in ids[0]]
    model = track.model
    backbone = model.get_layer("encoder_backbone")
    emb_layer = backbone.get_layer("embedding")
    table = tf.convert_to_tensor(emb_layer.token_embedding.embeddings)
    positions = tf.convert_to_tensor(emb_layer.position_embedding.embeddings)[:n]
    blocks = [layer for layer in backbone.layers if layer.name.startswith("block_")]
    final = [layer for layer in backbone.layers if layer.name == "final_norm"]
    pool, head = model.get_layer("pooled"), model.get_layer("logits")
    mask = tf.constant(ids != 0)
    x = tf.gather(table, ids[0])  # [T, D]
    baseline = tf.repeat(table[0:1], n, axis=0)

    def for_label(label: int) -> Callable:
        def f(e):
            m = tf.repeat(mask, tf.shape(e)[0], axis=0)
            h = tf.cast(e, table.dtype) + positions[None]
            for block in blocks:
                h = block(h, padding_mask=m, training=False)
            for layer in final:
                h = layer(h)
            pooled = pool(tf.cast(h, tf.float32), m)
            return tf.cast(head(pooled), tf.float32)[:, label]

        return f

    return tokens, x.numpy(), baseline.numpy(), for_label


# ----------------------------------------------------------------------------- explain
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


def _top(names: Sequence[str], weights: np.ndarray, top_n: int) -> list[tuple[str, float]]:
    """Weights summed per name, the `top_n` largest |weight| (ties: first seen)."""
    agg: dict[str, float] = {}
    for name, w in zip(names, weights):
        agg[name] = agg.get(name, 0.0) + float(w)
    items = sorted(agg.items(), key=lambda kv: -abs(kv[1]))
    return [(k, float(v)) for k, v in items[:top_n]]


def explain(track: Any, texts: Sequence[str], *, top_n: int = 10, threshold: float | np.ndarray = 0.5,
            steps: int | None = None) -> list[dict[str, list[tuple[str, float]]]]:
    """Per document, {predicted label name: [(n-gram or token, weight), ...]} with the
    `top_n` largest |weights| (logit units).  Predicted: ``score >= threshold`` (scalar
    or [L]), else the top label; `steps`: IG quadrature (None: the track's default)."""
    texts = list(texts)
    if not texts:
        return []
    labels = getattr(track, "labels", None)
    if labels is None:
        raise RuntimeError("fit the track before explaining it")
    names = list(labels.names)
    picked = predicted_labels(track.predict_scores(texts), threshold)
    out: list[dict[str, list[tuple[str, float]]]] = []
    if is_linear_track(track) and not _is_mlp(track):
        for att, ids in zip(LinearExplainer(track).explain(texts), picked):
            out.append({names[l]: _top(att.features, att.values[:, l], top_n) for l in ids})
        return out
    if _is_mlp(track):
        for text, ids in zip(texts, picked):
            feats, x, fn = mlp_attribution_fn(track, text)
            base = np.zeros_like(x)
            out.append({names[l]: _top(feats, integrated_gradients(fn(l), x, base, steps or MLP_STEPS), top_n)
                        for l in ids})
        return out
    if _is_encoder(track):
        for text, ids in zip(texts, picked):
            tokens, x, base, fn = encoder_attribution_fn(track, text)
            att = {l: integrated_gradients(fn(l), x, base, steps or ENCODER_STEPS).sum(axis=1) for l in ids}
            out.append({names[l]: _top(tokens, att[l], top_n)
                        for l in ids})
        return out
    raise TypeError(f"no explainer for a {type(track).__name__} track (svm, mlp and encoder are supported)")
