"""Two pieces that make the TF-IDF MLP's huge first layer cheap on sparse input.

A document has a few hundred non-zero TF-IDF features out of 50k–150k, yet a
Dense layer over the dense vector multiplies every zero, and Adam then updates
all V × 512 kernel entries every step.  `SparseDense` computes the same
``x @ kernel + bias`` from only the kernel rows of the batch's distinct features
(so its kernel gradient is a `tf.IndexedSlices` over those rows, each row once),
and `LazyAdam` updates only those rows — the classic "lazy Adam" used for
embeddings: moments of rows not seen in a batch are left as they are instead of
decaying.  The weights have the Dense layer's shapes, so they load into the dense
keras-io model as is.

Where the time goes (Reuters, batch 128: ~18k non-zeros, ~9k distinct features,
so ~9k × 512 kernel rows per step).  On a 2-core CPU this is memory-bound, so the
design minimises full passes over [rows × 512] arrays:

* the forward gathers each distinct row once (``tf.unique`` then a resource
  gather) and multiplies with ``tf.sparse.sparse_dense_matmul``; gathering one row
  per *non-zero* and summing with ``unsorted_segment_sum`` (the obvious version)
  moves twice the data forward and hands the optimizer a gradient with duplicate
  rows that it must first unique and sum;
* the optimizer gathers m and v once, updates them and the kernel in place with
  three scatters, and skips its own unique/segment-sum when the gradient rows are
  already distinct (always, for `SparseDense`).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _tf_variable(variable) -> tf.Variable:
    """The `tf.Variable` behind a Keras variable, so gathers/scatters touch only rows.

    ``tf.gather`` on the underlying resource variable is a ``ResourceGather`` (reads
    the rows it needs); on a Keras variable it would first read — and under mixed
    precision cast — the whole [V, 512] matrix.
    """
    return variable.value if isinstance(variable, keras.Variable) else variable


@keras.saving.register_keras_serializable(package="mlbench")
class SparseDense(keras.layers.Layer):
    """``activation(x @ kernel + bias)`` for a `tf.SparseTensor` x of shape [batch, V].

    Dense input takes the ordinary matmul, so the layer also runs on dense TF-IDF.
    Not XLA-compilable (``tf.unique`` has a data-dependent shape), hence
    ``supports_jit = False``: Keras's ``jit_compile="auto"`` then leaves the model
    un-jitted instead of failing on GPU.
    """

    def __init__(self, units: int, activation: str | None = None, **kwargs):
        # autocast off: under mixed precision we cast only the gathered rows, not the
        # whole kernel, to the compute dtype.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.supports_jit = False

    def build(self, input_shape):
        n_features = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=(n_features, self.units), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        dtype = self.compute_dtype
        bias = tf.cast(self.bias, dtype)
        if not isinstance(inputs, tf.SparseTensor):
            kernel = tf.cast(self.kernel, dtype)
            return self.activation(tf.matmul(tf.cast(inputs, dtype), kernel) + bias)
        rows, cols = inputs.indices[:, 0], inputs.indices[:, 1]
        ids, local = tf.unique(cols, out_idx=tf.int64)
        kernel_rows = tf.cast(tf.gather(_tf_variable(self.kernel), ids), dtype)  # [U, units]
        local_x = tf.SparseTensor(
            tf.stack([rows, local], axis=1),
            tf.cast(inputs.values, dtype),
            tf.stack([inputs.dense_shape[0], tf.size(ids, out_type=tf.int64)]),
        )
        out = tf.sparse.sparse_dense_matmul(local_x, kernel_rows)
        return self.activation(out + bias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


def merge_duplicate_rows(gradient: tf.IndexedSlices, dtype) -> tuple[tf.Tensor, tf.Tensor]:
    """(distinct row ids, summed gradient rows) of an IndexedSlices gradient.

    Scatter updates with a repeated id would keep only one of its rows, so repeats
    are summed first — unless the ids are already distinct, which costs only the
    ``tf.unique`` on the ids (the segment sum over [rows × units] is skipped).
    """
    indices = tf.cast(gradient.indices, tf.int64)
    values = tf.cast(gradient.values, dtype)
    ids, positions = tf.unique(indices)
    n_ids = tf.size(ids)
    summed = tf.cond(
        tf.equal(n_ids, tf.size(indices)),
        lambda: values,  # distinct: tf.unique kept them in order, positions == range
        lambda: tf.math.unsorted_segment_sum(values, positions, num_segments=n_ids),
    )
    return ids, summed


@keras.saving.register_keras_serializable(package="mlbench")
class LazyAdam(keras.optimizers.Adam):
    """Adam that applies `tf.IndexedSlices` gradients to the touched rows only.

    Dense gradients take Keras's ordinary Adam step, so the rest of the network
    trains exactly as with `keras.optimizers.Adam`; on the first step (zero moments)
    the touched rows also match Adam on the densified gradient exactly.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("LazyAdam does not implement amsgrad")

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        ids, grad = merge_duplicate_rows(gradient, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = tf.cast(learning_rate, dtype) * tf.sqrt(1 - tf.pow(beta_2, step)) / (
            1 - tf.pow(beta_1, step)
        )
        index = self._get_variable_index(variable)
        m = _tf_variable(self._momentums[index])
        v = _tf_variable(self._velocities[index])
        # Same arithmetic as keras Adam (m += (g - m)(1 - b1) ...), on the rows only.
        m_rows = tf.gather(m, ids)
        m_rows += (grad - m_rows) * (1 - beta_1)
        v_rows = tf.gather(v, ids)
        v_rows += (tf.square(grad) - v_rows) * (1 - beta_2)
        m.scatter_update(tf.IndexedSlices(m_rows, ids))
        v.scatter_update(tf.IndexedSlices(v_rows, ids))
        _tf_variable(variable).scatter_sub(
            tf.IndexedSlices(m_rows * alpha / (tf.sqrt(v_rows) + self.epsilon), ids)
        )
