"""The Track contract and the registry the driver picks tracks from.

A Track knows nothing about files, reports or other tracks: it fits on a train and
validation split, scores texts into [0, 1] per label, and (where its framework
allows) exports a SavedModel that takes raw strings.  Adding a model is one Track
file plus one line in the registry table (`_REGISTRY`, or `register`).

What is special about a track is declared on its class, so the command line, the
config check, the driver, the tuner, serving and explain code never name one: its
hyper-parameters (`params`: `Param` defaults beside their constraints, and the
`mlbench run` flag that sets one), the pip extra it needs (`extra`, `requires`),
what its explainer computes (`explains`), whether it is built from other fitted
tracks (`needs_members`, `from_members`), the tuner's shared-features fast path
(`SharedFeatures`), and its `notices` and `history` after a fit.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from mlbench.data.corpus import Split
from mlbench.labels import LabelSpace


@dataclass
class TrainSettings:
    """What the driver tells every track; each track reads what applies to it."""

    epochs: int | None = None  # None: the track's own default
    batch_size: int | None = None
    seed: int = 42
    quick: bool = False  # small, fast configuration for smoke runs and CI
    loss: str = "bce"  # Keras tracks: a name from mlbench.keras.losses
    workdir: Path | None = None  # checkpoints and scratch files for this track
    verbose: int = 2  # Keras fit verbosity (2: one line per epoch)
    options: dict = field(default_factory=dict)  # track-specific extras (e.g. encoder preset)
    #: Keras tracks: tf.distribute strategy name (`mlbench.keras.strategy`: default|mirrored|multiworker)
    strategy: str = "default"
    #: linear tracks: parallel joblib jobs (None or -1: all cores)
    n_jobs: int | None = None
    #: Keras tracks: a TensorBoard log folder for this variant (None: no TensorBoard)
    tensorboard: Path | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["workdir"] = str(self.workdir) if self.workdir else None
        d["tensorboard"] = str(self.tensorboard) if self.tensorboard else None
        return d


class _Unset:
    """A constructor argument left out: ``settings.options``, then the declared default, decide."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class Param:
    """One hyper-parameter a track reads, its default beside its constraint (in the spirit
    of scikit-learn's ``_parameter_constraints``); one schema for the track's constructor,
    the tuner's points and the command line.

    `default` is a value, or a callable ``(settings, resolved) -> value`` for a default that
    depends on the run (``--quick``, ``--epochs``) or on a parameter declared before it (a
    preset); `convert` (applied to non-None values) turns command-line or JSON text into
    the type; `check` is the constraint on the converted value, `expected` says it in
    words ("> 0", "an integer from 8 to 4096").  `flag` is the `mlbench run` option that
    sets it (one flag may set a parameter of several tracks), `help` its help text.
    """

    default: Any = None
    check: Callable[[Any], bool] | None = None
    expected: str = ""
    convert: Callable[[Any], Any] | None = None
    flag: str | None = None
    help: str = ""

    def value(self, name: str, value: Any) -> Any:
        """`value` converted and checked; ValueError ``"<name> must be <expected>, got …"``."""
        try:
            out = self.convert(value) if self.convert is not None and value is not None else value
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be {self.expected or 'convertible'}, got {value!r}") from None
        if self.check is not None and not self.check(out):
            raise ValueError(f"{name} must be {self.expected}, got {value!r}")
        return out

    def default_for(self, settings: "TrainSettings", resolved: Mapping[str, Any]) -> Any:
        return self.default(settings, resolved) if callable(self.default) else self.default


def with_defaults(params: Mapping[str, Param], **defaults: Any) -> dict[str, Param]:
    """`params` with new defaults (a subclass's own), constraints unchanged."""
    import dataclasses

    unknown = sorted(set(defaults) - set(params))
    if unknown:
        raise KeyError(f"no such parameter(s) {unknown}; declared: {sorted(params)}")
    return {k: dataclasses.replace(p, default=defaults[k]) if k in defaults else p for k, p in params.items()}


class Track(abc.ABC):
    """A multi-label text classifier under test."""

    name: ClassVar[str]
    family: ClassVar[str] = "baseline"
    #: part of the default `--models` on a CPU-only machine (False for tracks too
    #: slow to train on CPU; they still join the default when a GPU is present)
    cpu_default: ClassVar[bool] = True
    #: trains with a Keras loss from `mlbench.keras.losses` (so `--loss a,b` makes variants)
    uses_loss: ClassVar[bool] = False
    #: its fit depends on the seed (so `--seeds N` repeats it); False for deterministic solvers
    stochastic: ClassVar[bool] = True
    #: what `export` writes: "savedmodel" (a raw-string TF SavedModel with the
    #: `serving_default` and `decisions` signatures) or another format's name
    #: (e.g. "fasttext"); the contract test runs SavedModel checks only for "savedmodel"
    export_format: ClassVar[str] = "savedmodel"
    #: what `mlbench export-onnx` rebuilds from this track's SavedModel: the name of a
    #: core in `mlbench.serving.onnx_export` ("tfidf_mlp", "linear", "token_ids": see
    #: `onnx_keras_model`), or None when the track has no ONNX export
    onnx_core: ClassVar[str | None] = None
    #: validation search (`mlbench.tuning`): option name → candidates, applied through
    #: ``settings.options``; empty = nothing to tune.  Never mutate it in place.
    search_space: ClassVar[dict[str, list]] = {}
    #: most points the search may fit (None: the whole grid); beyond it, coordinate search
    search_budget: ClassVar[int | None] = None
    #: cheap enough to fit K times: under ``--protocol cv`` (`mlbench.protocol`) it is
    #: cross-fitted on K folds of train+val and refit on all of them; else holdout
    cheap_fit: ClassVar[bool] = False
    #: its fits (per-label chunks, fold fits, search points on shared features) are plain
    #: picklable work that ``--dask`` may send to a cluster (`mlbench.cluster`); Keras stays local
    cluster_fit: ClassVar[bool] = False
    #: its `fit` reads the validation split (e.g. Keras early stopping): under cross-fitting
    #: each fold fit validates on an inner slice of its own training rows, and the refit on
    #: all train+val gets an empty validation split and the fold fits' median best epoch
    fits_on_validation: ClassVar[bool] = False
    #: hyper-parameters (name → `Param`), resolved by `resolve_params`: the constructor's
    #: value, else ``settings.options[name]`` (the tuner's points, the command line), else
    #: the default; every value checked against its constraint
    params: ClassVar[dict[str, Param]] = {}
    #: the pip extra this track needs beyond the core install (``pip install -e '.[extra]'``)
    extra: ClassVar[str | None] = None
    #: top-level modules that extra provides, looked up without importing them
    #: (`missing_requirements`); a track missing one is not available
    requires: ClassVar[tuple[str, ...]] = ()
    #: what `explainer()` attributes scores to, in words; None: the track has no explainer
    explains: ClassVar[str | None] = None
    #: built from other fitted tracks (`from_members`): the driver fits the others first
    needs_members: ClassVar[bool] = False

    def __init__(self, settings: TrainSettings | None = None):
        self.settings = settings or TrainSettings()
        self.labels: LabelSpace | None = None
        #: facts about the last fit worth a line in the record (e.g. non-convergence)
        self.notices: list[str] = []
        #: the last fit's per-epoch history (metric → values), set by whoever fits the track
        self.history: dict[str, list[float]] = {}

    def resolve_params(self, given: Mapping[str, Any] | None = None, *,
                       unknown: str = "ignore") -> dict[str, Any]:
        """Every declared parameter's value: ``given[name]`` (UNSET: left out), else
        ``settings.options[name]``, else its default, in declaration order; each checked
        (ValueError naming the parameter).  ``unknown="error"``: an option or argument
        this track does not declare is a ValueError listing the valid names."""
        given = {k: v for k, v in (given or {}).items() if v is not UNSET}
        options = self.settings.options or {}
        if unknown == "error":
            extra = sorted((set(options) | set(given)) - set(self.params))
            if extra:
                raise ValueError(f"unknown {self.name} option(s) {extra}; valid: {sorted(self.params)}")
        out: dict[str, Any] = {}
        for key, param in self.params.items():
            value = given[key] if key in given else options.get(key, UNSET)
            out[key] = param.value(key, param.default_for(self.settings, out) if value is UNSET else value)
        return out

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """The `requires` modules not installed here (`importlib.util.find_spec`: no import)."""
        from importlib.util import find_spec

        return [m for m in cls.requires if find_spec(m) is None]

    @classmethod
    def check_requirements(cls) -> None:
        """ImportError saying which extra to install when this track cannot run here (the
        registry then leaves it out); by default, `missing_requirements`."""
        missing = cls.missing_requirements()
        if missing:
            raise ImportError(f"{cls.name} needs {', '.join(missing)}: pip install -e '.[{cls.extra}]'")

    @classmethod
    def from_members(cls, settings: TrainSettings, members: Mapping[str, "Track"], *, objective: str,
                     member_exports: Mapping[str, Path] | None = None) -> "Track":
        """A `needs_members` track over fitted `members` {variant: Track}, choosing for
        `objective`; `member_exports` {variant: export folder} lets its export reuse theirs."""
        raise TypeError(f"{cls.__name__} is not built from member tracks (needs_members is False)")

    @abc.abstractmethod
    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict[str, list[float]]:
        """Train; return the per-epoch history (metric name -> values), empty if none."""

    @abc.abstractmethod
    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        """Scores in [0, 1], shape [len(texts), n_labels], 0.5 the default cut-off."""

    def export(self, directory: Path, *, thresholds: np.ndarray | None = None) -> Path | None:
        """Write the fitted model into `directory` (format `export_format`); None if unsupported.

        `thresholds` are the best decision rule's per-label cut-offs, shape [n_labels]
        (a scalar is broadcast; None means 0.5): a SavedModel bakes them into its
        ``decisions`` signature (``labels = scores >= thresholds``).
        """
        return None

    def explainer(self, top_n: int | None = None) -> Any:
        """The fitted model's in-graph explainer (`mlbench.explain.graph.GraphExplainer`,
        `top_n` tokens per label), or None when the track has none; a SavedModel export
        carries it as its ``explain`` signature."""
        return None

    @classmethod
    def onnx_keras_model(cls, meta: dict, n_labels: int, shapes: dict[str, tuple]) -> Any:
        """For ``onnx_core = "token_ids"``: the classifier (token ids [B, T] → float32 logits
        [B, n_labels]) rebuilt from the export's mlbench.json `meta`, dropout off, with ops
        ONNX can express; the exporter assigns the SavedModel's weights by variable path.
        `shapes` ({variable path: shape}) serves only exports older than their ``meta``'s
        architecture record.  The track builds it, so serving never imports a track."""
        raise NotImplementedError(f"track {cls.name!r} has no token-id ONNX core")

    @classmethod
    def refit_epochs(cls, histories: Sequence[dict[str, list[float]]]) -> int | None:
        """Epochs for the refit on all of train+val (no validation left to stop on): the
        median best-``val_loss`` epoch of the fold fits' `histories`; None when there is
        none (a track that does not `fits_on_validation`)."""
        if not cls.fits_on_validation:
            return None
        best = [int(np.argmin(h["val_loss"])) + 1 for h in histories if h.get("val_loss")]
        return int(np.median(best)) if best else None

    def size_bytes(self) -> int | None:
        """Size of the trained model's parameters in bytes, if known."""
        return None

    def describe(self) -> dict:
        """Configuration worth recording in results.json."""
        return {}


class SharedFeatures(abc.ABC):
    """A track whose fit is a vectorizer then a model on its matrix: the tuner and the
    cross-fitter build each vectorizer once (per `vectorizer_keys` values and fold) and fit
    every point of the search on the same matrix (`mlbench.tuning`, `mlbench.protocol`)."""

    #: the attributes a vectorizer is built from: points equal on them share one matrix
    vectorizer_keys: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def build_vectorizer(self) -> Any:
        """A fresh, unfitted vectorizer (``fit_transform``, ``transform``) for this track."""

    @abc.abstractmethod
    def fit_features(self, vectorizer: Any, x: Any, y: Any, labels: LabelSpace) -> dict[str, list[float]]:
        """Fit on `x` = ``vectorizer.fit_transform(train)`` [n, V] with 0/1 targets `y` [n, L]."""

    @abc.abstractmethod
    def decision_function_features(self, x: Any) -> np.ndarray:
        """Margins [n, L] of rows `x` [n, V] vectorized by the fitted vectorizer."""

    @abc.abstractmethod
    def scores_from_margins(self, margins: np.ndarray) -> np.ndarray:
        """Scores in [0, 1], the shape of `margins`."""


#: THE registry table: the one place that names tracks
_REGISTRY: dict[str, str] = {
    # name -> "module:ClassName"; imported lazily so optional deps stay optional.
    "mlp": "baselines.tfidf_mlp:TfidfMLPTrack",
    "svm": "baselines.svm:LinearSVMTrack",
    "svm_balanced": "baselines.svm:BalancedLinearSVMTrack",
    "logreg": "baselines.logreg:LogisticRegressionTrack",
    "encoder": "transformers_track.encoder:EncoderTrack",
    "pretrained": "transformers_track.pretrained:PretrainedEncoderTrack",
    "fasttext": "baselines.fasttext_track:FastTextTrack",
    "ensemble": "baselines.ensemble:EnsembleTrack",
}


def register(name: str, target: str) -> None:
    """Register a Track class by dotted path ``module:ClassName``."""
    _REGISTRY[name] = target


def track_names() -> list[str]:
    return list(_REGISTRY)


def available_tracks() -> list[str]:
    """Tracks whose module imports and whose `requires` are installed (the default for --models)."""
    out = []
    for name in _REGISTRY:
        try:
            get_track_class(name)
        except (ImportError, AttributeError):
            continue
        out.append(name)
    return out


def default_tracks(gpu: bool) -> list[str]:
    """The default `--models`: every available track, minus CPU-slow ones without a GPU."""
    return [n for n in available_tracks() if gpu or get_track_class(n).cpu_default]


def explainable_tracks() -> list[str]:
    """Registered tracks that declare an explainer (`Track.explains`), for messages (their
    modules imported, their extras not: no KerasHub import to word an error)."""
    return [n for n, cls in track_classes().items() if cls.explains]


def track_class(name: str) -> type[Track]:
    """The registered class, its requirements not checked (its declarations are readable
    where its extra is missing); InputError for an unknown name."""
    if name not in _REGISTRY:
        raise _unknown(name)
    module_name, cls_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def track_classes() -> dict[str, type[Track]]:
    """Every registered track whose module imports here (requirements not checked): the
    declarations (`params`, `extra`, ...) the command line and the config check read."""
    out = {}
    for name in _REGISTRY:
        try:
            out[name] = track_class(name)
        except (ImportError, AttributeError):
            continue
    return out


def track_flags() -> dict[str, list[tuple[str, str, Param]]]:
    """``mlbench run`` flags the tracks declare (`Param.flag`): flag → [(track, parameter,
    Param)], in registry order; one flag may set a parameter of several tracks."""
    out: dict[str, list[tuple[str, str, Param]]] = {}
    for name, cls in track_classes().items():
        for key, param in cls.params.items():
            if param.flag:
                out.setdefault(param.flag, []).append((name, key, param))
    return out


def _unknown(name: str):
    from mlbench.errors import InputError

    return InputError(f"unknown model {name!r}; choose from {', '.join(_REGISTRY)}")


def check_track_names(names: Sequence[str]) -> None:
    """InputError for an unknown track or one whose extra is not installed.

    Reads the tracks' declared `requires` (`importlib.util.find_spec` only), so it runs
    before TensorFlow is imported.
    """
    from mlbench.errors import InputError

    for name in names:
        if name not in _REGISTRY:
            raise _unknown(name)
        try:
            cls = track_class(name)
        except (ImportError, AttributeError) as err:
            raise InputError(f"--models {name}: does not import here ({err})") from None
        missing = cls.missing_requirements()
        if missing:
            raise InputError(f"--models {name}: needs {', '.join(missing)} (install the extra: "
                             f"pip install -e '.[{cls.extra}]')")


def get_track_class(name: str) -> type[Track]:
    """The registered class; ImportError (saying which extra) when it cannot run here
    (`Track.check_requirements`)."""
    if name not in _REGISTRY:
        raise _unknown(name)
    cls = track_class(name)
    cls.check_requirements()
    return cls
