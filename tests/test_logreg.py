"""The `logreg` track: a small subclass of the shared linear base.

* its scores are scikit-learn's own one-vs-rest ``predict_proba`` on the same TF-IDF;
* it fits with joblib workers (read-only memmapped rows) and tunes through the fast path;
* its export explains exactly: attributions sum to the logit minus the bias.

The rest of its contract (export reload, session loader, decisions) is the shared
`tests/test_track_contract.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from baselines.logreg import LogisticRegressionTrack  # noqa: E402
from mlbench.data.synthetic import synthetic_corpus  # noqa: E402
from mlbench.labels import LabelSpace  # noqa: E402
from mlbench.tracks import TrainSettings, get_track_class  # noqa: E402


@pytest.fixture(scope="module")
def data():
    c = synthetic_corpus(300, seed=3, vocab_size=1500, n_labels=8, median_words=30)
    return c, LabelSpace.from_training_labels(c.train.labels)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_scores_are_scikit_learns_probabilities(data, n_jobs):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    c, labels = data
    track = LogisticRegressionTrack(TrainSettings(n_jobs=n_jobs, seed=0), C=4.0, class_weight="balanced")
    track.fit(c.train, c.val, labels)
    x = track.vectorizer.transform(c.train.texts)
    y = labels.encode(c.train.labels)
    assert (y.sum(0) > 0).all() and (y.sum(0) < len(y)).all()  # every label trainable here
    ref = OneVsRestClassifier(LogisticRegression(C=4.0, class_weight="balanced", solver="liblinear",
                                                 random_state=0)).fit(x, y)
    x_test = track.vectorizer.transform(c.test.texts)
    np.testing.assert_allclose(track.decision_function(c.test.texts), ref.decision_function(x_test),
                               rtol=0, atol=1e-10)
    # the suite's scores are float32: equal to predict_proba within float32 rounding (6e-8)
    np.testing.assert_allclose(track.predict_scores(c.test.texts), ref.predict_proba(x_test), rtol=0, atol=1e-7)


def test_registered_with_its_own_search_and_defaults():
    cls = get_track_class("logreg")
    assert cls is LogisticRegressionTrack and cls.name == "logreg" and not cls.stochastic
    assert set(cls.search_space) == {"C", "class_weight"}
    track = cls(TrainSettings(options={"C": 4.0}))
    assert track.C == 4.0 and track.ngram_range == (1, 1) and track.describe()["score"] == "sigmoid(1.0 * margin)"
    with pytest.raises(ValueError, match="C must be > 0"):
        cls(C=0)


def test_tuner_fast_path_fits_it(data):
    from mlbench.tuning import search

    c, labels = data
    track, result = search("logreg", TrainSettings(n_jobs=2, seed=0), c.train, c.val, labels, budget=3)
    assert result.method == "coordinate" and len(result.grid) == 3 and result.chosen in result.grid
    assert isinstance(track, LogisticRegressionTrack) and track.C == result.chosen["C"]


def test_explanations_add_up_to_the_logit(data):
    c, labels = data
    track = LogisticRegressionTrack(TrainSettings(n_jobs=1, seed=0))
    track.fit(c.train, c.val, labels)
    weights, bias = track.logit_weights()
    texts = c.test.texts[:4]
    logits = track.vectorizer.transform(texts) @ weights + bias
    np.testing.assert_allclose(track.decision_function(texts), logits, rtol=0, atol=1e-9)
    picked = [[int(np.argmax(row))] for row in logits]
    got = track.explainer(top_n=None).run(texts, picked)
    for i, ids in enumerate(picked):
        assert abs(float(got["logit"][i, 0]) - logits[i, ids[0]]) < 1e-4  # float32 graph
        assert abs(float(got["total"][i, 0]) - (logits[i, ids[0]] - bias[ids[0]])) < 1e-4
