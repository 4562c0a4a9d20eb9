"""Package versions and machine facts recorded with every run."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform

PACKAGES = ("tensorflow", "keras", "keras-hub", "tensorflow-text", "scikit-learn", "numpy",
            "pandas", "matplotlib", "jinja2", "iterative-stratification", "mlbench")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform(),
           "cpu_count": str(os.cpu_count())}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out
