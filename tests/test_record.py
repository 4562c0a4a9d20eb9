"""RunRecord: JSON round trip, schema versions, and the one selection function."""

from __future__ import annotations

import json

import pytest

from mlbench.errors import InputError
from mlbench.record import (SCHEMA_VERSION, DatasetInfo, ModelResult, RuleResult, RunRecord,
                            group_of)


def _rule(val_micro: float, val_macro: float, test_micro: float, test_macro: float) -> RuleResult:
    return RuleResult(threshold=0.5, val_cv={"f1_micro": val_micro, "f1_macro": val_macro},
                      test={"f1_micro": test_micro, "f1_macro": test_macro})


def _model(track: str, loss: str | None, rules: dict[str, RuleResult]) -> ModelResult:
    chosen = {obj: max(rules, key=lambda r: rules[r].val_cv[key])
              for obj, key in (("micro", "f1_micro"), ("macro", "f1_macro"))}
    return ModelResult(track=track, family="x", loss=loss, rules=rules, chosen_rule=chosen)


def fake_record() -> RunRecord:
    """Numbers chosen so that validation and test disagree: test must never pick."""
    return RunRecord(
        run_id="r", created="now", command="", config={"seeds": 1}, versions={},
        dataset=DatasetInfo(name="d", labels=["a", "b"], train_counts=[40, 2],
                            groups={"head_min": 35, "tail_max": 8}, label_groups=["head", "tail"]),
        models={
            "mlp[bce]": _model("mlp", "bce", {"fixed": _rule(0.85, 0.40, 0.86, 0.40),
                                              "global": _rule(0.87, 0.45, 0.87, 0.45)}),
            "mlp[db]": _model("mlp", "db", {"fixed": _rule(0.86, 0.55, 0.87, 0.58),
                                            "global": _rule(0.86, 0.62, 0.87, 0.61),
                                            # best on TEST but not on validation
                                            "per_label": _rule(0.85, 0.60, 0.99, 0.99)}),
            "svm": _model("svm", None, {"fixed": _rule(0.90, 0.90, 0.50, 0.50)}),
        },
    )


def test_round_trip_through_results_json(tmp_path):
    record = fake_record()
    record.save(tmp_path)
    again = RunRecord.load(tmp_path)
    assert again.to_json() == record.to_json()
    assert isinstance(again.models["svm"].rules["fixed"], RuleResult)
    assert json.loads((tmp_path / "results.json").read_text())["schema_version"] == SCHEMA_VERSION


def test_older_schema_is_refused_with_its_version(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"models": {}, "run_id": "x"}))
    with pytest.raises(InputError, match="schema version 1"):
        RunRecord.load(tmp_path)
    with pytest.raises(InputError, match="no results.json"):
        RunRecord.load(tmp_path / "nowhere")


def test_best_for_uses_cross_fitted_validation_never_test():
    record = fake_record()
    assert record.best_for("micro") == ("svm", "fixed")
    assert record.best_for("macro") == ("svm", "fixed")
    keras_only = lambda m: m.loss is not None  # noqa: E731
    assert record.best_for("macro", where=keras_only) == ("mlp[db]", "global")
    assert record.best_for("micro", where=keras_only) == ("mlp[bce]", "global")
    with pytest.raises(InputError, match="--select"):
        record.best_for("weighted")


def test_label_group_bounds():
    assert [group_of(c, 35, 8) for c in (35, 34, 9, 8, 0)] == ["head", "medium", "medium", "tail", "tail"]


def test_typed_parts_read_back_from_a_record_written_as_dicts():
    """Calibration, error analysis and search come back as dataclasses from a results.json
    written before they were typed, and go out as the same JSON (key order included)."""
    from mlbench.record import CalibrationResult, ErrorAnalysis, SearchResult, SubsetScores

    data = fake_record().to_json()
    svm = data["models"]["svm"]
    svm["calibration"] = {"method": "auto", "maps": {"platt": 2}, "bins": 15,
                          "chosen_by": {"criterion": "out-of-fold ECE top-5 on validation",
                                        "candidates": {"auto": 0.05, "identity": 0.07}},
                          "raw": {"brier": 0.1, "log_loss": 0.3, "ece": 0.02, "ece_top5": 0.08},
                          "calibrated": {"brier": 0.09, "log_loss": 0.28, "ece": 0.01, "ece_top5": 0.05},
                          "reliability": {"raw": {"all": {"count": [3]}, "top5": {"count": [1]}}}}
    svm["errors"] = {"rule": "fixed", "errors": {"false_negatives": 4, "false_positives": 2},
                     "confusions": [{"true": "a", "predicted": "b", "count": 1, "examples": []}],
                     "false_negatives": [], "false_positives": [],
                     "breakdown": {"single": {"documents": 10, "f1_micro": 0.8, "f1_macro": 0.5}},
                     "overfitted_tokens": [], "explained": 0, "explain_note": "none", "explain_top_n": 5}
    svm["search"] = {"track": "svm", "objective": "micro", "metric": "f1_micro", "method": "grid",
                     "evaluation": "validation (9 docs)", "space": {"C": [0.1, 1.0]}, "budget": None,
                     "full_grid": 2, "grid": [{"C": 0.1}, {"C": 1.0}], "scores": [0.5, 0.6],
                     "rules": ["fixed", "global"], "chosen": {"C": 1.0}, "score": 0.6,
                     "chosen_rule": "global", "seconds": 1.5}
    model = RunRecord.from_json(data).models["svm"]
    assert isinstance(model.calibration, CalibrationResult) and model.calibration.raw.ece_top5 == 0.08
    assert isinstance(model.errors, ErrorAnalysis)
    assert model.errors.breakdown["single"] == SubsetScores(10, 0.8, 0.5)
    assert isinstance(model.search, SearchResult) and model.search.chosen == {"C": 1.0}
    again = RunRecord.from_json(data).to_json()
    assert json.dumps(again) == json.dumps(data)  # same keys, same order, same values
