"""Declared search spaces and a validation search that never reads test.

Why: a baseline judged at its library defaults is a straw man (the `svm` track's
C=1 uni+bigram point is far from its best on Reuters).  Each Track declares
``search_space`` (option → candidates, applied through ``settings.options``) and
``search_budget`` (most fits) beside its defaults; `search` fits each point on
TRAIN and scores it on VALIDATION.  The test split is not a parameter, so it
cannot leak into the choice.

A point's score is its best cross-fitted validation F1 for the objective's metric
over the decision rules (`mlbench.evaluation.scoring.cross_fitted_predictions`):
the same number rules and models are chosen on later, so the search optimises
what the verdict reads.  When the validation split is smaller than
`MIN_VAL_DOCS` documents its F1 is too noisy to rank points, and points are
scored on `TRAIN_FOLDS`-fold out-of-fold predictions over train instead.

Search methods: ``grid`` (every point) when the grid fits the budget, else
``coordinate``: from each option's first candidate, sweep one option at a time in
declared order keeping its best value, repeat until a sweep changes nothing or the
budget is spent (deterministic; the best point fitted is chosen, ties: the earlier).
Tracks with `vectorizer_keys` and `fit_features` (the linear SVM) get a fast path:
each vectorizer configuration is fitted once and its matrices reused across C and
class weights.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mlbench.data.corpus import Split
from mlbench.evaluation.metrics import evaluate
from mlbench.evaluation.scoring import cross_fitted_predictions
from mlbench.labels import LabelSpace
from mlbench.progress import eta_line
from mlbench.record import DEFAULT_OBJECTIVE, RULES, objective_key, plain_json
from mlbench.tracks import SharedFeatures, Track, TrainSettings, get_track_class

__all__ = ["MIN_VAL_DOCS", "TRAIN_FOLDS", "SearchResult", "grid_points", "point_score", "search"]

#: validation splits smaller than this are scored by k-fold on train instead
MIN_VAL_DOCS = 200
TRAIN_FOLDS = 5
_RULE_SEED = 0  # the folds of the cross-fitted rules (as in `scoring.rule_results`)


@dataclass
class SearchResult:
    """What the search tried and chose; `to_json()` goes into results.json.

    ``grid[i]`` is the i-th point fitted, ``scores[i]`` its validation score (best
    cross-fitted `metric` over the rules) and ``rules[i]`` the rule reaching it.
    """

    track: str
    objective: str
    metric: str
    method: str  # "grid" | "coordinate" | "none" (empty space)
    evaluation: str  # how points were scored, e.g. "validation (1000 docs)"
    space: dict[str, list] = field(default_factory=dict)
    budget: int | None = None
    full_grid: int = 1
    grid: list[dict[str, Any]] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    rules: list[str | None] = field(default_factory=list)
    chosen: dict[str, Any] = field(default_factory=dict)
    score: float | None = None
    chosen_rule: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return plain_json(dataclasses.asdict(self))


def grid_points(space: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of `space`, the last option varying fastest."""
    keys = list(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]


def point_score(y_eval: np.ndarray, s_eval: np.ndarray, metric: str) -> tuple[float, str]:
    """(best cross-fitted `metric` over the decision rules, the rule reaching it).

    `y_eval` [n, L] 0/1 and `s_eval` [n, L] scores of held-out documents; ties keep
    the simpler rule (`RULES` order).
    """
    oof = cross_fitted_predictions(y_eval, s_eval, seed=_RULE_SEED)
    best, best_rule = -np.inf, RULES[0]
    for rule in [r for r in RULES if r in oof]:
        value = evaluate(y_eval, oof[rule].astype(np.float32), threshold=0.5, ks=())[metric] or 0.0
        if value > best:
            best, best_rule = float(value), rule
    return best, best_rule


def _with_options(settings: TrainSettings, point: dict[str, Any]) -> TrainSettings:
    """`settings` with the point's options; each point checkpoints in a folder of its own, so
    a resumed search never restores one point's epoch checkpoint into another."""
    from mlbench.naming import slug

    workdir = None if settings.workdir is None else settings.workdir / slug(
        "_".join(f"{k}-{v}" for k, v in sorted(point.items())))
    return dataclasses.replace(settings, options={**(settings.options or {}), **point}, workdir=workdir)


def _key(point: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in point.items()))


def _start(settings: TrainSettings, space: dict[str, list]) -> dict[str, Any]:
    """The coordinate search's first point: the option the run gives when it is a
    candidate, else the first candidate (so a space lists its cheap/default value first)."""
    options = settings.options or {}
    return {k: options[k] if k in options and options[k] in cands else cands[0]
            for k, cands in space.items()}


# -- how one point is fitted and scored -------------------------------------------------


class _Scorer:
    """Fits points and returns held-out (y, scores); keeps the fitted track when reusable."""

    def __init__(self, cls: type, settings: TrainSettings, train: Split, val: Split,
                 labels: LabelSpace, folds: list[np.ndarray] | None):
        self.cls, self.settings, self.train, self.val, self.labels = cls, settings, train, val, labels
        self.folds = folds  # None: holdout on val; else k-fold row ids of train
        self.y_val = labels.encode(val.labels) if folds is None else None
        self._y_train: np.ndarray | None = None
        self._features: dict[tuple, Any] = {}
        self.fast = issubclass(cls, SharedFeatures)

    @property
    def y_train(self) -> np.ndarray:
        """Train targets [n_train, L], encoded once (only the fast path and k-fold need them)."""
        if self._y_train is None:
            self._y_train = self.labels.encode(self.train.labels)
        return self._y_train

    def __call__(self, point: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, Track | None]:
        settings = _with_options(self.settings, point)
        if self.folds is None:
            track = self._fit(settings, None)
            return self.y_val, self._scores(track, None, self.val.texts), track
        s = np.zeros(self.y_train.shape, dtype=np.float64)
        for i, held in enumerate(self.folds):
            track = self._fit(settings, i)
            s[held] = self._scores(track, i, [self.train.texts[j] for j in held])
        return self.y_train, s, None

    def _rows(self, fold: int | None) -> np.ndarray:
        if fold is None:
            return np.arange(len(self.train))
        return np.setdiff1d(np.arange(len(self.train)), self.folds[fold])

    def _fit(self, settings: TrainSettings, fold: int | None) -> Track:
        track = self.cls(settings)
        rows = self._rows(fold)
        if self.fast:
            vec, x, _ = self._vectorized(track, settings, fold)
            track.history = track.fit_features(vec, x, self.y_train[rows], self.labels)
        else:
            train = self.train if fold is None else self.train.subset(rows)
            track.history = track.fit(train, self.val, self.labels)
        return track

    def _vectorized(self, track: Track, settings: TrainSettings, fold: int | None):
        """(vectorizer, train-rows matrix, held-out matrix), built once per configuration."""
        key = (tuple(repr(getattr(track, k)) for k in self.cls.vectorizer_keys), fold)
        if key not in self._features:
            rows = self._rows(fold)
            held_texts = self.val.texts if fold is None else [self.train.texts[j] for j in self.folds[fold]]
            vec = track.build_vectorizer()
            x = vec.fit_transform([self.train.texts[j] for j in rows])
            self._features[key] = (vec, x, vec.transform(held_texts))
        return self._features[key]

    def _scores(self, track: Track, fold: int | None, texts: list[str]) -> np.ndarray:
        if self.fast:
            _, _, x_held = self._vectorized(track, track.settings, fold)
            return track.scores_from_margins(track.decision_function_features(x_held))
        return track.predict_scores(texts)


# -- the search -----------------------------------------------------------------------


def search(
    track_name: str,
    settings: TrainSettings,
    train: Split,
    val: Split,
    labels: LabelSpace,
    *,
    objective: str = DEFAULT_OBJECTIVE,
    space: dict[str, list] | None = None,
    budget: int | None = -1,
    progress: Callable[[str], None] | None = None,
) -> tuple[Track, SearchResult]:
    """Search the track's declared space on validation; (fitted best track, result).

    Args:
        track_name: a registry name (`mlbench.tracks`).
        settings: the run's settings; each point is merged into ``settings.options``.
        train, val: the splits points are fitted on and scored on (test is not taken).
        objective: a key of `mlbench.record.OBJECTIVES` ("micro" or "macro").
        space / budget: override the track's ``search_space`` / ``search_budget``
            (budget None = the whole grid; -1 = the track's declared budget).
    The returned track is fitted on train with the chosen point (never refitted in
    holdout mode: the best point's fit is kept); its ``history`` is set.
    """
    metric = objective_key(objective)
    cls = get_track_class(track_name)
    space = dict(cls.search_space if space is None else space)
    budget = cls.search_budget if budget == -1 else budget
    say = progress or (lambda _msg: None)
    start_time = time.perf_counter()
    for k, cands in space.items():
        if not isinstance(cands, (list, tuple)) or not cands:
            raise ValueError(f"{track_name}: search_space[{k!r}] must be a non-empty list, got {cands!r}")

    folds = None
    if len(val) < MIN_VAL_DOCS:
        order = np.random.default_rng(settings.seed).permutation(len(train))
        folds = np.array_split(order, min(TRAIN_FOLDS, max(len(train), 1)))
        evaluation = f"{len(folds)}-fold on train (validation has {len(val)} < {MIN_VAL_DOCS} docs)"
    else:
        evaluation = f"validation ({len(val)} docs)"

    full = len(grid_points(space)) if space else 1
    result = SearchResult(track=track_name, objective=objective, metric=metric, method="none",
                          evaluation=evaluation, space=space, budget=budget, full_grid=full)
    if not space:  # nothing to tune: the defaults, fitted once
        track = cls(settings)
        track.history = track.fit(train, val, labels)
        result.chosen, result.seconds = {}, time.perf_counter() - start_time
        return track, result

    scorer = _Scorer(cls, settings, train, val, labels, folds)
    best: dict[str, Any] = {"track": None, "score": -np.inf}

    def score(point: dict[str, Any]) -> tuple[float, str]:
        y_eval, s_eval, track = scorer(point)
        value, rule = point_score(y_eval, s_eval, metric)
        if value > best["score"]:  # as `explore`: ties keep the earlier point (and its fit)
            best.update(track=track, score=value)
        return value, rule

    explore(result, settings, score, track_name, say, start_time)
    track = best["track"]
    if track is None:  # k-fold scoring: fit the chosen point once on all of train
        track = cls(_with_options(settings, result.chosen))
        track.history = track.fit(train, val, labels)
    result.seconds = time.perf_counter() - start_time
    return track, result


def explore(result: SearchResult, settings: TrainSettings,
            score: Callable[[dict[str, Any]], tuple[float, str]], track_name: str,
            say: Callable[[str], None], start_time: float) -> None:
    """Grid or coordinate search over ``result.space`` within ``result.budget``; `score`
    gives a point's (held-out score, rule).  Fills ``result.grid/scores/rules`` in the
    order points were fitted and ``result.chosen/score/chosen_rule`` (ties: the earlier
    point).  Shared by the holdout search and the cross-fitted one (`mlbench.protocol`)."""
    space, budget, full = result.space, result.budget, result.full_grid
    seen: dict[tuple, float] = {}
    best: dict[str, Any] = {"score": -np.inf, "point": None, "rule": None}

    def evaluate_point(point: dict[str, Any]) -> float:
        key = _key(point)
        if key in seen:
            return seen[key]
        t0 = time.perf_counter()
        value, rule = score(point)
        seen[key] = value
        result.grid.append(dict(point))
        result.scores.append(value)
        result.rules.append(rule)
        if value > best["score"]:  # ties keep the earlier point
            best.update(score=value, point=dict(point), rule=rule)
        total = full if budget is None else min(full, budget)
        say(f"{eta_line(track_name + ' search', len(seen), total, time.perf_counter() - start_time)}: "
            f"{point} → {result.metric} {value:.4f} ({rule}, {time.perf_counter() - t0:.1f} s)")
        return value

    def left() -> bool:
        return budget is None or len(seen) < budget

    if budget is None or full <= budget:
        result.method = "grid"
        for point in grid_points(space):
            evaluate_point(point)
    else:
        result.method = "coordinate"
        current = _start(settings, space)
        current_score = evaluate_point(current)
        changed = True
        while changed and left():
            changed = False
            for k, cands in space.items():
                for value in cands:
                    candidate = {**current, k: value}
                    if _key(candidate) not in seen and not left():
                        continue
                    point_value = evaluate_point(candidate)
                    if point_value > current_score:
                        current, current_score, changed = candidate, point_value, True
    result.chosen, result.score, result.chosen_rule = best["point"], best["score"], best["rule"]
