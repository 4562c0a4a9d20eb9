"""The training loop every Keras track shares: loss, metrics, early stopping, resume.

Models output logits; the loss comes from `mlbench.losses` by name (BCE by default)
and the logged metrics from `mlbench.keras_metrics`.  Early stopping watches the
validation loss and restores the best weights (the keras-io MLP overfits after an
epoch or two); `BackupAndRestore` checkpoints every epoch so an interrupted run
resumes where it stopped.
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


def build_loss(settings: TrainSettings, labels: LabelSpace, n_train_docs: int):
    from mlbench.losses import make_loss

    return make_loss(settings.loss, labels.train_counts, n_train_docs)


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
    """Compile and fit `model` (logits out); return the history as plain lists."""
    import keras

    from mlbench.keras_metrics import training_metrics

    model.compile(
        optimizer=optimizer,
        loss=build_loss(settings, labels, n_train_docs),
        metrics=training_metrics(from_logits=True),
    )
    cbs = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1
        )
    ]
    if settings.workdir is not None:
        backup = Path(settings.workdir) / "backup"
        cbs.append(keras.callbacks.BackupAndRestore(str(backup), save_freq="epoch"))
    cbs.extend(callbacks or [])
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=epochs, callbacks=cbs, verbose=settings.verbose,
        shuffle=False,  # the tf.data pipeline shuffles itself
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def predict_logits(model: Any, ds: Any) -> np.ndarray:
    """Logits for a dataset of inputs, concatenated into one array."""
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))).astype(np.float32)


def count_parameters(model: Any) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.weights))
