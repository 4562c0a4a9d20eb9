"""The cross-fitted protocol: out-of-fold scores on all labeled documents, then one refit.

Why: fitted on the 1,000 validation documents alone, a per-label threshold of a label
with 0-2 validation positives is noise, and the model never trains on validation.
Under ``--protocol cv`` a track with ``cheap_fit`` (or one named in ``--cv-tracks``) is
fitted K times, each time on K−1 folds of train+val (the *pool*), and scores the
held-out fold, so every labeled document gets a score from a model that never saw it;
the search, the decision rules, the calibration and the ensemble weights are fitted on
those out-of-fold scores only.  The chosen configuration is then refit once on the
whole pool: that model scores test and is exported.  Under ``--protocol holdout``
(and for expensive tracks) nothing here runs: fit on train, everything on validation.

Folds: `make_folds` (iterative stratification, Sechidis et al. 2011, via
``iterative-stratification``, so rare labels spread over the folds).  A track that
`fits_on_validation` (Keras early stopping) validates each fold fit on an inner slice
(`INNER_VAL_SHARE`) of that fit's own training rows, and the refit gets no validation
and the fold fits' median best epoch (`Track.refit_epochs`).

The search screens each point on the first `screen_folds` folds (enough held-out rows,
`SCREEN_DOCS`, to rank points like a validation split would), then the chosen point
gets all K folds.  Every fold's held-out scores are saved under
``run_dir/folds/<variant>/`` as soon as they exist, so a run killed in fold 3 resumes
at fold 3 (`CrossFitter.fold`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mlbench.data.corpus import Corpus, Split
from mlbench.labels import LabelSpace
from mlbench.record import PROTOCOLS
from mlbench.tracks import SharedFeatures, Track, TrainSettings

__all__ = ["PROTOCOLS", "DEFAULT_FOLDS", "SCREEN_DOCS", "INNER_VAL_SHARE", "pool_split", "make_folds",
           "uses_cv", "screen_folds", "CrossFitter", "CrossFit", "cross_fit"]

DEFAULT_FOLDS = 5
#: held-out documents a search point is screened on (at least; whole folds)
SCREEN_DOCS = 1000
#: share of a fold fit's training rows it validates on when the track `fits_on_validation`
INNER_VAL_SHARE = 0.1


def pool_split(corpus: Corpus) -> Split:
    """Train then validation rows as one split (row i < len(train) is train row i)."""
    return Split(list(corpus.train.texts) + list(corpus.val.texts),
                 list(corpus.train.labels) + list(corpus.val.labels))


def make_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """`k` disjoint sorted row-index arrays covering rows of 0/1 targets `y` [n, L],
    iteratively stratified (each label's positives spread as evenly as they can)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    from mlbench.errors import InputError

    n = len(y)
    if n < 2 * k:
        raise InputError(f"--folds {k}: needs at least {2 * k} labeled documents in train+val, have {n}")
    splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [np.sort(held) for _, held in splitter.split(np.zeros((n, 1)), np.asarray(y))]


def uses_cv(cls: type, name: str, protocol: str, cv_tracks: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether track `name` (class `cls`) is cross-fitted under `protocol`."""
    return protocol == "cv" and (cls.cheap_fit or name in cv_tracks)


def screen_folds(folds: list[np.ndarray]) -> int:
    """How many folds a search point is scored on: the fewest whose held-out rows reach
    `SCREEN_DOCS` (all folds on a small pool)."""
    size = max(1, int(np.mean([len(f) for f in folds])))
    return min(len(folds), max(1, math.ceil(SCREEN_DOCS / size)))


def _point_slug(point: dict[str, Any]) -> str:
    from mlbench.naming import slug

    return slug("_".join(f"{k}-{v}" for k, v in sorted(point.items()))) or "defaults"


def _fit_track(cls: type, settings: TrainSettings, labels: LabelSpace, vec: Any, x: Any, y: Any,
               splits: tuple[Split, Split] | None) -> Track:
    """A `cls` track fitted under `settings`: on the shared vectorizer `vec`'s matrix `x`
    [n, V] with targets `y` [n, L] (the fast path), else on ``splits`` = (train, val)."""
    track = cls(settings)
    if splits is None:
        track.history = track.fit_features(vec, x, y, labels)
    else:
        track.history = track.fit(*splits, labels)
    return track


def _fold_task(cls: type, settings: TrainSettings, labels: LabelSpace, vec: Any, x: Any, y: Any,
               splits: tuple[Split, Split] | None, held_texts: list[str]) -> tuple[np.ndarray, dict, float]:
    """One fold fit (here, or a Dask task under ``--dask``): (scores [len(held_texts), L]
    float32 of the held-out texts, the fit's history, seconds)."""
    t0 = time.perf_counter()
    track = _fit_track(cls, settings, labels, vec, x, y, splits)
    scores = np.asarray(track.predict_scores(held_texts), dtype=np.float32)
    history = {k: [float(v) for v in vals] for k, vals in track.history.items()}
    return scores, history, time.perf_counter() - t0


class CrossFitter:
    """Fits a track's points fold by fold over the pool; keeps held-out scores on disk.

    ``fold(point, i)`` → (scores [len(folds[i]), L] of the held-out rows, the fit's
    history); ``refit(point)`` → the track fitted on exactly the whole pool.
    `fits` logs (point, fold, training rows) for every fit it made (tests read it).
    """

    def __init__(self, cls: type, settings: TrainSettings, pool: Split, labels: LabelSpace,
                 folds: list[np.ndarray], *, cache: Path | None = None,
                 progress: Callable[[str], None] | None = None):
        self.cls, self.settings, self.pool, self.labels, self.folds = cls, settings, pool, labels, folds
        self.cache = None if cache is None else Path(cache)
        self.say = progress or (lambda _msg: None)
        self.n = len(pool)
        self.fast = issubclass(cls, SharedFeatures)
        self._y_sparse = None
        self._features: dict[tuple, Any] = {}  # (vectorizer config, fold) → (vec, x, y)
        self._targets: dict[tuple, Any] = {}  # fold → its training rows' targets (CSR)
        self._held: dict[int, list[str]] = {}  # fold → its held-out texts
        self.fits: list[tuple[dict, int | None, np.ndarray]] = []
        self._done: dict[tuple[str, int], tuple[np.ndarray, dict]] = {}  # (point, fold) → fold()
        if self.cache is not None:
            self._check_cache()

    # -- folds on disk (resume) ---------------------------------------------------------
    def _check_cache(self) -> None:
        """The folds this variant was started with must be the folds now (same data, seed)."""
        from mlbench.errors import InputError

        self.cache.mkdir(parents=True, exist_ok=True)
        path = self.cache / "folds.json"
        mine = [f.tolist() for f in self.folds]
        if path.exists():
            if json.loads(path.read_text(encoding="utf-8")) != mine:
                raise InputError(f"{path}: the folds differ from this run's (data or seed changed); "
                                 "start a new run")
        else:
            path.write_text(json.dumps(mine), encoding="utf-8")

    def _fold_file(self, point: dict[str, Any], i: int) -> Path | None:
        return None if self.cache is None else self.cache / _point_slug(point) / f"fold{i}.npz"

    # -- fitting ----------------------------------------------------------------------------
    @property
    def y_sparse(self):
        if self._y_sparse is None:
            self._y_sparse = self.labels.encode_sparse(self.pool.labels)
        return self._y_sparse

    def _settings(self, point: dict[str, Any], tag: str, epochs: int | None = None) -> TrainSettings:
        workdir = None if self.settings.workdir is None else self.settings.workdir / _point_slug(point) / tag
        return dataclasses.replace(self.settings, options={**(self.settings.options or {}), **point},
                                   workdir=workdir, epochs=epochs or self.settings.epochs)

    def _inner(self, rows: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows to train on, rows to validate on) for a track that reads validation."""
        if not self.cls.fits_on_validation:
            return rows, rows[:0]
        order = np.random.default_rng(self.settings.seed + 1000 + i).permutation(rows)
        n_val = max(1, int(round(INNER_VAL_SHARE * len(rows))))
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _fit_args(self, settings: TrainSettings, rows: np.ndarray, val_rows: np.ndarray,
                  key: tuple) -> tuple:
        """`_fit_track`'s arguments for a fit on pool `rows` validated on `val_rows`: the
        shared vectorizer's matrix on the fast path, else the two splits."""
        if self.fast and not len(val_rows):
            vec, x, y = self._vectorized(self.cls(settings), rows, key)
            return self.cls, settings, self.labels, vec, x, y, None
        splits = (self.pool.subset(rows), self.pool.subset(val_rows))
        return self.cls, settings, self.labels, None, None, None, splits

    def _vectorized(self, track: Track, rows: np.ndarray, fold_key: tuple):
        """(vectorizer fitted on `rows`, their matrix, their targets), built once per
        configuration and fold (the same objects each time: `mlbench.cluster` ships them once)."""
        key = (tuple(repr(getattr(track, k)) for k in self.cls.vectorizer_keys), fold_key)
        if key not in self._features:
            vec = track.build_vectorizer()
            if fold_key not in self._targets:
                self._targets[fold_key] = self.y_sparse[rows]
            self._features[key] = (vec, vec.fit_transform([self.pool.texts[j] for j in rows]),
                                   self._targets[fold_key])
        return self._features[key]

    def _held_texts(self, i: int) -> list[str]:
        if i not in self._held:
            self._held[i] = [self.pool.texts[j] for j in self.folds[i]]
        return self._held[i]

    def _fold_args(self, point: dict[str, Any], i: int) -> tuple[tuple, np.ndarray]:
        """(`_fold_task`'s arguments for fold `i` under `point`, the rows it trains on)."""
        rows = np.setdiff1d(np.arange(self.n), self.folds[i])
        fit_rows, val_rows = self._inner(rows, i)
        args = self._fit_args(self._settings(point, f"fold{i}"), fit_rows, val_rows, ("fold", i))
        return (*args, self._held_texts(i)), fit_rows

    def _finished(self, point: dict[str, Any], i: int) -> tuple[np.ndarray, dict] | None:
        """Fold `i`'s (scores, history) under `point` if fitted before: in this run or on
        disk (a resumed run); else None."""
        key = (_point_slug(point), i)
        if key not in self._done:
            path = self._fold_file(point, i)
            if path is None or not path.exists():
                return None
            with np.load(path) as data:
                if not np.array_equal(data["rows"], self.folds[i]):
                    return None
                self._done[key] = (data["scores"], json.loads(str(data["history"])))
        return self._done[key]

    def _keep(self, point: dict[str, Any], i: int, fit_rows: np.ndarray, result: tuple) -> tuple[np.ndarray, dict]:
        """Log and save fold `i`'s `_fold_task` result under `point`; (scores, history)."""
        scores, history, seconds = result
        self.fits.append((dict(point), i, fit_rows))
        path = self._fold_file(point, i)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez_compressed(tmp, rows=self.folds[i], scores=scores, history=json.dumps(history))
            tmp.replace(path)  # a kill mid-write leaves no half fold behind
        self._done[_point_slug(point), i] = (scores, history)
        self.say(f"{self.cls.name} {point or 'defaults'}: fold {i + 1}/{len(self.folds)} fitted on "
                 f"{len(fit_rows)} docs in {seconds:.1f} s")
        return scores, history

    def fold(self, point: dict[str, Any], i: int) -> tuple[np.ndarray, dict]:
        """Held-out scores of fold `i` [len(folds[i]), L] under `point`, and the fit's history;
        read from the cache when this fold was finished before (a resumed run)."""
        done = self._finished(point, i)
        if done is not None:
            return done
        args, fit_rows = self._fold_args(point, i)
        return self._keep(point, i, fit_rows, _fold_task(*args))

    def prefetch(self, pairs: list[tuple[dict[str, Any], int]]) -> None:
        """Under ``--dask``: fit the (point, fold) pairs not finished yet as tasks on the
        cluster, all at once (`mlbench.cluster.map_tasks`: the same `_fold_task` `fold`
        runs here, so the scores are the same); `fold` then reads them.  Nothing happens
        without a cluster or for a track that is not a `cluster_fit` one."""
        from mlbench.cluster import active_client, map_tasks

        if active_client() is None or not (self.fast and self.cls.cluster_fit):
            return
        todo: dict[tuple[str, int], tuple[dict[str, Any], int]] = {}
        for point, i in pairs:
            if (_point_slug(point), i) not in todo and self._finished(point, i) is None:
                todo[_point_slug(point), i] = (point, i)
        if len(todo) < 2:  # one fit: `fold` runs it (its label chunks still go to the cluster)
            return
        prepared = [self._fold_args(point, i) for point, i in todo.values()]
        results = map_tasks(_fold_task, [args for args, _ in prepared])
        for (point, i), (_, fit_rows), result in zip(todo.values(), prepared, results):
            self._keep(point, i, fit_rows, result)

    def oof(self, point: dict[str, Any], fold_ids: list[int] | range | None = None
            ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """(pool rows [m] sorted, their out-of-fold scores [m, L], the fold fits' histories)
        over folds `fold_ids` (default: all)."""
        ids = list(range(len(self.folds)) if fold_ids is None else fold_ids)
        self.prefetch([(point, i) for i in ids])
        parts = [self.fold(point, i) for i in ids]
        rows = np.concatenate([self.folds[i] for i in ids])
        scores = np.concatenate([p[0] for p in parts])
        order = np.argsort(rows, kind="stable")
        return rows[order], scores[order], [p[1] for p in parts]

    def refit(self, point: dict[str, Any], histories: list[dict]) -> Track:
        """The track under `point` fitted on every pool row (an empty validation split)."""
        rows = np.arange(self.n)
        epochs = self.cls.refit_epochs(histories)
        t0 = time.perf_counter()
        track = _fit_track(*self._fit_args(self._settings(point, "refit", epochs), rows, rows[:0], ("refit",)))
        self.fits.append((dict(point), None, rows))
        track.refit_on = {"rows": self.n, "epochs": epochs}
        self.say(f"{self.cls.name} {point or 'defaults'}: refit on all {self.n} train+val docs"
                 f"{f' for {epochs} epochs' if epochs else ''} in {time.perf_counter() - t0:.1f} s")
        return track


@dataclasses.dataclass
class CrossFit:
    """What `cross_fit` gives: the refit track, the out-of-fold scores and the search."""

    track: Track
    rows: np.ndarray  # pool rows [n] the scores are for (all of them)
    oof: np.ndarray  # [n, L] out-of-fold scores
    histories: list[dict]
    search: dict | None
    seconds: float


def cross_fit(name: str, settings: TrainSettings, pool: Split, labels: LabelSpace,
              folds: list[np.ndarray], *, tune: bool, objective: str, cache: Path | None = None,
              progress: Callable[[str], None] | None = None,
              fitter: CrossFitter | None = None) -> CrossFit:
    """Search (on `screen_folds` folds) → all K folds for the chosen point → refit on the pool.

    Every score a choice reads is out-of-fold; test is not a parameter.
    """
    from mlbench.record import objective_key
    from mlbench.tracks import get_track_class
    from mlbench.tuning import SearchResult, explore, grid_points, point_score

    cls = get_track_class(name)
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    fitter = fitter or CrossFitter(cls, settings, pool, labels, folds, cache=cache, progress=say)
    space = dict(cls.search_space) if tune else {}
    point: dict[str, Any] = {}
    search = None
    if space:
        metric = objective_key(objective)
        y = labels.encode(pool.labels)
        screen = screen_folds(folds)
        held = sum(len(folds[i]) for i in range(screen))
        result = SearchResult(
            track=name, objective=objective, metric=metric, method="none",
            evaluation=(f"out-of-fold on {screen} of {len(folds)} folds of train+val ({held} docs); "
                        f"the chosen point on all {len(folds)} folds"),
            space=space, budget=cls.search_budget, full_grid=len(grid_points(space)))

        def score(p: dict[str, Any]) -> tuple[float, str]:
            rows, s, _ = fitter.oof(p, range(screen))
            return point_score(y[rows], s, metric)

        def prefetch(points: list[dict[str, Any]]) -> None:  # under --dask: the points' folds at once
            fitter.prefetch([(p, i) for p in points for i in range(screen)])

        explore(result, settings, score, name, say, start, prefetch=prefetch)
        point = dict(result.chosen)
        result.seconds = time.perf_counter() - start
        search = result.to_json()
    rows, oof, histories = fitter.oof(point)
    track = fitter.refit(point, histories)
    track.history = histories[0] if histories else {}  # fold 1's curves (the refit has no validation)
    return CrossFit(track, rows, oof, histories, search, time.perf_counter() - start)
