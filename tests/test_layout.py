"""The export folder's layout has one home (`mlbench.serving.layout`).

* every artifact reader implements the whole `Artifact` protocol;
* the readers and writers import the layout and no other reader or writer, and serving
  imports no track package (a track declares its ONNX core; the registry finds it);
* what the server describes for a graph-less export is the signature contract the
  SavedModel writers follow (`layout.signature_outputs`).
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from conftest import REPO
from test_layers import _hits, files, imports

from mlbench.serving import layout
from mlbench.serving.export import ExportedModel
from mlbench.serving.fasttext_artifact import FastTextArtifact
from mlbench.serving.onnx_artifact import OnnxArtifact

READERS = (ExportedModel, FastTextArtifact, OnnxArtifact)


def _protocol_members() -> tuple[set[str], set[str]]:
    """(data attributes, methods and properties) the `Artifact` protocol declares."""
    data = set(layout.Artifact.__annotations__)
    calls = {k for k, v in vars(layout.Artifact).items()
             if not k.startswith("_") and (callable(v) or isinstance(v, property))}
    return data, calls


def _set_in_init(cls) -> set[str]:
    """The ``self.<name>`` attributes `cls.__init__` assigns."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
    return {t.attr for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}


@pytest.mark.parametrize("cls", READERS, ids=lambda c: c.__name__)
def test_every_reader_implements_the_whole_protocol(cls):
    data, calls = _protocol_members()
    assert data == {"directory", "labels", "meta"} and {"predict", "probabilities", "threshold",
                                                        "has_calibration"} <= calls
    assert sorted(c for c in calls if not hasattr(cls, c)) == []
    assert sorted(data - _set_in_init(cls)) == []


def _serving_imports(module: str) -> set[str]:
    path = REPO / (module.replace(".", "/") + ".py")
    return {m for m in imports(path) if m.startswith("mlbench.serving.")}


@pytest.mark.parametrize("module, allowed", [
    ("mlbench.serving.layout", set()),
    ("mlbench.serving.export", {"mlbench.serving.layout"}),
    ("mlbench.serving.calibrated", {"mlbench.serving.layout"}),
    ("mlbench.serving.fasttext_artifact", {"mlbench.serving.layout"}),
    ("mlbench.serving.onnx_artifact", {"mlbench.serving.layout", "mlbench.serving.text_frontend"}),
    ("baselines.ensemble", {"mlbench.serving.layout"}),
    ("baselines.fasttext_track", {"mlbench.serving.layout", "mlbench.serving.fasttext_artifact"}),
])
def test_readers_and_writers_import_the_layout_not_each_other(module, allowed):
    assert _serving_imports(module) <= allowed, module


def test_serving_imports_no_track_package():
    assert _hits(files("mlbench/serving"), ("baselines", "transformers_track")) == []


@pytest.mark.parametrize("calibrated", [False, True])
def test_graphless_exports_describe_the_signatures_savedmodels_answer(calibrated):
    from mlbench.serving.served_model import synthetic_signature_defs

    defs = synthetic_signature_defs(3, calibrated)
    want = layout.signature_outputs(calibrated)
    assert {k: sorted(v["outputs"]) for k, v in defs.items()} == {k: sorted(v) for k, v in want.items()}
    assert all(list(v["inputs"]) == [layout.INPUT_NAME] for v in defs.values())
