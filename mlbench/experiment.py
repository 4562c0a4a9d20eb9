"""One benchmark run: corpus → label space → tracks → evaluation → RunRecord → report.

`run_all.py` only parses arguments into a `RunConfig` and calls `run_experiment`;
tests call the same function.  A run folder is never reused: a new
``runs/<dataset>-<timestamp>`` (with a numeric suffix if needed) is created.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from mlbench.data.corpus import Corpus
from mlbench.labels import LabelSpace
from mlbench.naming import dataset_stem, export_dir_name, history_name, variant_name
from mlbench.evaluation.metrics import FrequencyGroups
from mlbench.progress import phase, say
from mlbench.tracks import Track, TrainSettings, get_track_class


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
    track_options: dict = field(default_factory=dict)
    report: bool = True
    command: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def new_run_dir(out: Path, dataset: str) -> Path:
    """Create a fresh run folder; never reuse or overwrite an existing one."""
    base = f"{dataset_stem(dataset)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        candidate = out / (base if i == 0 else f"{base}-{i + 1}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {out}")


def load_data(cfg: RunConfig) -> Corpus:
    from mlbench.data import load_corpus

    return load_corpus(
        cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, split_method=cfg.split_method,
        text_col=cfg.text_col, labels_col=cfg.labels_col, label_sep=cfg.label_sep,
        max_docs=cfg.max_docs, progress=say,
    )


def dataset_record(corpus: Corpus, labels: LabelSpace, groups: FrequencyGroups) -> dict:
    return {
        **corpus.stats(),
        "labels": labels.names,
        "train_counts": labels.train_counts.tolist(),
        "groups": {"head_min": groups.head_min, "tail_max": groups.tail_max},
    }


def run_track(name: str, loss: str | None, cfg: RunConfig, corpus: Corpus, labels: LabelSpace,
              run_dir: Path, variant: str, groups: FrequencyGroups) -> dict:
    """Fit, evaluate and export one track variant; return its results.json entry."""
    from mlbench.evaluation.scoring import evaluate_track
    from mlbench.sizes import directory_size
    from mlbench.evaluation.thresholds import save_thresholds

    settings = TrainSettings(
        epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, quick=cfg.quick,
        loss=loss or "bce", workdir=run_dir / "checkpoints" / export_dir_name(variant),
        options=dict(cfg.track_options.get(name, {})),
    )
    track: Track = get_track_class(name)(settings)
    with phase(f"{variant}: train") as timing:
        history = track.fit(corpus.train, corpus.val, labels)
    with phase(f"{variant}: evaluate"):
        result = evaluate_track(track, corpus, labels, groups)
    rules = result.pop("decision_rules")
    describe = track.describe()
    entry = {
        "track": name, "family": track.family, "loss": loss, "describe": describe,
        "train_seconds": timing["seconds"], "size_bytes": track.size_bytes(),
        "parameters": describe.get("parameters"), "history": history, **result,
        "export_dir": None,
    }
    with phase(f"{variant}: export"):
        exported = track.export(run_dir / export_dir_name(variant))
    if exported is not None:
        save_thresholds(exported / "thresholds.json", rules, labels.names, best_rule=entry["best_rule"])
        entry["export_dir"] = exported.name
        entry["export_bytes"] = directory_size(exported)
    (run_dir / "history").mkdir(exist_ok=True)
    (run_dir / "history" / f"{history_name(variant)}.json").write_text(
        json.dumps(history, indent=1), encoding="utf-8")
    test = entry["rules"]["fixed"]["test"]
    say(f"[{variant}] test micro-F1 {test['f1_micro']:.4f}  macro-F1 {test['f1_macro']:.4f}  "
        f"(best rule on val: {entry['best_rule']})")
    return entry


def run_experiment(cfg: RunConfig) -> Path:
    """Run every chosen track on one dataset; return the run folder."""
    from mlbench.keras.device import configure_device, gpu_visible
    from mlbench.tracks import default_tracks
    from mlbench.versions import versions

    for name in cfg.models or []:
        get_track_class(name)  # unknown or unavailable names fail before any work
    with phase(f"load {cfg.dataset}"):  # before TensorFlow starts: bad input fails fast
        corpus = load_data(cfg)
        say(f"{len(corpus.train)} train / {len(corpus.val)} val / {len(corpus.test)} test documents")
    with phase("device"):
        device = configure_device(cfg.device)
        say(f"using {device}")
    models = cfg.models or default_tracks(gpu_visible())
    with phase("label space"):
        labels = LabelSpace.from_training_labels(corpus.train.labels)
        say(f"{len(labels)} labels")
    groups = FrequencyGroups(head_min=cfg.head_min, tail_max=cfg.tail_max)
    run_dir = new_run_dir(Path(cfg.out), cfg.dataset)
    say(f"run folder: {run_dir}")
    labels.save(run_dir / "labels.json")
    record = {
        "run_id": run_dir.name, "created": datetime.now().isoformat(timespec="seconds"),
        "command": cfg.command, "config": {**cfg.to_json(), "models": models, "device_used": device},
        "versions": versions(), "dataset": dataset_record(corpus, labels, groups), "models": {},
    }
    started = time.perf_counter()
    for name in models:
        for loss in (cfg.losses if get_track_class(name).uses_loss else [None]):
            variant = variant_name(name, loss, len(cfg.losses))
            record["models"][variant] = run_track(name, loss, cfg, corpus, labels, run_dir, variant, groups)
            write_record(record, run_dir)  # partial results survive a crash in a later track
    record["total_seconds"] = time.perf_counter() - started
    write_record(record, run_dir)
    if cfg.report:
        with phase("report"):
            from reports import write_report

            path = write_report(record, run_dir)
            say(f"report: {path}")
    return run_dir


def write_record(record: dict, run_dir: Path) -> Path:
    path = run_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=_json_default), encoding="utf-8")
    tmp.replace(path)
    return path


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
