"""RunRecord: the one thing an experiment produces and every consumer reads.

The report, `predict`/serving metadata and the benchmark scripts read a run only
through this module: `RunRecord.load(run_dir)` gives typed fields, and the names
every consumer needs (metric keys, rule names, label groups, selection objectives)
are defined here once.  results.json is `RunRecord.to_json()`; a file written by an
older schema is refused with a message naming its version.

Shapes: per-label lists (``train_counts``, ``label_groups``, ``per_label_f1_test``)
have one entry per label in ``dataset.labels`` order.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from mlbench.errors import InputError

SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"

#: decision rules, in reading order (fitted on validation by `mlbench.evaluation.thresholds`)
RULES: tuple[str, ...] = ("fixed", "global", "per_label", "scutfbr")

#: selection objectives: `--select micro|macro` → the metric compared on cross-fitted validation
OBJECTIVES: dict[str, str] = {"micro": "f1_micro", "macro": "f1_macro"}
DEFAULT_OBJECTIVE = "micro"

#: evaluation protocols (`--protocol`; `mlbench.protocol`): cross-fitted on train+val, or train/validation
PROTOCOLS: tuple[str, ...] = ("cv", "holdout")

#: label-frequency groups by number of training documents (bounds in `DatasetInfo.groups`)
LABEL_GROUPS: tuple[str, ...] = ("head", "medium", "tail")


@dataclass(frozen=True)
class Metric:
    """One table column: the metric's key in `evaluate()` output, its label, which way is better."""

    key: str
    label: str
    higher_is_better: bool = True
    digits: int = 3


#: test metrics shown in the comparison table, in column order
TEST_METRICS: tuple[Metric, ...] = (
    Metric("f1_micro", "Micro F1"),
    Metric("f1_macro", "Macro F1"),
    Metric("f1_samples", "Samples F1"),
    Metric("precision_micro", "Micro P"),
    Metric("precision_macro", "Macro P"),
    Metric("recall_micro", "Micro R"),
    Metric("recall_macro", "Macro R"),
    Metric("binary_accuracy", "Binary acc.", digits=4),
    Metric("hamming_loss", "Hamming loss", higher_is_better=False, digits=4),
    Metric("subset_accuracy", "Subset acc."),
    Metric("p_at_1", "P@1"),
    Metric("p_at_3", "P@3"),
    Metric("p_at_5", "P@5"),
    Metric("roc_auc_micro", "ROC-AUC"),
)

#: F1 by label-frequency group
GROUP_METRICS: tuple[Metric, ...] = (
    Metric("f1_micro", "Total micro"),
    Metric("f1_macro", "Total macro"),
    *(Metric(f"{g}_f1_{a}", f"{g.capitalize()} {a}") for g in LABEL_GROUPS for a in ("micro", "macro")),
)

#: metrics that do not depend on the threshold (left out of cross-fitted validation)
RANKING_KEYS: tuple[str, ...] = ("p_at_1", "p_at_3", "p_at_5", "roc_auc_micro")


def objective_key(objective: str) -> str:
    """``"micro"`` → ``"f1_micro"``; InputError for an unknown objective."""
    if objective not in OBJECTIVES:
        raise InputError(f"--select must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return OBJECTIVES[objective]


def group_of(count: int, head_min: int, tail_max: int) -> str:
    """The label group of a label with `count` training documents."""
    return "head" if count >= head_min else "tail" if count <= tail_max else "medium"


@dataclass
class RuleResult:
    """One decision rule of one model: its thresholds and its metrics.

    ``val`` is in-sample (thresholds fitted on those documents); ``val_cv`` comes from
    k-fold cross-fitted thresholds and is what rules are chosen on (both on the rows of
    `ModelResult.fitted_on`: validation, or out-of-fold scores of train+val); ``test_ci`` holds
    95% paired-bootstrap intervals ``[lo, hi]`` per test metric.
    """

    threshold: float | list[float]
    fallback_labels: list[int] = field(default_factory=list)
    val: dict[str, Any] = field(default_factory=dict)
    val_cv: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    test_ci: dict[str, list[float]] = field(default_factory=dict)
    per_label_f1_test: list[float] = field(default_factory=list)

    @property
    def validation(self) -> dict[str, Any]:
        """Cross-fitted validation metrics (``val_cv``) when recorded, else the in-sample
        ones (which flatter rules whose thresholds were fitted on validation)."""
        return self.val_cv or self.val

    def ci(self, key: str) -> tuple[float, float] | None:
        """The 95% test interval of metric `key` (None when not recorded or malformed)."""
        pair = self.test_ci.get(key)
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or None in pair:
            return None
        return float(pair[0]), float(pair[1])


@dataclass
class CalibrationScores:
    """Calibration metrics of one set of test scores (`mlbench.evaluation.metrics.calibration_metrics`)."""

    brier: float | None = None
    log_loss: float | None = None
    ece: float | None = None
    ece_top5: float | None = None


#: calibration metrics kept in the record, in `CalibrationScores` order
CALIBRATION_KEYS: tuple[str, ...] = ("brier", "log_loss", "ece", "ece_top5")


@dataclass
class CalibrationResult:
    """The calibration map chosen and fitted on out-of-sample scores, judged on test
    (`mlbench.evaluation.calibration.calibrate_scores`).

    ``maps``: how many labels got each kind of map, e.g. {"platt": 18}; ``bins``: reliability
    bins; ``chosen_by``: {"criterion": .., "candidates": {method: out-of-fold ECE top-5}};
    ``reliability``: {"raw" | "calibrated": {"all" | "top5": {"edges", "mean_score",
    "frequency", "count"}}} (15 bins each).
    """

    method: str = ""
    maps: dict[str, int] = field(default_factory=dict)
    bins: int | None = None
    chosen_by: dict[str, Any] = field(default_factory=dict)
    raw: CalibrationScores = field(default_factory=CalibrationScores)
    calibrated: CalibrationScores = field(default_factory=CalibrationScores)
    reliability: dict[str, dict[str, dict[str, list]]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CalibrationResult":
        d = _known(cls, data)
        for side in ("raw", "calibrated"):
            d[side] = CalibrationScores(**_known(CalibrationScores, d.get(side) or {}))
        return cls(**d)


@dataclass
class SubsetScores:
    """Test F1 on one kind of document (single-label, multi-label, unlabeled)."""

    documents: int = 0
    f1_micro: float | None = None
    f1_macro: float | None = None


@dataclass
class ErrorAnalysis:
    """Error analysis on test under the micro-chosen rule (`mlbench.evaluation.errors`).

    ``errors``: {"false_negatives": n, "false_positives": n} over all cells;
    ``confusions``: [{"true", "predicted", "count", "examples": [..]}], most frequent first;
    ``false_negatives`` / ``false_positives``: example dicts ({"doc", "text", "true",
    "predicted", "label", "score", "threshold", "explanation", ...}); ``breakdown``: by
    kind of document; ``overfitted_tokens``: [{"token", ...}]; ``explained``: documents
    explained, ``explain_note`` why not when none.
    """

    rule: str = ""
    errors: dict[str, int] = field(default_factory=dict)
    confusions: list[dict[str, Any]] = field(default_factory=list)
    false_negatives: list[dict[str, Any]] = field(default_factory=list)
    false_positives: list[dict[str, Any]] = field(default_factory=list)
    breakdown: dict[str, SubsetScores] = field(default_factory=dict)
    overfitted_tokens: list[dict[str, Any]] = field(default_factory=list)
    explained: int = 0
    explain_note: str | None = None
    explain_top_n: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ErrorAnalysis":
        d = _known(cls, data)
        d["breakdown"] = {k: SubsetScores(**_known(SubsetScores, v))
                          for k, v in (d.get("breakdown") or {}).items()}
        return cls(**d)


@dataclass
class SearchResult:
    """What a hyper-parameter search tried and chose (`mlbench.tuning.search`).

    ``grid[i]`` is the i-th point fitted, ``scores[i]`` its validation score (best
    cross-fitted `metric` over the rules) and ``rules[i]`` the rule reaching it.
    """

    track: str = ""
    objective: str = DEFAULT_OBJECTIVE
    metric: str = ""
    method: str = ""  # "grid" | "coordinate" | "none" (empty space)
    evaluation: str = ""  # how points were scored, e.g. "validation (1000 docs)"
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
        return plain_json(asdict(self))

    @classmethod
    def from_json(cls, data: "dict[str, Any] | SearchResult") -> "SearchResult":
        return data if isinstance(data, SearchResult) else cls(**_known(cls, data))


@dataclass
class ModelResult:
    """One trained variant (a track, possibly with a loss): everything the report shows of it."""

    track: str
    family: str
    loss: str | None = None
    describe: dict[str, Any] = field(default_factory=dict)
    train_seconds: float | None = None
    size_bytes: int | None = None
    parameters: int | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    rules: dict[str, RuleResult] = field(default_factory=dict)
    #: the rule chosen on cross-fitted validation for each objective, e.g. {"micro": "global"}
    chosen_rule: dict[str, str] = field(default_factory=dict)
    inference_docs_per_s: float | None = None
    examples: list[dict] = field(default_factory=list)
    export_dir: str | None = None
    export_bytes: int | None = None
    #: the hyper-parameter search, None when not tuned
    search: SearchResult | None = None
    #: per-seed test metrics under the micro-chosen rule when `--seeds N` > 1
    seeds: list[dict[str, Any]] = field(default_factory=list)
    #: facts about the fit a reader should see (e.g. a solver that did not converge)
    notices: list[str] = field(default_factory=list)
    #: calibration fitted on out-of-sample scores, judged on test; None in records written
    #: before calibration existed (or when validation was too small to calibrate)
    calibration: CalibrationResult | None = None
    #: error analysis under the micro-chosen rule; None when absent
    errors: ErrorAnalysis | None = None
    #: where its rules, calibration and search were fitted (`mlbench.protocol`): "holdout"
    #: (fit on train, chosen on validation; records before the protocol existed) or "cv"
    #: (cross-fitted on train+val, out-of-fold scores, refit on train+val for test)
    protocol: str = "holdout"
    #: the rows those choices read: {"split": "validation" | "out-of-fold train+val" | ...,
    #: "rows": n, "folds": K or None, "refit_rows": n or None}; the rules' ``val`` / ``val_cv``
    #: metrics are on these rows (out-of-fold metrics beside test under "cv")
    fitted_on: dict[str, Any] = field(default_factory=dict)

    @property
    def best_rule(self) -> str:
        """The rule chosen for the default objective."""
        return self.chosen_rule.get(DEFAULT_OBJECTIVE) or next(iter(self.rules), "fixed")

    def rule_for(self, objective: str = DEFAULT_OBJECTIVE) -> str | None:
        """The rule chosen for `objective` on cross-fitted validation (None when not recorded)."""
        rule = self.chosen_rule.get(objective)
        return rule if rule in self.rules else None

    def rules_in_order(self) -> dict[str, RuleResult]:
        """The decision rules, known ones first in `RULES` order."""
        known = [r for r in RULES if r in self.rules]
        return {r: self.rules[r] for r in known + [r for r in self.rules if r not in known]}

    @property
    def has_history(self) -> bool:
        """Only Keras models log epochs; an SVM's history is {} and gets no curves."""
        return any(len(v) > 0 for v in self.history.values())

    @property
    def is_keras(self) -> bool:
        return self.has_history or self.loss is not None

    def test_metrics(self, objective: str = DEFAULT_OBJECTIVE) -> dict[str, Any]:
        """Test metrics under the rule chosen for `objective`."""
        rule = self.chosen_rule.get(objective, self.best_rule)
        return self.rules[rule].test if rule in self.rules else {}


@dataclass
class DatasetInfo:
    """The data a run used: split sizes and provenance, label names, counts and groups."""

    name: str
    labels: list[str]
    train_counts: list[int]
    groups: dict[str, int]  # {"head_min": .., "tail_max": ..}
    label_groups: list[str]  # head / medium / tail per label
    stats: dict[str, Any] = field(default_factory=dict)  # Corpus.stats(): sizes, source, split origin
    health: dict[str, Any] | None = None  # the data health check (`mlbench.data.health`)


@dataclass
class RunRecord:
    """A whole run: configuration, versions, data, one ModelResult per variant, and the verdict."""

    run_id: str
    created: str
    command: str
    config: dict[str, Any]
    versions: dict[str, str]
    dataset: DatasetInfo
    models: dict[str, ModelResult] = field(default_factory=dict)
    #: the best (variant, rule) per objective on cross-fitted validation: {"micro": {"model":.., "rule":..}}
    best: dict[str, dict[str, str]] = field(default_factory=dict)
    #: per objective, per variant: not significantly worse than the best on test (paired bootstrap)
    not_worse: dict[str, dict[str, bool]] = field(default_factory=dict)
    significance_method: str = ""
    total_seconds: float | None = None
    #: "running" until every variant is recorded, then "finished" (`--resume` reads it)
    status: str = "running"
    events: list[dict[str, Any]] = field(default_factory=list)  # started / interrupted / resumed / finished
    schema_version: int = SCHEMA_VERSION

    def best_for(self, objective: str = DEFAULT_OBJECTIVE, *,
                 where: Callable[[ModelResult], bool] | None = None) -> tuple[str, str] | None:
        """The (variant, rule) with the best cross-fitted validation metric of `objective`.

        Each variant competes under the rule chosen for that objective (itself the best
        rule on cross-fitted validation), so this is the best configuration overall;
        `where` restricts the candidates (e.g. Keras tracks only).  Ties keep the earlier
        variant.  Test metrics never enter.
        """
        key = objective_key(objective)
        best, best_value = None, -math.inf
        for variant, model in self.models.items():
            if where is not None and not where(model):
                continue
            rule = model.chosen_rule.get(objective)
            value = model.rules[rule].val_cv.get(key) if rule in model.rules else None
            if value is not None and value > best_value:
                best, best_value = (variant, rule), value
        return best

    def best_config(self, objective: str = DEFAULT_OBJECTIVE) -> tuple[str, str] | None:
        """The recorded best (variant, rule) for `objective` (test never picks); None when
        absent or pointing at a variant or rule the record does not hold."""
        best = self.best.get(objective) or {}
        name, rule = best.get("model"), best.get("rule")
        return (name, rule) if name in self.models and rule in self.models[name].rules else None

    def baseline_config(self) -> tuple[str, str] | None:
        """The reference point: the first Keras model trained with BCE under the fixed 0.5
        rule; else the first Keras model, else the first model (with a fixed rule)."""
        for pick in (lambda m: m.loss == "bce" and m.is_keras, lambda m: m.is_keras, lambda m: True):
            for name, model in self.models.items():
                if pick(model) and "fixed" in model.rules:
                    return name, "fixed"
        return None

    def near_best(self, objective: str) -> dict[str, bool]:
        """``variant -> True`` where the paired bootstrap found it not significantly worse
        than the best for `objective` (absent: not tested)."""
        return {k: v is True for k, v in (self.not_worse.get(objective) or {}).items()}

    @property
    def n_seeds(self) -> int:
        """Training seeds per stochastic variant (``config.seeds``); 1 when not recorded."""
        n = self.config.get("seeds")
        return int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) and n >= 1 else 1

    # -- JSON -------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return plain_json(asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str = RESULTS_FILE) -> "RunRecord":
        version = data.get("schema_version", 1) if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            raise InputError(
                f"{source}: results schema version {version} (this mlbench reads version "
                f"{SCHEMA_VERSION}); re-run the experiment to get a record this report can read")
        try:
            d = dict(data)
            d["dataset"] = DatasetInfo(**_known(DatasetInfo, d["dataset"]))
            models = {}
            for name, m in d.get("models", {}).items():
                m = _known(ModelResult, m)
                m["rules"] = {r: RuleResult(**_known(RuleResult, v)) for r, v in m.get("rules", {}).items()}
                for key, typed in (("calibration", CalibrationResult), ("errors", ErrorAnalysis),
                                   ("search", SearchResult)):
                    if m.get(key) is not None:
                        m[key] = typed.from_json(m[key])
                models[name] = ModelResult(**m)
            d["models"] = models
            return cls(**_known(cls, d))
        except (KeyError, TypeError, AttributeError) as err:
            raise InputError(f"{source}: not a RunRecord of schema {SCHEMA_VERSION} ({err})") from None

    def save(self, run_dir: str | Path) -> Path:
        """Write results.json atomically (a crash mid-write never leaves half a file)."""
        path = Path(run_dir) / RESULTS_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RunRecord":
        """Read a run folder's results.json (or the file itself)."""
        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: no results.json here (is this a run folder?)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: cannot read results ({err})") from None
        return cls.from_json(data, source=str(path))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of `data` that are fields of dataclass `cls` (newer optional keys are ignored)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in dict(data).items() if k in names}


def plain_json(obj: Any) -> Any:
    """NumPy scalars/arrays, tuples and Paths → JSON types (recursively; one home for it)."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj
