"""Two pieces that make the TF-IDF MLP's huge first layer cheap on sparse input.

A document has a few hundred non-zero TF-IDF features out of 50k–150k, yet a
Dense layer over the dense vector multiplies every zero, and Adam then updates
all V × 512 kernel entries every step.  `SparseDense` computes the same
``x @ kernel + bias`` by gathering only the kernel rows of the non-zero features
(so its kernel gradient is a `tf.IndexedSlices` over those rows), and `LazyAdam`
updates only those rows — the classic "lazy Adam" used for embeddings: moments of
rows not seen in a batch are left as they are instead of decaying.  The weights
have the Dense layer's shapes, so they load into the dense keras-io model as is.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mlbench")
class SparseDense(keras.layers.Layer):
    """``activation(x @ kernel + bias)`` for a `tf.SparseTensor` x of shape [batch, V]."""

    def __init__(self, units: int, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        n_features = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=(n_features, self.units), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        if not isinstance(inputs, tf.SparseTensor):
            return self.activation(tf.matmul(inputs, self.kernel) + self.bias)
        rows, cols = inputs.indices[:, 0], inputs.indices[:, 1]
        weighted = tf.gather(self.kernel, cols) * tf.expand_dims(inputs.values, -1)
        out = tf.math.unsorted_segment_sum(weighted, rows, num_segments=inputs.dense_shape[0])
        return self.activation(out + self.bias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="mlbench")
class LazyAdam(keras.optimizers.Adam):
    """Adam that applies `tf.IndexedSlices` gradients to the touched rows only.

    Dense gradients take Keras's ordinary Adam step, so the rest of the network
    trains exactly as with `keras.optimizers.Adam`.
    """

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        ids, positions = tf.unique(gradient.indices)
        grad = tf.math.unsorted_segment_sum(
            tf.cast(gradient.values, dtype), positions, num_segments=tf.shape(ids)[0]
        )
        step = tf.cast(self.iterations + 1, dtype)
        lr = tf.cast(learning_rate, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(tf.cast(self.beta_2, dtype), step)) / (
            1 - tf.pow(tf.cast(self.beta_1, dtype), step)
        )
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_rows = tf.gather(m, ids) * self.beta_1 + grad * (1 - self.beta_1)
        v_rows = tf.gather(v, ids) * self.beta_2 + tf.square(grad) * (1 - self.beta_2)
        self.assign(m, tf.IndexedSlices(m_rows, ids))
        self.assign(v, tf.IndexedSlices(v_rows, ids))
        self.assign_sub(variable, tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), ids))
