"""LabelSpace: the adapted multi-hot StringLookup shared by every track."""

from __future__ import annotations

import numpy as np

from mlbench.labels import LabelSpace


def test_from_training_labels_orders_by_frequency_and_counts():
    train = [("b",), ("a", "b"), ("c", "b"), ("a",)]
    space = LabelSpace.from_training_labels(train)
    assert space.names[0] == "b" and set(space.names) == {"a", "b", "c"}
    counts = dict(zip(space.names, space.train_counts))
    assert counts == {"a": 2, "b": 3, "c": 1}


def test_encode_matches_a_python_reference_and_drops_unknown_labels():
    space = LabelSpace(["x", "y", "z"])
    y = space.encode([("z", "x"), (), ("y", "unseen")])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    assert space.last_dropped == 1


def test_decode_top_k_and_json_round_trip(tmp_path):
    space = LabelSpace(["x", "y", "z"], train_counts=[5, 3, 1])
    scores = np.array([[0.2, 0.9, 0.6]])
    assert space.decode(scores[0]) == ["y", "z"]
    assert space.decode(scores[0], threshold=np.array([0.1, 0.95, 0.5])) == ["x", "z"]
    assert [l for l, _ in space.top_k(scores, 2)[0]] == ["y", "z"]
    space.save(tmp_path / "labels.json")
    again = LabelSpace.load(tmp_path / "labels.json")
    assert again.names == space.names and again.train_counts.tolist() == [5, 3, 1]


def _keras_reference(train, encode):
    """What the Keras multi-hot StringLookup adapted on `train` gives (the old implementation)."""
    import keras
    import tensorflow as tf

    lookup = keras.layers.StringLookup(output_mode="multi_hot", num_oov_indices=0)
    lookup.adapt(tf.ragged.constant([list(ls) for ls in train], dtype=tf.string))
    names = [str(n) for n in lookup.get_vocabulary()]
    known = set(names)
    kept = [[l for l in ls if l in known] for ls in encode]
    return names, np.asarray(lookup(tf.ragged.constant(kept, dtype=tf.string, ragged_rank=1)), np.float32)


def test_dict_path_gives_the_keras_string_lookup_names_and_rows():
    """Ties in frequency (broken by bytes), unicode, repeats in a set, empty sets, unknowns."""
    rng = np.random.default_rng(0)
    pool = ["a", "b", "c", "ä", "Zeta", "é-x", "earn", "acq", "b2", "日本"]
    train = [tuple(rng.choice(pool, size=rng.integers(0, 4))) for _ in range(300)] + [("a", "a")]
    other = [tuple(rng.choice(pool + ["unseen"], size=rng.integers(0, 4))) for _ in range(50)]
    space = LabelSpace.from_training_labels(train)
    names, y_ref = _keras_reference(train, other)
    assert space.names == names
    np.testing.assert_array_equal(space.encode(other), y_ref)
    np.testing.assert_array_equal(space.encode_sparse(other).toarray(), y_ref)
    _, y_train = _keras_reference(train, train)
    np.testing.assert_array_equal(space.train_counts, y_train.sum(axis=0).astype(np.int64))
    assert space.last_dropped == sum(l == "unseen" for ls in other for l in ls)


def test_encode_takes_generators_and_empty_input():
    space = LabelSpace(["x", "y"])
    np.testing.assert_array_equal(space.encode(ls for ls in [("y",), ("x", "y")]), [[0, 1], [1, 1]])
    assert space.encode([]).shape == (0, 2) and space.encode_sparse([]).shape == (0, 2)
