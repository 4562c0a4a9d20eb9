"""One benchmark run: corpus → label space → tracks → evaluation → RunRecord.

The steps are small functions a test can call one by one:
``fit_variant`` (search + fit) → ``score_variant`` (val/test scores) →
``evaluate_variant`` (decision rules on validation, metrics and CIs on test) →
``export_variant`` (raw-string artifact + thresholds) → a `ModelResult` in the
`RunRecord`.  `run_experiment` strings them together and returns the record; it
imports no report: the command line renders the report from the record afterwards.
A run folder is never reused: a new ``runs/<dataset>-<timestamp>`` is created.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from mlbench.config import RunConfig
from mlbench.data.corpus import Corpus, Split
from mlbench.evaluation.calibration import Calibration
from mlbench.evaluation.metrics import FrequencyGroups
from mlbench.labels import LabelSpace
from mlbench.naming import dataset_stem, export_dir_name, history_name, slug, variant_name
from mlbench.progress import phase, say
from mlbench.record import (DEFAULT_OBJECTIVE, OBJECTIVES, CalibrationResult, DatasetInfo, ErrorAnalysis,
                            ModelResult, RuleResult, RunRecord, SearchResult, group_of)
from mlbench.tracks import Track, TrainSettings, get_track_class

__all__ = ["RunConfig", "run_experiment", "fit_variant", "score_variant", "evaluate_variant",
           "export_variant", "new_run_dir", "load_data"]


def new_run_dir(out: Path, dataset: str) -> Path:
    """Create a fresh run folder; never reuse or overwrite an existing one."""
    base = f"{dataset_stem(dataset)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        candidate = out / (base if i == 0 else f"{base}-{i + 1}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {out}")


def load_data(cfg: RunConfig) -> Corpus:
    from mlbench.data import load_corpus

    return load_corpus(
        cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, split_method=cfg.split_method,
        text_col=cfg.text_col, labels_col=cfg.labels_col, label_sep=cfg.label_sep,
        max_docs=cfg.max_docs, split_col=cfg.split_col, test_file=cfg.test_file,
        val_file=cfg.val_file, val_size=cfg.val_size, unlabeled=cfg.unlabeled,
        max_bad_rows=cfg.max_bad_rows, verify=cfg.verify, progress=say,
    )


def check_data(corpus: Corpus, cfg: RunConfig) -> tuple[Corpus, dict]:
    """Dedupe when asked, then the health check; errors (and warnings under --strict) stop
    the run before TensorFlow starts.  Returns the corpus to train on and the findings."""
    from mlbench.data import check_health, dedupe, raise_for
    from mlbench.data.registry import data_columns

    corpus, removed = dedupe(corpus, cfg.dedupe)
    if cfg.dedupe != "none":
        say(f"dedupe {cfg.dedupe}: removed {removed}")
    report = check_health(corpus, min_label_docs=cfg.min_label_docs, label_sep=cfg.label_sep)
    for line in report.console_lines():
        say(line)
    raise_for(report, strict=cfg.strict, source=corpus.source,
              columns=data_columns(cfg.dataset, cfg.text_col, cfg.labels_col))
    return corpus, report.to_json()


def dataset_info(corpus: Corpus, labels: LabelSpace, groups: FrequencyGroups) -> DatasetInfo:
    counts = [int(c) for c in labels.train_counts]
    return DatasetInfo(
        name=corpus.name, labels=list(labels.names), train_counts=counts,
        groups={"head_min": groups.head_min, "tail_max": groups.tail_max},
        label_groups=[group_of(c, groups.head_min, groups.tail_max) for c in counts],
        stats=corpus.stats(),
    )


# --------------------------------------------------------------------------- steps
class Pool:
    """Train+val as one split (`mlbench.protocol.pool_split`) and, when some track is
    cross-fitted under `--protocol cv`, its K folds.  Targets [n, L] are encoded lazily
    (a holdout run at a million documents never builds them)."""

    def __init__(self, split: Split, labels: LabelSpace, val_rows: np.ndarray, folds: list[np.ndarray],
                 protocol: str, cv_tracks: list[str]):
        self.split, self.labels, self.val_rows, self.folds = split, labels, val_rows, folds
        self.protocol, self.cv_tracks = protocol, list(cv_tracks)
        self._y: np.ndarray | None = None

    @classmethod
    def make(cls, corpus: Corpus, labels: LabelSpace, cfg: RunConfig, models: list[str]) -> "Pool":
        from mlbench.protocol import make_folds, pool_split, uses_cv

        n_train = len(corpus.train)
        pool = cls(pool_split(corpus), labels, np.arange(n_train, n_train + len(corpus.val)), [],
                   cfg.protocol, cfg.cv_tracks)
        if any(uses_cv(get_track_class(m), m, cfg.protocol, cfg.cv_tracks) for m in models):
            pool.folds = make_folds(pool.y, cfg.cv_folds, cfg.seed)
        return pool

    @property
    def y(self) -> np.ndarray:
        """0/1 targets of the pool rows [n_train + n_val, L]."""
        if self._y is None:
            self._y = self.labels.encode(self.split.labels)
        return self._y

    def cv(self, name: str) -> bool:
        """Whether track `name` is cross-fitted in this run."""
        from mlbench.protocol import uses_cv

        return bool(self.folds) and uses_cv(get_track_class(name), name, self.protocol, self.cv_tracks)

    def fitted_on(self, rows: int, *, refit: bool) -> dict:
        """`ModelResult.fitted_on` for choices read from `rows` out-of-fold scores."""
        return {"split": "out-of-fold train+val", "rows": int(rows), "folds": len(self.folds),
                "refit_rows": len(self.split) if refit else None}


@dataclass
class Fitted:
    """A fitted track with what its fit cost and, when searched, the search record."""

    track: Track
    history: dict[str, list[float]]
    seconds: float
    search: SearchResult | None = None


def track_settings(cfg: RunConfig, name: str, *, loss: str | None, workdir: Path | None,
                   seed: int | None = None) -> TrainSettings:
    board = None
    if cfg.tensorboard:  # <dir>/<variant>[/seed-N]: one TensorBoard run per variant (and extra seed)
        board = Path(cfg.tensorboard) / slug(variant_name(name, loss, len(cfg.losses)))
        board = board if seed is None else board / f"seed-{seed}"
    return TrainSettings(
        tensorboard=board,
        epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed if seed is None else seed,
        quick=cfg.quick, loss=loss or "bce", workdir=workdir,
        options=dict(cfg.track_options.get(name, {})), strategy=cfg.strategy, n_jobs=cfg.n_jobs,
    )


def fit_variant(name: str, *, settings: TrainSettings, corpus: Corpus, labels: LabelSpace,
                tune: bool, objective: str = DEFAULT_OBJECTIVE) -> Fitted:
    """Search the track's declared space on validation (when `tune`), else fit its defaults."""
    cls = get_track_class(name)
    start = time.perf_counter()
    if tune and cls.search_space:
        from mlbench.tuning import search

        track, result = search(name, settings, corpus.train, corpus.val, labels, objective=objective,
                               progress=say)
        return Fitted(track, track.history, time.perf_counter() - start, result)
    track = cls(settings)
    history = track.history = track.fit(corpus.train, corpus.val, labels)
    return Fitted(track, history, time.perf_counter() - start)


@dataclass
class Scores:
    """A fitted track's scores: out-of-sample `val` [m, L] on the pool rows `rows` [m]
    (train+val indices, `mlbench.protocol.pool_split`: the validation rows under
    holdout, every row's out-of-fold score under cv), test [n_test, L], and test docs/s."""

    val: np.ndarray
    test: np.ndarray
    test_docs_per_s: float | None
    rows: np.ndarray | None = None


def score_variant(track: Track, corpus: Corpus) -> Scores:
    s_val = track.predict_scores(corpus.val.texts)
    start = time.perf_counter()
    s_test = track.predict_scores(corpus.test.texts)
    seconds = time.perf_counter() - start
    return Scores(s_val, s_test, len(corpus.test) / seconds if seconds > 0 else None)


@dataclass
class Evaluation:
    """Decision rules fitted on validation and what they give on test."""

    rules: dict  # rule name -> DecisionRule
    results: dict[str, RuleResult]
    chosen: dict[str, str]  # objective -> rule name
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # objective -> 0/1 test [n, L]
    #: the `Calibration` fitted on validation scores (exported beside the model), None if unfitted
    calibration: Calibration | None = None
    #: `ModelResult.calibration`: test calibration metrics of raw and calibrated scores
    calibration_summary: CalibrationResult | None = None


def evaluate_variant(scores: Scores, *, y_val: np.ndarray, y_test: np.ndarray, labels: LabelSpace,
                     groups: FrequencyGroups, bootstrap: int = 0, seed: int = 0,
                     calibrate: bool = True) -> Evaluation:
    """Fit every rule on validation, choose one per objective on cross-fitted validation,
    score all on test; bootstrap CIs for the chosen rules' test metrics; with `calibrate`,
    a calibration map fitted on validation (`mlbench.evaluation.calibration.calibrate_scores`)."""
    from mlbench.evaluation.calibration import calibrate_scores
    from mlbench.evaluation.scoring import rule_results
    from mlbench.evaluation.selection import choose_rules
    from mlbench.evaluation.thresholds import fit_decision_rules

    rules = fit_decision_rules(y_val, scores.val, default=0.5, seed=seed)
    raw = rule_results(y_val, scores.val, y_test, scores.test, rules, labels, groups)
    chosen = choose_rules(raw)
    results = {name: RuleResult(**r) for name, r in raw.items()}
    predictions = {obj: rules[rule].predict(scores.test) for obj, rule in chosen.items()}
    if bootstrap:
        from mlbench.evaluation.bootstrap import bootstrap_cis

        for rule in dict.fromkeys(chosen.values()):
            cis = bootstrap_cis(y_test, rules[rule].predict(scores.test), scores.test,
                                n_resamples=bootstrap, seed=seed)
            results[rule].test_ci = {k: [float(lo), float(hi)] for k, (lo, hi) in cis.items()}
    cal, summary = (calibrate_scores(y_val, scores.val, y_test, scores.test, seed=seed)
                    if calibrate else (None, None))
    return Evaluation(rules, results, chosen, predictions, cal, summary)


def export_variant(track: Track, *, run_dir: Path, variant: str, evaluation: Evaluation,
                   labels: LabelSpace) -> tuple[str | None, int | None]:
    """Write the track's artifact with its decision rules; (folder name, bytes) or (None, None)."""
    from mlbench.evaluation.thresholds import save_thresholds
    from mlbench.sizes import directory_size

    best = evaluation.chosen[DEFAULT_OBJECTIVE]
    thresholds = evaluation.rules[best].threshold_array(len(labels))
    folder = export_dir_name(variant, track.export_format)
    exported = track.export(run_dir / folder, thresholds=thresholds)
    if exported is None:
        return None, None
    save_thresholds(exported / "thresholds.json", evaluation.rules, labels.names, best_rule=best)
    if evaluation.calibration is not None:
        from mlbench.serving.calibrated import add_calibration, write_calibration

        if (exported / "saved_model.pb").exists():
            add_calibration(exported, evaluation.calibration)
        else:  # e.g. fastText: the artifact reader applies calibration.json itself
            write_calibration(exported, evaluation.calibration)
    return exported.name, directory_size(exported)


def analyse_errors(track: Track | None, ev: Evaluation, scores: Scores, corpus: Corpus,
                   labels: LabelSpace, y_test: np.ndarray) -> ErrorAnalysis:
    """`mlbench.evaluation.errors.error_analysis` on test under the micro-chosen rule,
    explained with `track` (None or an unsupported track: no explanations)."""
    from mlbench.evaluation.errors import error_analysis

    rule = ev.chosen[DEFAULT_OBJECTIVE]
    found = error_analysis(y_test, scores.test, ev.rules[rule].threshold_array(len(labels)),
                           texts=corpus.test.texts, label_names=labels.names,
                           train_counts=labels.train_counts, track=track, rule=rule)
    return ErrorAnalysis.from_json(found)


def examples(track_scores: np.ndarray, corpus: Corpus, labels: LabelSpace) -> list[dict]:
    from mlbench.evaluation.scoring import examples as pick

    return pick(corpus.test.texts, corpus.test.labels, track_scores, labels)


def seed_metrics(name: str, *, cfg: RunConfig, corpus: Corpus, labels: LabelSpace, y_val: np.ndarray,
                 y_test: np.ndarray, groups: FrequencyGroups, loss: str | None, seed: int,
                 params: dict | None) -> dict:
    """Test metrics of one more seed of a stochastic track (its own rule, chosen on its val)."""
    settings = track_settings(cfg, name, loss=loss, workdir=None, seed=seed)
    settings.options.update(params or {})  # the point the search chose (tracks read options)
    cls = get_track_class(name)
    track = cls(settings)
    track.fit(corpus.train, corpus.val, labels)
    ev = evaluate_variant(score_variant(track, corpus), y_val=y_val, y_test=y_test, labels=labels,
                          groups=groups, calibrate=False)
    out = {"seed": seed}
    for obj, key in OBJECTIVES.items():
        out[obj] = {"rule": ev.chosen[obj], key: ev.results[ev.chosen[obj]].test[key]}
    return out


def console_line(variant: str, model: ModelResult) -> str:
    """The per-variant summary: the chosen rule's own test figures, with the rule named."""
    parts = []
    for obj, key in OBJECTIVES.items():
        rule = model.chosen_rule[obj]
        test = model.rules[rule].test
        parts.append(f"for {obj}-F1 rule {rule}: micro {test['f1_micro']:.4f} macro {test['f1_macro']:.4f}")
    return f"[{variant}] test, " + "; ".join(parts)


# --------------------------------------------------------------------------- the run
def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def start_record(cfg: RunConfig, *, run_dir: Path, models: list[str], device: str,
                 info: DatasetInfo) -> RunRecord:
    from mlbench.versions import versions

    record = RunRecord(
        run_id=run_dir.name, created=_now(), command=cfg.command,
        config={**cfg.to_json(), "models": models, "device_used": device},
        versions=versions(), dataset=info, events=[{"event": "started", "time": _now()}],
    )
    record.save(run_dir)  # from the first second on, --resume can find the run
    return record


def reopen_record(run_dir: Path, info: DatasetInfo) -> RunRecord:
    """The record of an interrupted run, with the interruption and this resumption logged."""
    from mlbench.errors import InputError

    record = RunRecord.load(run_dir)
    if record.dataset.labels != info.labels or record.dataset.train_counts != info.train_counts:
        raise InputError(f"--resume {run_dir}: the dataset no longer gives the labels this run was "
                         "started with; start a new run")
    if record.status == "running":
        stamp = datetime.fromtimestamp((run_dir / "results.json").stat().st_mtime).isoformat(timespec="seconds")
        record.events.append({"event": "interrupted", "time": stamp, "finished": list(record.models)})
    record.events.append({"event": "resumed", "time": _now(), "keeping": list(record.models)})
    record.status = "running"
    return record


def save_predictions(run_dir: Path, variant: str, ev: "Evaluation", scores: "Scores") -> None:
    """Test decisions per objective [n_test, L] (int8), out-of-sample and test scores
    (float32) and their pool rows, kept so a resumed run can still compare and ensemble the
    variants it did not retrain."""
    folder = run_dir / "predictions"
    folder.mkdir(exist_ok=True)
    extra = {} if scores.rows is None else {"val_rows": scores.rows}
    np.savez_compressed(folder / f"{history_name(variant)}.npz", **ev.predictions,
                        val_scores=scores.val, test_scores=scores.test, **extra)


def load_predictions(run_dir: Path, variant: str, val_rows: np.ndarray | None = None
                     ) -> tuple[dict[str, np.ndarray], Scores]:
    """What `save_predictions` kept; `val_rows`: the pool rows of validation, for files
    written without rows (validation scores)."""
    with np.load(run_dir / "predictions" / f"{history_name(variant)}.npz") as data:
        decisions = {k: data[k] for k in OBJECTIVES}
        rows = data["val_rows"] if "val_rows" in data else val_rows
        return decisions, Scores(data["val_scores"], data["test_scores"], None, rows)


def run_experiment(cfg: RunConfig, *, resume: Path | None = None) -> tuple[Path, RunRecord]:
    """Run every chosen track on one dataset; return the run folder and its record.

    With `resume` (an interrupted run's folder; `cfg` is its recorded configuration),
    variants already in the record are kept as they are, the interrupted Keras variant
    restarts from its last epoch checkpoint, and the remaining ones run as usual.
    """
    cfg.validate()  # before data and TensorFlow: a bad option costs nothing
    from mlbench.keras.device import configure_device, gpu_visible
    from mlbench.tracks import default_tracks

    with phase(f"load {cfg.dataset}"):  # before TensorFlow starts: bad input fails fast
        corpus = load_data(cfg)
        say(f"{len(corpus.train)} train / {len(corpus.val)} val / {len(corpus.test)} test documents")
    with phase("data health"):
        corpus, health = check_data(corpus, cfg)
    with phase("device"):
        device = configure_device(cfg.device, cpu_devices=cfg.cpu_devices, strategy=cfg.strategy)
        say(f"using {device}")
    scratch = worker_scratch(cfg)  # None unless a non-chief multiworker process
    models = cfg.models or default_tracks(gpu_visible())
    with phase("label space"):
        labels = LabelSpace.from_training_labels(corpus.train.labels)
        say(f"{len(labels)} labels")
    groups = FrequencyGroups(head_min=cfg.head_min, tail_max=cfg.tail_max)
    info = dataset_info(corpus, labels, groups)
    info.health = health
    if resume is None:
        run_dir = new_run_dir(scratch or Path(cfg.out), cfg.dataset)
        record = start_record(cfg, run_dir=run_dir, models=models, device=device, info=info)
    else:
        # a non-chief worker resumes from a copy: it reads the chief's state, writes nothing there
        run_dir = Path(resume) if scratch is None else Path(shutil.copytree(resume, scratch / Path(resume).name))
        record = reopen_record(run_dir, info)
        models = list(record.config.get("models") or models)
        say(f"resuming: keeping {', '.join(record.models) or 'no finished variant'}")
    say(f"run folder: {run_dir}")
    labels.save(run_dir / "labels.json")
    y_val, y_test = labels.encode(corpus.val.labels), labels.encode(corpus.test.labels)
    pool = Pool.make(corpus, labels, cfg, models)
    predictions: dict[str, dict[str, np.ndarray]] = {obj: {} for obj in OBJECTIVES}
    scored: dict[str, Scores] = {}
    fitted: dict[str, Track] = {}
    for variant in record.models:
        decisions, scored[variant] = load_predictions(run_dir, variant, pool.val_rows)
        for obj, pred in decisions.items():
            predictions[obj][variant] = pred
    started = time.perf_counter() - (record.total_seconds or 0.0)

    def keep(variant: str, model: ModelResult, ev: Evaluation, scores: Scores) -> None:
        record.models[variant] = model
        scored[variant] = scores
        for obj in OBJECTIVES:
            predictions[obj][variant] = ev.predictions[obj]
        save_predictions(run_dir, variant, ev, scores)
        say(console_line(variant, model))
        record.total_seconds = time.perf_counter() - started
        record.save(run_dir)  # finished variants survive a crash in a later one

    common = dict(cfg=cfg, corpus=corpus, labels=labels, groups=groups, run_dir=run_dir,
                  y_val=y_val, y_test=y_test, pool=pool)
    for name in models:
        cls = get_track_class(name)
        if cls.needs_members:
            continue  # built from the others below
        for loss in (cfg.losses if cls.uses_loss else [None]):
            variant = variant_name(name, loss, len(cfg.losses))
            if variant in record.models:
                continue
            model, ev, scores, track = run_variant(name, loss=loss, variant=variant, **common)
            fitted[variant] = track
            keep(variant, model, ev, scores)
    for name in models:
        cls = get_track_class(name)
        if cls.needs_members and name not in record.models:
            built = run_ensemble(name, record=record, scored=scored, fitted=fitted, **common)
            if built is not None:
                keep(name, *built)
    choose_best(record)
    if cfg.bootstrap and len(record.models) > 1:
        with phase("significance"):
            compare_to_best(record, predictions, y_test, n_resamples=cfg.bootstrap, seed=cfg.seed)
    record.total_seconds = time.perf_counter() - started
    record.status = "finished"
    record.events.append({"event": "finished", "time": _now()})
    record.save(run_dir)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    return run_dir, record


def worker_scratch(cfg: RunConfig) -> Path | None:
    """A scratch folder for a non-chief worker of ``--strategy multiworker``, else None.

    Why not skip the writes: every worker must take part in saving a model whose
    variables are distributed (`tf.distribute` rule), so a non-chief worker runs the
    same steps into this folder, which is removed when its run ends (or the process
    exits); only the chief (`mlbench.keras.strategy.is_chief`) writes the run folder.
    """
    if cfg.strategy != "multiworker":
        return None
    from mlbench.keras.strategy import is_chief, make_strategy

    strategy = make_strategy("multiworker")
    if is_chief(strategy):
        return None
    scratch = Path(tempfile.mkdtemp(prefix="mlbench-worker-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # also after a crash
    resolver = strategy.cluster_resolver
    say(f"multiworker: {resolver.task_type} {resolver.task_id} is not the chief: its run folder goes to "
        f"scratch {scratch} (removed at the end); the chief writes the run folder under {cfg.out}")
    return scratch


def record_variant(track: Track, scores: Scores, *, name: str, variant: str, y_eval: np.ndarray,
                   protocol: str, fitted_on: dict, cfg: RunConfig, corpus: Corpus, labels: LabelSpace,
                   groups: FrequencyGroups, run_dir: Path, y_test: np.ndarray
                   ) -> tuple[ModelResult, Evaluation]:
    """evaluate → export → error analysis → `ModelResult`: the step every variant shares
    (`run_variant` and `run_ensemble`), from its out-of-sample scores `scores.val` [m, L]
    (targets `y_eval` [m, L]) and test scores.  The caller adds what its fit knows
    (loss, history, search, sizes, notices)."""
    with phase(f"{variant}: evaluate"):
        ev = evaluate_variant(scores, y_val=y_eval, y_test=y_test, labels=labels, groups=groups,
                              bootstrap=cfg.bootstrap, seed=cfg.seed)
    with phase(f"{variant}: export"):
        export_dir, export_bytes = export_variant(track, run_dir=run_dir, variant=variant, evaluation=ev,
                                                  labels=labels)
    with phase(f"{variant}: error analysis"):
        errors = analyse_errors(track, ev, scores, corpus, labels, y_test)
    model = ModelResult(
        track=name, family=get_track_class(name).family, rules=ev.results, chosen_rule=ev.chosen,
        inference_docs_per_s=scores.test_docs_per_s, examples=examples(scores.test, corpus, labels),
        export_dir=export_dir, export_bytes=export_bytes, calibration=ev.calibration_summary,
        errors=errors, protocol=protocol, fitted_on=fitted_on)
    return model, ev


def run_variant(name: str, *, loss: str | None, variant: str, cfg: RunConfig, corpus: Corpus,
                labels: LabelSpace, groups: FrequencyGroups, run_dir: Path, y_val: np.ndarray,
                y_test: np.ndarray, pool: "Pool | None" = None
                ) -> tuple[ModelResult, Evaluation, Scores, Track]:
    """fit → evaluate → export → record, for one variant (cross-fitted when `pool.cv(name)`)."""
    cls = get_track_class(name)
    workdir = run_dir / "checkpoints" / history_name(variant)  # scratch: not named like an export
    settings = track_settings(cfg, name, loss=loss, workdir=workdir)
    cv = pool is not None and pool.cv(name)
    with phase(f"{variant}: train"):
        if cv:
            from mlbench.protocol import cross_fit

            say(f"{variant}: --protocol cv, {len(pool.folds)}-fold cross-fitting on {len(pool.split)} "
                "train+val documents, then a refit on all of them")

            fit = cross_fit(name, settings, pool.split, labels, pool.folds, tune=cfg.tuning,
                            objective=cfg.select, cache=run_dir / "folds" / history_name(variant),
                            progress=say)
            fitted = Fitted(fit.track, fit.track.history, fit.seconds,
                            None if fit.search is None else SearchResult.from_json(fit.search))
        else:
            fitted = fit_variant(name, settings=settings, corpus=corpus, labels=labels,
                                 tune=cfg.tuning, objective=cfg.select)
    with phase(f"{variant}: score"):
        if cv:
            start = time.perf_counter()
            test = fitted.track.predict_scores(corpus.test.texts)
            seconds = time.perf_counter() - start
            scores = Scores(fit.oof, test, len(corpus.test) / seconds if seconds > 0 else None, fit.rows)
            y_eval = pool.y[fit.rows]
        else:
            scores = score_variant(fitted.track, corpus)
            scores.rows = None if pool is None else pool.val_rows
            y_eval = y_val
    model, ev = record_variant(
        fitted.track, scores, name=name, variant=variant, y_eval=y_eval, protocol="cv" if cv else "holdout",
        fitted_on=(pool.fitted_on(len(scores.rows), refit=True) if cv
                   else {"split": "validation", "rows": len(y_val), "folds": None, "refit_rows": None}),
        cfg=cfg, corpus=corpus, labels=labels, groups=groups, run_dir=run_dir, y_test=y_test)
    describe = fitted.track.describe()
    model.loss, model.describe, model.train_seconds = loss, describe, fitted.seconds
    model.size_bytes, model.parameters = fitted.track.size_bytes(), describe.get("parameters")
    model.history, model.search = fitted.history, fitted.search
    model.notices = list(fitted.track.notices)
    if cfg.seeds > 1 and cls.stochastic:
        params = fitted.search.chosen if fitted.search is not None else None
        for i in range(1, cfg.seeds):
            with phase(f"{variant}: seed {cfg.seed + i} ({i + 1}/{cfg.seeds})"):
                extra = seed_metrics(
                    name, cfg=cfg, corpus=corpus, labels=labels, y_val=y_val, y_test=y_test,
                    groups=groups, loss=loss, seed=cfg.seed + i, params=params)
                if cv:  # a repeat seed is fitted on train and judged on validation only
                    extra["protocol"] = "holdout"
                model.seeds.append(extra)
    _write_history(run_dir, variant, fitted.history)
    return model, ev, scores, fitted.track


#: most members an ensemble averages (its weight grid grows as a simplex over them)
MAX_ENSEMBLE_MEMBERS = 4


def common_rows(scores: list[Scores]) -> np.ndarray | None:
    """Pool rows where every member has an out-of-sample score (sorted), None when some
    member's rows are unknown (then all are validation rows)."""
    if any(s.rows is None for s in scores):
        return None
    rows = scores[0].rows
    for s in scores[1:]:
        rows = np.intersect1d(rows, s.rows)
    return np.asarray(rows)


def on_rows(scores: Scores, rows: np.ndarray | None) -> np.ndarray:
    """`scores.val` restricted to pool `rows` (sorted, a subset of `scores.rows`) [len(rows), L]."""
    if rows is None or np.array_equal(rows, scores.rows):
        return scores.val
    return scores.val[np.searchsorted(scores.rows, rows)]


def run_ensemble(name: str, *, record: RunRecord, scored: dict[str, Scores], fitted: dict[str, Track],
                 cfg: RunConfig, corpus: Corpus, labels: LabelSpace, groups: FrequencyGroups,
                 run_dir: Path, y_val: np.ndarray, y_test: np.ndarray, pool: Pool | None = None
                 ) -> tuple[ModelResult, Evaluation, Scores] | None:
    """The ensemble of the variants that export a SavedModel, from their stored scores.

    Members: every such variant trained in this run (at most `MAX_ENSEMBLE_MEMBERS`, the
    best on cross-fitted validation for `--select`); weights (a stacking ensemble) chosen
    on the pool rows where every member has an out-of-sample score: all of train+val when
    every member is cross-fitted, the validation rows when one is on holdout (cross-fitted
    inside the track); test scores are the same weighted average of the members' test
    scores (cross-fitted members: their refit models).  Needs two members, else skipped.
    """
    from mlbench.serving.artifacts import load_artifact
    from mlbench.tracks import get_track_class as track_class

    key = OBJECTIVES[cfg.select]
    candidates = [v for v, m in record.models.items() if m.export_dir and v in scored
                  and track_class(m.track).export_format == "savedmodel"
                  and not track_class(m.track).needs_members]
    candidates.sort(key=lambda v: -(record.models[v].rules[record.models[v].chosen_rule[cfg.select]]
                                    .val_cv.get(key) or 0.0))
    members = candidates[:MAX_ENSEMBLE_MEMBERS]
    if len(members) < 2:
        say(f"[{name}] skipped: needs two members that export a SavedModel, have {len(members)}")
        return None
    tracks = {v: fitted.get(v) or _ArtifactMember(load_artifact(run_dir / record.models[v].export_dir))
              for v in members}
    cls = track_class(name)
    settings = track_settings(cfg, name, loss=None, workdir=None)
    rows = common_rows([scored[v] for v in members])
    member_val = {v: on_rows(scored[v], rows) for v in members}
    on_val = pool is None or rows is None or np.array_equal(rows, pool.val_rows)
    y_eval = y_val if on_val else pool.y[rows]
    with phase(f"{name}: weights over {', '.join(members)} on {len(y_eval)} out-of-sample rows") as timing:
        member_exports = {v: run_dir / record.models[v].export_dir for v in members}
        track = cls.from_members(settings, tracks, objective=cfg.select, member_exports=member_exports)
        track.labels = labels
        track.fit_from_scores(member_val, y_eval)
    weights = np.array([track.weights[v] for v in members])
    test = np.tensordot(weights, np.stack([scored[v].test for v in members]), axes=1).astype(np.float32)
    val = np.tensordot(weights, np.stack([member_val[v] for v in members]), axes=1).astype(np.float32)
    rates = [record.models[v].inference_docs_per_s for v in members if track.weights[v] > 0]
    speed = 1.0 / sum(1.0 / r for r in rates) if rates and all(rates) else None  # members run in turn
    scores = Scores(val, test, speed, rows)
    model, ev = record_variant(
        track, scores, name=name, variant=name, y_eval=y_eval,
        protocol="cv" if all(record.models[v].protocol == "cv" for v in members) else "holdout",
        fitted_on=({"split": "validation", "rows": len(y_eval), "folds": None, "refit_rows": None} if on_val
                   else pool.fitted_on(len(y_eval), refit=False)),
        cfg=cfg, corpus=corpus, labels=labels, groups=groups, run_dir=run_dir, y_test=y_test)
    model.describe, model.train_seconds, model.size_bytes = track.describe(), timing["seconds"], model.export_bytes
    model.notices = [f"members: {', '.join(f'{v} × {track.weights[v]:.2f}' for v in members)}"]
    return model, ev, scores


class _ArtifactMember(Track):
    """A member kept from before a resume: its exported model stands in for the fitted track."""

    name = "exported"

    def __init__(self, artifact) -> None:
        super().__init__()
        self.artifact = artifact
        self.labels = None

    def fit(self, train, val, labels):  # pragma: no cover - never refitted
        raise RuntimeError("an exported member is not refitted")

    def predict_scores(self, texts):
        return self.artifact.predict(texts)


def choose_best(record: RunRecord) -> None:
    """Store the best (variant, rule) per objective, chosen on cross-fitted validation."""
    for obj in OBJECTIVES:
        best = record.best_for(obj)
        if best is not None:
            record.best[obj] = {"model": best[0], "rule": best[1]}


def compare_to_best(record: RunRecord, predictions: dict[str, dict[str, np.ndarray]],
                    y_test: np.ndarray, *, n_resamples: int, seed: int) -> None:
    """Mark, per objective, the variants not significantly worse than the best on test."""
    from mlbench.evaluation.bootstrap import METHOD_SENTENCE, not_worse_than_best

    for obj, key in OBJECTIVES.items():
        best = record.best.get(obj, {}).get("model")  # the best on validation, as the badge says
        record.not_worse[obj] = not_worse_than_best(predictions[obj], y_test, metric=key,
                                                    n_resamples=n_resamples, seed=seed, best=best)
    record.significance_method = METHOD_SENTENCE


def _write_history(run_dir: Path, variant: str, history: dict) -> None:
    import json

    (run_dir / "history").mkdir(exist_ok=True)
    (run_dir / "history" / f"{history_name(variant)}.json").write_text(
        json.dumps(history, indent=1), encoding="utf-8")
