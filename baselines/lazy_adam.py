"""LazyAdam: Adam that updates only the kernel rows a sparse batch touched.

The classic "lazy Adam" used for embeddings: moments of rows not seen in a batch
are left as they are instead of decaying.  Used with
`baselines.sparse_layers.SparseDense`, whose kernel gradient is a `tf.IndexedSlices`
over the batch's distinct features.
"""

from __future__ import annotations


import keras
import tensorflow as tf

from baselines.fused_adam_kernel import fused_row_adam_op
from baselines.sparse_layers import tf_variable


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
    the touched rows also match Adam on the densified gradient.

    A sparse step runs, on CPU, the fused in-place kernel of `fused_row_adam_op`
    (`fused=None`: when it can be built; True: require it; False: never).
    Otherwise (GPU, no compiler) it gathers the touched rows of the variable and
    its two moments into scratch variables, runs TensorFlow's fused
    ``ResourceApplyAdam`` on them and scatters the three back.
    """

    def __init__(self, *args, fused: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("LazyAdam does not implement amsgrad")
        self.fused = fused
        self._scratch = _Scratch()

    def get_config(self) -> dict:
        return {**super().get_config(), "fused": self.fused}

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if self.fused is not False:
            if fused_row_adam_op() is None and self.fused:
                raise RuntimeError("LazyAdam(fused=True): the fused row update could not be built")
        for variable in var_list:
            if len(variable.shape) == 2:  # only 2-D kernels can get row (IndexedSlices) gradients
                self._scratch.add(self._var_key(variable), variable)

    def _use_fused(self, variable) -> bool:
        on_gpu = "GPU" in (variable.device or "").upper()
        return self.fused is not False and not on_gpu and fused_row_adam_op() is not None

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        variable = tf_variable(variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        lr = tf.cast(learning_rate, dtype)
        index = self._get_variable_index(variable)
        m = tf_variable(self._momentums[index])
        v = tf_variable(self._velocities[index])
        if self._use_fused(variable):
            # repeated ids (each replica's rows, concatenated by the all-reduce) are summed
            # inside the kernel: no [rows, units] segment-sum copy
            ids, positions = tf.unique(tf.cast(gradient.indices, tf.int64), out_idx=tf.int64)
            # the same scalars keras Adam computes
            alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
            fused_row_adam_op().mlbench_lazy_adam_rows(
                var=variable.handle, m=m.handle, v=v.handle, alpha=alpha,
                one_minus_beta1=tf.cast(1 - self.beta_1, dtype), one_minus_beta2=tf.cast(1 - self.beta_2, dtype),
                epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient.values, dtype), indices=ids,
                positions=positions,
            )
            return
        ids, grad = merge_duplicate_rows(gradient, dtype)
        var_rows, m_rows, v_rows = self._scratch.get(self._var_key(variable))
        var_rows.assign(tf.gather(variable, ids))
        m_rows.assign(tf.gather(m, ids))
        v_rows.assign(tf.gather(v, ids))
        # m += (g - m)(1 - b1); v += (g² - v)(1 - b2);
        # var -= lr·sqrt(1 - b2^t)/(1 - b1^t) · m / (sqrt(v) + eps)   — keras Adam's formula
        tf.raw_ops.ResourceApplyAdam(
            var=var_rows.handle, m=m_rows.handle, v=v_rows.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=lr, beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=grad,
        )
        variable.scatter_update(tf.IndexedSlices(var_rows.read_value(), ids))
        m.scatter_update(tf.IndexedSlices(m_rows.read_value(), ids))
        v.scatter_update(tf.IndexedSlices(v_rows.read_value(), ids))


class _Scratch:
    """Per-variable [rows, units] scratch variables for `LazyAdam`'s fused row update.

    A plain object on purpose: Keras does not track it, so the scratch buffers stay
    out of optimizer checkpoints and `optimizer.variables`.
    """

    def __init__(self):
        self._by_key: dict = {}

    def add(self, key, variable) -> None:
        units = int(variable.shape[1])
        with tf.init_scope():
            self._by_key[key] = tuple(
                tf.Variable(tf.zeros([0, units], variable.dtype), shape=[None, units],
                            trainable=False, name=f"lazy_adam_rows_{i}")
                for i in range(3)
            )

    def get(self, key) -> tuple[tf.Variable, tf.Variable, tf.Variable]:
        if key not in self._by_key:
            raise ValueError("LazyAdam got a row (IndexedSlices) gradient for a variable that is not 2-D")
        return self._by_key[key]


class SparseLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Loss scaling for float16 that keeps `tf.IndexedSlices` gradients sparse.

    Keras's LossScaleOptimizer checks and unscales gradients with dense ops, which
    would turn the first layer's row gradient into a full [V, units] tensor.
    """

    def check_finite(self, grads):
        return super().check_finite([g.values if isinstance(g, tf.IndexedSlices) else g for g in grads])

    def _stateful_handle_finite_grads(self, grads, trainable_variables):
        scale = self.dynamic_scale

        def unscale(g):
            if g is None:
                return g
            if isinstance(g, tf.IndexedSlices):
                return tf.IndexedSlices(g.values / tf.cast(scale, g.values.dtype), g.indices, g.dense_shape)
            return g / tf.cast(scale, g.dtype)

        tvs = trainable_variables or self._trainable_variables
        unscaled = [g if self._overwrite_variable_with_gradient(v) else unscale(g)
                    for g, v in zip(grads, tvs)]
        self.inner_optimizer.apply(unscaled, trainable_variables=trainable_variables)

        def upscale():
            self.step_counter.assign(0)
            self.dynamic_scale.assign(self.dynamic_scale * 2.0)

        def increment():
            self.step_counter.assign_add(1)

        tf.cond(tf.equal(self.step_counter, self.dynamic_growth_steps - 1), upscale, increment)
