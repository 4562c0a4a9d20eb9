"""`mlbench.serving.calibrated.add_calibration` on real exports (a Keras TextVectorization
MLP and the SVM's TF-IDF graph), checked in a FRESH process against `Calibration.apply`:

* ``serving_default`` / ``decisions`` gain ``probabilities`` == cal.apply(scores) to 1e-6,
  under `tf.saved_model.load` and the v1 session loader (`session_run`);
* raw ``scores`` and ``labels`` are unchanged by the re-save;
* calibration.json sits beside it; `load_artifact(...).probabilities` agrees;
* no half-written folder is left; `mlbench predict` prints probabilities, `--raw` scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

tf = pytest.importorskip("tensorflow")

from mlbench.evaluation.calibration import Calibration, fit_calibration  # noqa: E402
from mlbench.serving.calibrated import CALIBRATION_FILE, add_calibration  # noqa: E402
from mlbench.serving.export import session_run  # noqa: E402

WORDS = ["oil", "crude", "opec", "grain", "wheat", "corn", "bank", "rate", "money", "ship",
         "port", "gold", "trade", "deficit", "tariff"]
LABELS = ["crude", "grain", "money", "ship", "trade"]


def corpus(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Random bag-of-words texts [n] and 0/1 labels [n, 5] loosely tied to their words."""
    rng = np.random.default_rng(seed)
    texts, y = [], np.zeros((n, len(LABELS)), dtype=np.int8)
    for i in range(n):
        words = list(rng.choice(WORDS, size=rng.integers(3, 9)))
        texts.append(" ".join(words))
        for j in range(len(LABELS)):
            hits = sum(w in WORDS[3 * j: 3 * j + 3] for w in words)
            y[i, j] = rng.random() < (0.15 + 0.3 * hits)
    return texts, y


def keras_export(directory: Path, texts: list[str]) -> Path:
    import keras

    from mlbench.serving.export import export_raw_string_model

    vec = keras.layers.TextVectorization(output_mode="multi_hot")
    vec.adapt(tf.constant(texts))
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(len(LABELS))
    dense.build((None, vec.vocabulary_size()))
    return export_raw_string_model(directory, [vec, dense], LABELS, track="toy",
                                   thresholds=np.array([0.4, 0.5, 0.6, 0.5, 0.45]))


def svm_export(directory: Path, texts: list[str], y: np.ndarray) -> Path:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from baselines.linear_export import export_linear_text_model

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)
    x = vec.transform(texts)
    coef = np.stack([LinearSVC(C=1.0).fit(x, y[:, j]).coef_[0] for j in range(len(LABELS))], axis=1)
    bias = np.array([LinearSVC(C=1.0).fit(x, y[:, j]).intercept_[0] for j in range(len(LABELS))])
    return export_linear_text_model(directory, vec, coef, bias, LABELS, track="svm", thresholds=0.5)


@pytest.fixture(scope="module", params=["keras", "svm"])
def calibrated(request, tmp_path_factory) -> tuple[Path, Calibration, list[str], dict]:
    """An export, its raw outputs before calibration, the map fitted on 'validation' texts."""
    root = tmp_path_factory.mktemp(request.param)
    train, y_train = corpus(200, 1)
    val, y_val = corpus(150, 2)
    directory = root / "model_savedmodel"
    if request.param == "keras":
        keras_export(directory, train)
    else:
        svm_export(directory, train, y_train)
    (directory / "NOTES.txt").write_text("kept", encoding="utf-8")  # a side file to keep
    probe, _ = corpus(40, 3)
    before = session_run(directory, probe, signature="decisions")
    if request.param == "svm":  # the explain signature, to compare after the re-save
        before["explain"] = session_run(directory, probe[:3], signature="explain", labels=[[0, 1]] * 3)
    s_val = session_run(directory, val)["scores"]
    cal = fit_calibration(y_val, s_val, min_isotonic_positives=15)
    assert "platt" in cal.kinds
    add_calibration(directory, cal)
    return directory, cal, probe, before


@pytest.mark.slow
def test_probabilities_equal_apply_in_a_fresh_process(calibrated):
    directory, cal, probe, before = calibrated
    script = (
        "import json, sys, numpy as np, tensorflow as tf\n"
        "from mlbench.serving.export import session_run\n"
        "d, texts = sys.argv[1], json.loads(sys.argv[2])\n"
        "m = tf.saved_model.load(d)\n"
        "out = {}\n"
        "for sig in ('serving_default', 'decisions'):\n"
        "    r = m.signatures[sig](texts=tf.constant(texts))\n"
        "    out['load_' + sig] = {k: v.numpy().tolist() for k, v in r.items()}\n"
        "    out['v1_' + sig] = {k: v.tolist() for k, v in session_run(d, texts, signature=sig).items()}\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(directory), json.dumps(probe)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, outputs in out.items():
        scores = np.asarray(outputs["scores"])
        np.testing.assert_allclose(scores, before["scores"], atol=1e-6, err_msg=key)
        np.testing.assert_allclose(np.asarray(outputs["probabilities"]), cal.apply(scores), atol=1e-6,
                                   err_msg=key)
        if key.endswith("decisions"):
            np.testing.assert_array_equal(np.asarray(outputs["labels"]), before["labels"], err_msg=key)
        else:
            assert set(outputs) == {"scores", "probabilities"}


def test_folder_is_complete_and_artifact_reads_it(calibrated):
    from mlbench.serving.artifacts import load_artifact

    directory, cal, probe, _ = calibrated
    assert Calibration.from_json(json.loads((directory / CALIBRATION_FILE).read_text())).kinds == cal.kinds
    assert (directory / "NOTES.txt").read_text() == "kept" and (directory / "labels.json").exists()
    assert json.loads((directory / "mlbench.json").read_text())["calibrated"] is True
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".")]  # no temp folders
    art = load_artifact(directory)
    np.testing.assert_allclose(art.probabilities(probe), cal.apply(art.predict(probe)), atol=1e-6)


def test_mismatched_calibration_is_refused_and_export_untouched(tmp_path):
    train, _ = corpus(60, 4)
    directory = keras_export(tmp_path / "m", train)
    files = sorted(p.name for p in directory.iterdir())
    wrong = Calibration(["platt"] * 3, np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="5 labels"):
        add_calibration(directory, wrong)
    assert sorted(p.name for p in directory.iterdir()) == files


@pytest.mark.slow
def test_predict_prints_probabilities_and_raw(calibrated):
    directory, cal, probe, before = calibrated
    run = lambda *extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "mlbench", "predict", "--model", str(directory), "--top-k", "2", *extra,
         probe[0]], capture_output=True, text=True, cwd=REPO, timeout=300)
    cal_out, raw_out = run(), run("--raw")
    assert cal_out.returncode == 0 and raw_out.returncode == 0, cal_out.stderr[-1500:]
    scores = np.asarray(before["scores"][0], dtype=np.float64)
    probs = cal.apply(scores[None])[0]
    for out, values in ((cal_out.stdout, probs), (raw_out.stdout, scores)):
        lines = [l for l in out.splitlines() if l.startswith("  ")]
        top = np.argsort(-values, kind="stable")[:2]
        for line, j in zip(lines, top):
            assert line.split()[-2] == LABELS[j] and float(line.split()[-1]) == pytest.approx(values[j], abs=1e-4)
            assert line.startswith("  *") == bool(before["labels"][0][j])
    assert "calibrated probabilities" in cal_out.stdout and "raw scores" in raw_out.stdout


def test_explain_signature_survives_calibration(calibrated):
    directory, cal, probe, before = calibrated
    meta = json.loads((directory / "mlbench.json").read_text(encoding="utf-8"))
    if "explain" not in before:  # an export made without an explainer gains none
        assert "explain" not in meta["signatures"]
        assert "explain" not in tf.saved_model.load(str(directory)).signatures
        return
    assert "explain" in meta["signatures"]
    after = session_run(directory, probe[:3], signature="explain", labels=[[0, 1]] * 3)
    assert sorted(after) == sorted(before["explain"]) == ["delta", "logit", "tokens", "total", "weights"]
    for key, value in before["explain"].items():
        if value.dtype == object:
            assert after[key].tolist() == value.tolist()
        else:
            np.testing.assert_allclose(after[key], value, rtol=0, atol=1e-6)


def test_run_calibration_summary_fitted_on_validation_only():
    """`evaluation.calibration.calibrate_scores`: the map depends on validation alone; the
    figures are NumPy's Brier / log loss of raw and calibrated test scores."""
    from mlbench.evaluation.calibration import calibrate_scores
    from mlbench.record import CalibrationResult, ModelResult, RunRecord

    rng = np.random.default_rng(0)
    y_val, y_test = (rng.random((300, 4)) < 0.3).astype(int), (rng.random((200, 4)) < 0.3).astype(int)
    s_val = np.clip(0.5 * y_val + 0.4 * rng.random((300, 4)), 0, 1)
    s_test = np.clip(0.5 * y_test + 0.4 * rng.random((200, 4)), 0, 1)
    cal, summary = calibrate_scores(y_val, s_val, y_test, s_test)
    cal2, _ = calibrate_scores(y_val, s_val, 1 - y_test, rng.random((200, 4)))
    np.testing.assert_array_equal(cal.apply(s_test), cal2.apply(s_test))
    assert summary.raw.brier == pytest.approx(np.mean((s_test - y_test) ** 2))
    p = cal.apply(s_test)
    assert summary.calibrated.brier == pytest.approx(np.mean((p - y_test) ** 2))
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    assert summary.calibrated.log_loss == pytest.approx(
        -np.mean(y_test * np.log(pc) + (1 - y_test) * np.log(1 - pc)))
    assert sum(summary.maps.values()) == 4
    assert summary.calibrated.ece_top5 < summary.raw.ece_top5
    assert len(summary.reliability["raw"]["top5"]["count"]) == 15
    from mlbench.record import DatasetInfo

    rec = RunRecord("r", "now", "cmd", {}, {}, DatasetInfo("d", ["a"], [1], {}, ["tail"]),
                    models={"svm": ModelResult("svm", "linear", calibration=summary)})
    data = rec.to_json()
    back = RunRecord.from_json(data).models["svm"].calibration
    assert isinstance(back, CalibrationResult) and back == summary
    assert RunRecord.from_json(data).to_json() == data  # the JSON round trip keeps every key and value
    for key in ("calibration", "errors"):  # a record written before these fields existed
        del data["models"]["svm"][key]
    assert RunRecord.from_json(data).models["svm"].calibration is None
