"""Log a finished run to MLflow: one parent run, one child per variant.

Why after the run, from the RunRecord: the experiment stays free of tracking code, a
run can be logged again later (`log_run(RunRecord.load(dir), dir, uri)`), and what
MLflow shows is exactly what results.json holds.

Parent: the run's configuration as parameters, its total seconds, results.json and
report.html as artifacts.  Child per variant: track / loss / chosen rules / the search
point as parameters; per objective its chosen rule's test metrics with 95% CI bounds
(``micro.test.f1_micro``, ``….ci_low``, ``….ci_high``) and cross-fitted validation
metrics (``micro.val.f1_micro``); timings and size; the export as a pyfunc model that
`mlflow.pyfunc.load_model(uri).predict(["raw text", ...])` calls.

Needs the `tracking` extra (mlflow-skinny + SQLAlchemy/Alembic for the SQLite store).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlbench.errors import InputError
from mlbench.record import OBJECTIVES, RESULTS_FILE, RunRecord

DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
#: MLflow refuses longer parameter values
MAX_PARAM = 6000


def default_uri(out: str | Path) -> str:
    """The embedded default: a SQLite store ``<out>/mlflow.db`` (out = the runs folder)."""
    return f"sqlite:///{(Path(out) / DB_FILE).resolve()}"


def flat(prefix: str, value: Any) -> dict[str, str]:
    """Nested dicts → ``a.b.c`` keys; lists and scalars as JSON text (cut to MLflow's limit)."""
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return {prefix: text[:MAX_PARAM]}


def _finite(value: Any) -> float | None:
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def variant_metrics(model: Any) -> dict[str, float]:
    """Per objective: the chosen rule's test metrics with CI bounds and its cross-fitted
    validation metrics; plus train seconds, docs/s and size."""
    out: dict[str, float] = {}
    for obj in OBJECTIVES:
        rule = model.chosen_rule.get(obj)
        result = model.rules.get(rule) if rule else None
        if result is None:
            continue
        for key, value in result.test.items():
            if (v := _finite(value)) is not None:
                out[f"{obj}.test.{key}"] = v
        for key, pair in result.test_ci.items():
            if isinstance(pair, (list, tuple)) and len(pair) == 2 and None not in pair:
                out[f"{obj}.test.{key}.ci_low"], out[f"{obj}.test.{key}.ci_high"] = float(pair[0]), float(pair[1])
        for key, value in (result.val_cv or result.val).items():
            if (v := _finite(value)) is not None:
                out[f"{obj}.val.{key}"] = v
    for key, value in (("train_seconds", model.train_seconds), ("inference_docs_per_s", model.inference_docs_per_s),
                       ("size_bytes", model.size_bytes)):
        if (v := _finite(value)) is not None:
            out[key] = v
    return out


def variant_params(model: Any) -> dict[str, str]:
    params = {"track": model.track, "family": model.family, "loss": model.loss or "",
              **{f"rule.{o}": r for o, r in model.chosen_rule.items()}}
    if model.search is not None:
        params.update(flat("search", model.search.chosen or {}))
        params["search.method"] = str(model.search.method)
    return {k: str(v)[:MAX_PARAM] for k, v in params.items()}


def _experiment(mlflow: Any, name: str, uri: str) -> str:
    """The experiment id, created with its artifacts beside a local SQLite store."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / ARTIFACTS_DIR / name).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def require_mlflow() -> None:
    """InputError (one line) when the `tracking` extra is not installed."""
    try:
        import mlflow  # noqa: F401
        import sqlalchemy  # noqa: F401  (the SQLite store)
    except ImportError:
        raise InputError("--mlflow needs the tracking extra: pip install 'mlbench[tracking]'") from None


def log_run(record: RunRecord, run_dir: str | Path, uri: str, *, experiment: str | None = None,
            models: bool = True, say: Any = print) -> str:
    """Log `record` (the run in `run_dir`) to the tracking store at `uri`; the parent run id.

    `models`: log each export as a pyfunc model (copies the export folder into the store's
    artifacts).  InputError when mlflow is not installed."""
    require_mlflow()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one log line per model instead
    import mlflow

    from mlbench.tracking.pyfunc_model import EXPORT_KEY, ExportedTextModel

    run_dir = Path(run_dir)
    mlflow.set_tracking_uri(uri)
    name = experiment or f"mlbench-{record.dataset.name}"
    exp_id = _experiment(mlflow, name, uri)
    tags = {"mlbench.run_id": record.run_id, "mlbench.dataset": record.dataset.name,
            "mlbench.schema_version": str(record.schema_version), "mlbench.status": record.status}
    with mlflow.start_run(experiment_id=exp_id, run_name=record.run_id, tags=tags) as parent:
        mlflow.log_params(flat("config", record.config) | {"command": record.command[:MAX_PARAM]})
        if (v := _finite(record.total_seconds)) is not None:
            mlflow.log_metric("total_seconds", v)
        for objective, best in record.best.items():
            mlflow.set_tag(f"mlbench.best.{objective}", f"{best.get('model')} / {best.get('rule')}")
        for file in (RESULTS_FILE, "report.html"):
            if (run_dir / file).is_file():
                mlflow.log_artifact(str(run_dir / file))
        for variant, model in record.models.items():
            with mlflow.start_run(experiment_id=exp_id, run_name=variant, nested=True,
                                  tags={**tags, "mlbench.variant": variant}):
                mlflow.log_params(variant_params(model))
                mlflow.log_metrics(variant_metrics(model))
                export = run_dir / model.export_dir if model.export_dir else None
                if models and export is not None and export.is_dir():
                    say(f"mlflow: logging {variant}'s export as a pyfunc model")
                    mlflow.pyfunc.log_model(
                        name="model", python_model=ExportedTextModel(), artifacts={EXPORT_KEY: str(export)},
                        pip_requirements=["mlbench"],  # the suite itself: its extras are already pinned
                    )
    return parent.info.run_id
