"""The validation search: declared spaces, never reads test, fast SVM path, budgets."""

from __future__ import annotations

import dataclasses
import inspect
import json
import warnings
from typing import ClassVar, Sequence

import numpy as np
import pytest

from baselines.svm import BalancedLinearSVMTrack, LinearSVMTrack
from mlbench.data.corpus import Corpus, Split
from mlbench.labels import LabelSpace
from mlbench.tracks import _REGISTRY, Track, TrainSettings, get_track_class
from mlbench.tuning import MIN_VAL_DOCS, grid_points, point_score, search

LABELS = ("grain", "oil", "gold", "ship", "rare")


def make_split(n: int, seed: int) -> Split:
    """Keyword documents: each label has its own words, blurred by shared noise words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        p = np.array([0.4, 0.3, 0.2, 0.15, 0.03])
        chosen = [l for l, q in zip(LABELS, p) if rng.random() < q] or [LABELS[int(rng.integers(0, 4))]]
        words = []
        for l in chosen:
            words += [f"{l}{int(rng.integers(0, 4))}" for _ in range(int(rng.integers(1, 3)))]
        words += [f"{LABELS[int(rng.integers(0, 5))]}{int(rng.integers(0, 4))}"]  # a misleading word
        words += [f"w{int(rng.integers(0, 40))}" for _ in range(8)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(tuple(sorted(chosen)))
    return Split(texts, labels)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus("toy", make_split(400, 0), make_split(240, 1), make_split(200, 2))


@pytest.fixture(scope="module")
def labels(corpus: Corpus) -> LabelSpace:
    return LabelSpace.from_training_labels(corpus.train.labels)


SMALL = {"C": [1.0, 0.05], "class_weight": [None, "balanced"], "ngram_range": [(1, 1), (1, 2)]}


def _search(corpus, labels, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return search("svm", TrainSettings(seed=0), corpus.train, corpus.val, labels, **kw)


def test_search_never_receives_or_reads_test(corpus: Corpus, labels: LabelSpace) -> None:
    params = inspect.signature(search).parameters
    assert not {"test", "corpus"} & set(params)
    _, first = _search(corpus, labels, space=SMALL, budget=None)
    rng = np.random.default_rng(9)
    shuffled = Split(corpus.test.texts, [corpus.test.labels[i] for i in rng.permutation(len(corpus.test))])
    other = dataclasses.replace(corpus, test=shuffled)
    _, second = _search(other, labels, space=SMALL, budget=None)
    assert second.chosen == first.chosen and second.scores == first.scores
    assert first.method == "grid" and len(first.grid) == len(grid_points(SMALL)) == 8
    assert first.evaluation.startswith("validation")


def test_fast_path_equals_an_ordinary_fit_and_keeps_the_fitted_track(corpus, labels) -> None:
    track, result = _search(corpus, labels, space=SMALL, budget=None)
    i = result.grid.index(result.chosen)
    assert result.score == result.scores[i] == max(result.scores)
    ordinary = LinearSVMTrack(TrainSettings(seed=0, options=dict(result.chosen)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ordinary.fit(corpus.train, corpus.val, labels)
    s_val = ordinary.predict_scores(corpus.val.texts)
    score, rule = point_score(labels.encode(corpus.val.labels), s_val, "f1_micro")
    assert score == result.score and rule == result.chosen_rule
    np.testing.assert_allclose(track.predict_scores(corpus.test.texts),
                               ordinary.predict_scores(corpus.test.texts), rtol=0, atol=1e-12)
    assert track.C == result.chosen["C"] and track.settings.options["C"] == result.chosen["C"]
    assert track.history == {}


def test_each_vectorizer_is_built_once(corpus, labels, monkeypatch) -> None:
    calls = []
    original = LinearSVMTrack.build_vectorizer

    def counting(self):
        calls.append(self.ngram_range)
        return original(self)

    monkeypatch.setattr(LinearSVMTrack, "build_vectorizer", counting)
    _search(corpus, labels, space=SMALL, budget=None)
    assert sorted(calls) == [(1, 1), (1, 2)]  # 8 points, 2 vectorizer configurations


def test_coordinate_search_respects_the_budget(corpus, labels) -> None:
    _, result = _search(corpus, labels, space=SMALL, budget=3)
    assert result.method == "coordinate" and len(result.grid) == 3 and result.full_grid == 8
    assert result.grid[0] == {"C": 1.0, "class_weight": None, "ngram_range": (1, 1)}  # first candidates
    assert result.chosen in result.grid and result.score == max(result.scores)
    # the declared SVM space holds svm_balanced as its class_weight="balanced" corner
    assert "balanced" in LinearSVMTrack.search_space["class_weight"]
    assert BalancedLinearSVMTrack.search_space["class_weight"] == ["balanced"]
    assert len(LinearSVMTrack.search_space["C"]) >= 3 and LinearSVMTrack.search_budget is not None
    assert get_track_class("encoder").search_space == {}  # CPU budget: nothing tuned


def test_macro_objective_and_json(corpus, labels) -> None:
    track, result = search("svm_balanced", TrainSettings(seed=0), corpus.train, corpus.val, labels,
                           objective="macro", space={"C": [1.0, 0.1]}, budget=None)
    assert result.metric == "f1_macro" and result.objective == "macro"
    assert isinstance(track, BalancedLinearSVMTrack) and track.class_weight == "balanced"
    data = json.loads(json.dumps(result.to_json()))
    assert data["chosen"] == result.chosen and data["space"] == {"C": [1.0, 0.1]}
    assert set(data) >= {"grid", "scores", "chosen", "score", "seconds", "objective", "metric", "method"}
    with pytest.raises(Exception, match="select"):
        search("svm", TrainSettings(), corpus.train, corpus.val, labels, objective="nope")


def test_tiny_validation_is_replaced_by_kfold_on_train(corpus, labels) -> None:
    tiny = corpus.val.subset(range(MIN_VAL_DOCS // 4))
    space = {"C": [1.0, 0.05]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        track, a = search("svm", TrainSettings(seed=0), corpus.train, tiny, labels, space=space, budget=None)
        rng = np.random.default_rng(3)
        scrambled = Split(tiny.texts, [tiny.labels[i] for i in rng.permutation(len(tiny))])
        _, b = search("svm", TrainSettings(seed=0), corpus.train, scrambled, labels, space=space, budget=None)
    assert "fold on train" in a.evaluation
    assert a.scores == b.scores  # validation labels are not what points are scored on
    assert track.predict_scores(["grain0 oil1"]).shape == (1, len(labels))


def test_empty_space_fits_the_defaults_once(corpus, labels) -> None:
    track, result = _search(corpus, labels, space={})
    assert result.method == "none" and result.chosen == {} and result.grid == []
    assert track.C == LinearSVMTrack.params["C"].default
    assert track.predict_scores(corpus.val.texts[:2]).shape == (2, len(labels))


# -- the generic path (any Track, fitted through `fit`) ------------------------------------


class ToyTrack(Track):
    """Keyword scores mixed with noise by the `blur` option (less blur ranks better); counts fits."""

    name = "toy"
    search_space: ClassVar[dict[str, list]] = {"blur": [0.9, 0.0, 0.5]}
    fits: ClassVar[int] = 0

    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict[str, list[float]]:
        type(self).fits += 1
        self.labels, self.blur = labels, float(self.settings.options["blur"])
        return {"loss": [1.0]}

    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        hit = np.array([[any(w.startswith(l) for w in t.split()) for l in self.labels.names] for t in texts])
        noise = np.random.default_rng(len(texts)).random(hit.shape)
        return (1 - self.blur) * (0.2 + 0.6 * hit) + self.blur * noise


def test_generic_tracks_fit_once_per_point_and_are_not_refitted(corpus, labels, monkeypatch) -> None:
    monkeypatch.setitem(_REGISTRY, "toy", f"{__name__}:ToyTrack")
    ToyTrack.fits = 0
    track, result = search("toy", TrainSettings(), corpus.train, corpus.val, labels)
    assert result.method == "grid" and ToyTrack.fits == 3  # the best point's fit is returned
    assert result.chosen == {"blur": 0.0} and track.blur == 0.0 and track.history == {"loss": [1.0]}
