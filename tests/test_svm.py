"""The one-vs-rest LinearSVC track: scores, untrainable labels, balanced variant."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.svm import BalancedLinearSVMTrack, LinearSVMTrack
from mlbench.data.corpus import Split
from mlbench.labels import LabelSpace


def toy_split(n: int = 60, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        ls = tuple(sorted({str(l) for l in rng.choice(["cat", "dog", "fish"], size=rng.integers(1, 3))}))
        texts.append(" ".join(f"{l}word" for l in ls) + " filler text here")
        labels.append(ls)
    return Split(texts, labels)


def test_scores_are_sigmoid_of_margins_and_learn_the_keywords():
    train, test = toy_split(), toy_split(20, seed=1)
    labels = LabelSpace(["cat", "dog", "fish", "never"])  # "never" has no training positives
    track = LinearSVMTrack()
    assert track.fit(train, train, labels) == {}
    margins = track.decision_function(test.texts)
    scores = track.predict_scores(test.texts)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-margins)), rtol=1e-6)
    y = labels.encode(test.labels)
    np.testing.assert_array_equal((scores >= 0.5).astype(np.float32)[:, :3], y[:, :3])
    assert (scores[:, 3] < 0.5).all()


def test_balanced_variant_and_parameter_validation():
    assert BalancedLinearSVMTrack().class_weight == "balanced"
    with pytest.raises(ValueError, match="C must be > 0"):
        LinearSVMTrack(C=0)
    with pytest.raises(ValueError, match="class_weight"):
        LinearSVMTrack(class_weight="auto")
