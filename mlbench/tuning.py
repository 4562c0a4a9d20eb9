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
from typing import Any, Callable

import numpy as np

from mlbench.data.corpus import Split
from mlbench.evaluation.scoring import cross_fitted_score
from mlbench.labels import LabelSpace
from mlbench.progress import eta_line
from mlbench.record import DEFAULT_OBJECTIVE, SearchResult, objective_key
from mlbench.tracks import SharedFeatures, Track, TrainSettings, get_track_class

__all__ = ["MIN_VAL_DOCS", "TRAIN_FOLDS", "SearchResult", "grid_points", "point_score", "search"]

#: validation splits smaller than this are scored by k-fold on train instead
MIN_VAL_DOCS = 200
TRAIN_FOLDS = 5
_RULE_SEED = 0  # the folds of the cross-fitted rules (as in `scoring.rule_results`)


def grid_points(space: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of `space`, the last option varying fastest."""
    keys = list(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]


def point_score(y_eval: np.ndarray, s_eval: np.ndarray, metric: str) -> tuple[float, str]:
    """(best cross-fitted `metric` over the decision rules, the rule reaching it).

    `y_eval` [n, L] 0/1 and `s_eval` [n, L] scores of held-out documents; ties keep
    the simpler rule (`RULES` order); `mlbench.evaluation.scoring.cross_fitted_score`.
    """
    return cross_fitted_score(y_eval, s_eval, metric, seed=_RULE_SEED)


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
        self._targets: dict[int | None, np.ndarray] = {}  # fold → its training rows' targets
        self._prefetched: dict[tuple, tuple[Track | None, np.ndarray]] = {}  # (point, fold) → `_unit`
        self.fast = issubclass(cls, SharedFeatures)

    @property
    def y_train(self) -> np.ndarray:
        """Train targets [n_train, L], encoded once (only the fast path and k-fold need them)."""
        if self._y_train is None:
            self._y_train = self.labels.encode(self.train.labels)
        return self._y_train

    def __call__(self, point: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, Track | None]:
        if self.folds is None:
            track, scores = self._unit(point, None)
            return self.y_val, scores, track
        s = np.zeros(self.y_train.shape, dtype=np.float64)
        for i, held in enumerate(self.folds):
            s[held] = self._unit(point, i)[1]
        return self.y_train, s, None

    def _unit(self, point: dict[str, Any], fold: int | None) -> tuple[Track | None, np.ndarray]:
        """(the track fitted on train under `point`, or None for a fold fit; its held-out
        scores): prefetched on the cluster, else fitted here."""
        if (_key(point), fold) in self._prefetched:
            return self._prefetched.pop((_key(point), fold))
        return _point_task(*self._task_args(point, fold))

    def prefetch(self, points: list[dict[str, Any]]) -> None:
        """Under ``--dask``: fit `points` (each of their folds under k-fold scoring) as
        tasks on the cluster, all at once, with the same `_point_task` `_unit` runs here;
        nothing without a cluster or for a track that is not a `cluster_fit` one."""
        from mlbench.cluster import active_client, map_tasks

        if active_client() is None or not (self.fast and self.cls.cluster_fit):
            return
        units = [(p, f) for p in points for f in ([None] if self.folds is None else range(len(self.folds)))
                 if (_key(p), f) not in self._prefetched]
        if len(units) < 2:
            return
        results = map_tasks(_point_task, [self._task_args(p, f) for p, f in units])
        for (p, f), result in zip(units, results):
            self._prefetched[_key(p), f] = result

    def _rows(self, fold: int | None) -> np.ndarray:
        if fold is None:
            return np.arange(len(self.train))
        return np.setdiff1d(np.arange(len(self.train)), self.folds[fold])

    def _task_args(self, point: dict[str, Any], fold: int | None) -> tuple:
        """`_point_task`'s arguments: the shared vectorizer's matrices on the fast path,
        else the splits and the held-out texts."""
        settings = _with_options(self.settings, point)
        if self.fast:
            features, x_held = self._vectorized(self.cls(settings), fold)
            return self.cls, settings, self.labels, fold is None, features, None, x_held
        train = self.train if fold is None else self.train.subset(self._rows(fold))
        held = self.val.texts if fold is None else [self.train.texts[j] for j in self.folds[fold]]
        return self.cls, settings, self.labels, fold is None, None, (train, self.val), held

    def _vectorized(self, track: Track, fold: int | None):
        """((vectorizer, train-rows matrix, their targets), held-out matrix), built once per
        configuration (the same objects each time: `mlbench.cluster` ships them once)."""
        key = (tuple(repr(getattr(track, k)) for k in self.cls.vectorizer_keys), fold)
        if key not in self._features:
            rows = self._rows(fold)
            held_texts = self.val.texts if fold is None else [self.train.texts[j] for j in self.folds[fold]]
            vec = track.build_vectorizer()
            x = vec.fit_transform([self.train.texts[j] for j in rows])
            if fold not in self._targets:
                self._targets[fold] = self.y_train[rows]
            self._features[key] = ((vec, x, self._targets[fold]), vec.transform(held_texts))
        return self._features[key]


def _point_task(cls: type, settings: TrainSettings, labels: LabelSpace, keep: bool,
                features: tuple | None, splits: tuple[Split, Split] | None, held: Any
                ) -> tuple[Track | None, np.ndarray]:
    """One search fit (here, or a Dask task under ``--dask``): a `cls` track fitted under
    `settings` on ``features`` = (vectorizer, x [n, V], y [n, L]) or ``splits`` = (train,
    val); (the track when `keep`, else None; its scores [m, L] of `held`: the held-out
    matrix [m, V] on the fast path, else the held-out texts)."""
    track = cls(settings)
    if features is not None:
        vec, x, y = features
        track.history = track.fit_features(vec, x, y, labels)
        scores = track.scores_from_margins(track.decision_function_features(held))
    else:
        track.history = track.fit(*splits, labels)
        scores = track.predict_scores(held)
    return (track if keep else None), scores


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

    explore(result, settings, score, track_name, say, start_time, prefetch=scorer.prefetch)
    track = best["track"]
    if track is None:  # k-fold scoring: fit the chosen point once on all of train
        track = cls(_with_options(settings, result.chosen))
        track.history = track.fit(train, val, labels)
    result.seconds = time.perf_counter() - start_time
    return track, result


def explore(result: SearchResult, settings: TrainSettings,
            score: Callable[[dict[str, Any]], tuple[float, str]], track_name: str,
            say: Callable[[str], None], start_time: float,
            prefetch: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
    """Grid or coordinate search over ``result.space`` within ``result.budget``; `score`
    gives a point's (held-out score, rule).  Fills ``result.grid/scores/rules`` in the
    order points were fitted and ``result.chosen/score/chosen_rule`` (ties: the earlier
    point).  Shared by the holdout search and the cross-fitted one (`mlbench.protocol`).

    `prefetch` is told, before they are scored one by one, the points whose fits do not
    depend on each other's scores (the whole grid; one option's sweep in the coordinate
    search), so that under ``--dask`` they are fitted at once; the order and the choice
    are the same with or without it."""
    prefetch = prefetch or (lambda _points: None)
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
        prefetch(grid_points(space))
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
                # this sweep's points differ from `current` in `k` only, whatever it finds
                fresh = list({_key(c): c for c in ({**current, k: v} for v in cands) if _key(c) not in seen}.values())
                prefetch(fresh if budget is None else fresh[:max(0, budget - len(seen))])
                for value in cands:
                    candidate = {**current, k: value}
                    if _key(candidate) not in seen and not left():
                        continue
                    point_value = evaluate_point(candidate)
                    if point_value > current_score:
                        current, current_score, changed = candidate, point_value, True
    result.chosen, result.score, result.chosen_rule = best["point"], best["score"], best["rule"]
