"""Cached downloads: temp file + rename, size floor, sha256 recorded beside the file.

Why: a half-written or HTML-error-page download must never be mistaken for the data,
and the recorded hash lets a run report exactly which bytes it trained on.
Set ``MLBENCH_OFFLINE=1`` to forbid downloads (CI, air-gapped machines).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from http.client import HTTPException
from pathlib import Path
from typing import Callable
from urllib.request import urlopen  # module attribute so tests can monkeypatch it

__all__ = ["DownloadError", "cache_root", "download", "sha256_of", "offline"]

_CHUNK = 1 << 20


class DownloadError(OSError):
    """The file could not be fetched or failed its checks (an OSError, like URLError)."""


def cache_root() -> Path:
    """``$MLBENCH_CACHE`` or ``~/.cache/mlbench``."""
    env = os.environ.get("MLBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mlbench"


def offline() -> bool:
    return os.environ.get("MLBENCH_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str,
    dest: Path,
    *,
    min_bytes: int,
    expected_sha256: str | None = None,
    progress: Callable[[str], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch `url` to `dest` atomically; write ``<dest>.sha256``; return `dest`.

    Raises DownloadError (an OSError) for no network, HTTP errors, a short file or a
    hash mismatch; nothing is left at `dest` in that case.
    """
    if offline():
        raise DownloadError("downloads disabled by MLBENCH_OFFLINE")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    size = 0
    try:
        if progress:
            progress(f"downloading {url}")
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
                size += len(chunk)
        if size < min_bytes:
            raise DownloadError(f"{url}: got {size} bytes, expected at least {min_bytes}")
        digest = h.hexdigest()
        if expected_sha256 and digest != expected_sha256.lower():
            raise DownloadError(f"{url}: sha256 {digest} does not match {expected_sha256}")
        os.replace(tmp, dest)
    except HTTPException as err:  # IncompleteRead etc. are not OSErrors
        raise DownloadError(f"{url}: {err!r}") from err
    finally:
        tmp.unlink(missing_ok=True)
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
    if progress:
        progress(f"saved {dest} ({size / 1e6:.1f} MB, sha256 {digest[:12]}…)")
    return dest


def sibling_data_dir(name: str) -> Path | None:
    """``../shared/data/<name>`` beside the checkout, if it exists.

    The project's machines keep the benchmark data there (read-only, never
    committed); loaders use it as the offline copy of last resort.
    """
    folder = Path(__file__).resolve().parents[3] / "shared" / "data" / name
    return folder if folder.is_dir() else None
