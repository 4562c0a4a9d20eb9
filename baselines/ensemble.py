"""A validation-weighted average of other fitted tracks' scores.

Scores are ``Σ_m w_m · scores_m`` with weights on a simplex grid (step 0.1 by
default, at most 4 members).  A weight vector is judged the way the suite judges a
model: the decision rules are cross-fitted on k folds of validation (rules fitted on
k−1 folds, applied to the held-out one) and the vector's score is the best rule's
pooled micro-F1 (or macro-F1).  Test data never reaches `fit`.  Because the weights
are chosen on all of validation, `describe()` also gives a nested estimate: for each
outer fold the weights are chosen on the other k−1 folds only and the held-out
fold is scored with them, so that number has seen neither test nor its own labels.

Members: only tracks whose export is a raw-string SavedModel (``export_format`` =
"savedmodel"; fastText, say, is refused), because the ensemble's export is ONE
SavedModel that calls each member's exported graph.  A member whose `export`
returns None (e.g. today's `svm`) can still be ensembled and scored in process;
`export` then raises, naming it.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

import numpy as np

from mlbench.data.corpus import Split
from mlbench.evaluation.metrics import threshold_metrics
from mlbench.evaluation.scoring import cross_fitted_score
from mlbench.labels import LabelSpace
from mlbench.serving.layout import (DECISIONS_SIGNATURE, INPUT_NAME, LABELS_OUTPUT, SAVEDMODEL_FILE,
                                    SAVEDMODEL_FORMAT, SCORES, SERVE_SIGNATURE, decision_labels,
                                    decision_thresholds, import_requirements, read_labels,
                                    text_input_spec, write_side_files)
from mlbench.tracks import UNSET, Param, Track, TrainSettings

SAVEDMODEL = SAVEDMODEL_FORMAT
MAX_MEMBERS = 4


def exports_savedmodel(track: Track | type) -> bool:
    """True when `track` (an instance or class) exports a raw-string SavedModel."""
    return getattr(track, "export_format", SAVEDMODEL) == SAVEDMODEL


def savedmodel_members(tracks: Mapping[str, Track]) -> dict[str, Track]:
    """The ensemble's candidates among fitted `tracks`: those with a SavedModel export."""
    return {name: t for name, t in tracks.items() if exports_savedmodel(t)}


def simplex_grid(n_members: int, step: float = 0.1) -> np.ndarray:
    """All weight vectors with entries in multiples of `step` summing to 1: [n_vectors, n_members]."""
    parts = round(1.0 / step)
    if n_members < 1 or parts < 1 or not np.isclose(parts * step, 1.0):
        raise ValueError(f"step must divide 1 (e.g. 0.1, 0.25), got {step}; n_members={n_members}")
    rows = [c for c in itertools.product(range(parts + 1), repeat=n_members) if sum(c) == parts]
    return np.asarray(rows, dtype=np.float64) / parts


def _blend(weights: np.ndarray, stack: np.ndarray) -> np.ndarray:
    """Σ_m w_m · stack[m] for stack [M, n, L] → float32 [n, L]."""
    return np.tensordot(weights, stack.astype(np.float64), axes=1).astype(np.float32)


def _rank(grid: np.ndarray, stack: np.ndarray, y: np.ndarray, key: str, folds: int,
          seed: int) -> list[tuple[float, str, int]]:
    """Grid rows by cross-fitted score, best first: (score, rule, row index).

    Ties go to the vector nearest equal weights (averaging is the safer bet), then to
    the earlier row.
    """
    uniform = np.full(grid.shape[1], 1.0 / grid.shape[1])
    scored = []
    for i, w in enumerate(grid):
        value, rule = cross_fitted_score(y, _blend(w, stack), key, folds=folds, seed=seed)
        scored.append((value, rule, i))
    spread = np.abs(grid - uniform).sum(axis=1)
    return sorted(scored, key=lambda t: (-round(t[0], 12), spread[t[2]], t[2]))


class EnsembleTrack(Track):
    """`--models ensemble`: weighted average of already-fitted member tracks."""

    name = "ensemble"
    family = "ensemble"
    stochastic = False  # a deterministic weight search over fitted members
    export_format: ClassVar[str] = SAVEDMODEL
    #: the driver fits the other tracks first and builds it with `from_members`
    needs_members: ClassVar[bool] = True
    params: ClassVar[dict[str, Param]] = {
        "step": Param(0.1, lambda v: 0 < v <= 1 and np.isclose(round(1 / v) * v, 1.0), "in (0, 1], dividing 1",
                      convert=float),  # the weight grid's spacing
        "folds": Param(5, lambda v: v >= 2, ">= 2", convert=int),  # cross-fitting of the rule per vector
        "top": Param(5, lambda v: v >= 1, ">= 1", convert=int),  # best weight vectors recorded (`tried`)
        "nested_estimate": Param(True, convert=bool),  # an outer cross-fit of the whole choice
    }

    def __init__(self, settings: TrainSettings | None = None, members: Mapping[str, Track] | None = None,
                 *, step: float = UNSET, folds: int = UNSET, objective: str = "micro", top: int = UNSET,
                 nested_estimate: bool = UNSET):
        from mlbench.record import objective_key

        super().__init__(settings)
        p = self.resolve_params(dict(step=step, folds=folds, top=top, nested_estimate=nested_estimate))
        if not members:
            raise ValueError("EnsembleTrack needs members={name: fitted Track, ...} (at least one)")
        if len(members) > MAX_MEMBERS:
            raise ValueError(f"at most {MAX_MEMBERS} members (the weight grid grows fast), got {len(members)}")
        refused = [n for n, t in members.items() if not exports_savedmodel(t)]
        if refused:
            raise ValueError(f"members must export a SavedModel; {', '.join(refused)} do not "
                             f"(export_format {[getattr(members[n], 'export_format', None) for n in refused]})")
        self.members: dict[str, Track] = dict(members)
        self.objective, self.key = objective, objective_key(objective)
        self.step, self.folds, self.top, self.nested_estimate = p["step"], p["folds"], p["top"], p["nested_estimate"]
        self.grid = simplex_grid(len(self.members), self.step)
        self.weights: dict[str, float] | None = None
        self.tried: list[dict] = []
        #: {member: its SavedModel folder}, reused by `export` (`from_members`)
        self.member_exports: dict[str, Path] = {}
        self.nested: dict | None = None

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict[str, list[float]]:
        """Score the (already fitted) members on `val` and choose the weights there."""
        self.labels = labels
        scores = {name: m.predict_scores(val.texts) for name, m in self.members.items()}
        self.fit_from_scores(scores, labels.encode(val.labels))
        return {}

    def fit_from_scores(self, val_scores: Mapping[str, np.ndarray], y_val: np.ndarray) -> "EnsembleTrack":
        """Choose weights from members' validation scores {name: [n_val, L]} and y_val [n_val, L]."""
        if set(val_scores) != set(self.members):
            raise ValueError(f"val_scores must hold exactly the members {sorted(self.members)}, "
                             f"got {sorted(val_scores)}")
        y = np.asarray(y_val)
        stack = np.stack([np.asarray(val_scores[n], dtype=np.float32) for n in self.members])
        if stack.shape[1:] != y.shape:
            raise ValueError(f"member scores {stack.shape[1:]} and y_val {y.shape} differ in shape")
        seed = int(self.settings.seed)
        ranked = _rank(self.grid, stack, y, self.key, self.folds, seed)
        names = list(self.members)
        self.weights = {n: float(w) for n, w in zip(names, self.grid[ranked[0][2]])}
        self.tried = [{"weights": {n: float(w) for n, w in zip(names, self.grid[i])},
                       "val_cv": float(v), "rule": r} for v, r, i in ranked[: self.top]]
        self.nested = self._nested(stack, y, seed) if self.nested_estimate and len(names) > 1 else None
        if self.labels is None:
            self.labels = next(iter(self.members.values())).labels
        return self

    def _nested(self, stack: np.ndarray, y: np.ndarray, seed: int) -> dict:
        """Outer k folds: weights chosen on k−1 folds, rules fitted there, held-out fold scored."""
        from mlbench.evaluation.thresholds import fit_decision_rules

        order = np.random.default_rng(seed + 1).permutation(len(y))
        pred = np.zeros(y.shape, dtype=np.int8)
        chosen = []
        for fold in np.array_split(order, min(self.folds, len(y))):
            rest = np.setdiff1d(order, fold)
            value, rule, i = _rank(self.grid, stack[:, rest], y[rest], self.key, self.folds, seed)[0]
            rules = fit_decision_rules(y[rest], _blend(self.grid[i], stack[:, rest]), default=0.5)
            pred[fold] = rules[rule].predict(_blend(self.grid[i], stack[:, fold]))
            chosen.append([float(w) for w in self.grid[i]])
        return {self.key: threshold_metrics(y, pred, keys=(self.key,))[self.key], "fold_weights": chosen}

    # -- scoring ----------------------------------------------------------------------------------
    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        """Weighted average of the members' scores, float32 [len(texts), n_labels]."""
        if self.weights is None:
            raise RuntimeError("fit the track before predicting")
        used = [n for n, w in self.weights.items() if w > 0]
        stack = np.stack([self.members[n].predict_scores(texts) for n in used])
        return _blend(np.array([self.weights[n] for n in used]), stack)

    @classmethod
    def from_members(cls, settings: TrainSettings, members: Mapping[str, Track], *, objective: str,
                     member_exports: Mapping[str, Path] | None = None) -> "EnsembleTrack":
        track = cls(settings, members, objective=objective)
        track.member_exports = {n: Path(p) for n, p in (member_exports or {}).items()}
        return track

    # -- export -----------------------------------------------------------------------------------
    def export(self, directory: Path, *, thresholds: np.ndarray | None = None,
               member_exports: Mapping[str, Path] | None = None) -> Path:
        """ONE raw-string SavedModel: ``serving_default(texts) -> {"scores"}`` = the weighted
        sum of the members' exported graphs' "scores" (members with weight 0 left out),
        plus ``decisions`` with `thresholds` ([L] or scalar; None → 0.5) baked in.

        `member_exports` {name: SavedModel folder} (default: those given to `from_members`)
        reuses the members' exports; missing ones are exported to a temporary folder first.
        The result is self-contained: it does not read the member folders later.
        """
        if self.weights is None:
            raise RuntimeError("fit the track before exporting")
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()):
            raise FileExistsError(f"{directory} exists and is not empty; refusing to overwrite")
        used = [n for n, w in self.weights.items() if w > 0]
        names = list(self.labels.names)
        cutoffs = decision_thresholds(thresholds, len(names))
        given = dict(self.member_exports if member_exports is None else member_exports)
        with tempfile.TemporaryDirectory() as tmp:
            paths: dict[str, Path] = {}
            for n in used:
                if n in given:
                    paths[n] = Path(given[n])
                    continue
                out = self.members[n].export(Path(tmp) / n)
                if out is None:
                    raise ValueError(f"ensemble member {n!r} has no SavedModel export; "
                                     f"only SavedModel tracks can be exported in an ensemble")
                paths[n] = Path(out)
            requires = self._check_members(paths, names)
            _save_ensemble(directory, paths, [self.weights[n] for n in used], names, cutoffs)
        meta = {"track": self.name, "format": SAVEDMODEL, "requires": requires,
                "members": used, "weights": {n: self.weights[n] for n in used},
                "objective": self.objective, "signatures": [SERVE_SIGNATURE, DECISIONS_SIGNATURE],
                "thresholds": [float(v) for v in cutoffs]}
        write_side_files(directory, names, meta)
        return directory

    @staticmethod
    def _check_members(paths: Mapping[str, Path], names: list[str]) -> list[str]:
        """Each member folder is a SavedModel with our label order; the union of its `requires`
        (imported here: custom ops must be registered before loading)."""
        requires: list[str] = []
        for n, p in paths.items():
            if not (p / SAVEDMODEL_FILE).exists():
                raise ValueError(f"ensemble member {n!r}: {p} is not a SavedModel folder")
            if read_labels(p) != names:
                raise ValueError(f"ensemble member {n!r}: {p} has a different label order")
            for module in import_requirements(p).get("requires", []):
                if module not in requires:
                    requires.append(module)
        return requires

    def size_bytes(self) -> int | None:
        sizes = [m.size_bytes() for n, m in self.members.items() if (self.weights or {}).get(n, 1) > 0]
        return None if any(s is None for s in sizes) else int(sum(sizes))

    def describe(self) -> dict:
        return {
            "members": list(self.members), "weights": self.weights, "objective": self.objective,
            "grid_step": self.step, "grid_size": int(len(self.grid)), "folds": self.folds,
            "top_weights": self.tried, "nested_val_cv": self.nested,
        }


def _save_ensemble(directory: Path, paths: Mapping[str, Path], weights: Sequence[float],
                   label_names: Sequence[str], cutoffs: np.ndarray) -> None:
    """tf.saved_model.save a module that calls each loaded member's serving_default.

    Signatures as `mlbench.serving.layout`: ``serving_default`` → {"scores" [B, L]},
    ``decisions`` → {"scores", "labels" int32 [B, L] = scores >= cutoffs}, ``labels``.
    """
    import tensorflow as tf

    spec = text_input_spec()

    class EnsembleServer(tf.Module):
        def __init__(self):
            super().__init__()
            self.members = [tf.saved_model.load(str(p)) for p in paths.values()]
            self.member_weights = [float(w) for w in weights]
            self.label_names = tf.Variable(list(label_names), dtype=tf.string, trainable=False)

        def _scores(self, texts):
            total = None
            for w, m in zip(self.member_weights, self.members):
                part = w * tf.cast(m.signatures[SERVE_SIGNATURE](**{INPUT_NAME: texts})[SCORES], tf.float32)
                total = part if total is None else total + part
            return total

        @tf.function(input_signature=spec)
        def serve(self, texts):
            return {SCORES: self._scores(texts)}

        @tf.function(input_signature=spec)
        def decisions(self, texts):
            s = self._scores(texts)
            return {SCORES: s, LABELS_OUTPUT: decision_labels(s, cutoffs)}

        @tf.function(input_signature=[])
        def labels(self):
            return self.label_names.read_value()

    server = EnsembleServer()
    tf.saved_model.save(server, str(directory), signatures={
        SERVE_SIGNATURE: server.serve, DECISIONS_SIGNATURE: server.decisions, "labels": server.labels})
