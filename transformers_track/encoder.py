"""A small Transformer encoder trained from scratch (`--models encoder`).

The keras-io "Text classification with Transformer" model, made multi-label and
CPU-friendly:

    raw text ─► TextVectorization (int ids, 0 = padding) ─► token + position embedding
             ─► N × [self-attention with padding mask, feed-forward, LayerNorm, dropout]
             ─► masked mean pooling ─► dropout ─► Dense(n_labels) logits

Kept apart as in KerasHub: the *preprocessor* (`adapt_vectorizer`), the *backbone*
(`build_backbone`: ids → contextual token vectors) and the *task head*
(`build_classifier`: pooling + logits).  The sequence length comes from the
training texts (a percentile of their token counts, capped by the preset) so short
corpora do not pay for 256 positions.  The output bias starts at the label prior
and the learning rate warms up, without which the model sits at "predict nothing"
for epochs (see shared/TRANSFORMER_NOTES.md).  Training uses length-bucketed,
cached int batches; the exported SavedModel takes raw strings.  That flow is shared
with the pretrained track (`transformers_track.base.TokenizedTrack`); this module
supplies the preprocessor, backbone and head.

Options (``TrainSettings.options`` or keyword arguments; unknown names are errors):
``preset`` ("cpu", "gpu", "quick"; default "quick" under --quick, else "gpu" when a
GPU is visible, else "cpu") and any preset key overridden one by one: ``d_model``,
``num_blocks``, ``num_heads``, ``ff_dim``, ``dropout``, ``max_seq_len``,
``seq_percentile``, ``vocab_size``, ``learning_rate``, ``weight_decay``,
``warmup_fraction``, ``batch_size``, ``epochs``, ``patience``, ``mixed_precision``
("auto" = bf16 on GPU); plus ``max_length`` (an exact sequence length that skips
the percentile rule and the cap, as `run_all.py --max-length` passes it),
``n_buckets``, ``norm_first`` and ``max_train_seconds``.  Values given as strings
are coerced to the preset's types.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mlbench.tracks import Param, TrainSettings
from transformers_track.base import MAX_LENGTH_FLAG, TokenizedTrack, coerce_like, preset_params

#: Presets.  "cpu": ~60 s per Reuters epoch on 2 cores (length buckets, ~110 ex/s),
#: val micro-F1 ~0.88 by epoch 3-5 then overfitting, so 8 epochs let the learning rate
#: decay inside a 10-minute budget.  "gpu": wider and deeper, bf16.  Any key can be
#: overridden through the options.
PRESETS: dict[str, dict] = {
    "cpu": dict(d_model=128, num_blocks=2, num_heads=4, ff_dim=256, dropout=0.1,
                max_seq_len=256, seq_percentile=95.0, vocab_size=20000,
                learning_rate=1e-3, weight_decay=0.01, warmup_fraction=0.1,
                batch_size=32, epochs=8, patience=2, mixed_precision="auto"),
    "gpu": dict(d_model=256, num_blocks=4, num_heads=8, ff_dim=1024, dropout=0.1,
                max_seq_len=512, seq_percentile=95.0, vocab_size=30000,
                learning_rate=5e-4, weight_decay=0.01, warmup_fraction=0.1,
                batch_size=64, epochs=20, patience=3, mixed_precision="auto"),
    "quick": dict(d_model=32, num_blocks=1, num_heads=2, ff_dim=64, dropout=0.1,
                  max_seq_len=64, seq_percentile=95.0, vocab_size=5000,
                  learning_rate=2e-3, weight_decay=0.01, warmup_fraction=0.1,
                  batch_size=32, epochs=2, patience=2, mixed_precision="auto"),
}
PARAMS: dict[str, Param] = preset_params(PRESETS, {
    "max_length": Param(None, convert=int, **MAX_LENGTH_FLAG),
    "n_buckets": Param(6, convert=int, expected="int"),
    "norm_first": Param(True, convert=coerce_like(True)),
    "max_train_seconds": Param(None),
})


# --------------------------------------------------------------------------- preprocessor
def adapt_vectorizer(texts: Sequence[str], *, vocab_size: int, max_seq_len: int,
                     seq_percentile: float = 95.0, seq_len: int | None = None):
    """Adapt `TextVectorization` on training texts; return ``(layer, seq_len, lengths)``.

    `seq_len` is the `seq_percentile`-th percentile of the training token counts,
    rounded up to a multiple of 8 and capped at `max_seq_len` (a given `seq_len` is
    used as is); `lengths` are the uncapped token counts.  Why two layers: the
    counts need an unpadded pass, the model a fixed-length one; both share the one
    adapted vocabulary.
    """
    import keras
    import tensorflow as tf

    from transformers_track.training import tokenize_in_batches

    if not texts:
        raise ValueError("cannot adapt a vocabulary on zero training texts")
    counter = keras.layers.TextVectorization(max_tokens=int(vocab_size), output_mode="int")
    counter.adapt(tf.data.Dataset.from_tensor_slices(list(texts)).batch(1024))
    lengths = tokenize_in_batches(
        lambda t: tf.math.count_nonzero(counter(t), axis=1, dtype=tf.int32), texts)
    if seq_len is None:
        p = float(np.percentile(lengths, seq_percentile))
        seq_len = int(min(max_seq_len, max(8, 8 * math.ceil(p / 8))))
    layer = keras.layers.TextVectorization(
        vocabulary=counter.get_vocabulary(), output_mode="int",
        output_sequence_length=seq_len, name="vectorizer",
    )
    return layer, seq_len, lengths


def tokenize(vectorizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [n, seq_len] (int32, 0-padded) and real lengths [n], in one graph pass."""
    from transformers_track.training import tokenize_in_batches

    ids = tokenize_in_batches(vectorizer, texts).astype(np.int32)
    return ids, np.count_nonzero(ids, axis=1).astype(np.int32)


# --------------------------------------------------------------------------- backbone
def build_backbone(vocabulary_size: int, seq_len: int, *, d_model: int, num_blocks: int,
                   num_heads: int, ff_dim: int, dropout: float = 0.1, norm_first: bool = True,
                   dtype: str = "float32"):
    """Token ids [B, T ≤ seq_len] → contextual vectors [B, T, d_model] (0 = padding)."""
    import keras

    from transformers_track.layers import TokenAndPositionEmbedding, TransformerEncoderBlock

    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    padding_mask = keras.ops.not_equal(token_ids, 0)
    x = TokenAndPositionEmbedding(vocabulary_size, seq_len, d_model, dtype=dtype,
                                  name="embedding")(token_ids)
    x = keras.layers.Dropout(dropout, dtype=dtype, name="embedding_dropout")(x)
    for i in range(num_blocks):
        x = TransformerEncoderBlock(num_heads, ff_dim, dropout, norm_first=norm_first,
                                    dtype=dtype, name=f"block_{i}")(x, padding_mask=padding_mask)
    if norm_first:  # pre-LN blocks leave the residual stream un-normalised
        x = keras.layers.LayerNormalization(epsilon=1e-6, dtype=dtype, name="final_norm")(x)
    return keras.Model(token_ids, x, name="encoder_backbone")


# --------------------------------------------------------------------------- task head
def build_classifier(backbone, n_labels: int, *, dropout: float = 0.1,
                     output_bias: np.ndarray | None = None):
    """Backbone → masked mean pooling → dropout → Dense(n_labels) float32 logits."""
    import keras

    from transformers_track.layers import MaskedMeanPooling

    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    padding_mask = keras.ops.not_equal(token_ids, 0)
    sequence = backbone(token_ids)
    # float32 from here on: sums over tokens and the loss stay exact under mixed precision.
    pooled = MaskedMeanPooling(dtype="float32", name="pooled")(sequence, padding_mask)
    x = keras.layers.Dropout(dropout, dtype="float32", name="head_dropout")(pooled)
    bias = "zeros" if output_bias is None else keras.initializers.Constant(output_bias)
    logits = keras.layers.Dense(n_labels, bias_initializer=bias, dtype="float32", name="logits")(x)
    return keras.Model(token_ids, logits, name="encoder_classifier")


# --------------------------------------------------------------------------- explanations
IG_STEPS = 64


def attribution_parts(vectorizer, model):
    """`mlbench.explain.graph` parts of one document for the encoder: its tokens [T],
    their embeddings x [T, D], the padding-token baseline [T, D] and f: [m, T, D] →
    [m, L] logits, which reruns the classifier from the embedding sum on (position
    embeddings added, each block with the real tokens' padding mask, final norm, masked
    mean pooling, logits; dropout off)."""
    import tensorflow as tf

    vocabulary = list(vectorizer.get_vocabulary())
    backbone = model.get_layer("encoder_backbone")
    embedding = backbone.get_layer("embedding")
    blocks = [layer for layer in backbone.layers if layer.name.startswith("block_")]
    final = [layer for layer in backbone.layers if layer.name == "final_norm"]
    pool, head = model.get_layer("pooled"), model.get_layer("logits")

    def parts(text):
        ids = tf.cast(vectorizer(tf.reshape(text, [1]))[0], tf.int32)
        n = tf.maximum(tf.math.count_nonzero(ids, dtype=tf.int32), 1)  # padding is at the end
        ids = ids[:n]
        table = tf.convert_to_tensor(embedding.token_embedding.embeddings)
        positions = tf.convert_to_tensor(embedding.position_embedding.embeddings)[:n]
        mask = tf.not_equal(ids, 0)
        x = tf.cast(tf.gather(table, ids), tf.float32)
        baseline = tf.tile(tf.cast(table[:1], tf.float32), [n, 1])

        def f(e):
            m = tf.tile(mask[None], [tf.shape(e)[0], 1])
            h = tf.cast(e, table.dtype) + positions[None]
            for block in blocks:
                h = block(h, padding_mask=m, training=False)
            for layer in final:
                h = layer(h)
            return tf.cast(head(pool(tf.cast(h, tf.float32), m)), tf.float32)

        return tf.gather(tf.constant(vocabulary, tf.string), ids), x, baseline, f

    return parts


# --------------------------------------------------------------------------- ONNX
def _gelu_erf(x):
    """Exact GELU as ``0.5·x·(1 + erf(x/√2))`` (ONNX has Erf, not Erfc)."""
    import tensorflow as tf

    return 0.5 * x * (1.0 + tf.math.erf(x * np.float32(1.0 / np.sqrt(2.0))))


def _architecture_from_shapes(meta: dict, shapes: dict[str, tuple]) -> dict:
    """The architecture of an export written before mlbench.json recorded it, read off its
    weights' shapes {variable path: shape}; InputError when they are not an encoder's."""
    from mlbench.errors import InputError

    try:
        vocab_size, d_model = shapes["embedding/token_embedding/embeddings"]
        positions = shapes["embedding/position_embedding/embeddings"][0]
        num_heads = shapes["block_0/attention/query/kernel"][1]
        ff_dim = shapes["block_0/ffn_in/kernel"][1]
    except KeyError as err:
        raise InputError(f"not an encoder export (no variable {err})") from None
    blocks = {k.split("/", 1)[0] for k in shapes if k.startswith("block_")}
    return {"vocabulary_size": int(vocab_size), "seq_len": int(positions), "d_model": int(d_model),
            "num_blocks": len(blocks), "num_heads": int(num_heads), "ff_dim": int(ff_dim),
            "norm_first": "final_norm/gamma" in shapes}


# --------------------------------------------------------------------------- track
class EncoderTrack(TokenizedTrack):
    """From-scratch Transformer encoder over TextVectorization ids (`--models encoder`)."""

    name = "encoder"
    onnx_core = "token_ids"  # `mlbench export-onnx`: token-id core (`onnx_keras_model`) + Python front end
    presets = PRESETS
    params = PARAMS
    explains = "integrated gradients over its token embeddings, from the padding token's embedding"

    def __init__(self, settings: TrainSettings | None = None, *, callbacks: list | None = None,
                 **options):
        super().__init__(settings, callbacks=callbacks, **options)
        self.vectorizer = None
        self.seq_len: int | None = None

    def _validate(self) -> None:
        c = self.config
        for key in ("d_model", "num_blocks", "num_heads", "ff_dim", "max_seq_len", "vocab_size",
                    "batch_size", "epochs", "n_buckets"):
            if int(c[key]) < 1:
                raise ValueError(f"encoder option {key} must be >= 1, got {c[key]}")
        if c["d_model"] % c["num_heads"]:
            raise ValueError(f"d_model={c['d_model']} must be divisible by num_heads={c['num_heads']}")
        if not 0.0 <= float(c["dropout"]) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {c['dropout']}")
        if c["max_length"] is not None and int(c["max_length"]) < 1:
            raise ValueError(f"max_length must be >= 1, got {c['max_length']}")
        if not 0.0 < float(c["seq_percentile"]) <= 100.0:
            raise ValueError(f"seq_percentile must be in (0, 100], got {c['seq_percentile']}")
        if float(c["learning_rate"]) <= 0 or not 0.0 <= float(c["warmup_fraction"]) < 1.0:
            raise ValueError("learning_rate must be > 0 and warmup_fraction in [0, 1)")

    # -- TokenizedTrack hooks -------------------------------------------------------------
    def _fit_preprocessor(self, train_texts: Sequence[str]) -> None:
        c = self.config
        self.vectorizer, self.seq_len, _ = adapt_vectorizer(
            train_texts, vocab_size=c["vocab_size"], max_seq_len=c["max_seq_len"],
            seq_percentile=c["seq_percentile"],
            seq_len=None if c["max_length"] is None else int(c["max_length"]))

    def _tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return tokenize(self.vectorizer, texts)

    def _sequence_length(self) -> int:
        return self.seq_len

    def _build_model(self, n_labels: int, output_bias: np.ndarray):
        c = self.config
        backbone = build_backbone(
            self.vectorizer.vocabulary_size(), self.seq_len, d_model=int(c["d_model"]),
            num_blocks=int(c["num_blocks"]), num_heads=int(c["num_heads"]), ff_dim=int(c["ff_dim"]),
            dropout=float(c["dropout"]), norm_first=bool(c["norm_first"]), dtype=self.dtype)
        return build_classifier(backbone, n_labels, dropout=float(c["dropout"]),
                                output_bias=output_bias)

    def _text_preprocessor(self):
        return self.vectorizer

    def _export_metadata(self) -> dict:
        c = self.config
        architecture = {"vocabulary_size": int(self.vectorizer.vocabulary_size()), "seq_len": int(self.seq_len),
                        "d_model": int(c["d_model"]), "num_blocks": int(c["num_blocks"]),
                        "num_heads": int(c["num_heads"]), "ff_dim": int(c["ff_dim"]),
                        "norm_first": bool(c["norm_first"])}
        return {"preset": self.preset, "seq_len": self.seq_len,
                "vocabulary": self.vectorizer.vocabulary_size(), "architecture": architecture}

    @classmethod
    def onnx_keras_model(cls, meta: dict, n_labels: int, shapes: dict[str, tuple]):
        """The classifier of an encoder export, rebuilt from ``meta["architecture"]`` for
        `mlbench export-onnx` (`Track.onnx_keras_model`): float32, dropout off, exact GELU
        written with Erf (TF writes it with Erfc, which ONNX lacks)."""
        arch = meta.get("architecture") or _architecture_from_shapes(meta, shapes)
        backbone = build_backbone(int(arch["vocabulary_size"]), int(arch["seq_len"]),
                                  d_model=int(arch["d_model"]), num_blocks=int(arch["num_blocks"]),
                                  num_heads=int(arch["num_heads"]), ff_dim=int(arch["ff_dim"]),
                                  dropout=0.0, norm_first=bool(arch["norm_first"]))
        model = build_classifier(backbone, n_labels, dropout=0.0)
        for layer in backbone.layers:
            ffn_in = getattr(layer, "ffn_in", None)
            if ffn_in is not None:
                ffn_in.activation = _gelu_erf
        return model

    def explainer(self, top_n: int | None = None):
        """Integrated gradients over the token embeddings (`mlbench.explain.graph`), from
        the padding token's embedding at every position, `IG_STEPS` intervals."""
        from mlbench.explain.graph import TOP_N, GraphExplainer

        if self.model is None:
            raise RuntimeError("fit the encoder track before explaining it")
        return GraphExplainer(attribution_parts(self.vectorizer, self.model), steps=IG_STEPS,
                              top_n=top_n or TOP_N, method="integrated gradients",
                              baseline="the padding token's embedding at every position",
                              features="token embeddings")

    # -- Track API ------------------------------------------------------------------------
    def describe(self) -> dict:
        c = self.config
        return {
            "architecture": "TextVectorization → token+position embedding → "
                            f"{c['num_blocks']}× encoder block (pre-LN={c['norm_first']}) → "
                            "masked mean pool → Dense logits",
            "preset": self.preset, "d_model": c["d_model"], "num_blocks": c["num_blocks"],
            "num_heads": c["num_heads"], "ff_dim": c["ff_dim"], "dropout": c["dropout"],
            "seq_len": self.seq_len, "max_seq_len": c["max_seq_len"],
            "seq_percentile": c["seq_percentile"],
            "vocabulary": self.vectorizer.vocabulary_size() if self.vectorizer else None,
            **self._describe_training(
                f"AdamW(wd={c['weight_decay']}), linear warm-up "
                f"{c['warmup_fraction']:.0%} + linear decay, peak {c['learning_rate']}"),
        }
