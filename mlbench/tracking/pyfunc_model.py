"""An exported model folder as an MLflow pyfunc: raw strings in, label scores out.

Why a module of its own: MLflow pickles the wrapper by reference, so `load_model` in
another process imports this class (mlbench must be installed there) and opens the
export it ships as an artifact with `mlbench.serving.artifacts.load_artifact`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

try:  # mlflow is the optional `tracking` extra; the class only exists where it is installed
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - guarded by the caller
    PythonModel = object  # type: ignore[assignment,misc]

#: the artifact key of the export folder inside the logged model
EXPORT_KEY = "export"


def texts_of(model_input: Any) -> list[str]:
    """Raw strings from what `pyfunc.predict` is given: a str, a list/array of str, a pandas
    Series, or a DataFrame (its ``text`` column, else its first column)."""
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "columns"):  # DataFrame
        col = "text" if "text" in model_input.columns else model_input.columns[0]
        model_input = model_input[col]
    return [str(t) for t in np.asarray(model_input, dtype=object).reshape(-1)]


class ExportedTextModel(PythonModel):  # type: ignore[misc,valid-type]
    """`predict(texts)` → DataFrame: ``labels`` (the names past the export's chosen rule)
    and one float column per label (raw scores, as `mlbench predict --raw`), [n_texts rows]."""

    def load_context(self, context: Any) -> None:
        from mlbench.runtime import import_tensorflow
        from mlbench.serving.artifacts import load_artifact

        import_tensorflow()
        self.artifact = load_artifact(context.artifacts[EXPORT_KEY])

    def predict(self, context, model_input, params=None):  # no hints: MLflow would read them as a schema
        import pandas as pd

        texts = texts_of(model_input)
        names: Sequence[str] = self.artifact.labels
        scores = np.asarray(self.artifact.predict(texts), dtype=np.float32).reshape(len(texts), len(names))
        cut = np.broadcast_to(np.asarray(self.artifact.threshold(None), dtype=np.float32), (len(names),))
        frame = pd.DataFrame(scores, columns=list(names))
        frame.insert(0, "labels", [[names[j] for j in np.flatnonzero(row >= cut)] for row in scores])
        return frame
