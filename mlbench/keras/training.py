"""The training loop every Keras track shares: loss, metrics, early stopping, resume.

Models output logits; the loss comes from `mlbench.keras.losses` by name (BCE by default)
and the logged metrics from `mlbench.keras.metrics`.  Early stopping watches the
validation loss and restores the best weights (the keras-io MLP overfits after an
epoch or two); `BackupAndRestore` checkpoints every epoch so an interrupted run
resumes where it stopped.

Knobs read from ``settings.options`` (all optional; tracks that validate their own
options, like the encoder, simply never pass them):

* ``monitor``: the early-stopping quantity, default ``"val_loss"``.  Any logged key
  works, e.g. ``"val_f1_macro"`` (macro-F1 at 0.5, logged for every run), which
  follows rare labels that the loss hardly sees.  ``monitor_mode`` ("auto", "min",
  "max") defaults to "min" for losses / Hamming loss and "max" for everything else.
* ``patience`` (overrides the track's own), ``min_delta``, ``start_from_epoch``.

Without validation data (``val_ds`` None: the refit on all of train+val under
``--protocol cv``) the model trains exactly ``epochs`` epochs.
* ``loss_options``: hyperparameters for `mlbench.keras.losses.make_loss`, either keyed by
  loss name (``{"db": {"kappa": 0.05}, "wbce": {"max_weight": 30}}``, so one
  ``--loss a,b`` run can tune each) or flat for the current loss.
* ``settings.tensorboard`` (not an option: `--tensorboard DIR`): the Keras TensorBoard
  callback writes each fit's epoch curves there (`tensorboard_callback`).
* ``prior_bias``: start the output-layer bias at the label prior's log-odds
  (`prior_logits`) instead of 0 when the last layer is a biased Dense.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlbench.labels import LabelSpace
from mlbench.tracks import TrainSettings


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow so a run is reproducible from its seed."""
    import keras

    keras.utils.set_random_seed(seed)


def prior_logits(train_counts: np.ndarray, n_docs: int) -> np.ndarray:
    """Log-odds of each label's training frequency: an output-bias init that starts
    the model at the label prior instead of at 0.5 everywhere."""
    p = np.clip(np.asarray(train_counts, dtype=np.float64) / max(n_docs, 1), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p)).astype(np.float32)


def loss_overrides(settings: TrainSettings) -> dict:
    """Hyperparameters for the current loss from ``options["loss_options"]``.

    Keyed by loss name (only the current loss's entry applies) or, when no key is a
    loss name, one flat dict for whatever loss runs.
    """
    from mlbench.keras.losses import LOSS_NAMES

    opts = dict(settings.options.get("loss_options") or {})
    if not opts:
        return {}
    if any(str(k).lower() in LOSS_NAMES for k in opts):
        by_name = {str(k).lower(): v for k, v in opts.items()}
        return dict(by_name.get(str(settings.loss).strip().lower()) or {})
    return opts


def build_loss(settings: TrainSettings, labels: LabelSpace, n_train_docs: int):
    from mlbench.keras.losses import make_loss

    return make_loss(settings.loss, labels.train_counts, n_train_docs, **loss_overrides(settings))


_MIN_MONITORS = ("loss", "hamming")


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    """"min" for losses and Hamming loss, "max" for F1 / accuracy / AUC-like metrics."""
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ValueError(f"monitor_mode must be 'auto', 'min' or 'max', got {mode!r}")
    name = monitor[4:] if monitor.startswith("val_") else monitor
    return "min" if any(t in name for t in _MIN_MONITORS) else "max"


def early_stopping(settings: TrainSettings, patience: int, directory: Path | None = None):
    """The EarlyStopping callback configured from ``settings.options`` (see module doc);
    with `directory`, one whose state survives a kill (`mlbench.keras.resume`)."""
    import keras

    opts = settings.options
    monitor = str(opts.get("monitor") or "val_loss")
    kwargs = dict(
        monitor=monitor, mode=monitor_mode(monitor, str(opts.get("monitor_mode", "auto"))),
        patience=int(opts.get("patience", patience)), min_delta=float(opts.get("min_delta", 0.0)),
        start_from_epoch=int(opts.get("start_from_epoch", 0)),
        restore_best_weights=True, verbose=1,
    )
    if directory is None:
        return keras.callbacks.EarlyStopping(**kwargs)
    from mlbench.keras.resume import ResumableEarlyStopping

    return ResumableEarlyStopping(directory, **kwargs)


def set_prior_bias(model: Any, train_counts: np.ndarray, n_docs: int) -> bool:
    """Set the last layer's bias to the label prior's log-odds; False if it has none."""
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    bias = getattr(layer, "bias", None)
    counts = np.asarray(train_counts)
    if bias is None or tuple(bias.shape) != (counts.size,):
        return False
    bias.assign(prior_logits(counts, n_docs))
    return True


def fit_keras_model(
    model: Any,
    train_ds: Any,
    val_ds: Any,
    *,
    settings: TrainSettings,
    labels: LabelSpace,
    n_train_docs: int,
    optimizer: Any,
    epochs: int,
    patience: int = 2,
    callbacks: list | None = None,
) -> dict[str, list[float]]:
    """Compile and fit `model` (logits out); return the history as plain lists.

    Under ``settings.strategy`` the model and `optimizer` must already have been made
    inside ``strategy.scope()`` (`mlbench.keras.strategy.fit_scope`); compile runs there too.
    """
    import keras

    from mlbench.keras.metrics import training_metrics

    from mlbench.keras.strategy import checkpoint_dir, fit_scope

    if settings.options.get("prior_bias"):
        set_prior_bias(model, labels.train_counts, n_train_docs)
    with fit_scope(settings) as strategy:  # metrics and optimizer state live on every replica
        model.compile(
            optimizer=optimizer,
            loss=build_loss(settings, labels, n_train_docs),
            metrics=training_metrics(from_logits=True, macro_f1=True),
        )
    # only the chief's checkpoints are kept (other workers write to a scratch folder)
    workdir = None if settings.workdir is None else checkpoint_dir(Path(settings.workdir), strategy)
    # no validation data (the refit on all of train+val under --protocol cv, `mlbench.protocol`):
    # exactly `epochs` epochs, nothing to stop early on
    stopper = None if val_ds is None else early_stopping(
        settings, patience, None if workdir is None else workdir / "early_stopping")
    # the epoch counter (if any) goes first: it sets the epoch the input pipeline reads
    cbs = [c for c in callbacks or [] if _is_epoch_counter(c)] + ([stopper] if stopper else [])
    if workdir is not None:
        # double_checkpoint: a kill while the latest checkpoint is written falls back one epoch
        cbs.append(keras.callbacks.BackupAndRestore(str(workdir / "backup"), save_freq="epoch",
                                                    double_checkpoint=True))
    cbs.extend(c for c in callbacks or [] if not _is_epoch_counter(c))
    if settings.tensorboard is not None:  # the chief's curves only (workers log to scratch)
        cbs.append(tensorboard_callback(checkpoint_dir(Path(settings.tensorboard), strategy)))
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=epochs, callbacks=cbs, verbose=settings.verbose,
        shuffle=False,  # the tf.data pipeline shuffles itself
    )
    logs = (getattr(stopper, "history", None) if stopper else None) or history.history  # resumed runs: every epoch
    return {k: [float(v) for v in vals] for k, vals in logs.items()}


def tensorboard_callback(directory: Path) -> Any:
    """The standard Keras TensorBoard callback writing epoch curves (train/ and validation/
    event files) into a new ``fit-<k>`` folder of `directory`: a search fits a track several
    times, and each fit stays its own run in TensorBoard instead of overwriting the last."""
    import keras

    directory.mkdir(parents=True, exist_ok=True)
    k = 1 + sum(1 for p in directory.iterdir() if p.is_dir() and p.name.startswith("fit-"))
    return keras.callbacks.TensorBoard(log_dir=str(directory / f"fit-{k}"), histogram_freq=0,
                                       write_graph=False, update_freq="epoch")


def _is_epoch_counter(callback: Any) -> bool:
    from mlbench.keras.resume import EpochCounter

    return isinstance(callback, EpochCounter)


def predict_logits(model: Any, ds: Any) -> np.ndarray:
    """Logits for a dataset of inputs, concatenated into one array."""
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float32)


def count_parameters(model: Any) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.weights))
