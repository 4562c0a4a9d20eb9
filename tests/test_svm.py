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


def test_non_convergence_is_one_notice_not_a_warning_per_label(monkeypatch):
    """A solver that stops early is reported once, as a fact about the run."""
    import warnings

    import baselines.svm as svm_module
    from mlbench.data.synthetic import synthetic_corpus
    from mlbench.labels import LabelSpace
    from mlbench.tracks import TrainSettings

    class OneIteration(svm_module._QuietLinearSVC):
        def __init__(self, **kw):
            super().__init__(max_iter=1, **kw)

    monkeypatch.setattr(svm_module, "_QuietLinearSVC", OneIteration)
    corpus = synthetic_corpus(300, seed=0, n_labels=6, vocab_size=1500, median_words=30)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    track = svm_module.LinearSVMTrack(TrainSettings(n_jobs=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        track.fit(corpus.train, corpus.val, labels)
    assert not [w for w in caught if "converge" in str(w.message).lower()]
    assert len(track.notices) == 1 and "did not converge within 1 iterations" in track.notices[0]
