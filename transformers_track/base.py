"""`TokenizedTrack`: the flow both transformer tracks share, KerasHub-style.

A track is a *preprocessor* (raw strings → int tensors), a *backbone* and a *task
head* (pooled logits).  What differs between the from-scratch encoder and the
pretrained one is only how those three are made; everything around them is the
same and lives here:

* options: declared `params` (`preset_params`): a preset (``preset`` option, else
  "quick" under --quick, "gpu" when a GPU is visible, "cpu" otherwise) gives each
  key's default, the options override them one by one, then ``settings.epochs`` /
  ``settings.batch_size``; an undeclared option is an error;
* fit: seed, dtype policy, each split tokenized once, length-bucketed cached
  batches, AdamW under a warm-up + linear-decay schedule sized from the real batch
  count, an optional wall-clock budget (``max_train_seconds``), and
  `mlbench.keras.training.fit_keras_model` (loss, early stopping, resume);
* prediction in length order, a raw-string SavedModel export, size and the shared
  part of `describe()`.

A subclass sets `name`, `params` (`preset_params(presets, extras)`) (and
`export_requires` if the exported graph needs an extra import) and implements the hooks:

* `_validate()`: range checks on the merged ``self.config``;
* `_fit_preprocessor(train_texts)`: build or load the tokenizer (and, for a
  pretrained model, its backbone, which ships with it);
* `_tokenize(texts)` → ``(x, lengths)``: model inputs padded to
  `_sequence_length()` and the real token counts;
* `_build_model(n_labels, output_bias)` → the Keras classifier (logits);
* `_text_preprocessor()`: the layer the exported graph puts in front of the model;
* `_export_metadata()` and, optionally, `_optimizer(schedule)`.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from mlbench.data.corpus import Split
from mlbench.labels import LabelSpace
from mlbench.tracks import Param, Track, TrainSettings

#: ``--max-length``: the one command-line flag both transformer tracks read
MAX_LENGTH_FLAG = dict(check=lambda v: v is None or 8 <= v <= 4096, expected="an integer from 8 to 4096",
                       flag="--max-length", help="transformer tracks: tokens per document")


def default_preset(settings: TrainSettings) -> str:
    """"quick" under --quick, else "gpu" when a GPU is visible, else "cpu"."""
    from mlbench.keras.device import gpu_visible

    if settings.quick:
        return "quick"
    return "gpu" if gpu_visible() else "cpu"


def coerce_like(default: Any):
    """Options may arrive as text (command line, JSON): coerce to the default's type."""
    if default is None or isinstance(default, str):
        return None
    if isinstance(default, bool):
        return lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
    return type(default)


def preset_params(presets: dict[str, dict], extras: dict[str, Param]) -> dict[str, Param]:
    """`params` of a preset-configured track: ``preset`` first (None: `default_preset`),
    then each preset key, its default taken from the chosen preset and given values
    coerced to that default's type, then `extras` (which may redeclare a preset key)."""
    params = {"preset": Param(None, lambda v: v is None or v in presets, f"one of {sorted(presets)}")}
    for key, value in next(iter(presets.values())).items():
        params[key] = Param(lambda s, r, key=key: presets[r["preset"] or default_preset(s)][key],
                            expected=type(value).__name__, convert=coerce_like(value))
    return {**params, **extras}


class TokenizedTrack(Track):
    """A Keras classifier over pre-tokenized int inputs, trained on length buckets."""

    family = "transformer"
    uses_loss = True
    #: preset name → option defaults; every preset has the same keys
    presets: ClassVar[dict[str, dict]]
    #: `preset_params(presets, extras)`; extras must include "n_buckets", "max_train_seconds"
    params: ClassVar[dict[str, Param]]
    #: modules the process loading the exported SavedModel must import first
    export_requires: ClassVar[tuple[str, ...]] = ()
    #: nothing tuned: one CPU fit already takes minutes (README), a grid would multiply it
    search_space: ClassVar[dict[str, list]] = {}
    #: early stopping reads validation (cross-fitted only when named in --cv-tracks)
    fits_on_validation: ClassVar[bool] = True

    def __init__(self, settings: TrainSettings | None = None, *, callbacks: list | None = None,
                 **options):
        super().__init__(settings)
        self.config: dict = self.resolve_params(options, unknown="error")
        self.preset = self.config.pop("preset") or default_preset(self.settings)
        if self.settings.epochs is not None:
            self.config["epochs"] = self.settings.epochs
        if self.settings.batch_size is not None:
            self.config["batch_size"] = self.settings.batch_size
        self._validate()
        self.callbacks = list(callbacks or [])
        self.model = None
        self.boundaries: list[int] | None = None
        self.dtype: str | None = None
        self.stopped_by_time = False

    # -- hooks ----------------------------------------------------------------------------
    def _validate(self) -> None:
        """Raise ValueError for merged option values out of range."""

    @abc.abstractmethod
    def _fit_preprocessor(self, train_texts: Sequence[str]) -> None:
        """Make the tokenizer ready (``self.dtype`` is already set)."""

    @abc.abstractmethod
    def _tokenize(self, texts: Sequence[str]) -> tuple[Any, np.ndarray]:
        """Model inputs for `texts` (an int32 array or a dict of them) and real lengths."""

    @abc.abstractmethod
    def _sequence_length(self) -> int:
        """The padded length `_tokenize` returns: the longest bucket."""

    @abc.abstractmethod
    def _build_model(self, n_labels: int, output_bias: np.ndarray):
        """The classifier: `_tokenize` inputs → float32 logits [B, n_labels]."""

    @abc.abstractmethod
    def _text_preprocessor(self):
        """The fitted string → model-inputs layer, exported in front of the model."""

    @abc.abstractmethod
    def _export_metadata(self) -> dict:
        """Track-specific entries for the exported mlbench.json."""

    def _optimizer(self, schedule):
        """AdamW (no decay on biases / LayerNorm) following `schedule`."""
        from transformers_track.training import make_adamw

        return make_adamw(schedule, weight_decay=float(self.config["weight_decay"]))

    # -- Track API ------------------------------------------------------------------------
    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict[str, list[float]]:
        from mlbench.keras.device import resolve_precision
        from mlbench.keras.strategy import fit_scope, global_batch_size, strategy_for
        from mlbench.keras.training import fit_keras_model, prior_logits, seed_everything
        from transformers_track.training import (
            TimeBudget, WarmupLinearDecay, bucket_boundaries, count_batches,
            training_dataset)

        c = self.config
        seed_everything(self.settings.seed)
        self.labels = labels
        self.dtype = resolve_precision(c["mixed_precision"])
        self._fit_preprocessor(train.texts)
        x_train, len_train = self._tokenize(train.texts)
        x_val, len_val = self._tokenize(val.texts)
        self.boundaries = bucket_boundaries(len_train, self._sequence_length(),
                                            n_buckets=int(c["n_buckets"]))
        y_train, y_val = labels.encode(train.labels), labels.encode(val.labels)
        # batch_size is per replica: the global batch is batch_size × replicas
        batch = global_batch_size(int(c["batch_size"]), strategy_for(self.settings))
        train_ds = training_dataset(x_train, y_train, len_train, batch_size=batch,
                                    boundaries=self.boundaries, seed=self.settings.seed)
        val_ds = None if not len(val) else training_dataset(  # none: a refit on all labeled rows
            x_val, y_val, len_val, batch_size=batch, boundaries=self.boundaries, seed=self.settings.seed,
            shuffle=False)

        total = count_batches(len_train, self.boundaries, batch) * int(c["epochs"])
        schedule = WarmupLinearDecay(float(c["learning_rate"]),
                                     int(float(c["warmup_fraction"]) * total), total)
        callbacks = list(self.callbacks)
        budget = TimeBudget(c["max_train_seconds"]) if c["max_train_seconds"] else None
        if budget is not None:
            callbacks.append(budget)
        with fit_scope(self.settings):  # model, optimizer and metrics on every replica
            # The output bias starts at the label prior, not at "0.5 for everything".
            self.model = self._build_model(len(labels), prior_logits(labels.train_counts, len(train)))
            history = fit_keras_model(
                self.model, train_ds, val_ds, settings=self.settings, labels=labels,
                n_train_docs=len(train), optimizer=self._optimizer(schedule), epochs=int(c["epochs"]),
                patience=int(c["patience"]), callbacks=callbacks)
        self.stopped_by_time = bool(budget and budget.stopped_early)
        return history

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Logits [n, n_labels]: tokenized once, batched in length order."""
        from transformers_track.training import predict_in_length_order

        if self.model is None:
            raise RuntimeError(f"fit the {self.name} track before predicting")
        x, lengths = self._tokenize(texts)
        return predict_in_length_order(self.model, x, lengths, boundaries=self.boundaries,
                                       batch_size=max(64, int(self.config["batch_size"])))

    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        from mlbench.numeric import sigmoid

        return sigmoid(self.predict_logits(texts))

    def export(self, directory: Path, *, thresholds: np.ndarray | None = None) -> Path:
        """SavedModel: tf.string [None] → preprocessor → classifier → sigmoid
        (`thresholds` [L] feed the ``decisions`` signature)."""
        from mlbench.serving.export import export_raw_string_model

        if self.model is None:
            raise RuntimeError(f"fit the {self.name} track before exporting")
        return export_raw_string_model(
            directory, [self._text_preprocessor(), self.model], self.labels.names,
            track=self.name, thresholds=thresholds, metadata=self._export_metadata(),
            requires=list(self.export_requires), explainer=self.explainer())

    def size_bytes(self) -> int | None:
        from mlbench.sizes import weights_size

        return None if self.model is None else weights_size(self.model.weights)

    def _describe_training(self, optimizer: str) -> dict:
        """The `describe()` entries every tokenized track ends with; `optimizer` in words."""
        from mlbench.keras.training import count_parameters

        c = self.config
        return {
            "bucket_boundaries": self.boundaries, "batch_size": c["batch_size"],
            "max_epochs": c["epochs"], "patience": c["patience"], "optimizer": optimizer,
            "dtype_policy": self.dtype, "max_train_seconds": c["max_train_seconds"],
            "stopped_by_time_budget": self.stopped_by_time,
            "parameters": count_parameters(self.model) if self.model is not None else None,
            "loss": self.settings.loss,
        }
