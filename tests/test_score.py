"""`mlbench score` (`mlbench.serving.score`) on a real calibrated export:

* every output row's ``prob:<label>`` equals `artifact.probabilities` on the same text
  (1e-6), ``labels`` equals raw scores >= the best rule's thresholds, ``row`` is the
  input row the training readers number (multi-line cells, blank lines);
* empty texts are skipped and counted; resume (first half, then the whole file) gives
  no duplicate rows and the same output as one run, for CSV, JSONL and Parquet;
* a torn last line is dropped on resume; a foreign --out is refused, never overwritten;
* bad input → one ``error:`` line naming file/row/column, exit 2.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

tf = pytest.importorskip("tensorflow")

from mlbench_cli import main  # noqa: E402
from tolerances import SCORE_ATOL, assert_decisions_match  # noqa: E402
from mlbench.errors import InputError  # noqa: E402
from mlbench.serving.score import score_file  # noqa: E402

WORDS = ["oil", "crude", "opec", "grain", "wheat", "corn", "bank", "rate", "money", "ship"]
LABELS = ["crude", "grain", "money"]


def make_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    texts, y = [], np.zeros((n, 3), dtype=int)
    for i in range(n):
        words = list(rng.choice(WORDS, size=rng.integers(2, 7)))
        texts.append(" ".join(words))
        y[i] = [rng.random() < 0.2 + 0.3 * sum(w in WORDS[3 * j: 3 * j + 3] for w in words)
                for j in range(3)]
    return texts, y


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    import keras

    from mlbench.evaluation.calibration import fit_calibration
    from mlbench.serving.calibrated import add_calibration
    from mlbench.serving.export import export_raw_string_model, session_run

    directory = tmp_path_factory.mktemp("m") / "toy_savedmodel"
    train, _ = make_texts(100, 0)
    vec = keras.layers.TextVectorization(output_mode="multi_hot")
    vec.adapt(tf.constant(train))
    keras.utils.set_random_seed(1)
    dense = keras.layers.Dense(len(LABELS))
    dense.build((None, vec.vocabulary_size()))
    export_raw_string_model(directory, [vec, dense], LABELS, track="toy", thresholds=[0.45, 0.5, 0.55])
    val, y_val = make_texts(120, 1)
    add_calibration(directory, fit_calibration(y_val, session_run(directory, val)["scores"]))
    return directory


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([["id", "body"]] + rows)
    return path


def corpus_file(path: Path, n: int = 50) -> tuple[Path, dict[int, str]]:
    """A CSV with a multi-line cell, a blank line and empty texts; {spreadsheet row: text}."""
    texts, _ = make_texts(n, 7)
    texts[3] = "oil\nwheat on two lines"
    texts[5] = texts[n - 3] = "  "
    write_csv(path, [[str(i), t] for i, t in enumerate(texts)])
    lines = path.read_text(encoding="utf-8").split("\n")
    path.write_text("\n".join(lines[:8] + [""] + lines[8:]), encoding="utf-8")  # a blank line
    from mlbench.data.records import read_records

    return path, {r.row: r.fields["body"] for r in read_records(path, ["body"])}


def read_out(path: Path) -> tuple[list[int], list[list[str]], np.ndarray, list[str]]:
    """(rows, labels, probabilities [n, L], columns) of any output format."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        cols = t.column_names
        return (t.column("row").to_pylist(), t.column("labels").to_pylist(),
                np.stack([np.asarray(t.column(c)) for c in cols[2:]], axis=1), cols)
    if path.suffix == ".csv":
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
        cols, body = rows[0], rows[1:]
        return ([int(r[0]) for r in body], [json.loads(r[1]) for r in body],
                np.array([[float(v) for v in r[2:]] for r in body]), cols)
    objs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    cols = list(objs[0])
    return ([o["row"] for o in objs], [o["labels"] for o in objs],
            np.array([[o[c] for c in cols[2:]] for o in objs]), cols)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_output_equals_artifact_probabilities(model_dir, tmp_path, suffix):
    from mlbench.serving.artifacts import load_artifact

    src, by_row = corpus_file(tmp_path / "in.csv")
    out = tmp_path / f"out{suffix}"
    summary = score_file(model_dir, src, out, text_col="body", chunk=16)
    kept = {r: t for r, t in by_row.items() if t.strip()}
    assert summary.scored == len(kept) and summary.empty == 2
    rows, labels, probs, cols = read_out(out)
    assert cols == ["row", "labels"] + [f"prob:{n}" for n in LABELS]
    assert rows == sorted(kept)  # the readers' row numbers (the multi-line cell is one row)
    art = load_artifact(model_dir)
    texts = [kept[r] for r in rows]
    np.testing.assert_allclose(probs, art.probabilities(texts), atol=1e-6)
    decided = art.predict(texts) >= np.asarray(art.threshold())
    assert labels == [[LABELS[j] for j in np.flatnonzero(d)] for d in decided]


def assert_same_output(a, b, model_dir: Path, by_row: dict[int, str]) -> None:
    """Two outputs of the same model agree: rows and columns exactly, probabilities to
    `SCORE_ATOL` (each run batches the rows differently, and float32 results move by a few
    ulps with the batch size), labels wherever the raw score is clear of its threshold."""
    from mlbench.serving.artifacts import load_artifact

    assert a[0] == b[0] and a[3] == b[3]
    np.testing.assert_allclose(a[2], b[2], rtol=0, atol=SCORE_ATOL)
    art = load_artifact(model_dir)
    scores, names = art.predict([by_row[r] for r in a[0]]), list(art.labels)
    for out in (a, b):
        decided = np.array([[name in row for name in names] for row in out[1]])
        assert_decisions_match(scores, np.asarray(art.threshold()), decided)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_resume_gives_the_same_output_as_one_run(model_dir, tmp_path, suffix):
    src, by_row = corpus_file(tmp_path / "in.csv")
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    half = tmp_path / "half.csv"
    half.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    once, twice = tmp_path / f"once{suffix}", tmp_path / f"twice{suffix}"
    score_file(model_dir, src, once, text_col="body", chunk=7)
    first = score_file(model_dir, half, twice, text_col="body", chunk=5)
    second = score_file(model_dir, src, twice, text_col="body", chunk=9)
    assert first.scored > 0 and second.already == first.scored
    assert first.scored + second.scored == len([t for t in by_row.values() if t.strip()])
    a, b = read_out(once), read_out(twice)
    assert len(set(b[0])) == len(b[0])  # no duplicate rows
    assert_same_output(a, b, model_dir, by_row)


def test_torn_last_line_is_rescored(model_dir, tmp_path):
    src, by_row = corpus_file(tmp_path / "in.csv", n=12)
    once, torn = tmp_path / "once.jsonl", tmp_path / "torn.jsonl"
    score_file(model_dir, src, once, text_col="body")
    data = once.read_bytes()
    keep = data[: data.rfind(b"\n", 0, len(data) - 1) + 1]
    torn.write_bytes(keep + data[len(keep): len(keep) + 9])  # half of the last line
    (tmp_path / "torn.jsonl.mlbench.json").write_bytes((tmp_path / "once.jsonl.mlbench.json").read_bytes())
    score_file(model_dir, src, torn, text_col="body")
    assert torn.read_bytes().startswith(keep)  # the whole lines are kept as written
    assert_same_output(read_out(once), read_out(torn), model_dir, by_row)


def test_foreign_out_is_refused_untouched(model_dir, tmp_path, capsys):
    src, _ = corpus_file(tmp_path / "in.csv", n=8)
    out = write_csv(tmp_path / "precious.csv", [["1", "mine"]])
    before = out.read_bytes()
    code = main(["score", "--model", str(model_dir), "--input", str(src), "--text-col", "body",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --out") and "refusing" in err[0]
    assert out.read_bytes() == before
    with pytest.raises(InputError, match="is the --input"):
        score_file(model_dir, src, src, text_col="body")


@pytest.mark.parametrize("case", ["missing_column", "not_utf8", "number_text", "bad_json", "out_type"])
def test_bad_input_is_one_error_line(model_dir, tmp_path, capsys, case):
    out = tmp_path / "out.csv"
    if case == "missing_column":
        src, expect = write_csv(tmp_path / "in.csv", [["1", "oil"]]), "column 'text'"
    elif case == "not_utf8":
        src = tmp_path / "in.csv"
        src.write_bytes(b"text\noil\ncaf\xe9\n")
        expect = "row 3"
    elif case == "number_text":
        src = tmp_path / "in.jsonl"
        src.write_text('{"text": "oil"}\n{"text": 42}\n', encoding="utf-8")
        expect = "row 2, column 'text': text must be a string"
    elif case == "bad_json":
        src = tmp_path / "in.jsonl"
        src.write_text('{"text": "oil"}\n{"text": \n', encoding="utf-8")
        expect = "row 2"
    else:
        src, out, expect = write_csv(tmp_path / "in.csv", [["1", "x"]]), tmp_path / "o.xlsx", "unsupported"
    code = main(["score", "--model", str(model_dir), "--input", str(src), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not out.exists()
