"""Headless-Chromium screenshots of a report, for review without a browser.

Why these flags: the report is rendered as root on a machine without network,
so the sandbox must be off, every background service that would try to phone
home is disabled, and a throwaway profile keeps runs from sharing state.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium(chromium: str = "chromium") -> str:
    """Resolve the browser binary or fail with a message that says what to install."""
    defaults = ("chromium", "chromium-browser", "google-chrome")
    for candidate in defaults if chromium == "chromium" else (chromium,):
        path = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if path:
            return path
    raise RuntimeError(
        f"Chromium not found (tried {chromium!r}); install it (Debian: apt-get install chromium) "
        "or pass chromium=/path/to/chromium"
    )


def screenshot(html_path: Path, png_path: Path, *, width: int = 1400, height: int = 4000,
               chromium: str = "chromium", timeout: float = 120.0) -> Path:
    """Render ``html_path`` in headless Chromium and save a ``width``×``height`` PNG."""
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(html_path)
    binary = find_chromium(chromium)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png_path}",
               f"--window-size={int(width)},{int(height)}", html_path.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"Chromium timed out after {timeout:.0f}s rendering {html_path}") from exc
    if not png_path.is_file() or png_path.stat().st_size == 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise RuntimeError(f"Chromium exited {proc.returncode} without writing {png_path}:\n{tail}")
    return png_path
