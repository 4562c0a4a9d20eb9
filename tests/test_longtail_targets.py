"""benchmarks/longtail_targets.py: selection on validation, target arithmetic, table (fast)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "longtail_targets.py"


@pytest.fixture(scope="module")
def lt():
    spec = importlib.util.spec_from_file_location("longtail_targets", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _m(micro: float, macro: float, tail_macro: float | None = 0.1) -> dict:
    return {"f1_micro": micro, "f1_macro": macro,
            "head_f1_micro": micro + 0.01, "head_f1_macro": macro + 0.2,
            "medium_f1_micro": micro - 0.1, "medium_f1_macro": macro,
            "tail_f1_micro": None if tail_macro is None else tail_macro + 0.05,
            "tail_f1_macro": tail_macro}


def _entry(track: str, loss: str | None, best_rule: str, rules: dict) -> dict:
    return {"track": track, "loss": loss, "best_rule": best_rule,
            "rules": {name: {"val": val, "test": test} for name, (val, test) in rules.items()}}


def fake_record() -> dict:
    """mlp[bce], mlp[db] and svm; numbers chosen so validation and test disagree."""
    return {
        "config": {"dataset": "reuters", "seed": 42, "losses": ["bce", "db"], "track_options": {}},
        "dataset": {"train_counts": [100, 50, 20, 10, 5, 1],
                    "groups": {"head_min": 35, "tail_max": 8}},
        "models": {
            "mlp[bce]": _entry("mlp", "bce", "global", {
                "fixed": (_m(0.85, 0.40), _m(0.860, 0.40, tail_macro=0.10)),
                "global": (_m(0.87, 0.45), _m(0.870, 0.45, tail_macro=0.15)),
                "per_label": (_m(0.86, 0.50), _m(0.865, 0.52, tail_macro=0.20)),
            }),
            "mlp[db]": _entry("mlp", "db", "fixed", {
                "fixed": (_m(0.86, 0.55), _m(0.866, 0.58, tail_macro=0.27)),
                # best on validation macro-F1 (0.62) ...
                "global": (_m(0.86, 0.62), _m(0.868, 0.61, tail_macro=0.30)),
                # ... even though this one is better on TEST: it must not be picked
                "per_label": (_m(0.85, 0.60), _m(0.880, 0.70, tail_macro=0.50)),
            }),
            "svm": _entry("svm", None, "fixed", {
                # the best validation macro overall, but not a Keras model
                "fixed": (_m(0.90, 0.90), _m(0.90, 0.90)),
                "global": (_m(0.90, 0.80), _m(0.90, 0.80)),
                "per_label": (_m(0.90, 0.80), _m(0.90, 0.80)),
            }),
        },
    }


def test_selection_is_on_validation(lt) -> None:
    rows = lt.configurations(fake_record())
    assert len(rows) == 9
    best = lt.pick_best(rows)
    assert (best["variant"], best["rule"]) == ("mlp[db]", "global")
    assert lt.pick_bce_fixed(rows, "mlp")["rule"] == "fixed"
    # BCE's best rule is chosen on validation micro-F1 (global: 0.87), not test
    assert lt.pick_bce_best(rows, "mlp")["rule"] == "global"


def test_target_arithmetic(lt) -> None:
    checks = lt.check_targets(fake_record())
    assert checks["best"] == "mlp[db] @ global"
    assert checks["bce_fixed"] == "mlp[bce] @ fixed"
    assert checks["bce_best"] == "mlp[bce] @ global"
    t = {x["name"]: x for x in checks["targets"]}
    assert t["macro_f1"]["status"] == "PASS" and t["macro_f1"]["value"] == pytest.approx(0.61)
    assert t["tail_gain"]["status"] == "PASS" and t["tail_gain"]["value"] == pytest.approx(0.20)
    # 0.870 - 0.868 = 0.2 point drop <= 0.5 point
    assert t["micro_drop"]["status"] == "PASS" and t["micro_drop"]["value"] == pytest.approx(0.002)


def test_target_misses_and_boundaries(lt) -> None:
    rec = fake_record()
    db = rec["models"]["mlp[db]"]["rules"]["global"]["test"]
    db.update(f1_macro=0.5999, f1_micro=0.8649, tail_f1_macro=0.249)
    t = {x["name"]: x for x in lt.check_targets(rec)["targets"]}
    assert t["macro_f1"]["status"] == "MISS"
    assert t["tail_gain"]["status"] == "MISS"  # 0.249 - 0.10 = 0.149 < 0.15
    assert t["micro_drop"]["status"] == "MISS"  # 0.870 - 0.8649 = 0.51 point
    db.update(f1_macro=0.60, f1_micro=0.865, tail_f1_macro=0.25)  # exactly on the limits
    t = {x["name"]: x for x in lt.check_targets(rec)["targets"]}
    assert [t[k]["status"] for k in ("macro_f1", "tail_gain", "micro_drop")] == ["PASS"] * 3


def test_without_bce_or_keras(lt) -> None:
    rec = fake_record()
    del rec["models"]["mlp[bce]"]
    t = {x["name"]: x["status"] for x in lt.check_targets(rec)["targets"]}
    assert t == {"macro_f1": "PASS", "tail_gain": "N/A", "micro_drop": "N/A"}
    del rec["models"]["mlp[db]"]
    checks = lt.check_targets(rec)
    assert checks["best"] is None and {x["status"] for x in checks["targets"]} == {"N/A"}


def test_table_and_from_run(lt, tmp_path: Path, capsys) -> None:
    rec = fake_record()
    table = lt.format_table(rec)
    lines = table.splitlines()
    star = [l for l in lines if l.startswith("*")]
    assert len(star) == 1 and "mlp[db]" in star[0] and "global" in star[0]
    assert "0.6100" in star[0] and "0.3000" in star[0]  # test macro and tail macro shown
    bline = [l for l in lines if l[:2] == " b"]
    assert len(bline) == 1 and "mlp[bce]" in bline[0] and ">global" in bline[0]
    assert "head 2" in table and "medium 2" in table and "tail 2" in table
    run = tmp_path / "reuters-x"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(rec), encoding="utf-8")
    out_json = tmp_path / "checks.json"
    assert lt.main(["--from-run", str(run), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "[PASS] macro_f1" in printed and "3/3 targets passed" in printed
    assert json.loads(out_json.read_text())["best"] == "mlp[db] @ global"
