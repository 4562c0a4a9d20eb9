"""The fast TF-IDF MLP: sparse pieces equal their dense counterparts (fast, < ~60 s).

* the sparse vectorizer equals keras-io's dense tf_idf TextVectorization;
* `SparseDense` equals `Dense` (outputs and kernel gradient) for the same weights;
* `LazyAdam` equals Adam on dense gradients and touches only the gradient's rows;
* the exported SavedModel, reloaded in a fresh process on raw strings, gives the
  dense keras-io path's predictions for the same weights within 1e-5;
* a tiny fit lowers the loss; the synthetic corpus generator is deterministic.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from baselines.fused_adam_kernel import fused_row_adam_op  # noqa: E402
from baselines.lazy_adam import LazyAdam  # noqa: E402
from baselines.sparse_layers import SparseDense  # noqa: E402
from baselines.tfidf_vectorizer import SparseRows, SparseTfidf, adapt_tfidf, vectorize_once  # noqa: E402
from mlbench.data.synthetic import synthetic_corpus  # noqa: E402
from mlbench.labels import LabelSpace  # noqa: E402
from mlbench.tracks import TrainSettings  # noqa: E402

FUSED = [False, pytest.param(True, marks=pytest.mark.skipif(
    fused_row_adam_op() is None, reason="fused row update could not be built (no C++ compiler?)"))]


def random_texts(n: int, seed: int) -> list[str]:
    """Texts with case, punctuation, repeats and words unseen in training."""
    rng = np.random.default_rng(seed)
    words = ["Oil", "oil,", "price", "prices.", "wheat", "U.S.", "bank", "rates", "the", "of",
             "a", "grain", "corn", "Corn!", "said", "dlrs", "pct", "mln", "(trade)", "yen"]
    unseen = ["zebra", "quux", "Blorp"]
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 40))
        pool = words + (unseen if rng.random() < 0.3 else [])
        out.append(" ".join(rng.choice(pool, size=k)))
    return out


@pytest.fixture(scope="module")
def tiny_corpus():
    return synthetic_corpus(300, seed=3, vocab_size=2000, n_labels=12)


# -- vectorizer ---------------------------------------------------------------------------
def test_sparse_tfidf_equals_dense_keras_io_vectorizer():
    train, other = random_texts(200, seed=0), random_texts(60, seed=1) + ["", "   "]
    dense = adapt_tfidf(train)
    sparse = SparseTfidf.from_dense(dense)
    assert sparse.vocabulary_size() == dense.vocabulary_size()
    for texts in (train[:50], other):
        want = dense(tf.constant(texts)).numpy()
        got = tf.sparse.to_dense(sparse(tf.constant(texts))).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_sparse_rows_gather_matches_rows_of_the_split():
    texts = random_texts(50, seed=2)
    sparse = SparseTfidf.from_dense(adapt_tfidf(texts))
    whole = tf.sparse.to_dense(vectorize_once(sparse, texts, batch_size=16)).numpy()
    rows = SparseRows.from_texts(sparse, texts, batch_size=16)
    assert len(rows) == 50 and rows.n_features == whole.shape[1]
    ids = tf.constant([7, 0, 49, 7, 13], dtype=tf.int64)
    np.testing.assert_array_equal(tf.sparse.to_dense(rows.take(ids)).numpy(), whole[ids.numpy()])


# -- SparseDense ----------------------------------------------------------------------------
def _random_sparse(batch: int, n_features: int, density: float, seed: int) -> tf.SparseTensor:
    rng = np.random.default_rng(seed)
    x = (rng.random((batch, n_features)) < density) * rng.random((batch, n_features))
    x[3] = 0.0  # a document with no known feature
    return tf.sparse.from_dense(x.astype(np.float32))


@pytest.mark.parametrize("shuffle_entries", [False, True])
def test_sparse_dense_equals_dense_for_the_same_weights(shuffle_entries):
    x = _random_sparse(16, 300, 0.05, seed=0)
    if shuffle_entries:  # rows out of order must still land in the right rows
        perm = np.random.default_rng(1).permutation(x.indices.shape[0])
        x = tf.SparseTensor(tf.gather(x.indices, perm), tf.gather(x.values, perm), x.dense_shape)
    sparse, dense = SparseDense(32, activation="relu"), keras.layers.Dense(32, activation="relu")
    sparse.build((None, 300))
    dense.build((None, 300))
    dense.set_weights([w + 0.01 for w in sparse.get_weights()])
    sparse.set_weights(dense.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        out_s = sparse(x)
        out_d = dense(tf.sparse.to_dense(tf.sparse.reorder(x)))
        loss_s, loss_d = tf.reduce_sum(out_s**2), tf.reduce_sum(out_d**2)
    np.testing.assert_allclose(np.asarray(out_s), np.asarray(out_d), rtol=1e-5, atol=1e-5)
    grad_s = tape.gradient(loss_s, sparse.kernel)
    assert isinstance(grad_s, tf.IndexedSlices)  # only the batch's feature rows
    assert len(np.unique(grad_s.indices.numpy())) == grad_s.indices.shape[0]
    np.testing.assert_allclose(tf.convert_to_tensor(grad_s).numpy(),
                               np.asarray(tape.gradient(loss_d, dense.kernel)), rtol=1e-5, atol=1e-5)
    # dense input also works (same layer, same weights)
    np.testing.assert_allclose(np.asarray(sparse(tf.sparse.to_dense(tf.sparse.reorder(x)))),
                               np.asarray(out_d), rtol=1e-5, atol=1e-5)


# -- LazyAdam -------------------------------------------------------------------------------
def test_lazy_adam_equals_adam_on_dense_gradients():
    rng = np.random.default_rng(0)
    init = rng.normal(size=(20, 8)).astype(np.float32)
    a, b = keras.Variable(init), keras.Variable(init)
    lazy, adam = LazyAdam(1e-2), keras.optimizers.Adam(1e-2)
    for _ in range(5):
        g = tf.constant(rng.normal(size=(20, 8)).astype(np.float32))
        lazy.apply([g], [a])
        adam.apply([g], [b])
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("fused", FUSED)
def test_lazy_adam_updates_only_touched_rows(fused):
    rng = np.random.default_rng(1)
    init = rng.normal(size=(30, 8)).astype(np.float32)
    ids = np.array([3, 7, 3, 12], dtype=np.int64)  # a repeated row: its gradients add up
    values = rng.normal(size=(4, 8)).astype(np.float32)
    grad = tf.IndexedSlices(tf.constant(values), tf.constant(ids), tf.constant([30, 8], tf.int64))
    dense_grad = tf.convert_to_tensor(grad)

    a, b = keras.Variable(init), keras.Variable(init)
    lazy, adam = LazyAdam(1e-2, fused=fused), keras.optimizers.Adam(1e-2)
    lazy.apply([grad], [a])
    adam.apply([dense_grad], [b])
    # first step from zero moments: identical to Adam on the densified gradient
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)

    # later steps: rows outside the gradient stay put (Adam would keep moving them)
    touched = np.isin(np.arange(30), [1, 3])
    before = a.numpy().copy()
    for _ in range(3):
        step = tf.IndexedSlices(tf.constant(rng.normal(size=(2, 8)).astype(np.float32)),
                                tf.constant([1, 3], tf.int64), tf.constant([30, 8], tf.int64))
        lazy.apply([step], [a])
        adam.apply([tf.convert_to_tensor(step)], [b])
    after = a.numpy()
    np.testing.assert_array_equal(after[~touched], before[~touched])
    assert not np.allclose(after[touched], before[touched])
    assert not np.allclose(b.numpy()[7], after[7])  # dense Adam moved row 7 on its momentum


@pytest.mark.parametrize("repeats", [False, True])
def test_fused_and_tf_ops_lazy_adam_agree(repeats):
    """Distinct ids, and repeated ones in any order (a replicated model's all-reduced
    gradient: each replica's rows concatenated), which the kernel sums itself."""
    if fused_row_adam_op() is None:
        pytest.skip("fused row update could not be built")
    rng = np.random.default_rng(2)
    init = rng.normal(size=(50, 16)).astype(np.float32)
    a, b = keras.Variable(init), keras.Variable(init)
    fused, plain = LazyAdam(1e-3, fused=True), LazyAdam(1e-3, fused=False)
    for _ in range(4):
        ids = np.unique(rng.integers(0, 50, size=20)).astype(np.int64)
        if repeats:
            ids = np.concatenate([ids, rng.permutation(ids)[: len(ids) // 2], ids[:3]])
        g = tf.IndexedSlices(tf.constant(rng.normal(size=(len(ids), 16)).astype(np.float32)),
                             tf.constant(ids), tf.constant([50, 16], tf.int64))
        fused.apply([g], [a])
        plain.apply([g], [b])
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


# -- the track: fit, export round trip ------------------------------------------------------
def _fit_track(corpus, epochs: int, **options):
    from baselines.tfidf_mlp import TfidfMLPTrack

    labels = LabelSpace.from_training_labels(corpus.train.labels)
    track = TfidfMLPTrack(TrainSettings(epochs=epochs, verbose=0, options=options), patience=epochs + 1)
    history = track.fit(corpus.train, corpus.val, labels)
    return track, labels, history


def test_tiny_fit_lowers_the_loss(tiny_corpus):
    track, labels, history = _fit_track(tiny_corpus, epochs=4)
    assert history["loss"][-1] < history["loss"][0]
    scores = track.predict_scores(tiny_corpus.test.texts)
    assert scores.shape == (len(tiny_corpus.test), len(labels))
    assert np.all((scores >= 0) & (scores <= 1))
    assert track.describe()["sparse"] is True


def test_speed_options_train(tiny_corpus):
    track, _, history = _fit_track(tiny_corpus, epochs=1, steps_per_execution=3,
                                   mixed_precision="mixed_bfloat16")
    assert np.isfinite(history["loss"][0])
    assert track.describe()["mixed_precision"] == "mixed_bfloat16"


@pytest.mark.slow
def test_export_round_trip_in_a_fresh_process_matches_dense_path(tiny_corpus, tmp_path):
    from baselines.tfidf_mlp import build_classifier
    from mlbench.numeric import sigmoid

    track, labels, _ = _fit_track(tiny_corpus, epochs=1)
    export_dir = track.export(tmp_path / "mlp")
    texts = tiny_corpus.test.texts[:40] + ["", "words never seen in training qqqq"]

    # the faithful dense keras-io path with the same weights
    dense_model = build_classifier(track.dense_vectorizer.vocabulary_size(), len(labels), sparse=False)
    dense_model.set_weights(track.classifier.get_weights())
    want = sigmoid(dense_model(track.dense_vectorizer(tf.constant(texts))).numpy())

    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        sys.path.insert(0, {str(REPO)!r})
        from mlbench.serving.export import ExportedModel
        texts = json.load(open({str(tmp_path / 'texts.json')!r}, encoding="utf-8"))
        model = ExportedModel({str(export_dir)!r})
        np.save({str(tmp_path / 'scores.npy')!r}, model.predict(texts, batch_size=16))
        print(json.dumps(model.labels))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == labels.names
    got = np.load(tmp_path / "scores.npy")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


# -- synthetic corpora ------------------------------------------------------------------------
def test_synthetic_corpus_is_deterministic_and_long_tailed():
    a = synthetic_corpus(400, seed=7)
    b = synthetic_corpus(400, seed=7)
    c = synthetic_corpus(400, seed=8)
    assert a.train.texts == b.train.texts and a.test.labels == b.test.labels
    assert a.train.texts != c.train.texts
    assert (len(a.train), len(a.val), len(a.test)) == (320, 40, 40)
    counts = {}
    for labels in a.train.labels:
        assert 1 <= len(labels) <= 4
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    freq = sorted(counts.values(), reverse=True)
    assert freq[0] > 10 * freq[-1]  # a head and a tail
    words = [len(t.split()) for t in a.train.texts]
    assert 12 <= min(words) and 60 < float(np.median(words)) < 250


def test_drop_oov_leaves_out_only_the_unk_column():
    texts = ["the cat sat on the mat", "zebra quagga okapi the cat", "mat mat mat"]
    dense = adapt_tfidf(texts[:1], max_tokens=6)
    keep = SparseTfidf.from_dense(dense)
    drop = SparseTfidf.from_dense(dense, drop_oov=True)
    full = tf.sparse.to_dense(keep(tf.constant(texts))).numpy()
    cut = tf.sparse.to_dense(drop(tf.constant(texts))).numpy()
    assert full[:, 0].max() > 0 and not cut[:, 0].any()
    np.testing.assert_array_equal(cut[:, 1:], full[:, 1:])
    assert SparseTfidf.from_config(drop.get_config()).drop_oov


def test_drop_oov_is_rejected_on_the_faithful_dense_path():
    from baselines.tfidf_mlp import TfidfMLPTrack

    with pytest.raises(ValueError, match="drop_oov needs the sparse path"):
        TfidfMLPTrack(sparse=False, drop_oov=True)
