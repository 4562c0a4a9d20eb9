"""RunConfig: every setting that decides a run, validated at one boundary.

`RunConfig.validate()` runs before any data is loaded and before TensorFlow is
imported, so a bad option costs a fraction of a second and one ``error:`` line
(InputError, exit code 2).  Constraints sit beside the defaults in
`_CONSTRAINTS`, in the spirit of scikit-learn's ``_parameter_constraints``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlbench.errors import InputError
from mlbench.keras import LOSS_NAMES
from mlbench.record import OBJECTIVES, PROTOCOLS


@dataclass
class RunConfig:
    """Everything that decides a run's results (recorded in results.json)."""

    dataset: str
    models: list[str] | None = None  # None: the default tracks for this machine
    losses: list[str] = field(default_factory=lambda: ["bce"])
    epochs: int | None = None
    batch_size: int | None = None
    seed: int = 42
    quick: bool = False
    device: str = "auto"
    out: Path = Path("runs")
    data_dir: str | None = None
    split_method: str = "stratified"
    text_col: str | None = None
    labels_col: str | None = None
    label_sep: str | None = None
    head_min: int = 35
    tail_max: int = 8
    max_docs: int | None = None
    #: user files: a column naming each row's split (train / val|validation|dev / test)
    split_col: str | None = None
    #: user files: given test / validation files beside the train file (`dataset`)
    test_file: str | None = None
    val_file: str | None = None
    #: share (< 1) or count of train split off as validation when none is given
    val_size: float | None = None
    #: user files, rows with no labels: keep (all-negative documents; None = keep), drop, or error
    unlabeled: str | None = None
    #: user files: share of empty-text rows skipped and reported before the file is refused (None = 1%)
    max_bad_rows: float | None = None
    #: check built-in data files against their pinned / recorded sha256
    verify: bool = True
    #: data health: warnings stop the run too
    strict: bool = False
    #: remove duplicate texts: none, train (within train), cross (train/val copies of test and val)
    dedupe: str = "none"
    #: labels with fewer training documents are reported by the health check
    min_label_docs: int = 2
    track_options: dict = field(default_factory=dict)
    #: objective the searches and the headline are chosen for ("micro" | "macro")
    select: str = "micro"
    #: search each track's declared hyper-parameter space on validation (off under --quick)
    tune: bool = True
    #: stochastic tracks are trained this many times (seed, seed+1, ...); the table shows mean ± std
    seeds: int = 1
    #: paired-bootstrap resamples for the test confidence intervals (0: none)
    bootstrap: int = 1000
    report: bool = True
    command: str = ""
    #: Keras tracks: tf.distribute strategy (default | mirrored | multiworker; mlbench.keras.strategy)
    strategy: str = "default"
    #: logical CPU devices to split the CPU into (mirrored without GPUs); None: one
    cpu_devices: int | None = None
    #: linear tracks: parallel joblib jobs (None or -1: all cores)
    n_jobs: int | None = None
    #: Keras tracks: write training curves under this folder (TensorBoard), one sub-folder per variant
    tensorboard: str | None = None
    #: cv: cheap tracks cross-fitted on train+val and refit (`mlbench.protocol`); holdout: train / val
    protocol: str = "cv"
    #: folds of train+val under --protocol cv (None: 5, or 2 under --quick; see `cv_folds`)
    folds: int | None = None
    #: expensive tracks (not `cheap_fit`) cross-fitted too under --protocol cv
    cv_tracks: list[str] = field(default_factory=list)
    #: linear tracks' independent fits on a Dask cluster: a scheduler address, or "local" (a
    #: LocalCluster of --n-jobs processes); where fits run, not what they give (`mlbench.cluster`)
    dask: str | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d

    @property
    def cv_folds(self) -> int:
        """Folds under --protocol cv: `folds`, else 5 (2 under --quick: a smoke run stays short)."""
        return self.folds if self.folds is not None else (2 if self.quick else 5)

    @property
    def tuning(self) -> bool:
        """Whether searches run: `--no-tune` and `--quick` keep the fixed defaults."""
        return self.tune and not self.quick

    def validate(self) -> "RunConfig":
        """Raise InputError naming the first bad option; imports nothing heavy."""
        for name, (check, expected) in _CONSTRAINTS.items():
            value = getattr(self, name)
            if not check(value):
                raise InputError(f"--{name.replace('_', '-')}: expected {expected}, got {value!r}")
        if self.tail_max >= self.head_min:
            raise InputError(f"--tail-max ({self.tail_max}) must be below --head-min ({self.head_min})")
        from mlbench.tracks import check_track_names

        if self.models is not None:
            if not self.models:
                raise InputError("--models: expected at least one track name, got none")
            check_track_names(self.models)
        if self.cv_tracks:
            check_track_names(self.cv_tracks)
        unknown = [l for l in self.losses if l not in LOSS_NAMES]
        if unknown or not self.losses:
            raise InputError(f"--loss: expected names from {', '.join(LOSS_NAMES)}, got {','.join(self.losses) or 'none'}")
        _check_out(Path(self.out))
        _check_track_options(self.track_options)
        from mlbench.keras.strategy import check_options

        check_options(self.strategy, self.cpu_devices)
        return self


def _positive_or_none(v: Any) -> bool:
    return v is None or (_is_int(v) and v > 0)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_CONSTRAINTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (_positive_or_none, "a positive integer"),
    "batch_size": (_positive_or_none, "a positive integer"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**32, "an integer from 0 to 2**32-1"),
    "device": (lambda v: v in ("auto", "cpu", "gpu"), "auto, cpu or gpu"),
    "split_method": (lambda v: v in ("stratified", "iterative"), "stratified or iterative"),
    "head_min": (lambda v: _is_int(v) and v >= 1, "an integer of at least 1"),
    "tail_max": (lambda v: _is_int(v) and v >= 0, "an integer of at least 0"),
    "max_docs": (_positive_or_none, "a positive integer"),
    "select": (lambda v: v in OBJECTIVES, " or ".join(OBJECTIVES)),
    "seeds": (lambda v: _is_int(v) and 1 <= v <= 100, "an integer from 1 to 100"),
    "bootstrap": (lambda v: _is_int(v) and (v == 0 or 100 <= v <= 100_000), "0 or an integer from 100 to 100000"),
    "label_sep": (lambda v: v is None or (isinstance(v, str) and v != ""), "a non-empty string"),
    "unlabeled": (lambda v: v in (None, "keep", "drop", "error"), "keep, drop or error"),
    "max_bad_rows": (lambda v: v is None or isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
                     "a share from 0 to below 1"),
    "val_size": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0),
                 "a share below 1 or a document count"),
    "dedupe": (lambda v: v in ("none", "train", "cross"), "none, train or cross"),
    "min_label_docs": (lambda v: _is_int(v) and v >= 1, "an integer of at least 1"),
    "n_jobs": (lambda v: v is None or (_is_int(v) and (v >= 1 or v == -1)), "a positive integer or -1 (all cores)"),
    "protocol": (lambda v: v in PROTOCOLS, " or ".join(PROTOCOLS)),
    "folds": (lambda v: v is None or (_is_int(v) and 2 <= v <= 20), "an integer from 2 to 20"),
    "dask": (lambda v: v is None or _is_dask_address(v),
             "local or a scheduler address such as tcp://10.0.0.5:8786"),
}


def _is_dask_address(v: Any) -> bool:
    from mlbench.cluster import is_address

    return is_address(v)


def _check_out(out: Path) -> None:
    """`--out` must be a folder (or not exist yet) we can write into."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, expected a folder to create run folders in")
    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise InputError(f"--out {out}: {parent} is not writable")


def _check_track_options(options: dict) -> None:
    """Each track option against the track's declared `Param` (`mlbench.tracks`), so a bad
    one fails before data loads; named by the flag that sets it, else track and name."""
    from mlbench.tracks import track_class

    for track, opts in options.items():
        params = track_class(track).params
        for key, value in opts.items():
            param = params.get(key)
            if param is None:
                raise InputError(f"track option {track}.{key}: {track} has no such option "
                                 f"(expected one of {', '.join(params) or 'none'})")
            try:
                param.value(key, value)
            except ValueError:
                where = param.flag or f"track option {track}.{key}"
                raise InputError(f"{where}: expected {param.expected}, got {value!r}") from None
