"""The Track contract and the registry the driver picks tracks from.

A Track knows nothing about files, reports or other tracks: it fits on a train and
validation split, scores texts into [0, 1] per label, and (where its framework
allows) exports a SavedModel that takes raw strings.  Adding a model is one Track
file plus one `register` line.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

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
    #: its `fit` reads the validation split (e.g. Keras early stopping): under cross-fitting
    #: each fold fit validates on an inner slice of its own training rows, and the refit on
    #: all train+val gets an empty validation split and the fold fits' median best epoch
    fits_on_validation: ClassVar[bool] = False

    def __init__(self, settings: TrainSettings | None = None):
        self.settings = settings or TrainSettings()
        self.labels: LabelSpace | None = None

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


_REGISTRY: dict[str, str] = {
    # name -> "module:ClassName"; imported lazily so optional deps stay optional.
    "mlp": "baselines.tfidf_mlp:TfidfMLPTrack",
    "svm": "baselines.svm:LinearSVMTrack",
    "svm_balanced": "baselines.svm:BalancedLinearSVMTrack",
    "logreg": "baselines.logreg:LogisticRegressionTrack",
    "encoder": "transformers_track.encoder:EncoderTrack",
    "pretrained": "transformers_track.pretrained:PretrainedTrack",
    "fasttext": "baselines.fasttext_track:FastTextTrack",  # needs fasttext-wheel (else skipped)
    "ensemble": "baselines.ensemble:EnsembleTrack",  # needs_members: built after the others
}


def register(name: str, target: str) -> None:
    """Register a Track class by dotted path ``module:ClassName``."""
    _REGISTRY[name] = target


def track_names() -> list[str]:
    return list(_REGISTRY)


def available_tracks() -> list[str]:
    """Tracks whose module imports on this machine (the default for --models)."""
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


#: third-party modules a track needs beyond the core install (checked without importing them)
_REQUIRES: dict[str, tuple[str, ...]] = {
    "pretrained": ("keras_hub", "tensorflow_text"),
    "fasttext": ("fasttext",),
}


def check_track_names(names: Sequence[str]) -> None:
    """InputError for an unknown track or one whose extra is not installed.

    Uses `importlib.util.find_spec` only, so it runs before TensorFlow is imported.
    """
    from importlib.util import find_spec

    from mlbench.errors import InputError

    for name in names:
        if name not in _REGISTRY:
            raise InputError(f"unknown model {name!r}; choose from {', '.join(_REGISTRY)}")
        missing = [m for m in _REQUIRES.get(name, ()) if find_spec(m) is None]
        if missing:
            raise InputError(f"--models {name}: needs {', '.join(missing)} (install the extra: "
                             f"pip install -e '.[{'hub' if name == 'pretrained' else name}]')")


def get_track_class(name: str) -> Callable[..., Track]:
    if name not in _REGISTRY:
        from mlbench.errors import InputError

        raise InputError(f"unknown model {name!r}; choose from {', '.join(_REGISTRY)}")
    module_name, cls_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)
