"""The fastText track: scores for every label, determinism, export → load_artifact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

fasttext = pytest.importorskip("fasttext", reason="fasttext-wheel==0.9.2 is not installed")

from baselines.fasttext_track import FastTextTrack  # noqa: E402
from mlbench.data.corpus import Split  # noqa: E402
from mlbench.errors import InputError  # noqa: E402
from mlbench.labels import LabelSpace  # noqa: E402
from mlbench.serving.artifacts import FastTextArtifact, fasttext_line, load_artifact  # noqa: E402
from mlbench.tracks import TrainSettings, available_tracks  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMES = ["crude oil", "grain", "money/fx", "never seen"]  # spaces and slashes; one label untrained
KEYWORDS = {"crude oil": "barrel", "grain": "wheat", "money/fx": "dollar"}


def toy_split(n: int, seed: int) -> Split:
    """Documents whose labels are signalled by one keyword each, with newlines inside."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        ls = tuple(sorted(set(rng.choice(list(KEYWORDS), size=rng.integers(1, 3)))))
        words = [KEYWORDS[l] for l in ls] + list(rng.choice(["the", "market", "said", "today"], size=4))
        rng.shuffle(words)
        texts.append(" ".join(words[:3]) + ".\n" + " ".join(words[3:]) + "\r\n")
        labels.append(ls)
    return Split(texts, labels)


def fit(seed: int = 1, **kwargs) -> tuple[FastTextTrack, LabelSpace]:
    labels = LabelSpace(NAMES)
    kwargs = {"epoch": 15, "dim": 10, "bucket": 5000, **kwargs}
    track = FastTextTrack(TrainSettings(seed=seed), **kwargs)
    track.fit(toy_split(150, 0), toy_split(20, 9), labels)
    return track, labels


def test_lines_have_no_newlines_and_split_punctuation():
    assert fasttext_line("Oil rose.\nWheat\tfell\r\n") == "oil rose . wheat fell"
    assert fasttext_line("A\x00B", lowercase=False) == "A B"


def test_scores_cover_every_label_in_label_space_order_and_learn_the_keywords():
    track, labels = fit()
    test = toy_split(40, 5)
    scores = track.predict_scores(test.texts)
    assert scores.shape == (40, len(NAMES)) and scores.dtype == np.float32
    assert (scores >= 0).all() and (scores <= 1).all()
    assert (scores[:, 3] == 0).all()  # no training document carries "never seen"
    y = labels.encode(test.labels)
    np.testing.assert_array_equal((scores[:, :3] >= 0.5).astype(np.float32), y[:, :3])
    assert track.predict_scores([]).shape == (0, len(NAMES))


def test_scores_equal_fasttexts_own_ova_predictions_up_to_its_sigmoid_table():
    # fastText's predict uses a 512-entry sigmoid table over [-8, 8] (logit steps of
    # 1/32, so ≤ 0.0079 in probability) and adds 1e-5; our exact scores must agree to that
    track, _ = fit()
    texts = toy_split(10, 3).texts
    ours = track.predict_scores(texts)
    for row, text in zip(ours, texts):
        pairs = track.model.f.predict(fasttext_line(text) + "\n", -1, 0.0, "strict")
        theirs = {int(label.rsplit("__", 1)[-1]): p - 1e-5 for p, label in pairs}
        assert set(theirs) == {0, 1, 2}
        for column, p in theirs.items():
            assert abs(row[column] - p) <= 0.008


def test_same_seed_same_scores_other_seed_other_scores():
    texts = toy_split(30, 4).texts
    a, _ = fit(seed=3)
    b, _ = fit(seed=3)
    c, _ = fit(seed=4)
    np.testing.assert_array_equal(a.predict_scores(texts), b.predict_scores(texts))
    assert not np.array_equal(a.predict_scores(texts), c.predict_scores(texts))


def test_errors_before_fit_and_bad_parameters():
    with pytest.raises(RuntimeError, match="fit the track"):
        FastTextTrack().predict_scores(["x"])
    with pytest.raises(ValueError, match="lr must be > 0"):
        FastTextTrack(lr=0)
    with pytest.raises(ValueError, match="epoch must be >= 1"):
        FastTextTrack(epoch=0)
    assert FastTextTrack.export_format == "fasttext"
    assert set(FastTextTrack.search_space) == {"epoch", "lr"}
    assert "fasttext" in available_tracks()


def test_export_then_load_artifact_in_a_fresh_process_gives_the_same_scores(tmp_path):
    track, labels = fit()
    texts = toy_split(25, 6).texts + ["", "words never seen qqqq"]
    thresholds = np.array([0.4, 0.5, 0.6, 0.5])
    out = track.export(tmp_path / "ft", thresholds=thresholds)
    assert sorted(p.name for p in out.iterdir()) == ["labels.json", "mlbench.json", "model.bin"]
    assert json.loads((out / "mlbench.json").read_text())["format"] == "fasttext"
    with pytest.raises(FileExistsError):
        track.export(out)

    loaded = load_artifact(out)
    assert isinstance(loaded, FastTextArtifact) and loaded.labels == NAMES
    np.testing.assert_allclose(loaded.threshold(), thresholds, atol=1e-7)  # stored (float32) at export
    assert loaded.threshold("fixed") == 0.5

    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    script = (
        "import json, sys, numpy as np\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from mlbench.serving.artifacts import load_artifact\n"
        f"m = load_artifact({str(out)!r})\n"
        f"np.save({str(tmp_path / 'scores.npy')!r}, m.predict(json.load(open({str(tmp_path / 'texts.json')!r}))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), track.predict_scores(texts), atol=1e-6)


@pytest.mark.slow
def test_thresholds_json_beats_stored_thresholds_and_predict_cli_reads_fasttext(tmp_path):
    from mlbench.evaluation.thresholds import DecisionRule, save_thresholds

    track, labels = fit()
    out = track.export(tmp_path / "ft", thresholds=np.full(4, 0.3))
    rules = {"fixed": DecisionRule("fixed", 0.5), "global": DecisionRule("global", 0.42)}
    save_thresholds(out / "thresholds.json", rules, labels.names, best_rule="global")
    loaded = load_artifact(out)
    assert loaded.threshold() == 0.42 and loaded.threshold("fixed") == 0.5
    with pytest.raises(InputError, match="no decision rule"):
        loaded.threshold("per_label")

    proc = subprocess.run([sys.executable, "-m", "mlbench", "predict", "--model", str(out), "--top-k", "2",
                           "wheat and barrel prices"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    top = [line[4:34].strip() for line in proc.stdout.splitlines()[1:3]]  # "  * <label:30> 0.99"
    assert sorted(top) == ["crude oil", "grain"]


def test_calibration_json_gives_probabilities_and_explain_is_refused(tmp_path, capsys):
    from mlbench.evaluation.calibration import Calibration
    from mlbench.serving.calibrated import write_calibration
    from mlbench_cli import main

    track, labels = fit()
    out = track.export(tmp_path / "ft", thresholds=np.full(4, 0.3))
    texts = ["wheat and barrel prices", "bank rate"]
    loaded = load_artifact(out)
    assert not loaded.has_calibration
    with pytest.raises(InputError, match="without calibration"):
        loaded.probabilities(texts)
    cal = Calibration(["platt"] * 4, [0.5, 1.0, 1.5, 2.0], [0.3, -0.3, 0.0, 1.0])
    write_calibration(out, cal)
    loaded = load_artifact(out)
    assert loaded.has_calibration
    np.testing.assert_allclose(loaded.probabilities(texts), cal.apply(loaded.predict(texts)), atol=1e-6)
    assert main(["predict", "--model", str(out), "--explain", texts[0]]) == 2  # fastText has no explainer
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no explanations" in err[0] and "fasttext" in err[0]


def test_load_artifact_refuses_a_folder_that_is_no_export(tmp_path):
    with pytest.raises(InputError, match="not an exported model"):
        load_artifact(tmp_path)
    with pytest.raises(InputError, match="no such model folder"):
        load_artifact(tmp_path / "missing")
