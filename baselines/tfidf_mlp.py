"""TF-IDF bigram MLP: the keras-io "Large-scale multi-label text classification" model.

Faithful to the example: ``TextVectorization(ngrams=2, output_mode="tf_idf")``
adapted on the training texts only, Dense 512 relu → Dense 256 relu →
Dense(n_labels, sigmoid), Adam, binary cross-entropy, batch 128.  Two changes:

* the example trains 20 epochs and overfits after the first one or two, so we stop
  early on validation loss and restore the best weights;
* by default it is made fast: the vectorizer emits *sparse* TF-IDF (a document
  has a few hundred non-zero features out of ~50k–150k), each split is vectorized
  once and cached, and the first Dense layer does a sparse × dense matmul that
  touches only the kernel rows of the document's features, trained with a lazy
  Adam that updates only those rows (`baselines/sparse_layers.py`).
  ``sparse=False, cache=False`` gives back the faithful dense pipeline (the
  reference in ``benchmarks/mlp_speed.py``).

The network outputs logits (the loss applies the sigmoid stably); the exported
model applies the sigmoid and takes raw strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mlbench.data.corpus import Split
from mlbench.labels import LabelSpace
from mlbench.tracks import Track, TrainSettings


def build_classifier(n_features: int, n_labels: int, *, hidden: Sequence[int] = (512, 256),
                     sparse: bool = True, output_bias: np.ndarray | None = None):
    """Dense 512 relu → Dense 256 relu → Dense(n_labels) logits, over TF-IDF input."""
    import keras

    from baselines.sparse_layers import SparseDense

    inputs = keras.Input(shape=(n_features,), sparse=sparse, name="tfidf")
    x = inputs
    for i, units in enumerate(hidden):
        layer = SparseDense if (sparse and i == 0) else keras.layers.Dense
        x = layer(units, activation="relu", name=f"dense_{i}")(x)
    bias = "zeros" if output_bias is None else keras.initializers.Constant(output_bias)
    logits = keras.layers.Dense(n_labels, bias_initializer=bias, name="logits")(x)
    return keras.Model(inputs, logits, name="tfidf_mlp")


class TfidfMLPTrack(Track):
    """The keras-io TF-IDF bigram MLP as a benchmark track (`--models mlp`)."""

    name = "mlp"
    family = "baseline"
    uses_loss = True

    def __init__(self, settings: TrainSettings | None = None, *, ngrams: int = 2,
                 max_tokens: int | None = None, hidden: Sequence[int] = (512, 256),
                 learning_rate: float = 1e-3, patience: int = 2, sparse: bool = True,
                 cache: bool = True):
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
        return self.settings.batch_size or 128

    # -- data -------------------------------------------------------------------------
    def _dataset(self, texts: Sequence[str], y: np.ndarray | None, *, shuffle: bool):
        """tf.data over a split: vectorized once and cached (fast) or per batch (keras-io)."""
        import tensorflow as tf

        from baselines.tfidf_vectorizer import vectorize_once

        seed = self.settings.seed
        if self.cache:
            x = vectorize_once(self.vectorizer, texts)
            ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
            if shuffle:
                ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
            return ds.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
        ds = tf.data.Dataset.from_tensor_slices(list(texts) if y is None else (list(texts), y))
        if shuffle:
            ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(self.batch_size)
        vec = self.vectorizer
        fn = (lambda t: vec(t)) if y is None else (lambda t, l: (vec(t), l))
        return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    # -- Track API ----------------------------------------------------------------------
    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict[str, list[float]]:
        import keras

        from baselines.tfidf_vectorizer import SparseTfidf, adapt_tfidf
        from mlbench.keras_training import fit_keras_model, seed_everything

        seed_everything(self.settings.seed)
        self.labels = labels
        self.dense_vectorizer = adapt_tfidf(train.texts, ngrams=self.ngrams, max_tokens=self.max_tokens)
        self.vectorizer = (
            SparseTfidf.from_dense(self.dense_vectorizer) if self.sparse else self.dense_vectorizer
        )
        n_features = self.dense_vectorizer.vocabulary_size()
        self.classifier = build_classifier(n_features, len(labels), hidden=self.hidden, sparse=self.sparse)
        y_train, y_val = labels.encode(train.labels), labels.encode(val.labels)
        train_ds = self._dataset(train.texts, y_train, shuffle=True)
        val_ds = self._dataset(val.texts, y_val, shuffle=False)
        return fit_keras_model(
            self.classifier, train_ds, val_ds, settings=self.settings, labels=labels,
            n_train_docs=len(train), optimizer=self._optimizer(),
            epochs=self.epochs, patience=self.patience,
        )

    def _optimizer(self):
        """Adam, as in keras-io; lazy (touched rows only) for the sparse first layer."""
        import keras

        from baselines.sparse_layers import LazyAdam

        return LazyAdam(self.learning_rate) if self.sparse else keras.optimizers.Adam(self.learning_rate)

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        if self.classifier is None:
            raise RuntimeError("fit the track before predicting")
        return np.asarray(self.classifier.predict(self._dataset(texts, None, shuffle=False), verbose=0))

    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        from mlbench.keras_training import sigmoid

        return sigmoid(self.predict_logits(texts))

    def export(self, directory: Path) -> Path:
        from mlbench.export import export_raw_string_model

        return export_raw_string_model(
            directory, [self.vectorizer, self.classifier], self.labels.names,
            track=self.name, metadata={"sparse": self.sparse, "ngrams": self.ngrams},
        )

    def size_bytes(self) -> int | None:
        if self.classifier is None:
            return None
        return int(sum(np.prod(w.shape) * 4 for w in self.classifier.weights))

    def describe(self) -> dict:
        n_features = self.dense_vectorizer.vocabulary_size() if self.dense_vectorizer else None
        params = None
        if self.classifier is not None:
            from mlbench.keras_training import count_parameters

            params = count_parameters(self.classifier)
        return {
            "vectorizer": f"TextVectorization(ngrams={self.ngrams}, tf_idf)",
            "vocabulary": n_features, "hidden": list(self.hidden), "sparse": self.sparse,
            "cached_pipeline": self.cache, "learning_rate": self.learning_rate,
            "batch_size": self.batch_size, "max_epochs": self.epochs, "patience": self.patience,
            "parameters": params, "loss": self.settings.loss,
        }
