"""Files people have: formats (+ .gz), row policies, label cells, given splits."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from mlbench.data import load_corpus
from mlbench.data.corpus import Corpus
from mlbench.data.label_cells import LabelCellError, parse_label_cell
from mlbench.errors import InputError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SETS = [["a"], ["b"], ["a", "c"], ["d"]]


def rows(n: int = 40, split: bool = False) -> list[dict]:
    """n documents over 4 label sets (stratifiable); optionally a given split column."""
    out = []
    for i in range(n):
        row = {"text": f"document number {i} about {'-'.join(SETS[i % 4])}", "labels": SETS[i % 4]}
        if split:
            row["split"] = ["train", "train", "train", "train", "train", "train", "dev", "test"][i % 8]
        out.append(row)
    return out


def write(path: Path, data: list[dict], *, sep: str = "|") -> Path:
    """Write rows in the format the name says; list cells become ``sep``-joined strings
    in CSV/TSV and real lists in JSONL/Parquet."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".parquet"):
        buf = io.BytesIO()
        cols = {k: [r[k] for r in data] for k in data[0]}
        pq.write_table(pa.table(cols), buf)
        raw = buf.getvalue()
    elif name.endswith((".jsonl", ".ndjson")):
        raw = "".join(json.dumps(r) + "\n" for r in data).encode()
    else:
        out = io.StringIO()
        w = csv.writer(out, delimiter="\t" if name.endswith(".tsv") else ",", lineterminator="\n")
        w.writerow(list(data[0]))
        for r in data:
            w.writerow([sep.join(v) if isinstance(v, list) else v for v in r.values()])
        raw = out.getvalue().encode()
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def error_of(dataset, **kw) -> str:
    with pytest.raises(InputError) as info:
        load_corpus(str(dataset), **kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def docs(c: Corpus) -> list[tuple[str, tuple[str, ...]]]:
    return sorted((t, tuple(sorted(l))) for s in c.splits().values() for t, l in zip(s.texts, s.labels))


@pytest.mark.parametrize(
    "name",
    ["d.csv", "d.tsv", "d.jsonl", "d.ndjson", "d.parquet",
     "d.csv.gz", "d.tsv.gz", "d.jsonl.gz", "d.ndjson.gz", "d.parquet.gz"],
)
def test_every_format_round_trips(tmp_path: Path, name: str) -> None:
    data = rows()
    c = load_corpus(str(write(tmp_path / name, data)), label_sep="|")
    assert c.name == "d"
    assert docs(c) == sorted((r["text"], tuple(sorted(r["labels"]))) for r in data)
    assert c.notes["split_origin"] == "made by the suite"


def test_parse_errors_name_delimiter_and_encoding(tmp_path: Path) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_text("text;labels\nhello;a\n", encoding="utf-8")
    msg = error_of(semi)
    assert "','-delimited UTF-8" in msg and "'text;labels'" in msg
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("text\tlabels\nok\ta\ttoo many\n", encoding="utf-8")
    msg = error_of(tsv)
    assert "row 2" in msg and "'\\t'-delimited UTF-8" in msg
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,labels\ncaf\xe9,a\n".encode("latin-1"))
    msg = error_of(latin)
    assert "encoding tried: UTF-8" in msg and "delimiter ','" in msg and "row 2" in msg
    gz = tmp_path / "broken.csv.gz"
    gz.write_bytes(b"not gzip at all")
    assert "not a valid gzip file" in error_of(gz)
    pqf = tmp_path / "broken.parquet"
    pqf.write_bytes(b"PAR1 nope")
    assert "not a readable Parquet file" in error_of(pqf)
    good = write(tmp_path / "cols.parquet", rows())
    msg = error_of(good, text_col="body")
    assert "column 'body'" in msg and "'text'" in msg


def test_empty_texts_are_skipped_and_reported_below_the_share(tmp_path: Path) -> None:
    data = rows(200)
    data[10]["text"] = "   "
    data[20]["text"] = ""
    data[30]["text"] = "\n"
    c = load_corpus(str(write(tmp_path / "d.csv", data)), label_sep="|", max_bad_rows=0.02)
    skipped = c.stats()["rows"]["skipped"]["empty text"]
    assert skipped == {"count": 3, "rows": [12, 22, 32]}  # header is row 1
    assert sum(len(s) for s in c.splits().values()) == 197
    msg = error_of(tmp_path / "d.csv", label_sep="|")  # 3/200 > 0.01
    assert "row 12, column 'text'" in msg and "3 of 200 rows" in msg and "rows 22, 32" in msg
    assert "max_bad_rows" in error_of(tmp_path / "d.csv", max_bad_rows=2)


@pytest.mark.parametrize("method", ["stratified", "iterative"])
def test_unlabeled_rows_keep_drop_error(tmp_path: Path, method: str) -> None:
    data = rows(80)
    for i in range(0, 80, 5):
        data[i]["labels"] = []
    path = write(tmp_path / "d.jsonl", data)
    kept = load_corpus(str(path), split_method=method)
    assert sum(len(s) for s in kept.splits().values()) == 80
    assert kept.notes["rows"]["unlabeled"]["count"] == 16
    assert sum(1 for ls in kept.train.labels if not ls) >= 10  # all-negative rows in train
    assert any(not ls for ls in kept.val.labels + kept.test.labels)
    dropped = load_corpus(str(path), unlabeled="drop", split_method=method)
    assert sum(len(s) for s in dropped.splits().values()) == 64
    assert dropped.notes["rows"]["skipped"]["no labels"]["rows"][:2] == [1, 6]
    msg = error_of(path, unlabeled="error")
    assert "row 1, column 'labels'" in msg and "empty label" in msg
    assert "unlabeled" in error_of(path, unlabeled="maybe")


def test_label_cells_numbers_quotes_case() -> None:
    assert parse_label_cell('"New York, NY",Boston', ",") == ("New York, NY", "Boston")
    assert parse_label_cell(' "a|b" | c ', "|") == ("a|b", "c")
    assert parse_label_cell([3, 3.0, "3"]) == ("3",)
    assert parse_label_cell(7.0) == ("7",) and parse_label_cell(float("nan")) == ()
    assert parse_label_cell(" Econ | econ ", "|") == ("Econ", "econ")  # stripped, case kept
    for bad in (1.5, [0.25], '"a|b | c'):
        with pytest.raises(LabelCellError):
            parse_label_cell(bad, "|")


def test_numeric_labels_agree_across_formats(tmp_path: Path) -> None:
    data = [{"text": f"doc {i}", "labels": [i % 3, 10]} for i in range(30)]
    from_parquet = load_corpus(str(write(tmp_path / "n.parquet", data)))
    csv_rows = [{"text": r["text"], "labels": ",".join(map(str, r["labels"]))} for r in data]
    from_csv = load_corpus(str(write(tmp_path / "n.csv", csv_rows)), label_sep=",")
    assert docs(from_parquet) == docs(from_csv)
    assert {l for _, ls in docs(from_csv) for l in ls} == {"0", "1", "2", "10"}


# ---------------------------------------------------------------- given splits


def test_split_col_reproduces_the_given_partition(tmp_path: Path) -> None:
    data = rows(80, split=True)
    c = load_corpus(str(write(tmp_path / "s.parquet", data)), split_col="split")
    for name, want in (("train", "train"), ("val", "dev"), ("test", "test")):
        expected = [r["text"] for r in data if r["split"] == want]
        assert getattr(c, name).texts == expected
    assert c.stats()["split_origin"] == "given" and "column 'split'" in c.notes["split"]


def test_split_col_bad_value_names_the_row(tmp_path: Path) -> None:
    data = rows(40, split=True)
    data[6]["split"] = "holdout"
    msg = error_of(write(tmp_path / "s.csv", data), split_col="split", label_sep="|")
    assert "row 8, column 'split'" in msg and "'holdout'" in msg
    data[6]["split"] = " Validation "  # case and spaces are forgiven
    c = load_corpus(str(write(tmp_path / "s.csv", data)), split_col="split", label_sep="|")
    assert data[6]["text"] in c.val.texts


def test_train_and_test_only_splits_val_from_train_with_the_seed(tmp_path: Path) -> None:
    data = rows(100, split=True)
    for r in data:
        r["split"] = "test" if r["split"] == "test" else "train"
    path = write(tmp_path / "tt.jsonl", data)
    a = load_corpus(str(path), split_col="split", seed=3, val_size=0.2)
    b = load_corpus(str(path), split_col="split", seed=3, val_size=0.2)
    other = load_corpus(str(path), split_col="split", seed=4, val_size=0.2)
    train_texts = [r["text"] for r in data if r["split"] == "train"]
    assert sorted(a.train.texts + a.val.texts) == sorted(train_texts)
    assert len(a.val) == round(0.2 * len(train_texts)) and a.val == b.val and a.val != other.val
    assert a.test.texts == [r["text"] for r in data if r["split"] == "test"]
    assert a.notes["split_origin"] == "given train/test, val made by the suite"
    assert a.notes["seed"] == 3 and "0.2 of train" in a.notes["split"]


def test_no_test_rows_is_an_error(tmp_path: Path) -> None:
    data = rows(40, split=True)
    for r in data:
        r["split"] = "train"
    msg = error_of(write(tmp_path / "t.jsonl", data), split_col="split")
    assert "no test documents" in msg


def test_three_files_and_a_folder_keep_the_given_partition(tmp_path: Path) -> None:
    data = rows(90)
    parts = {"train": data[:60], "val": data[60:75], "test": data[75:]}
    folder = tmp_path / "mydata"
    folder.mkdir()
    write(folder / "train.csv", parts["train"])
    write(folder / "dev.jsonl.gz", parts["val"])
    write(folder / "test.parquet", parts["test"])
    for c in (load_corpus(str(folder), label_sep="|"),
              load_corpus(str(folder / "train.csv"), test_file=folder / "test.parquet",
                          val_file=folder / "dev.jsonl.gz", label_sep="|")):
        for name in ("train", "val", "test"):
            assert getattr(c, name).texts == [r["text"] for r in parts[name]]
        assert c.notes["split_origin"] == "given"
    c = load_corpus(str(folder / "train.csv"), test_file=folder / "test.parquet", label_sep="|",
                    val_size=10)
    assert len(c.val) == 10 and c.test.texts == [r["text"] for r in parts["test"]]
    assert c.notes["split_origin"] == "given train/test, val made by the suite"


def test_folder_problems(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    write(tmp_path / "only" / "train.csv", rows(20))
    assert "no test.* file" in error_of(tmp_path / "only")
    write(tmp_path / "only" / "test.csv", rows(20))
    write(tmp_path / "only" / "test.jsonl", rows(20))
    assert "several test files" in error_of(tmp_path / "only")
    assert "split_col and split files" in error_of(tmp_path / "only", split_col="split")
    assert "only apply to user files" in error_of("reuters", split_col="split")
