"""TF-IDF bigram MLP: the keras-io "Large-scale multi-label text classification" model.

Faithful to the example: ``TextVectorization(ngrams=2, output_mode="tf_idf")``
adapted on the training texts only, Dense 512 relu → Dense 256 relu →
Dense(n_labels, sigmoid), Adam, binary cross-entropy, batch 128.  Two changes:

* the example trains 20 epochs and overfits after the first one or two, so we stop
  early on validation loss and restore the best weights;
* by default it is made fast: the vectorizer emits *sparse* TF-IDF (a document
  has a few hundred non-zero features out of ~50k–150k), each split is vectorized
  once and cached as CSR rows, batches are gathered from shuffled document ids in
  tf.data, and the first Dense layer does a sparse × dense matmul that touches
  only the kernel rows of the batch's features, trained with a lazy Adam that
  updates only those rows (`baselines/sparse_layers.py`, `baselines/lazy_adam.py`).
  ``sparse=False, cache=False`` gives back the faithful dense pipeline (the
  reference in ``benchmarks/mlp_speed.py``);
* under a ``tf.distribute`` strategy (``--strategy mirrored|multiworker``), which cannot
  split SparseTensor batches over replicas, the same sparse model trains on padded rows
  (feature ids + TF-IDF values, [B, K] with K the batch's longest document) into
  `PaddedSparseDense`: the same CSR matmul, row gradient and LazyAdam, so the cost stays
  in the non-zeros; prediction and export then use the SparseTensor model (same weights).

Speed options (``settings.options``):

* ``"jit_compile"``: ``"auto"`` (default: Keras's rule — XLA on GPU for the dense
  model, off on CPU; never for the sparse model, whose CSR ops XLA cannot
  compile), True or False;
* ``"mixed_precision"``: False (default: on CPU it only adds casts — the sparse
  first layer, where the time goes, multiplies in float32 either way), or any value
  `mlbench.keras.device.resolve_precision` reads (True = ``mixed_bfloat16``).
  Variables stay float32 and the logits layer computes in float32;
* ``"steps_per_execution"``: train steps per `tf.function` call (default 32 for the
  fast path — measured ~15% less CPU per Reuters epoch — and Keras's 1 for the
  faithful ``sparse=False, cache=False`` configuration).

The network outputs logits (the loss applies the sigmoid stably); the exported
model applies the sigmoid and takes raw strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from mlbench.data.corpus import Split
from mlbench.labels import LabelSpace
from mlbench.keras.device import resolve_precision
from mlbench.tracks import UNSET, Param, Track, TrainSettings


def _policy_or_none(policy: str) -> str | None:
    """`build_classifier` takes None for the default float32 policy."""
    return None if policy == "float32" else policy


def _model_class():
    """A functional `keras.Model` whose ``compile`` applies the track's speed options.

    Why a subclass: the shared fit loop (`mlbench.keras.training`) compiles the
    model itself; this lets the track choose ``jit_compile`` / ``steps_per_execution``
    without changing that loop.
    """
    import keras

    class TfidfMLPModel(keras.Model):
        def compile(self, *args, **kwargs):
            kwargs.update(getattr(self, "_mlbench_compile_options", {}))
            return super().compile(*args, **kwargs)

    return TfidfMLPModel


def build_classifier(n_features: int, n_labels: int, *, hidden: Sequence[int] = (512, 256),
                     sparse: bool = True, output_bias: np.ndarray | None = None,
                     dtype_policy: str | None = None, compile_options: dict | None = None,
                     dropout: float = 0.0, padded: bool = False):
    """Dense 512 relu → Dense 256 relu → Dense(n_labels) logits, over TF-IDF input.

    The first layer is a `SparseDense` when `sparse` (same weight shapes as Dense,
    so the weights of one model load into the other).  `padded` (with `sparse`) takes the
    TF-IDF rows as two inputs, ids int32 [B, K] (-1 pads) and values float32 [B, K], into
    a `PaddedSparseDense`: the form `tf.distribute` can split over replicas, same weights
    and same numbers.  `dropout` > 0 adds a Dropout after each hidden layer (0, the
    default, is the keras-io model unchanged).
    """
    import keras

    from baselines.sparse_layers import PaddedSparseDense, SparseDense

    if padded and not sparse:
        raise ValueError("padded=True is an input form of the sparse first layer; it needs sparse=True")
    if padded:
        inputs = [keras.Input(shape=(None,), dtype="int32", name="tfidf_ids"),
                  keras.Input(shape=(None,), dtype="float32", name="tfidf_values")]
    else:
        inputs = keras.Input(shape=(n_features,), sparse=sparse, name="tfidf")
    x = inputs
    for i, units in enumerate(hidden):
        if padded and i == 0:
            layer = PaddedSparseDense(units, n_features, activation="relu", name="dense_0", dtype=dtype_policy)
        else:
            layer_cls = SparseDense if (sparse and i == 0) else keras.layers.Dense
            layer = layer_cls(units, activation="relu", name=f"dense_{i}", dtype=dtype_policy)
        x = layer(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    bias = "zeros" if output_bias is None else keras.initializers.Constant(output_bias)
    # float32 logits under mixed precision: the loss and the exported sigmoid need them
    logits = keras.layers.Dense(n_labels, bias_initializer=bias, name="logits", dtype="float32")(x)
    model = _model_class()(inputs, logits, name="tfidf_mlp")
    model._mlbench_compile_options = dict(compile_options or {})
    return model


IG_STEPS = 256


def attribution_parts(vectorizer, vocabulary: Sequence[str], classifier):
    """`mlbench.explain.graph` parts of one document for the MLP: its non-zero n-grams [n],
    their TF-IDF values x [n], the zero baseline and f: [m, n] → [m, L] logits.

    f is the classifier with its first layer written as ``act(x @ W[n-grams] + b)`` from
    the same kernel (`SparseDense` gives no gradient for its input values; the other
    columns have x = baseline = 0 and attribution 0); the later Dense layers are called
    as they are (Dropout is the identity at inference).
    """
    import keras
    import tensorflow as tf

    first = classifier.get_layer("dense_0")
    rest = [layer for layer in classifier.layers if isinstance(layer, keras.layers.Dense) and layer is not first]
    names = list(vocabulary)

    def parts(text):
        feats = vectorizer(tf.reshape(text, [1]))
        if isinstance(feats, tf.SparseTensor):
            cols, values = feats.indices[:, 1], feats.values
        else:
            row = feats[0]
            cols = tf.where(tf.not_equal(row, 0))[:, 0]
            values = tf.gather(row, cols)
        values = tf.cast(values, tf.float32)
        kernel = tf.gather(tf.cast(first.kernel, tf.float32), cols)  # [n, units]
        bias = tf.cast(first.bias, tf.float32)

        def f(path):
            h = first.activation(tf.matmul(path, kernel) + bias)
            for layer in rest:
                h = tf.cast(layer(h), tf.float32)
            return h

        # the vocabulary is a constant made while tracing: an export carries it in its graph
        return tf.gather(tf.constant(names, tf.string), cols), values, tf.zeros_like(values), f

    return parts


def row_batches(rows: Any, y: np.ndarray | None, batch_size: int, *, shuffle: bool, seed: int,
                epoch_counter: Any = None, padded: bool = False):
    """tf.data batches of cached rows: shuffled document ids → one gather per batch.

    `rows` is a `SparseRows` (sparse TF-IDF) or a dense [n, V] tensor; `padded` (SparseRows
    only) gives each batch as (ids int32 [B, K] padded with -1, values float32 [B, K]
    padded with 0), K the batch's longest row: `build_classifier(padded=True)`'s input,
    dense tensors that `tf.distribute` can split over replicas.  Only ids are
    shuffled; with an `EpochCounter` (`mlbench.keras.resume`) epoch e's order is a
    function of (seed, e), so a resumed fit sees the batches an uninterrupted one
    would; without one, a seeded ``Dataset.shuffle`` reshuffles each epoch.  The
    features are gathered per batch in graph, in parallel with training, and prefetched.
    """
    import tensorflow as tf

    from baselines.tfidf_vectorizer import SparseRows

    sparse = isinstance(rows, SparseRows)
    if padded and not sparse:
        raise ValueError(f"padded batches need SparseRows, got {type(rows).__name__}")
    n = len(rows) if sparse else int(rows.shape[0])
    y_t = None if y is None else tf.constant(y)

    def take(ids):
        if padded:
            x = (tf.gather(rows.cols, ids).to_tensor(default_value=-1),
                 tf.gather(rows.values, ids).to_tensor(default_value=0.0))
        else:
            x = rows.take(ids) if sparse else tf.gather(rows, ids)
        # targets may be stored as uint8 (a quarter of float32 at thousands of labels)
        return x if y_t is None else (x, tf.cast(tf.gather(y_t, ids), tf.float32))

    if shuffle and epoch_counter is not None:
        from mlbench.keras.resume import epoch_ids

        ds = epoch_ids(n, seed, epoch_counter)
    else:
        ds = tf.data.Dataset.range(n)
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(take, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


class TfidfMLPTrack(Track):
    """The keras-io TF-IDF bigram MLP as a benchmark track (`--models mlp`)."""

    name = "mlp"
    onnx_core = "tfidf_mlp"  # `mlbench export-onnx`: sparse TF-IDF core + Python front end
    family = "baseline"
    uses_loss = True
    #: validation search (`mlbench.tuning`, through ``settings.options``): the [UNK]
    #: column (it lifted Reuters macro-F1, see README) and dropout; 4 fits
    search_space: ClassVar[dict[str, list]] = {"drop_oov": [False, True], "dropout": [0.0, 0.2]}
    #: under --protocol cv: fitted on K folds of train+val, then refit (`mlbench.protocol`)
    cheap_fit: ClassVar[bool] = True
    #: early stopping reads validation: fold fits validate on an inner slice of their rows
    fits_on_validation: ClassVar[bool] = True
    #: what ``settings.options`` (the search's points, the speed options above) may set
    params: ClassVar[dict[str, Param]] = {
        "drop_oov": Param(False, convert=bool),
        "dropout": Param(0.0, lambda v: 0.0 <= v < 1.0, "in [0, 1)", convert=float),
        "jit_compile": Param("auto"),
        "mixed_precision": Param(False),
        #: None: 32 on the fast path, Keras's 1 for the faithful ``sparse=False, cache=False``
        "steps_per_execution": Param(None, lambda v: v is None or v >= 1, ">= 1", convert=int),
    }
    explains = "integrated gradients over its TF-IDF input, from the all-zero vector"

    def __init__(self, settings: TrainSettings | None = None, *, ngrams: int = 2,
                 max_tokens: int | None = None, hidden: Sequence[int] = (512, 256),
                 learning_rate: float = 1e-3, patience: int = 2, sparse: bool = True,
                 cache: bool = True, drop_oov: bool = UNSET, dropout: float = UNSET,
                 callbacks: Sequence = ()):
        """`sparse`/`cache` False give the faithful keras-io pipeline; `drop_oov` (sparse
        path only; default from ``settings.options["drop_oov"]``, else False) leaves out
        the [UNK] TF-IDF column; `dropout` (default ``settings.options["dropout"]``, else
        0) is the rate after each hidden layer; `callbacks` are extra Keras callbacks for
        `fit` (e.g. the benchmark's epoch timer)."""
        super().__init__(settings)
        if ngrams < 1:
            raise ValueError(f"ngrams must be >= 1, got {ngrams}")
        if max_tokens is not None and max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2 or None, got {max_tokens}")
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden must be positive layer sizes, got {hidden}")
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        self.ngrams, self.max_tokens, self.hidden = ngrams, max_tokens, tuple(int(h) for h in hidden)
        self.learning_rate, self.patience = learning_rate, patience
        self.sparse, self.cache = sparse, cache
        self.callbacks = list(callbacks)
        p = self.resolve_params(dict(drop_oov=drop_oov, dropout=dropout))
        self.drop_oov, self.dropout = p["drop_oov"], p["dropout"]
        if self.drop_oov and not sparse:
            raise ValueError("drop_oov needs the sparse path (sparse=True); the dense path is "
                             "the faithful keras-io reference")
        self.jit_compile, self.precision = p["jit_compile"], p["mixed_precision"]
        # several train steps per tf.function call: ~15% less CPU per Reuters epoch for
        # the fast path; the faithful keras-io configuration keeps Keras's default 1
        self.steps_per_execution = p["steps_per_execution"] or (32 if sparse or cache else 1)
        self.dense_vectorizer = None  # the adapted keras-io layer
        self.vectorizer = None  # what the classifier reads: sparse or dense layer
        self.classifier = None

    @property
    def epochs(self) -> int:
        if self.settings.epochs is not None:
            return self.settings.epochs
        return 3 if self.settings.quick else 20  # keras-io's 20, cut short by early stopping

    @property
    def batch_size(self) -> int:
        """Per-replica batch; the global batch is this × replicas (`mlbench.keras.strategy`)."""
        return self.settings.batch_size or 128

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * getattr(self, "_replicas", 1)

    # -- data -------------------------------------------------------------------------
    def vectorize(self, texts: Sequence[str]):
        """A split's features, computed once: `SparseRows` (sparse) or a dense tensor."""
        from baselines.tfidf_vectorizer import SparseRows, vectorize_once

        if self.sparse:
            return SparseRows.from_texts(self.vectorizer, texts)
        return vectorize_once(self.vectorizer, texts)

    def _dataset(self, texts: Sequence[str], y: np.ndarray | None, *, shuffle: bool,
                 epoch_counter: Any = None):
        """tf.data over a split: vectorized once and cached (fast) or per batch (keras-io)."""
        import tensorflow as tf

        from baselines.sparse_layers import sparse_to_padded

        seed = self.settings.seed
        if self.cache:
            # padded rows under a strategy: tf.distribute cannot split SparseTensor batches
            return row_batches(self.vectorize(texts), y, self.global_batch_size, shuffle=shuffle, seed=seed,
                               epoch_counter=epoch_counter, padded=getattr(self, "_padded", False))
        # keras-io: strings in tf.data, vectorized batch by batch every epoch
        ds = tf.data.Dataset.from_tensor_slices(list(texts) if y is None else (list(texts), y))
        if shuffle:
            ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
        vectorizer, padded = self.vectorizer, getattr(self, "_padded", False)

        def vectorize(*batch):  # (texts,) or (texts, labels)
            x = vectorizer(batch[0])
            x = sparse_to_padded(x) if padded else x
            return x if len(batch) == 1 else (x, batch[1])

        ds = ds.batch(self.global_batch_size).map(vectorize, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    # -- Track API ----------------------------------------------------------------------
    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict[str, list[float]]:
        from baselines.tfidf_vectorizer import SparseTfidf, adapt_tfidf_fast
        from mlbench.keras.strategy import fit_scope, replicas
        from mlbench.keras.training import fit_keras_model, seed_everything

        seed_everything(self.settings.seed)
        # Under a tf.distribute strategy Keras cannot split a SparseTensor batch over
        # replicas: the same network (same first layer, CSR matmul, LazyAdam row updates)
        # is trained on padded rows (ids + values, `PaddedSparseDense`), then its weights
        # are copied into the sparse model for prediction and export (same weight shapes).
        distributed = (self.settings.strategy or "default") != "default"
        self._padded = distributed and self.sparse
        self.notices = []
        self.labels = labels
        self.dense_vectorizer = adapt_tfidf_fast(train.texts, ngrams=self.ngrams, max_tokens=self.max_tokens)
        self.vectorizer = (
            SparseTfidf.from_dense(self.dense_vectorizer, drop_oov=self.drop_oov)
            if self.sparse else self.dense_vectorizer
        )
        n_features = self.dense_vectorizer.vocabulary_size()
        # several steps per call fail under tf.distribute strategies (Keras 3.15's
        # multi-step loop feeds no value to a placeholder in its has-next check): one there
        steps = 1 if distributed else self.steps_per_execution
        compile_options = {"jit_compile": self.jit_compile, "steps_per_execution": steps}
        from mlbench.keras.resume import EpochCounter

        with fit_scope(self.settings) as strategy:  # model, optimizer, metrics on every replica
            self._replicas = replicas(strategy)
            self.classifier = build_classifier(
                n_features, len(labels), hidden=self.hidden, sparse=self.sparse, padded=self._padded,
                dtype_policy=_policy_or_none(resolve_precision(self.precision)),
                compile_options=compile_options, dropout=self.dropout,
            )
            optimizer = self._optimizer()

        # 0/1 targets as uint8 straight from CSR: no n × L float32 copy (3.2 GB at 160k × 5,000)
        # (the keras-io per-batch pipeline feeds them to the loss as they are: float32 there)
        y_dtype = np.uint8 if self.cache else np.float32
        y_train, y_val = (labels.encode_sparse(split.labels).astype(y_dtype).toarray() for split in (train, val))
        counter = EpochCounter()  # epoch-keyed data order: a resumed fit sees the same batches
        train_ds = self._dataset(train.texts, y_train, shuffle=True, epoch_counter=counter)
        # no validation split (the refit on all of train+val): fixed epochs, no early stopping
        val_ds = self._dataset(val.texts, y_val, shuffle=False) if len(val) else None
        with fit_scope(self.settings):
            history = fit_keras_model(
                self.classifier, train_ds, val_ds, settings=self.settings, labels=labels,
                n_train_docs=len(train), optimizer=optimizer,
                epochs=self.epochs, patience=self.patience, callbacks=[counter, *self.callbacks],
            )
        if self._padded:  # predict and export on this device with the sparse model
            sparse_model = build_classifier(
                n_features, len(labels), hidden=self.hidden, sparse=True,
                dtype_policy=_policy_or_none(resolve_precision(self.precision)),
                compile_options=compile_options, dropout=self.dropout)
            sparse_model.set_weights([np.asarray(w) for w in self.classifier.get_weights()])
            self.classifier, self._padded, self._replicas = sparse_model, False, 1
        return history

    def _optimizer(self):
        """Adam, as in keras-io; lazy (touched rows only) for the sparse first layer.

        float16 needs loss scaling; the sparse path gets a loss-scale wrapper that
        keeps the first layer's gradient sparse.
        """
        import keras

        from baselines.lazy_adam import LazyAdam, SparseLossScaleOptimizer

        lazy = self.sparse
        opt = LazyAdam(self.learning_rate) if lazy else keras.optimizers.Adam(self.learning_rate)
        if resolve_precision(self.precision) == "mixed_float16":
            opt = SparseLossScaleOptimizer(opt) if lazy else keras.optimizers.LossScaleOptimizer(opt)
        return opt

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        if self.classifier is None:
            raise RuntimeError("fit the track before predicting")
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        ds = self._dataset(texts, None, shuffle=False)
        return np.asarray(self.classifier.predict(ds, verbose=0), dtype=np.float32)

    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        from mlbench.numeric import sigmoid

        return sigmoid(self.predict_logits(texts))

    def export(self, directory: Path, *, thresholds: np.ndarray | None = None) -> Path:
        """Raw-string SavedModel: vectorizer → classifier → sigmoid (`thresholds` [L]
        feed the ``decisions`` signature)."""
        from mlbench.serving.export import export_raw_string_model

        if self.classifier is None:
            raise RuntimeError("fit the track before exporting")
        # export_raw_string_model leaves the optimizer (2 × V × 512 moments) out
        return export_raw_string_model(
            directory, [self.vectorizer, self.classifier], self.labels.names,
            track=self.name, thresholds=thresholds,
            metadata={"sparse": self.sparse, "ngrams": self.ngrams, "drop_oov": self.drop_oov},
            explainer=self.explainer(),
        )

    def explainer(self, top_n: int | None = None):
        """Integrated gradients over the TF-IDF input (`mlbench.explain.graph`), from the
        all-zero vector, `IG_STEPS` trapezoid intervals (ReLU kinks along the path make
        the quadrature error first order in 1/steps)."""
        from mlbench.explain.graph import TOP_N, GraphExplainer

        if self.classifier is None:
            raise RuntimeError("fit the track before explaining it")
        parts = attribution_parts(self.vectorizer, self.dense_vectorizer.get_vocabulary(), self.classifier)
        return GraphExplainer(parts, steps=IG_STEPS, top_n=top_n or TOP_N, method="integrated gradients",
                              baseline="the all-zero TF-IDF vector", features="TF-IDF uni/bigrams")

    def size_bytes(self) -> int | None:
        if self.classifier is None:
            return None
        from mlbench.sizes import weights_size

        return weights_size(self.classifier.weights)

    def describe(self) -> dict:
        n_features = self.dense_vectorizer.vocabulary_size() if self.dense_vectorizer else None
        params = None
        if self.classifier is not None:
            from mlbench.keras.training import count_parameters

            params = count_parameters(self.classifier)
        return {
            "vectorizer": f"TextVectorization(ngrams={self.ngrams}, tf_idf)",
            "vocabulary": n_features, "hidden": list(self.hidden), "sparse": self.sparse, "drop_oov": self.drop_oov,
            "dropout": self.dropout, "cached_pipeline": self.cache, "learning_rate": self.learning_rate,
            "batch_size": self.batch_size, "max_epochs": self.epochs, "patience": self.patience,
            "parameters": params, "loss": self.settings.loss,
            "jit_compile": self.jit_compile, "mixed_precision": resolve_precision(self.precision),
            "steps_per_execution": self.steps_per_execution,
        }
