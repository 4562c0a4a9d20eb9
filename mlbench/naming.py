"""File-system names derived from user-visible names (one home: runs, variants, exports)."""

from __future__ import annotations

import re
from pathlib import Path


def slug(name: str, *, keep: str = "_.-") -> str:
    """A file-system-safe stem for any name, e.g. ``mlp[focal]`` → ``mlp_focal``."""
    return re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]+", "_", str(name)).strip("_") or "model"


def dataset_stem(dataset: str) -> str:
    """``reuters`` → ``reuters``; ``data/my file.csv`` → ``my_file`` (the run-folder prefix)."""
    looks_like_path = "/" in dataset or "." in dataset
    return slug(Path(dataset).stem if looks_like_path else dataset)


def variant_name(track: str, loss: str | None, n_losses: int) -> str:
    """The name a track variant has in results.json and the report: ``mlp`` or ``mlp[focal]``."""
    return track if loss is None or n_losses == 1 else f"{track}[{loss}]"


def export_dir_name(variant: str, export_format: str = "savedmodel") -> str:
    """Folder of a variant's export inside the run folder: ``<variant>_savedmodel`` for a
    SavedModel, ``<variant>_model`` for any other format (fastText's ``.bin``), so a
    folder named ``*_savedmodel`` is always a SavedModel."""
    return slug(variant, keep="") + ("_savedmodel" if export_format == "savedmodel" else "_model")


def history_name(variant: str) -> str:
    """File stem of a variant's training history (``history/<stem>.json``)."""
    return slug(variant, keep="")
