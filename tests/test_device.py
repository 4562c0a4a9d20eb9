"""One device/precision policy: one parser, one meaning, tested on CPU with a faked GPU probe."""

from __future__ import annotations

import pytest

from mlbench.keras import device


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(device, "gpu_probe", lambda: ["/device:GPU:0"])


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(device, "gpu_probe", lambda: [])


@pytest.mark.parametrize("option, on_cpu, on_gpu", [
    ("auto", "float32", "mixed_bfloat16"),
    (True, "mixed_bfloat16", "mixed_bfloat16"),
    ("bf16", "mixed_bfloat16", "mixed_bfloat16"),
    ("fp16", "mixed_float16", "mixed_float16"),
    (False, "float32", "float32"),
    (None, "float32", "float32"),
    ("mixed_float16", "mixed_float16", "mixed_float16"),
])
def test_precision_means_one_thing_everywhere(monkeypatch, option, on_cpu, on_gpu):
    monkeypatch.setattr(device, "gpu_probe", lambda: [])
    assert device.resolve_precision(option) == on_cpu
    monkeypatch.setattr(device, "gpu_probe", lambda: ["/device:GPU:0"])
    assert device.resolve_precision(option) == on_gpu


def test_bad_precision_names_the_choices(no_gpu):
    with pytest.raises(ValueError, match="mixed_precision"):
        device.resolve_precision("fp8")


def test_tracks_read_the_one_policy(fake_gpu):
    """The MLP and the transformer tracks resolve through the same function."""
    from baselines.tfidf_mlp import TfidfMLPTrack
    from mlbench.tracks import TrainSettings
    from transformers_track.encoder import EncoderTrack

    mlp = TfidfMLPTrack(TrainSettings(options={"mixed_precision": True}))
    assert mlp.describe()["mixed_precision"] == "mixed_bfloat16"
    enc = EncoderTrack(TrainSettings(quick=False))
    assert enc.preset == "gpu"  # the faked probe picks the GPU preset
