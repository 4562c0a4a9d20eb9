"""What a track declares on its class (`mlbench.tracks.Track`) is what the command line,
the config check and the registry act on: a new track's flag, extra or parameter needs
no edit outside its own module and the registry table."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from mlbench.config import RunConfig
from mlbench.errors import InputError
from mlbench.tracks import (UNSET, Param, Track, TrainSettings, available_tracks, check_track_names,
                            get_track_class, register, track_classes, track_flags, with_defaults)


class Probe(Track):
    """A registry-only track: declarations, no model."""

    name = "probe_track"
    params: ClassVar[dict[str, Param]] = {
        "window": Param(3, lambda v: 1 <= v <= 9, "an integer from 1 to 9", convert=int, flag="--window",
                        help="probe track: context window"),
        "scale": Param(lambda s, r: 2.0 * r["window"], lambda v: v > 0, "> 0", convert=float),
    }

    def __init__(self, settings: TrainSettings | None = None, *, window: int = UNSET):
        super().__init__(settings)
        self.p = self.resolve_params({"window": window})

    def fit(self, train, val, labels):
        return {}

    def predict_scores(self, texts):
        return np.zeros((len(texts), 1))


class NeedsMissing(Probe):
    name = "probe_missing"
    params: ClassVar[dict[str, Param]] = {}
    extra = "probe-extra"
    requires = ("no_such_module_for_mlbench_tests",)


@pytest.fixture
def probes(monkeypatch):
    """Probe and NeedsMissing registered for one test (this module's classes)."""
    from mlbench import tracks

    monkeypatch.setattr(tracks, "_REGISTRY", dict(tracks._REGISTRY))
    register("probe_track", f"{__name__}:Probe")
    register("probe_missing", f"{__name__}:NeedsMissing")


def test_parameters_come_from_the_constructor_then_options_then_the_default():
    assert Probe().p == {"window": 3, "scale": 6.0}  # a default may depend on earlier parameters
    assert Probe(TrainSettings(options={"window": "5"})).p == {"window": 5, "scale": 10.0}
    assert Probe(TrainSettings(options={"window": 5}), window=7).p["window"] == 7
    with pytest.raises(ValueError, match=r"window must be an integer from 1 to 9, got 12"):
        Probe(window=12)
    with pytest.raises(KeyError, match="no such parameter"):
        with_defaults(Probe.params, windw=4)
    assert with_defaults(Probe.params, window=4)["window"].default == 4


def test_every_declared_default_meets_its_own_constraint():
    checked = 0
    for name, cls in track_classes().items():
        for key, param in cls.params.items():
            if not callable(param.default):  # else it depends on the run: checked when a track is built
                param.value(f"{name}.{key}", param.default)
                checked += 1
    assert checked > 10


def test_a_declared_flag_reaches_the_command_line_and_the_config_check(probes, tmp_path):
    from mlbench_cli import config_from_args, parser

    assert [t[:2] for t in track_flags()["--window"]] == [("probe_track", "window")]
    argv = ["run", "--dataset", "x.csv", "--out", str(tmp_path), "--window", "4", "--max-length", "64"]
    cfg = config_from_args(parser().parse_args(argv), argv[1:])
    # --max-length: one flag, every track that declares it
    declared = [t for t, k, _ in track_flags()["--max-length"]]
    assert cfg.track_options == {"probe_track": {"window": 4}, **{t: {"max_length": 64} for t in declared}}
    assert len(declared) >= 1
    cfg.validate()
    cfg.track_options = {"probe_track": {"window": 12}}
    with pytest.raises(InputError, match=r"^--window: expected an integer from 1 to 9, got 12$"):
        cfg.validate()
    cfg.track_options = {"probe_track": {"windw": 1}}
    with pytest.raises(InputError, match="probe_track has no such option"):
        cfg.validate()


def test_a_track_missing_its_extra_is_refused_by_name_and_left_out(probes):
    with pytest.raises(InputError, match=r"--models probe_missing: needs no_such_module_for_mlbench_tests "
                                         r"\(install the extra: pip install -e '\.\[probe-extra\]'\)"):
        check_track_names(["probe_missing"])
    with pytest.raises(ImportError, match="probe-extra"):
        get_track_class("probe_missing")
    assert "probe_missing" not in available_tracks() and "probe_track" in available_tracks()
    check_track_names(["probe_track"])  # nothing missing: no error
    RunConfig(dataset="x", models=["probe_track"]).validate()
