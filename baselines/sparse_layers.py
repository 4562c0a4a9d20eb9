"""The pieces that make the TF-IDF MLP's huge first layer cheap on sparse input.

A document has a few hundred non-zero TF-IDF features out of 50k–150k, yet a
Dense layer over the dense vector multiplies every zero, and Adam then updates
all V × 512 kernel entries every step.  `SparseDense` computes the same
``x @ kernel + bias`` reading only the kernel rows of the batch's features, and
its kernel gradient is a `tf.IndexedSlices` over the batch's distinct features;
`LazyAdam` updates only those rows — the classic "lazy Adam" used for embeddings:
moments of rows not seen in a batch are left as they are instead of decaying.
The weights have the Dense layer's shapes, so they load into the dense keras-io
model as is.

Where the time went (Reuters, batch 128: ~18k non-zeros and ~9k distinct
features per batch, so ~9k × 512 kernel rows per step; 2 shared CPU cores):

* ``tf.sparse.sparse_dense_matmul`` — one small Eigen expression per non-zero on
  one thread, ~15 ms forward and again backward — is replaced by TF's CSR kernel
  (``SparseMatrixMatMul``, ~2 ms) with a hand-written gradient (`sparse_kernel_matmul`);
* the lazy update composed from TF ops (gather the rows of kernel, m, v → fused
  dense Adam → three scatters) moves each row through memory ~19 times and took
  ~30 ms a step; a small fused C++ kernel (`fused_row_adam_op`, built once per
  machine, with the TF-ops update as fallback) does it in place in ~8 ms;
* Glorot initialisation of the kernel in row blocks avoids three full-size
  temporaries that TensorFlow's allocator would keep for the whole process.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import keras
import tensorflow as tf


def _tf_variable(variable) -> tf.Variable:
    """The `tf.Variable` behind a Keras variable, for row-wise (resource) ops.

    ``tf.gather``/``scatter_*`` on the resource variable touch only the rows named;
    through the Keras variable they would first read (and under mixed precision
    cast) the whole [V, 512] matrix.
    """
    return variable.value if isinstance(variable, keras.Variable) else variable


def _glorot_uniform_in_blocks(kernel, block_rows: int = 4096) -> None:
    """Fill a [V, units] kernel with Glorot-uniform values, a block of rows at a time.

    Same distribution as Keras's ``glorot_uniform`` (limit sqrt(6 / (V + units))),
    seeded by Keras's global seed.  Why: generating all V × 512 values at once
    makes three full-size temporaries (uniform, scale, shift), and TensorFlow's
    CPU allocator keeps that high-water mark for the life of the process — about
    a third of a GB for Reuters' vocabulary, more than the kernel itself.
    """
    n_rows, units = (int(d) for d in kernel.shape)
    limit = (6.0 / (n_rows + units)) ** 0.5
    variable = _tf_variable(kernel)
    for start in range(0, n_rows, block_rows):
        rows = min(block_rows, n_rows - start)
        block = keras.random.uniform((rows, units), minval=-limit, maxval=limit, dtype=variable.dtype)
        # a row scatter, not variable[a:b].assign(): the slice read would share the
        # variable's buffer and make the assign copy the whole kernel
        variable.scatter_update(tf.IndexedSlices(block, tf.range(start, start + rows)))


def _rows_in_order(x: tf.SparseTensor) -> tf.SparseTensor:
    """`x` with row-major indices: CSR conversion silently mis-assigns unsorted rows.

    Vectorizer output already is in order, so the sort runs only when needed.
    """
    rows = x.indices[:, 0]
    in_order = tf.reduce_all(rows[1:] >= rows[:-1])
    return tf.cond(in_order, lambda: x, lambda: tf.sparse.reorder(x))


def _to_csr(x: tf.SparseTensor) -> tf.Tensor:
    return tf.raw_ops.SparseTensorToCSRSparseMatrix(
        indices=x.indices, values=x.values, dense_shape=x.dense_shape)


def sparse_kernel_matmul(x: tf.SparseTensor, kernel: tf.Variable) -> tf.Tensor:
    """``x @ kernel`` for a row-ordered SparseTensor x [B, V] and a [V, units] variable.

    Forward: TF's CSR kernel (``SparseMatrixMatMul``) straight on the variable's
    buffer — it reads only the rows of x's features.  Why not
    ``tf.sparse.sparse_dense_matmul``: on CPU it runs one small Eigen expression per
    non-zero on one thread (~15 ms for a Reuters batch of 18k non-zeros × 512;
    the CSR kernel takes ~2 ms).  ``read_value_no_copy`` because the kernel is
    sparsely updated, and a plain read of such a variable copies all V × units.

    Backward: the kernel gradient is a `tf.IndexedSlices` over the batch's
    *distinct* features (``tf.unique``), ``x_localᵀ @ upstream`` with x_local the
    batch restricted to those columns — computed by transposing the CSR matrix,
    since the registered gradient's ``adjoint_a`` path is as slow as
    sparse_dense_matmul.  Distinct rows let the optimizer skip summing duplicates.
    x itself gets no gradient (it is data).
    """

    @tf.custom_gradient
    def matmul(values):
        csr = _to_csr(tf.SparseTensor(x.indices, values, x.dense_shape))
        out = tf.raw_ops.SparseMatrixMatMul(a=csr, b=kernel.read_value_no_copy())

        def grad(upstream, variables=None):
            ids, local = tf.unique(x.indices[:, 1], out_idx=tf.int64)
            local_x = tf.SparseTensor(
                tf.stack([x.indices[:, 0], local], axis=1), values,
                tf.stack([x.dense_shape[0], tf.size(ids, out_type=tf.int64)]))
            # rebuilt here rather than captured from the forward: SavedModel cannot
            # serialize a gradient function that captures a CSR (variant) tensor
            csr_t = tf.raw_ops.SparseMatrixTranspose(input=_to_csr(local_x), type=values.dtype)
            rows = tf.raw_ops.SparseMatrixMatMul(a=csr_t, b=tf.cast(upstream, values.dtype))
            kernel_grad = tf.IndexedSlices(rows, ids, tf.shape(kernel, out_type=tf.int64))
            return None, [kernel_grad] * len(variables or [])  # the one variable read: kernel

        return out, grad

    return matmul(x.values)


@keras.saving.register_keras_serializable(package="mlbench")
class SparseDense(keras.layers.Layer):
    """``activation(x @ kernel + bias)`` for a `tf.SparseTensor` x of shape [batch, V].

    Dense input takes the ordinary matmul, so the layer also runs on dense TF-IDF.
    Not XLA-compilable (CSR matrices, ``tf.unique``), hence ``supports_jit = False``:
    Keras's ``jit_compile="auto"`` then leaves the model un-jitted on GPU instead of
    failing.  Expects row-major indices (as every tf.sparse op and TextVectorization
    produce); other orders are sorted first.
    """

    def __init__(self, units: int, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.supports_jit = False

    def build(self, input_shape):
        n_features = int(input_shape[-1])
        # autocast off: under mixed precision the CSR kernel still multiplies in
        # float32 (it has no 16-bit version) and only the [batch, units] output is
        # cast, instead of casting the whole V × units kernel every step
        self.kernel = self.add_weight(
            name="kernel", shape=(n_features, self.units), initializer="zeros", autocast=False
        )
        _glorot_uniform_in_blocks(self.kernel)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        dtype = self.compute_dtype
        bias = tf.cast(self.bias, dtype)
        if not isinstance(inputs, tf.SparseTensor):
            kernel = tf.cast(self.kernel.value, dtype)
            return self.activation(tf.matmul(tf.cast(inputs, dtype), kernel) + bias)
        kernel = _tf_variable(self.kernel)
        x = _rows_in_order(inputs)
        x = tf.SparseTensor(x.indices, tf.cast(x.values, kernel.dtype), x.dense_shape)
        out = sparse_kernel_matmul(x, kernel)
        return self.activation(tf.cast(out, dtype) + bias)

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


# -- the fused row update (a tiny C++ kernel, compiled once per machine) -----------------
_FUSED_SOURCE = r"""
// MlbenchLazyAdamRows: Keras's Adam step, in place, on rows `indices` of var, m, v.
// Arithmetic in Keras's order and without FMA contraction, so the touched rows
// match keras.optimizers.Adam's update (tests/test_mlp.py checks it).
#define EIGEN_USE_THREADS
#include <cmath>
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/kernels/training_op_helpers.h"
#include "tensorflow/core/util/work_sharder.h"

namespace {
using tensorflow::int64;
using CPUDevice = Eigen::ThreadPoolDevice;

void UpdateRow(const float* __restrict__ g, float* __restrict__ w, float* __restrict__ m,
               float* __restrict__ v, int64_t width, float alpha, float one_b1, float one_b2,
               float eps) {
  for (int64_t j = 0; j < width; ++j) {
    const float mj = m[j] + (g[j] - m[j]) * one_b1;
    const float vj = v[j] + (g[j] * g[j] - v[j]) * one_b2;
    m[j] = mj;
    v[j] = vj;
    w[j] -= (mj * alpha) / (std::sqrt(vj) + eps);
  }
}

class LazyAdamRowsOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(tensorflow::OpKernelContext* ctx) override {
    using namespace tensorflow;
    // Dense (copy-on-write) access, like ResourceApplyAdam: a buffer still shared
    // with a reader (e.g. Keras's best-weights snapshot) is copied once, and reads
    // never copy.  (Sparse access would put the variable in copy-on-read mode,
    // where every full read — each epoch's snapshot — copies V x units.)
    auto locks = MaybeLockVariableInputMutexesInOrder<CPUDevice, float>(ctx, true, false, {0, 1, 2});
    Tensor var, m, v;
    OP_REQUIRES_OK(ctx, GetInputTensorFromVariable<CPUDevice, float>(ctx, 0, true, false, &var));
    OP_REQUIRES_OK(ctx, GetInputTensorFromVariable<CPUDevice, float>(ctx, 1, true, false, &m));
    OP_REQUIRES_OK(ctx, GetInputTensorFromVariable<CPUDevice, float>(ctx, 2, true, false, &v));
    const float alpha = ctx->input(3).scalar<float>()();
    const float one_b1 = ctx->input(4).scalar<float>()();
    const float one_b2 = ctx->input(5).scalar<float>()();
    const float eps = ctx->input(6).scalar<float>()();
    const Tensor& grad = ctx->input(7);
    const Tensor& indices = ctx->input(8);
    OP_REQUIRES(ctx, var.dims() == 2 && m.shape() == var.shape() && v.shape() == var.shape(),
                errors::InvalidArgument("var, m and v must be matrices of one shape"));
    const int64_t rows = var.dim_size(0), width = var.dim_size(1), n = indices.NumElements();
    OP_REQUIRES(ctx, grad.dims() == 2 && grad.dim_size(0) == n && grad.dim_size(1) == width,
                errors::InvalidArgument("grad must be [len(indices), var.shape[1]]"));
    const int64_t* ids = indices.flat<int64_t>().data();
    for (int64_t i = 0; i < n; ++i) {
      OP_REQUIRES(ctx, ids[i] >= 0 && ids[i] < rows, errors::InvalidArgument("row index out of range"));
    }
    float* w = var.flat<float>().data();
    float* mm = m.flat<float>().data();
    float* vv = v.flat<float>().data();
    const float* g = grad.flat<float>().data();
    auto work = [=](int64_t begin, int64_t end) {  // rows are distinct: no two shards share one
      for (int64_t i = begin; i < end; ++i) {
        const int64_t at = ids[i] * width;
        UpdateRow(g + i * width, w + at, mm + at, vv + at, width, alpha, one_b1, one_b2, eps);
      }
    };
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
    Shard(pool->num_threads, pool->workers, n, 10 * width, work);
  }
};
}  // namespace

REGISTER_OP("MlbenchLazyAdamRows")
    .Input("var: resource").Input("m: resource").Input("v: resource")
    .Input("alpha: float").Input("one_minus_beta1: float").Input("one_minus_beta2: float")
    .Input("epsilon: float").Input("grad: float").Input("indices: int64")
    .SetIsStateful()
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext*) { return absl::OkStatus(); });
REGISTER_KERNEL_BUILDER(Name("MlbenchLazyAdamRows").Device(tensorflow::DEVICE_CPU), LazyAdamRowsOp);
"""


def _ops_cache_dir() -> Path:
    base = os.environ.get("MLBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mlbench")
    return Path(base) / "ops"


def _cpu_flags() -> list[str]:
    """-mavx2 -mfma where the CPU has them (the update is ~25% faster than with SSE)."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return []
    flags = set(next((l for l in info.splitlines() if l.startswith("flags")), "").split())
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= flags else []


@functools.lru_cache(maxsize=None)
def fused_row_adam_op():
    """The compiled ``MlbenchLazyAdamRows`` op, or None where it cannot be built.

    Why a C++ kernel: TensorFlow has fused in-place sparse updates for Adagrad,
    FTRL, RMSProp… but not for Adam, and composing one from gathers, a fused
    dense Adam on the gathered rows and scatters moves every row ~19 times
    through memory instead of 7 — the lazy update then costs ~30 ms of a ~45 ms
    Reuters step on 2 CPU cores instead of ~8 ms.  Built with the compiler in
    ``$CXX`` (default g++) against the installed TensorFlow's headers on first use
    (~10 s), cached under ``$MLBENCH_CACHE`` (default ~/.cache/mlbench), and keyed
    by source, flags and TensorFlow version.  ``MLBENCH_FUSED_ADAM=0`` turns it
    off; without a compiler LazyAdam falls back to the TensorFlow-ops update (same
    results, slower).
    """
    if os.environ.get("MLBENCH_FUSED_ADAM", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        logging.getLogger(__name__).info("LazyAdam: no C++ compiler; using the TensorFlow-ops update")
        return None
    flags = ["-shared", "-fPIC", "-O3", "-ffp-contract=off", "-fno-math-errno", "-w", *_cpu_flags()]
    tf_flags = [*tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
    key = hashlib.sha256("\n".join([_FUSED_SOURCE, tf.__version__, *flags, *tf_flags]).encode()).hexdigest()[:16]
    library = _ops_cache_dir() / f"lazy_adam_rows-{key}.so"
    try:
        if not library.exists():
            library.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
                source = Path(tmp) / "lazy_adam_rows.cc"
                source.write_text(_FUSED_SOURCE)
                built = Path(tmp) / library.name
                subprocess.run([compiler, *flags, str(source), "-o", str(built), *tf_flags],
                               check=True, capture_output=True, timeout=300)
                os.replace(built, library)  # atomic: concurrent builders never see half a file
        return tf.load_op_library(str(library))
    except (OSError, subprocess.SubprocessError, tf.errors.OpError) as err:
        logging.getLogger(__name__).warning("LazyAdam: fused row update unavailable (%s); "
                                            "using the TensorFlow-ops update", err)
        return None


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
        variable = _tf_variable(variable)
        dtype = variable.dtype
        ids, grad = merge_duplicate_rows(gradient, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        lr = tf.cast(learning_rate, dtype)
        index = self._get_variable_index(variable)
        m = _tf_variable(self._momentums[index])
        v = _tf_variable(self._velocities[index])
        if self._use_fused(variable):
            # the same scalars keras Adam computes
            alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
            fused_row_adam_op().mlbench_lazy_adam_rows(
                var=variable.handle, m=m.handle, v=v.handle, alpha=alpha,
                one_minus_beta1=tf.cast(1 - self.beta_1, dtype), one_minus_beta2=tf.cast(1 - self.beta_2, dtype),
                epsilon=tf.cast(self.epsilon, dtype), grad=grad, indices=ids,
            )
            return
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
