"""Cached downloads: temp file + rename, size floor, sha256 checked or recorded.

Why: a half-written or HTML-error-page download must never be mistaken for the data,
and the recorded hash lets a run report exactly which bytes it trained on.
Set ``MLBENCH_OFFLINE=1`` to forbid downloads (CI, air-gapped machines).

Two kinds of check (`verify_file`):
* **pinned**: the expected size and sha256 are in the code (`Pin`), because the bytes
  could be seen and hashed when the pin was written (the 22 Reuters SGML files,
  the arXiv 1,000-row sample in ``../shared/data``);
* **record-and-verify** (trust on first use): bytes this project could not see (the
  remote UCI and keras-io archives cannot be fetched from its machines) are hashed
  when first downloaded, the hash is written beside the cache entry
  (``<file>.sha256``), and every later use checks the file against it.

A mismatch is one InputError naming the file and both hashes; a bad cache entry is
moved aside (renamed to ``<file>.bad-<hash prefix>``, never deleted) so it is neither
silently reused nor lost.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable
from urllib.request import urlopen  # module attribute so tests can monkeypatch it

from mlbench.errors import InputError

__all__ = [
    "DownloadError",
    "Pin",
    "cache_root",
    "download",
    "sha256_of",
    "offline",
    "verify_file",
    "verify_recorded",
    "move_aside",
]

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

    Raises DownloadError (an OSError) for no network, HTTP errors or a short file,
    and InputError for a sha256 that differs from ``expected_sha256`` (the bytes are
    kept aside, see `move_aside`); nothing is left at `dest` in either case.
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
            aside = move_aside(tmp, digest, name=dest.name)
            raise InputError(
                f"{url}: downloaded bytes have sha256 {digest}, expected {expected_sha256.lower()} "
                f"(kept as {aside})"
            )
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


@dataclass(frozen=True)
class Pin:
    """The size and sha256 a file must have (written from bytes hashed on this project)."""

    size: int
    sha256: str


def move_aside(path: Path, digest: str | None = None, *, name: str | None = None) -> Path:
    """Rename ``path`` to ``<name>.bad-<hash prefix>[.N]`` beside it; never deletes it."""
    path = Path(path)
    base = f"{name or path.name}.bad-{(digest or sha256_of(path))[:12]}"
    target = path.with_name(base)
    n = 1
    while target.exists():
        target = path.with_name(f"{base}.{n}")
        n += 1
    os.replace(path, target)
    return target


def _mismatch(path: Path, expected: str, actual: str, detail: str, aside: bool) -> InputError:
    moved = ""
    if aside:
        try:
            moved = f"; moved aside to {move_aside(path, actual).name}"
        except OSError as err:  # a read-only folder: refuse it, leave it in place
            moved = f"; could not move it aside ({err.strerror})"
    return InputError(
        f"{path}: sha256 {actual} does not match the expected {expected}{detail}{moved}; "
        "replace the file with the original or delete it to download again"
    )


def verify_file(path: Path, pin: Pin, *, aside: bool = False) -> str:
    """Check ``path`` against a pinned size and sha256; return its sha256.

    Raises InputError naming the file, the expected and the actual hash. With
    ``aside`` (files in the suite's own cache) the bad file is moved aside first;
    files the user pointed at are never moved.
    """
    path = Path(path)
    size = path.stat().st_size
    actual = sha256_of(path)
    if actual != pin.sha256:
        detail = f" (size {size:,} bytes, expected {pin.size:,})" if size != pin.size else ""
        raise _mismatch(path, pin.sha256, actual, detail, aside)
    return actual


def recorded_hash_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def verify_recorded(path: Path, *, aside: bool = True) -> tuple[str, bool]:
    """Record-and-verify a cached file against ``<file>.sha256``; return (sha256, recorded_now).

    The first time a file is seen without a record (e.g. a cache from before records
    were written), its hash is recorded (trust on first use); after that a changed
    file is refused with InputError and moved aside (``aside``).
    """
    path = Path(path)
    record = recorded_hash_path(path)
    actual = sha256_of(path)
    if not record.is_file():
        record.write_text(f"{actual}  {path.name}\n")
        return actual, True
    fields = record.read_text().split()
    expected = fields[0].lower() if fields else ""
    if actual != expected:
        raise _mismatch(path, expected or "(empty record)", actual,
                        f" recorded in {record.name} when it was first downloaded", aside)
    return actual, False
