"""TF-IDF bigram features from Keras `TextVectorization`, dense (keras-io) or sparse.

The keras-io example uses ``TextVectorization(ngrams=2, output_mode="tf_idf")``,
which emits a dense vector over the whole vocabulary although a document has only
a few hundred non-zero features.  Keras 3.15's ``sparse=True`` fails for
``tf_idf`` (a GatherNd rank error), so the sparse path is its exact equivalent:
the *same* adapted vocabulary in ``output_mode="count", sparse=True`` times the
*same* IDF weights (Keras defines tf_idf as count × idf).
"""

from __future__ import annotations

import weakref
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf


def keras_io_vocabulary_size(texts: Sequence[str]) -> int:
    """The keras-io example's `max_tokens`: distinct lower-cased whitespace tokens."""
    vocabulary: set[str] = set()
    for text in texts:
        vocabulary.update(text.lower().split())
    return len(vocabulary)


def adapt_tfidf(texts: Sequence[str], *, ngrams: int = 2, max_tokens: int | None = None,
                batch_size: int = 1024) -> keras.layers.TextVectorization:
    """The faithful dense layer, adapted on training texts only."""
    if max_tokens is None:
        max_tokens = keras_io_vocabulary_size(texts)
    layer = keras.layers.TextVectorization(
        max_tokens=max_tokens, ngrams=ngrams, output_mode="tf_idf"
    )
    layer.adapt(tf.data.Dataset.from_tensor_slices(list(texts)).batch(batch_size))
    return layer


def adapt_tfidf_fast(texts: Sequence[str], *, ngrams: int = 2, max_tokens: int | None = None,
                     batch_size: int = 1024) -> keras.layers.TextVectorization:
    """`adapt_tfidf`'s layer (what the MLP track fits): the same vocabulary and IDF weights,
    counted without Keras's per-document loop.

    Why: Keras 3.15's ``IndexLookup.update_state`` dedupes each document's n-grams for the
    document frequencies with an eager ``tf.map_fn`` over the rows, one op per document,
    which grows into most of the fit on large corpora.  Here each batch of n-grams [B, None]
    (the layer's own standardize/split/n-gram step, `_preprocess`) is counted with a few
    whole-batch ops: every distinct (document, n-gram) pair once.  The counts that reach
    the layer's tables, and so `finalize_state`'s vocabulary and IDF, are Keras's own.
    """
    if max_tokens is None:
        max_tokens = keras_io_vocabulary_size(texts)
    layer = keras.layers.TextVectorization(max_tokens=max_tokens, ngrams=ngrams, output_mode="tf_idf")
    lookup = layer._lookup_layer  # the IndexLookup whose tables `adapt` fills
    layer.reset_state()
    for start in range(0, len(texts), batch_size):
        grams = layer._preprocess(tf.constant(list(texts[start:start + batch_size])))  # ragged [B, None]
        tokens, idx, counts = tf.unique_with_counts(grams.flat_values, out_idx=tf.int64)
        lookup.token_counts.insert(tokens, counts + lookup.token_counts.lookup(tokens))
        n = tf.size(tokens, out_type=tf.int64)
        pairs, _ = tf.unique(grams.value_rowids() * n + idx)  # each n-gram once per document
        docs = tf.math.unsorted_segment_sum(tf.ones_like(pairs), pairs % tf.maximum(n, 1), n)
        lookup.token_document_counts.insert(tokens, docs + lookup.token_document_counts.lookup(tokens))
        lookup.num_documents.assign_add(grams.nrows())
    layer.finalize_state()
    return layer


@keras.saving.register_keras_serializable(package="mlbench")
class SparseTfidf(keras.layers.Layer):
    """Raw strings → sparse TF-IDF rows, equal to the dense layer it was built from."""

    def __init__(self, vocabulary: Sequence[str], idf_weights: Sequence[float], ngrams: int = 2,
                 drop_oov: bool = False, **kwargs):
        """`drop_oov` leaves out column 0, the out-of-vocabulary ("[UNK]") count.

        Why offer it: with ``max_tokens`` far below the number of distinct uni- and
        bigrams, most of a document's n-grams are OOV, so keras-io's [UNK] column
        carries most of the vector's norm while saying little about the topic.
        """
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.ngrams = ngrams
        self.drop_oov = bool(drop_oov)
        self.counter = keras.layers.TextVectorization(
            ngrams=ngrams, output_mode="count", sparse=True, vocabulary=self.vocabulary
        )
        self.idf = tf.constant(np.asarray(idf_weights, dtype=np.float32))

    @classmethod
    def from_dense(cls, dense: keras.layers.TextVectorization, *, drop_oov: bool = False) -> "SparseTfidf":
        vocab = dense.get_vocabulary()[1:]  # drop "[UNK]": the count layer adds its own
        idf = np.asarray(dense._lookup_layer.idf_weights_const)
        return cls(vocab, idf, ngrams=dense._ngrams, drop_oov=drop_oov)

    def vocabulary_size(self) -> int:
        return int(self.idf.shape[0])

    def call(self, texts):
        counts = self.counter(texts)
        values = tf.cast(counts.values, tf.float32) * tf.gather(self.idf, counts.indices[:, 1])
        x = tf.SparseTensor(counts.indices, values, counts.dense_shape)
        return tf.sparse.retain(x, counts.indices[:, 1] > 0) if self.drop_oov else x

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "vocabulary": self.vocabulary,
            "idf_weights": self.idf.numpy().tolist(),
            "ngrams": self.ngrams,
            "drop_oov": self.drop_oov,
        }


_GRAPH_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def graph_fn(vectorizer):
    """One `tf.function` per vectorizer layer, reused for every split and predict call
    (a fresh wrapper per call retraces each time, and TensorFlow warns about it)."""
    fn = _GRAPH_FNS.get(vectorizer)
    if fn is None:
        fn = _GRAPH_FNS[vectorizer] = tf.function(vectorizer, reduce_retracing=True)
    return fn


def vectorize_once(vectorizer, texts: Sequence[str], batch_size: int = 2048):
    """Vectorize a whole split once (in chunks, in graph), returning one tensor.

    Sparse layers give one SparseTensor (rows in order); dense layers one dense Tensor.
    """
    fn = graph_fn(vectorizer)
    parts = [fn(tf.constant(list(texts[i : i + batch_size]))) for i in range(0, len(texts), batch_size)]
    if not parts:
        raise ValueError("vectorize_once needs at least one text")
    if isinstance(parts[0], tf.SparseTensor):
        return tf.sparse.concat(axis=0, sp_inputs=parts, expand_nonconcat_dims=True)
    return tf.concat(parts, axis=0)


class SparseRows:
    """A vectorized split as CSR rows (column ids + values per document) for batching.

    Why not ``Dataset.from_tensor_slices(sparse_tensor)``: that slices one
    SparseTensor per document and re-assembles each batch element by element.
    Here a batch is one ``tf.gather`` of ragged rows on a batch of (shuffled)
    document ids, so an epoch costs a few ops per batch and no Python per example.
    Column ids are stored as int32 (half the memory of SparseTensor's int64).
    """

    def __init__(self, row_lengths: np.ndarray, cols: np.ndarray, values: np.ndarray, n_features: int):
        if n_features >= 2**31:
            raise ValueError(f"SparseRows stores column ids as int32; {n_features} features is too many")
        self.n_features = int(n_features)
        lengths = tf.constant(np.asarray(row_lengths, dtype=np.int64))
        self.cols = tf.RaggedTensor.from_row_lengths(
            tf.constant(np.asarray(cols, dtype=np.int32)), lengths, validate=False)
        self.values = tf.RaggedTensor.from_row_lengths(
            tf.constant(np.asarray(values, dtype=np.float32)), lengths, validate=False)

    @classmethod
    def from_sparse(cls, x: tf.SparseTensor) -> "SparseRows":
        x = tf.sparse.reorder(x)
        n_rows = int(x.dense_shape[0])
        lengths = np.bincount(x.indices[:, 0].numpy(), minlength=n_rows)
        return cls(lengths, x.indices[:, 1].numpy(), x.values.numpy(), int(x.dense_shape[1]))

    @classmethod
    def from_texts(cls, vectorizer, texts: Sequence[str], batch_size: int = 1024) -> "SparseRows":
        """Vectorize `texts` chunk by chunk straight into CSR arrays.

        Never holds the whole split as one int64 SparseTensor (nor a concatenated
        copy of it): at 200k documents that alone would be ~0.5 GB of peak memory.
        """
        fn = graph_fn(vectorizer)
        lengths, cols, values = [], [], []
        n_features = None
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            x = tf.sparse.reorder(fn(tf.constant(chunk)))
            n_features = int(x.dense_shape[1])
            lengths.append(np.bincount(x.indices[:, 0].numpy(), minlength=len(chunk)))
            cols.append(x.indices[:, 1].numpy().astype(np.int32))
            values.append(x.values.numpy())
        if n_features is None:
            raise ValueError("SparseRows.from_texts needs at least one text")
        return cls(np.concatenate(lengths), np.concatenate(cols), np.concatenate(values), n_features)

    def __len__(self) -> int:
        return int(self.cols.nrows())

    @property
    def nnz(self) -> int:
        return int(self.cols.flat_values.shape[0])

    def take(self, doc_ids: tf.Tensor) -> tf.SparseTensor:
        """Rows `doc_ids` as a [len(doc_ids), n_features] SparseTensor (graph-friendly)."""
        cols = tf.gather(self.cols, doc_ids)
        values = tf.gather(self.values, doc_ids)
        indices = tf.stack([cols.value_rowids(), tf.cast(cols.flat_values, tf.int64)], axis=1)
        shape = tf.stack([tf.size(doc_ids, out_type=tf.int64), tf.constant(self.n_features, tf.int64)])
        return tf.SparseTensor(indices, values.flat_values, shape)
