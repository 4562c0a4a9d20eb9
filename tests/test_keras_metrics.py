"""Keras training metrics agree with `mlbench.evaluation.metrics.evaluate` / sklearn."""

from __future__ import annotations

import numpy as np
import pytest

import keras
from sklearn.metrics import f1_score, hamming_loss

from mlbench.keras.metrics import F1FromLogits, HammingLoss, training_metrics
from mlbench.evaluation.metrics import evaluate


def _batches(seed: int = 0, n_batches: int = 3, B: int = 32, L: int = 10):
    rng = np.random.default_rng(seed)
    ys, zs = [], []
    for _ in range(n_batches):
        y = (rng.random((B, L)) < 0.3).astype(np.float32)
        z = (rng.normal(0, 2, size=(B, L)) + 1.5 * (2 * y - 1)).astype(np.float32)
        ys.append(y)
        zs.append(z)
    return ys, zs


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_streaming_values_match_evaluate(threshold: float) -> None:
    ys, zs = _batches()
    metrics = training_metrics(from_logits=True, threshold=threshold)
    assert [m.name for m in metrics] == ["binary_accuracy", "f1_micro", "hamming_loss"]
    for y, z in zip(ys, zs):
        for m in metrics:
            m.update_state(y, z)
    Y, S = np.concatenate(ys), _sigmoid(np.concatenate(zs))
    ref = evaluate(Y, S, threshold=threshold)
    got = {m.name: float(m.result()) for m in metrics}
    for key in got:
        assert got[key] == pytest.approx(ref[key], abs=1e-6), key
    pred = (S >= threshold).astype(int)
    assert got["f1_micro"] == pytest.approx(f1_score(Y, pred, average="micro"), abs=1e-6)
    assert got["hamming_loss"] == pytest.approx(hamming_loss(Y, pred), abs=1e-6)


def test_probability_inputs_and_reset() -> None:
    ys, zs = _batches(1)
    probs = [_sigmoid(z).astype(np.float32) for z in zs]
    hl, f1 = HammingLoss(from_logits=False), F1FromLogits(from_logits=False)
    for y, p in zip(ys, probs):
        hl.update_state(y, p)
        f1.update_state(y, p)
    ref = evaluate(np.concatenate(ys), np.concatenate(probs))
    assert float(hl.result()) == pytest.approx(ref["hamming_loss"], abs=1e-6)
    assert float(f1.result()) == pytest.approx(ref["f1_micro"], abs=1e-6)
    hl.reset_state()
    f1.reset_state()
    assert float(hl.result()) == 0.0 and float(f1.result()) == 0.0


def test_threshold_boundary_is_inclusive() -> None:
    y = np.array([[1.0, 0.0]], np.float32)
    z = np.array([[0.0, 0.0]], np.float32)  # sigmoid = 0.5 exactly -> predicted
    hl = HammingLoss()
    hl.update_state(y, z)
    assert float(hl.result()) == pytest.approx(0.5)
    f1 = F1FromLogits()
    f1.update_state(y, z)
    assert float(f1.result()) == pytest.approx(2 / 3, abs=1e-6)


def test_hamming_sample_weight() -> None:
    ys, zs = _batches(2, n_batches=1)
    y, z = ys[0], zs[0]
    sw = np.random.default_rng(0).random(len(y)).astype(np.float32)
    hl = HammingLoss()
    hl.update_state(y, z, sample_weight=sw)
    wrong = ((z >= 0) != (y > 0.5)).mean(axis=1)
    assert float(hl.result()) == pytest.approx(np.sum(wrong * sw) / np.sum(sw), abs=1e-6)


def test_config_round_trip() -> None:
    for m in (HammingLoss(threshold=0.3, from_logits=False), F1FromLogits(threshold=0.4)):
        clone = type(m).from_config(m.get_config())
        assert clone.get_config() == m.get_config()
        restored = keras.metrics.deserialize(keras.metrics.serialize(m))
        assert type(restored) is type(m)


def test_compile_and_fit_tiny_model() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype(np.float32)
    y = (x[:, :4] > 0).astype(np.float32)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=training_metrics(),
    )
    hist = model.fit(x, y, epochs=3, batch_size=32, verbose=0, validation_data=(x, y))
    for key in ("binary_accuracy", "f1_micro", "hamming_loss", "val_f1_micro"):
        assert key in hist.history, hist.history.keys()
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    ref = evaluate(y, _sigmoid(model.predict(x, verbose=0)))
    assert logs["f1_micro"] == pytest.approx(ref["f1_micro"], abs=1e-5)
    assert logs["hamming_loss"] == pytest.approx(ref["hamming_loss"], abs=1e-6)
    assert logs["binary_accuracy"] == pytest.approx(ref["binary_accuracy"], abs=1e-6)


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_macro_f1_matches_evaluate(threshold: float) -> None:
    ys, zs = _batches(3)
    ys[0][:, -1] = 0.0  # a label with no positives in the first batch
    metrics = training_metrics(from_logits=True, threshold=threshold, macro_f1=True)
    assert [m.name for m in metrics] == ["binary_accuracy", "f1_micro", "hamming_loss", "f1_macro"]
    for y, z in zip(ys, zs):
        metrics[-1].update_state(y, z)
    Y, S = np.concatenate(ys), _sigmoid(np.concatenate(zs))
    ref = evaluate(Y, S, threshold=threshold)["f1_macro"]
    assert float(metrics[-1].result()) == pytest.approx(ref, abs=1e-6)
    pred = (S >= threshold).astype(int)
    assert ref == pytest.approx(f1_score(Y, pred, average="macro", zero_division=0), abs=1e-9)
    # a label never present and never predicted counts as 0, as in evaluate()
    y = np.zeros((4, 3), np.float32)
    y[:, 0] = 1
    z = np.full((4, 3), -5.0, np.float32)
    z[:, 0] = 5
    m = training_metrics(macro_f1=True)[-1]
    m.update_state(y, z)
    assert float(m.result()) == pytest.approx(evaluate(y, _sigmoid(z))["f1_macro"], abs=1e-6)
    assert float(m.result()) == pytest.approx(1 / 3, abs=1e-6)


def test_monitor_mode_and_loss_options() -> None:
    from mlbench.keras.training import early_stopping, loss_overrides, monitor_mode
    from mlbench.tracks import TrainSettings

    assert monitor_mode("val_loss") == "min" and monitor_mode("val_hamming_loss") == "min"
    assert monitor_mode("val_f1_macro") == "max" and monitor_mode("val_binary_accuracy") == "max"
    assert monitor_mode("val_f1_macro", "min") == "min"
    with pytest.raises(ValueError):
        monitor_mode("val_loss", "up")
    es = early_stopping(TrainSettings(options={"monitor": "val_f1_macro", "patience": 5}), 2)
    assert es.monitor == "val_f1_macro" and es.patience == 5 and es.mode == "max"
    es = early_stopping(TrainSettings(), 3)
    assert es.monitor == "val_loss" and es.patience == 3 and es.mode == "min"
    keyed = {"loss_options": {"db": {"kappa": 0.1}, "wbce": {"max_weight": 30}}}
    assert loss_overrides(TrainSettings(loss="db", options=keyed)) == {"kappa": 0.1}
    assert loss_overrides(TrainSettings(loss="bce", options=keyed)) == {}
    flat = {"loss_options": {"gamma": 1.0}}
    assert loss_overrides(TrainSettings(loss="focal", options=flat)) == {"gamma": 1.0}
    assert loss_overrides(TrainSettings(loss="focal")) == {}


def test_fit_keras_model_knobs(tmp_path) -> None:
    from mlbench.keras.training import fit_keras_model, prior_logits
    from mlbench.labels import LabelSpace
    from mlbench.tracks import TrainSettings

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = (x[:, :3] > 0.8).astype(np.float32)
    names = ["a", "b", "c"]
    labels = LabelSpace.from_training_labels([[n for n, v in zip(names, row) if v] or ["a"] for row in y])
    y = labels.encode([[n for n, v in zip(names, row) if v] or ["a"] for row in y]).astype(np.float32)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(len(labels))])
    opts = {"monitor": "val_f1_macro", "patience": 1, "prior_bias": True,
            "loss_options": {"focal": {"gamma": 1.0}}}
    settings = TrainSettings(loss="focal", options=opts, verbose=0)
    seen = {}

    class Grab(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["bias"] = np.asarray(self.model.layers[-1].bias)
            seen["gamma"] = self.model.loss.gamma

    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    hist = fit_keras_model(model, ds, ds, settings=settings, labels=labels,
                           n_train_docs=len(x), optimizer=keras.optimizers.Adam(0.05),
                           epochs=3, callbacks=[Grab()])
    assert "val_f1_macro" in hist and "f1_macro" in hist
    np.testing.assert_allclose(seen["bias"], prior_logits(labels.train_counts, len(x)), atol=1e-6)
    assert seen["gamma"] == 1.0
