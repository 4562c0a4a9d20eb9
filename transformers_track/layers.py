"""Reusable Keras layers for the transformer tracks (keras-io / KerasHub style).

Three small layers, each doing one thing, so the from-scratch encoder reads like
the keras-io "Text classification with Transformer" example and the pretrained
track can reuse the pooling:

* `TokenAndPositionEmbedding`: token ids → token + learned position embeddings.
* `TransformerEncoderBlock`: self-attention that ignores padding, feed-forward,
  residuals, layer norm and dropout.
* `MaskedMeanPooling`: the mean over real tokens only, so a document's vector does
  not depend on how much padding its batch happened to get.

Padding is explicit: every layer that must ignore it takes a ``padding_mask``
(True = real token) instead of relying on Keras' implicit mask propagation, which
keeps the exported graph and the tests easy to reason about.  All three take a
``dtype`` policy so the same code runs in float32 on CPU and ``mixed_bfloat16``
on GPU.
"""

from __future__ import annotations

import keras
from keras import ops

_PACKAGE = "mlbench"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Sum of a token embedding and a learned absolute position embedding.

    Why learned positions: documents are short (≤ a few hundred tokens) and the
    model is small; learned positions are what keras-io and BERT use.  Inputs may be
    shorter than ``max_length`` (batches trimmed to their longest document).
    """

    def __init__(self, vocabulary_size: int, max_length: int, embedding_dim: int, **kwargs):
        super().__init__(**kwargs)
        if vocabulary_size < 2 or max_length < 1 or embedding_dim < 1:
            raise ValueError(
                "vocabulary_size >= 2, max_length >= 1 and embedding_dim >= 1 expected, got "
                f"{vocabulary_size}, {max_length}, {embedding_dim}"
            )
        self.vocabulary_size = int(vocabulary_size)
        self.max_length = int(max_length)
        self.embedding_dim = int(embedding_dim)
        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size, self.embedding_dim, dtype=self.dtype_policy, name="token_embedding"
        )
        self.position_embedding = keras.layers.Embedding(
            self.max_length, self.embedding_dim, dtype=self.dtype_policy, name="position_embedding"
        )

    def build(self, input_shape) -> None:
        self.token_embedding.build(input_shape)
        self.position_embedding.build((None,))
        self.built = True

    def call(self, token_ids):
        positions = ops.arange(ops.shape(token_ids)[-1], dtype="int32")
        return self.token_embedding(token_ids) + ops.expand_dims(self.position_embedding(positions), 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.embedding_dim)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "max_length": self.max_length,
            "embedding_dim": self.embedding_dim,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TransformerEncoderBlock(keras.layers.Layer):
    """Multi-head self-attention + feed-forward, each with a residual and LayerNorm.

    ``norm_first=True`` (pre-LN, the default) puts LayerNorm before each sub-layer:
    it trains from scratch without a finely tuned warm-up, which matters on a small
    corpus and a CPU budget.  ``norm_first=False`` is the original post-LN block of
    Vaswani et al. / keras-io.  Padded keys get no attention weight, so real tokens
    never read padding.
    """

    def __init__(self, num_heads: int, ff_dim: int, dropout: float = 0.1,
                 norm_first: bool = True, layer_norm_epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if num_heads < 1 or ff_dim < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"num_heads >= 1, ff_dim >= 1 and 0 <= dropout < 1 expected, got "
                f"{num_heads}, {ff_dim}, {dropout}"
            )
        self.num_heads, self.ff_dim = int(num_heads), int(ff_dim)
        self.dropout, self.norm_first = float(dropout), bool(norm_first)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.supports_masking = False  # padding comes in explicitly as `padding_mask`

    def build(self, input_shape) -> None:
        dim = int(input_shape[-1])
        if dim % self.num_heads:
            raise ValueError(f"model width {dim} is not divisible by num_heads={self.num_heads}")
        policy = self.dtype_policy
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, dim // self.num_heads, dropout=self.dropout, dtype=policy, name="attention"
        )
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="attention_norm")
        self.attention_dropout = keras.layers.Dropout(self.dropout, dtype=policy)
        self.ffn_in = keras.layers.Dense(self.ff_dim, activation="gelu", dtype=policy, name="ffn_in")
        self.ffn_out = keras.layers.Dense(dim, dtype=policy, name="ffn_out")
        self.ffn_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="ffn_norm")
        self.ffn_dropout = keras.layers.Dropout(self.dropout, dtype=policy)
        self.attention.build(input_shape, input_shape)
        self.attention_norm.build(input_shape)
        self.ffn_in.build(input_shape)
        self.ffn_out.build((*input_shape[:-1], self.ff_dim))
        self.ffn_norm.build(input_shape)
        self.built = True

    def call(self, x, padding_mask=None, training=None):
        # [batch, 1, keys]: every query position may attend to every real key.
        attention_mask = None
        if padding_mask is not None:
            attention_mask = ops.expand_dims(ops.cast(padding_mask, "bool"), axis=1)

        h = self.attention_norm(x) if self.norm_first else x
        h = self.attention(h, h, attention_mask=attention_mask, training=training)
        x = x + self.attention_dropout(h, training=training)
        if not self.norm_first:
            x = self.attention_norm(x)

        h = self.ffn_norm(x) if self.norm_first else x
        h = self.ffn_out(self.ffn_in(h))
        x = x + self.ffn_dropout(h, training=training)
        if not self.norm_first:
            x = self.ffn_norm(x)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
            "norm_first": self.norm_first,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of the token vectors where ``padding_mask`` is True: [B, T, D] → [B, D].

    Why not GlobalAveragePooling1D: averaging padding too would make a document's
    vector depend on its batch's length.  Sums run in this layer's compute dtype; use
    ``dtype="float32"`` under mixed precision.  A row with no real token gives zeros.
    """

    def call(self, sequence, padding_mask):
        mask = ops.expand_dims(ops.cast(padding_mask, sequence.dtype), axis=-1)
        total = ops.sum(sequence * mask, axis=1)
        count = ops.maximum(ops.sum(mask, axis=1), ops.cast(1.0, sequence.dtype))
        return total / count

    def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
        return (sequence_shape[0], sequence_shape[-1])
