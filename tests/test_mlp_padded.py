"""The MLP's distributable input form: padded rows (ids + values) into `PaddedSparseDense`.

Under a `tf.distribute` strategy the MLP trains on padded rows instead of SparseTensor
batches (Keras cannot split those over replicas).  On one device, these check that the
form is the same model: the batches hold the cached rows, and the first layer's output,
the logits and the kernel's row gradient equal `SparseDense`'s on the same weights.
Training and exporting under ``mirrored`` run in fresh processes in tests/test_distribute.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from baselines.sparse_layers import padded_to_sparse, sparse_to_padded  # noqa: E402
from baselines.tfidf_mlp import build_classifier, row_batches  # noqa: E402
from baselines.tfidf_vectorizer import SparseRows, SparseTfidf, adapt_tfidf  # noqa: E402
from mlbench.data.synthetic import synthetic_corpus  # noqa: E402
from mlbench.labels import LabelSpace  # noqa: E402
from tolerances import SCORE_ATOL  # noqa: E402


@pytest.fixture(scope="module")
def data():
    """(vectorizer, rows of 40 texts — one empty, one all unseen words —, labels, targets)."""
    c = synthetic_corpus(300, seed=5, vocab_size=2000, n_labels=9)
    vec = SparseTfidf.from_dense(adapt_tfidf(c.train.texts, ngrams=2))
    texts = list(c.train.texts[:38]) + ["", "qqqq zzzz never seen"]
    labels = LabelSpace.from_training_labels(c.train.labels)
    y = labels.encode(list(c.train.labels[:38]) + [[], []]).astype(np.float32)
    return vec, SparseRows.from_texts(vec, texts), labels, y


def _dense(x: tf.SparseTensor) -> np.ndarray:
    return tf.sparse.to_dense(tf.sparse.reorder(x)).numpy()


def test_padded_batches_hold_the_cached_rows(data):
    vec, rows, _, y = data
    batches = list(row_batches(rows, y, 16, shuffle=False, seed=0, padded=True))
    assert [int(b[0][0].shape[0]) for b in batches] == [16, 16, 8]
    for k, ((ids, values), targets) in enumerate(batches):
        doc_ids = tf.range(16 * k, 16 * k + int(ids.shape[0]), dtype=tf.int64)
        want = rows.take(doc_ids)
        assert ids.dtype == tf.int32 and values.dtype == tf.float32
        # K is the batch's longest row, shorter rows padded with -1 (ids) and 0 (values)
        lengths = np.bincount(want.indices[:, 0].numpy(), minlength=int(ids.shape[0]))
        assert ids.shape[1] == lengths.max()
        assert np.all((ids.numpy() >= 0).sum(axis=1) == lengths)
        assert np.all(values.numpy()[ids.numpy() < 0] == 0)
        np.testing.assert_array_equal(_dense(padded_to_sparse(ids, values, vec.vocabulary_size())), _dense(want))
        again = sparse_to_padded(want)  # the per-batch (uncached) pipeline's conversion
        np.testing.assert_array_equal(again[0].numpy(), ids.numpy())
        np.testing.assert_array_equal(again[1].numpy(), values.numpy())
        np.testing.assert_array_equal(targets.numpy(), y[16 * k: 16 * k + int(ids.shape[0])])


def _pair(n_features: int, n_labels: int, seed: int = 0):
    """A SparseDense model and a padded-input model holding the same weights."""
    keras.utils.set_random_seed(seed)
    sparse = build_classifier(n_features, n_labels, hidden=(16, 8), sparse=True)
    padded = build_classifier(n_features, n_labels, hidden=(16, 8), sparse=True, padded=True)
    assert [w.shape for w in padded.weights] == [w.shape for w in sparse.weights]
    padded.set_weights(sparse.get_weights())
    return sparse, padded


def test_padded_first_layer_logits_and_gradient_equal_sparse_dense(data):
    vec, rows, labels, y = data
    sparse, padded = _pair(vec.vocabulary_size(), len(labels))
    doc_ids = tf.range(len(rows), dtype=tf.int64)
    x = rows.take(doc_ids)
    ids, values = sparse_to_padded(x)
    first = [keras.Model(m.inputs, m.get_layer("dense_0").output) for m in (sparse, padded)]
    np.testing.assert_allclose(first[1]([ids, values]).numpy(), first[0](x).numpy(), rtol=0, atol=SCORE_ATOL)
    empty = first[1]([ids, values]).numpy()[-2]  # the empty text: a row of padding only
    np.testing.assert_array_equal(empty, np.maximum(sparse.get_layer("dense_0").bias.numpy(), 0))

    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
    grads, logits = [], []
    for model, inputs in ((sparse, x), (padded, [ids, values])):
        with tf.GradientTape() as tape:
            out = model(inputs)
            loss = loss_fn(y, out)
        logits.append(out.numpy())
        grads.append(tape.gradient(loss, model.trainable_weights))
    np.testing.assert_allclose(logits[1], logits[0], rtol=0, atol=SCORE_ATOL)
    assert isinstance(grads[1][0], tf.IndexedSlices)  # row updates for LazyAdam, not a V × units tensor
    np.testing.assert_array_equal(np.sort(grads[1][0].indices.numpy()), np.unique(x.indices[:, 1].numpy()))
    for a, b in zip(grads[0], grads[1]):
        np.testing.assert_allclose(tf.convert_to_tensor(b).numpy(), tf.convert_to_tensor(a).numpy(),
                                   rtol=0, atol=SCORE_ATOL)


def test_a_batch_of_empty_rows_gives_the_bias():
    _, padded = _pair(50, 3)
    ids, values = tf.zeros([4, 0], tf.int32), tf.zeros([4, 0], tf.float32)
    layer = padded.get_layer("dense_0")
    out = layer([ids, values]).numpy()
    np.testing.assert_array_equal(out, np.tile(np.maximum(layer.bias.numpy(), 0), (4, 1)))


def test_padded_form_needs_the_sparse_path(data):
    _, rows, _, y = data
    with pytest.raises(ValueError, match="padded=True .* needs sparse=True"):
        build_classifier(50, 3, sparse=False, padded=True)
    with pytest.raises(ValueError, match="padded batches need SparseRows, got"):
        row_batches(tf.zeros([4, 50]), y[:4], 2, shuffle=False, seed=0, padded=True)
    _, padded = _pair(50, 3)
    with pytest.raises(ValueError, match=r"expects \[ids, values\]"):
        padded.get_layer("dense_0").call(tf.zeros([2, 3], tf.int32))
