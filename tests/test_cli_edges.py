"""The command line's input edges (issue 21), each run as a user runs it (`mlbench_cli.main`
or ``python -m mlbench``): one ``error:`` line naming the file, row, column or argument,
exit code 2, no traceback, and nothing a user wrote overwritten.

* `predict` / `score`: a text that is not valid UTF-8 (a lone surrogate from a JSON
  ``\\ud800`` escape, a non-UTF-8 command-line byte) or holds a NUL is refused
  (`mlbench.serving.text_checks.bad_texts`); `predict --file` names the undecodable line;
  `score --out` in a missing folder is refused;
* `score` writes ``<out>.mlbench.json`` naming the model and refuses to resume another
  model's output; `--id-col` copies an id column through (csv, jsonl, parquet);
* `run` on a user file: a label separator that split only some cells (`label_sep_partial`),
  a console line counting rows kept without labels, health-check errors naming the file.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from mlbench.serving.text_checks import bad_texts

tf = pytest.importorskip("tensorflow")

from mlbench_cli import main  # noqa: E402
from test_score import LABELS, make_texts, model_dir, read_out  # noqa: E402,F401 (model_dir: fixture)

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}


def one_error_line(code: int, stderr: str, *expect: str) -> str:
    """Exit code 2 and exactly one ``error:`` line (progress lines may precede it), holding `expect`."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == errors[0]
    for part in expect:
        assert part in errors[0], (part, errors[0])
    return errors[0]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def python_m(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m mlbench ARGS`` in a fresh process (bytes arguments are passed as bytes)."""
    return subprocess.run([sys.executable, "-m", "mlbench", *args], cwd=REPO, env=ENV,
                          capture_output=True, timeout=timeout)


# ----------------------------------------------------------------------------- the shared check
def test_bad_texts_agrees_with_the_utf8_encoder():
    texts = ["oil prices", "a\ud800b", "emoji \U0001F600 and é fine", "nul\x00here", "\udce9", "",
             "tab\tand\ncontrol\x01 are fine"]
    bad = dict(bad_texts(texts))
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
            encodable = True
        except UnicodeEncodeError:
            encodable = False
        assert (i in bad) == (not encodable or "\x00" in text), (i, text)
    assert "U+D800 at character 2" in bad[1] and "NUL" in bad[3] and "character 4" in bad[3]
    assert "U+DCE9 at character 1" in bad[4]


# ----------------------------------------------------------------------------- predict
def test_predict_non_utf8_argument_is_one_error_line(model_dir):
    proc = python_m("predict", "--model", str(model_dir), "oil", b"caf\xe9 au lait")
    one_error_line(proc.returncode, proc.stderr.decode("utf-8", "replace"),
                   "predict: text argument 2", "byte 0xe9 at character 4")
    assert proc.stdout == b""


@pytest.mark.parametrize("text, expect", [("a\x00b", "NUL character (U+0000) at character 2"),
                                          ("bad \ud800", "U+D800 at character 5")])
def test_predict_bad_argument_text_is_one_error_line(model_dir, capsys, text, expect):
    code, out, err = cli(capsys, "predict", "--model", model_dir, "oil", text)
    one_error_line(code, err, "error: predict: text argument 2: ", expect)
    assert out == ""


def test_predict_file_names_the_bad_line(model_dir, tmp_path, capsys):
    undecodable = tmp_path / "texts.txt"
    undecodable.write_bytes(b"oil prices\r\nwheat\n\ncaf\xe9 au lait\n")
    code, _, err = cli(capsys, "predict", "--model", model_dir, "--file", undecodable)
    one_error_line(code, err, f"{undecodable}, line 4: not valid UTF-8 (byte 0xe9 at character 4")

    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"oil\nnul\x00here\n")
    code, _, err = cli(capsys, "predict", "--model", model_dir, "--file", nul)
    one_error_line(code, err, f"{nul}, line 2: NUL character")

    good = tmp_path / "good.txt"
    good.write_bytes(b"\xef\xbb\xbfoil prices\r\n\r\nwheat corn\n")  # BOM, CRLF, a blank line
    code, out, err = cli(capsys, "predict", "--model", model_dir, "--file", good, "--top-k", "1")
    assert code == 0, err
    assert out.splitlines()[0] == "oil prices" and out.splitlines()[2] == "wheat corn"


# ----------------------------------------------------------------------------- score: bad input
@pytest.mark.parametrize("name, data, expect", [
    ("in.jsonl", b'{"text": "oil"}\n{"text": "ok"}\n{"text": "bad \\ud800 here"}\n',
     "in.jsonl, row 3, column 'text': lone surrogate U+D800 at character 5"),
    ("in.jsonl", b'{"text": "oil"}\n{"text": "nul \\u0000 here"}\n',
     "in.jsonl, row 2, column 'text': NUL character (U+0000) at character 5"),
    ("in.csv", b"text\noil\nnul\x00here\n", "in.csv, row 3, column 'text': NUL character"),
])
def test_score_bad_text_is_one_error_line(model_dir, tmp_path, capsys, name, data, expect):
    src, out = tmp_path / name, tmp_path / "out.csv"
    src.write_bytes(data)
    code, _, err = cli(capsys, "score", "--model", model_dir, "--input", src, "--out", out)
    one_error_line(code, err, expect)
    assert not out.exists() and not (tmp_path / "out.csv.mlbench.json").exists()


def test_score_out_in_a_missing_folder_is_refused(model_dir, tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("text\noil\n", encoding="utf-8")
    out = tmp_path / "no" / "such" / "out.csv"
    code, _, err = cli(capsys, "score", "--model", model_dir, "--input", src, "--out", out)
    one_error_line(code, err, f"--out {out}: the folder {out.parent} does not exist")
    assert not (tmp_path / "no").exists()  # refused, not created


# ----------------------------------------------------------------------------- score: whose output
def corpus_csv(path: Path, n: int, seed: int = 3) -> Path:
    texts, _ = make_texts(n, seed)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["doc_id", "text"])
        writer.writerows([[f"d{i:03d}", t] for i, t in enumerate(texts)])
    return path


def test_score_refuses_to_resume_another_models_output(model_dir, tmp_path, capsys):
    from mlbench.evaluation.calibration import fit_calibration
    from mlbench.serving.calibrated import add_calibration
    from mlbench.serving.export import session_run

    full = corpus_csv(tmp_path / "full.csv", 40)
    half = tmp_path / "half.csv"
    half.write_text("".join(full.read_text(encoding="utf-8").splitlines(keepends=True)[:21]), encoding="utf-8")
    out = tmp_path / "scores.csv"
    assert cli(capsys, "score", "--model", model_dir, "--input", half, "--out", out)[0] == 0
    side = json.loads((tmp_path / "scores.csv.mlbench.json").read_text(encoding="utf-8"))
    assert side["model"]["path"] == str(model_dir.resolve()) and len(side["model"]["sha256"]) == 64

    # another export with the same labels (re-calibrated on other data): same columns, other model
    other = tmp_path / "other_savedmodel"
    shutil.copytree(model_dir, other)
    val, y_val = make_texts(150, 11)
    add_calibration(other, fit_calibration(y_val, session_run(other, val)["scores"]))
    before = out.read_bytes()
    code, _, err = cli(capsys, "score", "--model", other, "--input", full, "--out", out)
    one_error_line(code, err, f"--out {out}: holds the scores of another model ({model_dir.resolve()}",
                   "refusing")
    assert out.read_bytes() == before

    # the same export moved elsewhere is the same model: resuming completes the file
    moved = tmp_path / "moved_savedmodel"
    shutil.copytree(model_dir, moved)
    assert cli(capsys, "score", "--model", moved, "--input", full, "--out", out)[0] == 0
    rows = read_out(out)[0]
    assert rows == list(range(2, 42))  # every input row once (header = row 1)

    # an export changed in place since it wrote the file
    meta = moved / "mlbench.json"
    meta.write_text(meta.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    before = out.read_bytes()
    code, _, err = cli(capsys, "score", "--model", moved, "--input", full, "--out", out)
    one_error_line(code, err, "before it changed")
    assert out.read_bytes() == before


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_score_id_col_is_copied_through(model_dir, tmp_path, capsys, suffix):
    src = tmp_path / "in.jsonl"
    texts, _ = make_texts(30, 5)
    texts[4] = ""  # skipped, and its id with it
    src.write_text("".join(json.dumps({"text": t, "key": 1000 + i}) + "\n" for i, t in enumerate(texts)),
                   encoding="utf-8")
    half = tmp_path / "half.jsonl"
    half.write_text("".join(src.read_text(encoding="utf-8").splitlines(keepends=True)[:12]), encoding="utf-8")
    out = tmp_path / f"out{suffix}"
    for source in (half, src):  # a resumed run keeps the ids right
        code, _, err = cli(capsys, "score", "--model", model_dir, "--input", source, "--out", out,
                           "--id-col", "key", "--chunk", "7")
        assert code == 0, err
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        columns, rows, ids = table.column_names, table.column("row").to_pylist(), table.column("key").to_pylist()
        assert str(table.schema.field("key").type) == "int64"
    elif suffix == ".csv":
        with open(out, encoding="utf-8", newline="") as handle:
            body = list(csv.reader(handle))
        columns, rows, ids = body[0], [int(r[0]) for r in body[1:]], [int(r[1]) for r in body[1:]]
    else:
        objs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        columns, rows, ids = list(objs[0]), [o["row"] for o in objs], [o["key"] for o in objs]
    assert columns == ["row", "key", "labels"] + [f"prob:{n}" for n in LABELS]
    assert rows == [r for r in range(1, 31) if r != 5]  # JSONL row = line number
    assert ids == [999 + r for r in rows]


def test_score_id_col_clashing_with_an_output_column_is_refused(model_dir, tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("row,text\n1,oil\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    code, _, err = cli(capsys, "score", "--model", model_dir, "--input", src, "--out", out, "--id-col", "row")
    one_error_line(code, err, "--id-col 'row'")
    assert not out.exists()


# ----------------------------------------------------------------------------- run on a user file
def label_file(path: Path, n_labels: int, *, n: int = 200, pipe_share: float = 0.3, unlabeled: int = 0,
               one_label: bool = False, seed: int = 0) -> Path:
    """A CSV whose label cells mix ``a|b`` (pipe_share of them) with ``a, b``; the first
    `unlabeled` rows have an empty label cell."""
    rng = random.Random(seed)
    names = [f"topic{i}" for i in range(n_labels)]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "labels"])
        for i in range(n):
            pair = [names[0]] if one_label else rng.sample(names, 2)
            cell = "|".join(pair) if rng.random() < pipe_share else ", ".join(pair)
            words = " ".join(rng.choice(["oil", "grain", "bank", "ship", "rate", "corn"]) for _ in range(8))
            writer.writerow([f"document {i} {words} {' '.join(pair)}", "" if i < unlabeled else cell])
    return path


def test_run_refuses_a_separator_that_split_few_cells_into_one_off_labels(tmp_path):
    data = label_file(tmp_path / "mixed.csv", 40)
    proc = python_m("run", "--dataset", data, "--label-sep", "|", "--out", tmp_path / "runs")
    one_error_line(proc.returncode, proc.stderr.decode(), f"error: {data}, column 'labels': data health check "
                   "'label_sep_partial' failed", "holding ','", "the likely separator is ','")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_partial_separator_warns_names_it_and_spares_real_label_names(tmp_path):
    from mlbench.data import check_health, load_corpus

    def finding(path: Path, sep: str):
        return check_health(load_corpus(str(path), label_sep=sep), label_sep=sep).get("label_sep_partial")

    warn = finding(label_file(tmp_path / "few.csv", 4), "|")  # pairs of 4 labels repeat: not meaningless
    assert warn is not None and warn.severity == "warning" and "the likely separator is ','" in warn.message
    assert finding(label_file(tmp_path / "clean.csv", 4, pipe_share=1.0), "|") is None
    # labels that hold a space or a slash but are not other labels joined are real names
    rng = random.Random(1)
    names = ["New York", "Los Angeles", "input/output", "San Francisco", "TCP/IP", "Hong Kong"]
    with open(tmp_path / "names.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "labels"])
        for i in range(120):
            writer.writerow([f"text {i} {rng.random()}", "|".join(rng.sample(names, 2))])
    assert finding(tmp_path / "names.csv", "|") is None


def test_run_counts_unlabeled_rows_and_names_the_file_in_health_errors(tmp_path):
    data = label_file(tmp_path / "one.csv", 1, one_label=True, unlabeled=7, pipe_share=1.0)
    proc = python_m("run", "--dataset", data, "--out", tmp_path / "runs")
    err = proc.stderr.decode()
    assert f"{data}: kept 7 row(s) without labels as all-negative documents (rows 2, 3, 4, 5, 6, …" in err
    one_error_line(proc.returncode, err, f"error: {data}, column 'labels': data health check 'single_label'")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
