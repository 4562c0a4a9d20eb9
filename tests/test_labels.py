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
