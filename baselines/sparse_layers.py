"""The pieces that make the TF-IDF MLP's huge first layer cheap on sparse input.

A document has a few hundred non-zero TF-IDF features out of 50k–150k, yet a
Dense layer over the dense vector multiplies every zero, and Adam then updates
all V × 512 kernel entries every step.  `SparseDense` computes the same
``x @ kernel + bias`` reading only the kernel rows of the batch's features, and
its kernel gradient is a `tf.IndexedSlices` over the batch's distinct features;
`baselines.lazy_adam.LazyAdam` updates only those rows — the classic "lazy Adam" used for embeddings:
moments of rows not seen in a batch are left as they are instead of decaying.
The weights have the Dense layer's shapes, so they load into the dense keras-io
model as is.  `PaddedSparseDense` is the same layer over padded rows (ids + values,
`padded_to_sparse`): the input form a `tf.distribute` strategy can split over replicas.

Where the time went (Reuters, batch 128: ~18k non-zeros and ~9k distinct
features per batch, so ~9k × 512 kernel rows per step; 2 shared CPU cores):

* ``tf.sparse.sparse_dense_matmul`` — one small Eigen expression per non-zero on
  one thread, ~15 ms forward and again backward — is replaced by TF's CSR kernel
  (``SparseMatrixMatMul``, ~2 ms) with a hand-written gradient (`sparse_kernel_matmul`);
* the lazy update composed from TF ops (gather the rows of kernel, m, v → fused
  dense Adam → three scatters) moves each row through memory ~19 times and took
  ~30 ms a step; a small fused C++ kernel (`baselines.fused_adam_kernel`, built once per
  machine, with the TF-ops update as fallback) does it in place in ~8 ms;
* Glorot initialisation of the kernel in row blocks avoids three full-size
  temporaries that TensorFlow's allocator would keep for the whole process.
"""

from __future__ import annotations


import keras
import tensorflow as tf


def tf_variable(variable) -> tf.Variable:
    """The `tf.Variable` behind a Keras variable, for row-wise (resource) ops.

    ``tf.gather``/``scatter_*`` on the resource variable touch only the rows named;
    through the Keras variable they would first read (and under mixed precision
    cast) the whole [V, 512] matrix.
    """
    return variable.value if isinstance(variable, keras.Variable) else variable


def local_variable(variable) -> tf.Variable:
    """The copy of `variable` that this replica reads (the variable itself without a strategy).

    Why: under a `tf.distribute` strategy a Keras variable holds a `MirroredVariable`
    (one component per device); in a graph its cross-replica reads are ``identity``
    tensors, not variables, so ``read_value_no_copy`` and row ops need the component of
    the current replica (or device, inside the optimizer's per-device update).  Writes
    that must reach every copy (initialisation) go through the mirrored variable itself.
    """
    variable = tf_variable(variable)
    if isinstance(variable, tf.distribute.DistributedValues):
        return variable._get_on_device_or_primary()  # TF's own lookup: replica id, else device
    return variable


def padded_to_sparse(ids: tf.Tensor, values: tf.Tensor, n_features: int) -> tf.SparseTensor:
    """Padded rows → the row-ordered SparseTensor [B, n_features] they stand for.

    ids: int [B, K], a document's feature ids left-aligned and padded with -1;
    values: float [B, K], their TF-IDF values (padding: any value, dropped with its id).
    Why this form: `tf.distribute` splits dense [B, K] batches over replicas (it cannot
    split a SparseTensor), and K is the batch's longest document, so the cost stays in
    the non-zeros.  ``tf.where`` lists the kept entries row-major, as CSR needs.
    """
    keep = tf.where(ids >= 0)  # [nnz, 2] (row, position), rows in order
    cols = tf.cast(tf.gather_nd(ids, keep), tf.int64)
    shape = tf.stack([tf.shape(ids, out_type=tf.int64)[0], tf.constant(n_features, tf.int64)])
    return tf.SparseTensor(tf.stack([keep[:, 0], cols], axis=1), tf.gather_nd(values, keep), shape)


def sparse_to_padded(x: tf.SparseTensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A row-ordered SparseTensor [B, V] → (ids int32 [B, K] padded with -1, values [B, K]
    padded with 0), K its longest row: the inverse of `padded_to_sparse`."""
    rows, nrows = x.indices[:, 0], x.dense_shape[0]
    ids = tf.RaggedTensor.from_value_rowids(tf.cast(x.indices[:, 1], tf.int32), rows, nrows=nrows)
    values = tf.RaggedTensor.from_value_rowids(x.values, rows, nrows=nrows)
    return ids.to_tensor(default_value=-1), values.to_tensor(default_value=0)


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
    variable = tf_variable(kernel)
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
        if not isinstance(inputs, tf.SparseTensor):
            kernel = tf.cast(self.kernel.value, dtype)
            return self.activation(tf.matmul(tf.cast(inputs, dtype), kernel) + tf.cast(self.bias, dtype))
        return self._sparse_call(_rows_in_order(inputs))

    def _sparse_call(self, x: tf.SparseTensor) -> tf.Tensor:
        """``activation(x @ kernel + bias)`` for a row-ordered SparseTensor x [B, V] → [B, units]."""
        dtype = self.compute_dtype
        kernel = local_variable(self.kernel)  # this replica's copy under a strategy
        x = tf.SparseTensor(x.indices, tf.cast(x.values, kernel.dtype), x.dense_shape)
        out = sparse_kernel_matmul(x, kernel)
        return self.activation(tf.cast(out, dtype) + tf.cast(self.bias, dtype))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="mlbench")
class PaddedSparseDense(SparseDense):
    """`SparseDense` over padded rows ``[ids, values]`` (`padded_to_sparse`): the form that
    runs under a `tf.distribute` strategy.

    ids: int32 [B, K] (-1 pads), values: float32 [B, K] → [B, units].  The same weights,
    forward (CSR matmul) and row (`tf.IndexedSlices`) kernel gradient as `SparseDense`
    on the SparseTensor the rows stand for, so `LazyAdam` trains it the same way, and
    its weights load into a `SparseDense` model (prediction and export take raw strings
    through the sparse vectorizer).  The vocabulary size cannot be read from [B, K]
    inputs, hence `n_features`.
    """

    def __init__(self, units: int, n_features: int, activation: str | None = None, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        if int(n_features) < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.n_features = int(n_features)

    def build(self, input_shape):
        super().build((None, self.n_features))

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"PaddedSparseDense expects [ids, values] (two [B, K] tensors), got {inputs!r}")
        ids, values = inputs
        return self._sparse_call(padded_to_sparse(ids, values, self.n_features))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.units)

    def get_config(self) -> dict:
        return {**super().get_config(), "n_features": self.n_features}
