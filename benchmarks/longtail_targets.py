"""Long-tail targets on Reuters: losses x decision rules, judged on head / medium / tail labels.

Runs the TF-IDF MLP once per loss (default: all of `mlbench.keras.losses.LOSS_NAMES`) plus
the ``svm`` and ``svm_balanced`` references through `mlbench.experiment.run_experiment`
(so a normal run folder with results.json, report.html and exports is written under
``--out``), then prints one row per (model, decision rule) with TEST micro/macro F1
and head / medium / tail micro+macro F1, and a block checking the targets:

1. the best Keras configuration reaches test macro-F1 >= 0.60;
2. its test tail-group macro-F1 is >= 0.15 above plain BCE at the fixed 0.5 cut-off;
3. its test micro-F1 is at most 0.5 point below the best BCE configuration's.

A configuration is a (loss, decision rule) pair.  Everything is *chosen on
validation*: "best" is the Keras configuration with the highest VALIDATION macro-F1
(cross-fitted for tuned rules, see `mlbench.evaluation.scoring`)
(ties: the earlier loss/rule), and the "best BCE configuration" is BCE under the rule
with the highest validation micro-F1 (the rule `mlbench.evaluation.best_rule` picks
and thresholds.json serves).  Only then are their TEST numbers read and compared.

    python benchmarks/longtail_targets.py                          # full run (slow on CPU)
    python benchmarks/longtail_targets.py --loss bce,db --no-svm   # a subset
    python benchmarks/longtail_targets.py --from-run runs/reuters-<stamp>   # re-print only

Reuters comes from ``--data-dir``, else the loader's own resolution (``$MLBENCH_REUTERS``,
cache, ``../shared/data/reuters21578`` beside the checkout).  MLP / training options:
``--option key=value`` (JSON values) on top of ``DEFAULT_MLP_OPTIONS`` (early stopping
on validation macro-F1, patience 3), e.g. ``--option monitor=val_loss --option
patience=2`` for the stock MLP, or ``--option 'loss_options={"db": {"kappa": -0.025}}'``
(see `mlbench.keras.training`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.cli_options import parse_option  # noqa: E402

RULES = ("fixed", "global", "per_label")
GROUPS = ("head", "medium", "tail")

#: target thresholds (absolute F1 units)
MACRO_TARGET = 0.60
TAIL_GAIN_TARGET = 0.15
MICRO_DROP_LIMIT = 0.005
#: validation metric that picks the best configuration / the best BCE rule
SELECT_KEY = "f1_macro"
BCE_SELECT_KEY = "f1_micro"
#: MLP training options this benchmark uses unless overridden with --option: early
#: stopping on validation macro-F1 (at 0.5) with patience 3 instead of the track's
#: val_loss / 2, which stops before rare labels are learned.  The same for every loss,
#: BCE included.  ``--option monitor=val_loss --option patience=2`` gives the stock MLP.
DEFAULT_MLP_OPTIONS = {"monitor": "val_f1_macro", "patience": 3}


# --------------------------------------------------------------------------- record -> rows
def configurations(record: dict) -> list[dict]:
    """One row per (variant, decision rule) in results.json order."""
    rows = []
    for variant, entry in record.get("models", {}).items():
        rules = entry.get("rules") or {}
        for rule in RULES:
            if rule not in rules:
                continue
            rows.append({
                "variant": variant,
                "track": entry.get("track", variant),
                "loss": entry.get("loss"),
                "keras": entry.get("loss") is not None,
                "rule": rule,
                "served_rule": entry.get("best_rule"),
                "epochs": len((entry.get("history") or {}).get("loss") or []),
                # cross-fitted validation metrics (thresholds fitted on other folds);
                # older runs only have the in-sample ones
                "val": rules[rule].get("val_cv") or rules[rule].get("val") or {},
                "test": rules[rule].get("test") or {},
            })
    return rows


def _val(row: dict, key: str) -> float:
    v = row["val"].get(key)
    return float(v) if v is not None else float("-inf")


def pick_best(rows: list[dict], key: str = SELECT_KEY) -> dict | None:
    """The Keras configuration with the highest validation `key` (ties: the earliest)."""
    best = None
    for row in rows:
        if row["keras"] and (best is None or _val(row, key) > _val(best, key)):
            best = row
    return best


def bce_rows(rows: list[dict], track: str) -> list[dict]:
    return [r for r in rows if r["keras"] and r["loss"] == "bce" and r["track"] == track]


def pick_bce_fixed(rows: list[dict], track: str) -> dict | None:
    return next((r for r in bce_rows(rows, track) if r["rule"] == "fixed"), None)


def pick_bce_best(rows: list[dict], track: str, key: str = BCE_SELECT_KEY) -> dict | None:
    """BCE under the rule with the best validation `key` (ties: the simpler rule)."""
    best = None
    for row in bce_rows(rows, track):
        if best is None or _val(row, key) > _val(best, key):
            best = row
    return best


def _test(row: dict | None, key: str) -> float | None:
    if row is None:
        return None
    v = row["test"].get(key)
    return None if v is None else float(v)


def check_targets(record: dict, *, macro_target: float = MACRO_TARGET,
                  tail_gain: float = TAIL_GAIN_TARGET, micro_drop: float = MICRO_DROP_LIMIT) -> dict:
    """The three targets with their numbers; status "PASS", "MISS" or "N/A"."""
    rows = configurations(record)
    best = pick_best(rows)
    out: dict = {"best": _label(best), "bce_fixed": None, "bce_best": None, "targets": []}
    if best is None:
        out["targets"] = [{"name": n, "status": "N/A", "detail": "no Keras model in the run"}
                          for n in ("macro_f1", "tail_gain", "micro_drop")]
        return out
    bce_fixed = pick_bce_fixed(rows, best["track"])
    bce_best = pick_bce_best(rows, best["track"])
    out["bce_fixed"], out["bce_best"] = _label(bce_fixed), _label(bce_best)

    macro = _test(best, "f1_macro")
    out["targets"].append(_target(
        "macro_f1", macro is not None and macro >= macro_target - 1e-12,
        value=macro, goal=macro_target,
        detail=f"best test macro-F1 {_f(macro)} >= {macro_target:.2f}"))

    tail, tail_ref = _test(best, "tail_f1_macro"), _test(bce_fixed, "tail_f1_macro")
    if tail is None or tail_ref is None:
        out["targets"].append({"name": "tail_gain", "status": "N/A",
                               "detail": "needs a bce run and a non-empty tail group"})
    else:
        gain = tail - tail_ref
        out["targets"].append(_target(
            "tail_gain", gain >= tail_gain - 1e-12, value=gain, goal=tail_gain,
            detail=f"tail macro-F1 {_f(tail)} - bce@fixed {_f(tail_ref)} = {gain:+.4f} >= +{tail_gain:.2f}"))

    micro, micro_ref = _test(best, "f1_micro"), _test(bce_best, "f1_micro")
    if micro is None or micro_ref is None:
        out["targets"].append({"name": "micro_drop", "status": "N/A", "detail": "needs a bce run"})
    else:
        drop = micro_ref - micro
        out["targets"].append(_target(
            "micro_drop", drop <= micro_drop + 1e-12, value=drop, goal=micro_drop,
            detail=(f"micro-F1 {_f(micro)} vs best BCE ({_label(bce_best)}) {_f(micro_ref)}: "
                    f"drop {100 * drop:+.2f} pt <= {100 * micro_drop:.1f} pt")))
    return out


def _target(name: str, ok: bool, *, value: float | None, goal: float, detail: str) -> dict:
    return {"name": name, "status": "PASS" if ok else "MISS", "value": value, "goal": goal,
            "detail": detail}


def _label(row: dict | None) -> str | None:
    return None if row is None else f"{row['variant']} @ {row['rule']}"


def _f(v: float | None, width: int = 0) -> str:
    s = "  -  " if v is None else f"{v:.4f}"
    return s.rjust(width) if width else s


# --------------------------------------------------------------------------- printing
def format_table(record: dict) -> str:
    """Loss x decision-rule table on TEST; `*` best Keras config on validation,
    `b` BCE's own best rule on validation, `>` the rule each model serves."""
    rows = configurations(record)
    best = pick_best(rows)
    bce_best = pick_bce_best(rows, best["track"]) if best else None
    name_w = max([len("model")] + [len(r["variant"]) for r in rows])
    cols = ["val_ma", "micro", "macro"] + [f"{g[:3]}_{k}" for g in GROUPS for k in ("mi", "ma")]
    header = f"   {'model':<{name_w}} {'ep':>2}  {'rule':<9} " + " ".join(c.rjust(7) for c in cols)
    lines = [header, "-" * len(header)]
    prev = None
    for r in rows:
        if prev is not None and r["variant"] != prev:
            lines.append("")
        prev = r["variant"]
        mark = ("*" if r is best else " ") + ("b" if r is bce_best else " ")
        served = ">" if r["rule"] == r["served_rule"] else " "
        vals = [r["val"].get("f1_macro"), r["test"].get("f1_micro"), r["test"].get("f1_macro")]
        vals += [r["test"].get(f"{g}_f1_{k}") for g in GROUPS for k in ("micro", "macro")]
        ep = str(r["epochs"]) if r["epochs"] else "-"
        lines.append(f"{mark} {r['variant']:<{name_w}} {ep:>2} {served}{r['rule']:<9} "
                     + " ".join(_f(v, 7) for v in vals))
    ds = record.get("dataset", {})
    counts = ds.get("train_counts") or []
    g = ds.get("groups") or {}
    if counts and g:
        head = sum(c >= g["head_min"] for c in counts)
        tail = sum(c <= g["tail_max"] for c in counts)
        lines.append("")
        lines.append(f"labels: {len(counts)} = head {head} (>= {g['head_min']} train docs) + "
                     f"medium {len(counts) - head - tail} + tail {tail} (<= {g['tail_max']})")
    lines.append("columns: ep = epochs trained; val_ma = VALIDATION macro-F1 (selection); "
                 "all others TEST F1 (mi = micro, ma = macro)")
    lines.append("marks: * best Keras configuration on validation macro-F1; b best BCE rule on "
                 "validation micro-F1; > the rule thresholds.json serves")
    return "\n".join(lines)


def format_targets(checks: dict) -> str:
    lines = ["", "=== targets (best configuration chosen on VALIDATION, numbers on TEST) ===",
             f"best Keras configuration : {checks['best']}",
             f"plain BCE at 0.5         : {checks['bce_fixed']}",
             f"best BCE configuration   : {checks['bce_best']}"]
    for t in checks["targets"]:
        lines.append(f"[{t['status']:<4}] {t['name']:<10} {t['detail']}")
    n_pass = sum(t["status"] == "PASS" for t in checks["targets"])
    lines.append(f"{n_pass}/{len(checks['targets'])} targets passed")
    return "\n".join(lines)


def report(record: dict, run_dir: Path | None = None) -> str:
    head = []
    if run_dir is not None:
        head.append(f"run: {run_dir}")
    cfg = record.get("config") or {}
    if cfg:
        head.append(f"dataset {cfg.get('dataset')}, seed {cfg.get('seed')}, losses "
                    f"{','.join(cfg.get('losses') or [])}, track options "
                    f"{json.dumps(cfg.get('track_options') or {})}")
    body = format_table(record) + "\n" + format_targets(check_targets(record))
    return "\n".join(head + [body])


# --------------------------------------------------------------------------- driver


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loss", default=None, help="comma list (default: all of LOSS_NAMES)")
    p.add_argument("--no-svm", action="store_true", help="skip the svm / svm_balanced references")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-docs", type=int, default=None, help="cap training docs (smoke runs only)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--option", type=parse_option, action="append", default=[],
                   help="MLP / training option key=value (JSON value), repeatable")
    p.add_argument("--from-run", default=None, help="re-print from runs/<dir> (or its results.json)")
    p.add_argument("--json", default=None, help="also write the target checks to this file")
    return p.parse_args(argv)


def load_record(path: str | Path) -> tuple[dict, Path]:
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    return json.loads(file.read_text(encoding="utf-8")), file.parent


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_run:
        record, run_dir = load_record(args.from_run)
    else:
        from mlbench.experiment import RunConfig, run_experiment
        from mlbench.keras.losses import LOSS_NAMES

        losses = [x.strip() for x in (args.loss or ",".join(LOSS_NAMES)).split(",") if x.strip()]
        models = ["mlp"] + ([] if args.no_svm else ["svm", "svm_balanced"])
        argv_used = sys.argv[1:] if argv is None else argv
        cfg = RunConfig(
            dataset="reuters", models=models, losses=losses, epochs=args.epochs,
            batch_size=args.batch_size, seed=args.seed, quick=args.quick, out=Path(args.out),
            data_dir=args.data_dir, max_docs=args.max_docs,
            track_options={"mlp": {**DEFAULT_MLP_OPTIONS, **dict(args.option)}},
            report=not args.no_report,
            command="python benchmarks/longtail_targets.py " + " ".join(shlex.quote(a) for a in argv_used),
        )
        run_dir = run_experiment(cfg)
        record, run_dir = load_record(run_dir)
    print()
    print(report(record, run_dir), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(check_targets(record), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
