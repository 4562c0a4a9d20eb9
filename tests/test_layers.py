"""The layer rules in the README, checked by reading every module's imports.

- nothing under ``mlbench/`` imports ``reports``, ``benchmarks``, a web framework (only
  ``mlbench.serving.server`` may) or the command line ``mlbench_cli`` (only the ``python -m
  mlbench`` alias ``mlbench.__main__`` may);
- the command line (``mlbench_cli``) is the top layer: it may import everything;
- tracks (``baselines/``, ``transformers_track/``) never import the experiment or the command line;
- the report imports from ``mlbench`` only the record and naming modules;
- tests never import ``benchmarks``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

CLI = "mlbench_cli"
MAIN = "mlbench.__main__"  # `python -m mlbench`: a two-line alias of the command line
WEB = ("fastapi", "uvicorn", "starlette")
SERVER = "mlbench.serving.server"  # the one core module allowed a web framework


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path, package: str | None = None) -> set[str]:
    """Every module a file imports, at any depth (function-local imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    if package is None:
        package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return found


def files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def _forbidden(mods: set[str], forbidden) -> list[str]:
    return sorted(m for m in mods if any(m == f or m.startswith(f + ".") for f in forbidden))


def _hits(paths: list[Path], forbidden, skip=frozenset()) -> list[str]:
    return [f"{path.relative_to(REPO)} imports {mod}" for path in paths if module_name(path) not in skip
            for mod in _forbidden(imports(path), forbidden)]


def test_core_imports_no_report_cli_benchmark_or_web():
    assert _hits(files("mlbench"), ("reports", "benchmarks", "run_all", *WEB), skip={SERVER}) == []
    assert _hits(files("mlbench"), (CLI,), skip={MAIN}) == []
    # the HTTP server is an edge like the command line: it may use the web framework, and only
    # the command line imports it
    assert _hits(files("mlbench"), (SERVER,)) == []


def test_tracks_never_import_the_experiment_or_the_command_line():
    forbidden = ("mlbench.experiment", "reports", "benchmarks", "run_all", CLI)
    assert _hits(files("baselines") + files("transformers_track"), forbidden) == []


def test_report_reads_only_the_record():
    allowed = {"mlbench.record", "mlbench.naming"}
    bad = [f"{p.relative_to(REPO)} imports {m}" for p in files("reports") if p.name != "__main__.py"
           for m in imports(p) if (m == "mlbench" or m.startswith("mlbench.")) and m not in allowed]
    assert bad == []  # reports/__main__.py is `python -m reports`, an alias of `mlbench report`


def test_tests_never_import_benchmarks():
    assert _hits(files("tests"), ("benchmarks",)) == []


@pytest.mark.parametrize("source, expected", [
    ("from reports import write_report", {"reports"}),
    ("def f():\n    import reports.html\n", {"reports.html"}),
    ("from ..reports import x", {"reports"}),
])
def test_the_checker_sees_top_level_local_and_relative_imports(tmp_path, source, expected):
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert _forbidden(imports(path, package="pkg"), ("reports",)) == sorted(expected)
