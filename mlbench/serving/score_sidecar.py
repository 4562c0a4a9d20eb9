"""The file `mlbench score` writes beside its output, naming the model that wrote it.

Why: resuming appends rows to an existing output, and two exports of one run often
share their label set (svm and mlp on Reuters), so the output's columns alone cannot
tell whose rows it holds; resuming with another model silently mixed two models' scores
in one file.  ``<out>.mlbench.json`` records the model folder's path and a content hash
of every file in it; a resume whose model hash differs is refused.  It is written before
the first output row, so every output `score` started has one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mlbench.errors import InputError

__all__ = ["SIDECAR_SUFFIX", "sidecar_path", "model_fingerprint", "folder_sha256", "check_owner",
           "write_sidecar"]

SIDECAR_SUFFIX = ".mlbench.json"
FORMAT = "mlbench-score-output"


def sidecar_path(out: Path) -> Path:
    """``scores.csv`` → ``scores.csv.mlbench.json`` (same folder)."""
    return out.with_name(out.name + SIDECAR_SUFFIX)


def folder_sha256(folder: Path) -> str:
    """sha256 over every file of `folder` (relative path + the file's own sha256, sorted):
    the same for a copied or moved export, different when any byte of it changes."""
    from mlbench.data.download import sha256_of

    h = hashlib.sha256()
    for f in sorted((p for p in Path(folder).rglob("*") if p.is_file()), key=lambda p: p.as_posix()):
        h.update(f"{f.relative_to(folder).as_posix()}\0{sha256_of(f)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def model_fingerprint(model: Path) -> dict:
    """``{"path": absolute folder, "sha256": folder_sha256}`` of an export folder."""
    return {"path": str(Path(model).resolve()), "sha256": folder_sha256(Path(model))}


def _read(out: Path) -> dict | None:
    """The sidecar's content, None when absent; InputError when the name is taken by something else."""
    side = sidecar_path(out)
    if not side.exists():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("model"), dict):
        raise InputError(f"--out {out}: {side.name} beside it is not a score sidecar; refusing to "
                         "overwrite it, choose another --out")
    return data


def check_owner(out: Path, model: dict) -> None:
    """Refuse to resume `out` unless its sidecar names a model with `model`'s hash.

    Called only for an existing, non-empty `out`; an output without a sidecar was not
    written by this version of `score` (or is not an output at all) and is refused too."""
    data = _read(out)
    if data is None:
        raise InputError(f"--out {out}: exists without {sidecar_path(out).name} naming the model that "
                         "wrote it; refusing to add rows to it, choose another --out")
    theirs = data["model"]
    if theirs.get("sha256") == model["sha256"]:
        return
    if theirs.get("path") == model["path"]:
        raise InputError(f"--out {out}: was written by {model['path']} before it changed (sha256 "
                         f"{str(theirs.get('sha256'))[:12]}…, now {model['sha256'][:12]}…); refusing to "
                         "add rows of the new export, choose another --out")
    raise InputError(f"--out {out}: holds the scores of another model ({theirs.get('path')}, sha256 "
                     f"{str(theirs.get('sha256'))[:12]}…); refusing to add rows of {model['path']}, "
                     "choose another --out")


def write_sidecar(out: Path, model: dict, **details) -> Path:
    """Write (atomically) ``{"format", "model": {path, sha256}, **details}`` beside `out`.

    A file already at the sidecar's name that is not a sidecar is never overwritten."""
    _read(out)
    side = sidecar_path(out)
    tmp = side.with_name(f".{side.name}.partial")
    tmp.write_text(json.dumps({"format": FORMAT, "model": model, **details}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, side)
    return side
