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


#: string constants under ``mlbench/`` that spell a track's name but mean something else
#: (path, text) → why
NOT_A_TRACK = {
    ("mlbench/serving/layout.py", "fasttext"): "the fastText file format's name (`FASTTEXT_FORMAT`)",
}
#: modules still naming a track, each with the change that removes it (drop the entry then)
PENDING: dict[str, str] = {}


def _strings(tree: ast.AST, skip: set[int]) -> list[ast.Constant]:
    """The string constants of a module, docstrings and the nodes under `skip` left out."""
    docs, skipped = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
        if id(node) in skip:
            skipped.update(id(n) for n in ast.walk(node))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs and id(n) not in skipped]


def _registry_table(tree: ast.AST) -> set[int]:
    """The one registry table (``_REGISTRY = {name: "module:Class"}`` in mlbench/tracks.py)."""
    return {id(node.value) for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
            and "_REGISTRY" in [getattr(t, "id", None) for t in getattr(node, "targets", [getattr(node, "target", None)])]}


def track_name_hits(paths: list[Path], names: list[str], root: Path = REPO) -> list[str]:
    """``path:line: 'name' in '...'`` for every string constant (messages, dict keys,
    comparisons; not docstrings) that spells a registered track's name as a word."""
    import re

    word = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
                      + r")(?![\w-])")
    hits = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        if rel in PENDING:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _registry_table(tree) if rel == "mlbench/tracks.py" else set()
        for node in _strings(tree, skip):
            if (rel, node.value) in NOT_A_TRACK:
                continue
            hits += [f"{rel}:{node.lineno}: {m.group(1)!r} in {node.value[:60]!r}" for m in word.finditer(node.value)]
    return hits


def test_core_and_command_line_name_no_concrete_track():
    # what is special about a track is declared on it (`mlbench.tracks.Track`): the command
    # line, config, serving and explain code read the declarations; only the registry
    # table maps names to classes
    from mlbench.tracks import track_names

    assert track_name_hits(files("mlbench") + files(CLI), track_names()) == []


def test_the_track_name_check_sees_messages_keys_and_comparisons(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text('"""The svm docstring is fine."""\nX = {"fasttext": 1, "tfidf_mlp": 2, "fasttext-wheel": 3}\n'
                    'def f(n):\n    return n == "svm" or "svm, mlp and encoder have one"\n', encoding="utf-8")
    hits = track_name_hits([path], ["svm", "mlp", "encoder", "fasttext"], root=tmp_path)
    assert sorted(h.split(": ", 1)[1] for h in hits) == sorted([
        "'fasttext' in 'fasttext'", "'svm' in 'svm'", "'svm' in 'svm, mlp and encoder have one'",
        "'mlp' in 'svm, mlp and encoder have one'", "'encoder' in 'svm, mlp and encoder have one'"])


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


# -- no import circle inside a package ------------------------------------------------------------
PACKAGES = ("mlbench", "mlbench_cli", "baselines", "transformers_track", "reports")


def _project_modules() -> dict[str, Path]:
    """{dotted name: file} of every module in the project's packages."""
    return {module_name(p): p for pkg in PACKAGES if (REPO / pkg / "__init__.py").exists()
            for p in files(pkg)}


def _module_edges(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports, at any depth (a function-level import counts:
    hiding a circle inside a function does not remove it).  ``from pkg import mod`` is an
    import of ``pkg.mod``; a module's own parent packages are not edges (Python imports
    them first anyway, so they cannot close a circle of the module's making)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name and not name.startswith(t + "."))
    return found


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(circles)


def test_no_import_circle_inside_a_package():
    """A circle (module-level or hidden in a function) means two modules share what should
    live in a third; e.g. the export folder's names live in `mlbench.serving.layout`."""
    modules = _project_modules()
    graph = {name: _module_edges(path, name, set(modules)) for name, path in modules.items()}
    assert import_circles(graph) == []


def test_the_circle_check_sees_function_level_and_from_package_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.c import g\n")
    (pkg / "c.py").write_text("def g():\n    from . import a\n")
    (pkg / "d.py").write_text("import pkg\nfrom pkg import a\n")  # imports into the circle, not part of it
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d"}
    graph = {f"pkg.{m}": set() for m in "abcd"}
    for m in "abcd":
        path = pkg / f"{m}.py"
        graph[f"pkg.{m}"] = _module_edges(path, f"pkg.{m}", known)
    assert import_circles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


# -- the fast lane ---------------------------------------------------------------------------------
def _is_slow_mark(node: ast.expr) -> bool:
    """``pytest.mark.slow`` (also inside a list of marks)."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(_is_slow_mark(n) for n in node.elts)
    return isinstance(node, ast.Attribute) and node.attr == "slow"


def fast_tests(path: Path) -> list[str]:
    """The test functions of a test module that ``-m "not slow"`` keeps (a module-level
    ``pytestmark`` with `slow`, or a ``@pytest.mark.slow`` decorator, takes a test out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            if _is_slow_mark(node.value):
                return []
    return [node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
            and not any(_is_slow_mark(d) for d in node.decorator_list)]


#: test modules that are end-to-end runs only (each names why): the fast lane skips them whole
END_TO_END_ONLY = {
    "test_reliability.py": "kill-and-resume of whole runs",
    "test_onnx_runs.py": "ONNX exports of one quick `run_all` run",
    "test_report_browser.py": "the report in a headless browser",
}


def test_every_test_module_has_unit_tests_in_the_fast_lane():
    """``python -m pytest -q -m "not slow"`` (the fast lane) covers every module's unit
    tests; only the modules in `END_TO_END_ONLY` are slow as a whole."""
    empty = sorted(p.name for p in (REPO / "tests").glob("test_*.py") if not fast_tests(p))
    assert empty == sorted(END_TO_END_ONLY)


def test_the_fast_lane_check_sees_module_and_function_marks(tmp_path):
    path = tmp_path / "test_x.py"
    path.write_text("import pytest\n@pytest.mark.slow\ndef test_a(): pass\n@pytest.mark.hub\ndef test_b(): pass\n")
    assert fast_tests(path) == ["test_b"]
    path.write_text("import pytest\npytestmark = [pytest.mark.hub, pytest.mark.slow]\ndef test_b(): pass\n")
    assert fast_tests(path) == []
