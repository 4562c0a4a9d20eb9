"""Dataset loaders: real-data checks (arXiv sample, Reuters) and synthetic error cases."""

from __future__ import annotations

import ast
import csv
import io
import json
from collections import Counter
from functools import lru_cache
from pathlib import Path
from urllib.error import URLError

import pandas as pd
import pytest

from mlbench.data import DATASETS, Corpus, load_corpus
from mlbench.data import arxiv as arxiv_mod
from mlbench.data import download as download_mod
from mlbench.data import reuters as reuters_mod
from mlbench.data.label_cells import LabelCellError, parse_label_cell
from mlbench.errors import InputError


# ---------------------------------------------------------------- helpers


def write_csv(path: Path, rows: list[list[object]], header=("text", "labels")) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def write_jsonl(path: Path, objs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def balanced_rows(n: int = 40) -> list[list[str]]:
    """n documents over 4 label sets, each appearing n/4 times (stratifiable)."""
    sets = ["['a']", "['b']", "['a', 'c']", "['d']"]
    return [[f"document number {i} about {sets[i % 4]}", sets[i % 4]] for i in range(n)]


def error_of(dataset, **kw) -> str:
    with pytest.raises(InputError) as info:
        load_corpus(str(dataset), **kw)
    msg = str(info.value)
    assert "\n" not in msg, "InputError messages are one line"
    return msg


def all_label_sets(c: Corpus) -> list[tuple[str, ...]]:
    return [tuple(sorted(ls)) for s in c.splits().values() for ls in s.labels]


@lru_cache(maxsize=None)
def reuters(path: str, method: str = "stratified") -> Corpus:
    return load_corpus("reuters", data_dir=path, split_method=method)


# ---------------------------------------------------------------- arXiv (real sample)


def test_arxiv_sample_matches_keras_io_preprocessing(arxiv_sample: Path) -> None:
    c = load_corpus("arxiv", data_dir=arxiv_sample.parent)
    assert c.name == "arxiv" and c.source == str(arxiv_sample)

    df = pd.read_csv(arxiv_sample)
    df = df[~df["titles"].duplicated()]
    key = df["terms"].map(lambda s: tuple(sorted(set(ast.literal_eval(s)))))
    df = df[key.map(key.value_counts()) > 1]
    assert df["titles"].is_unique
    got = sorted(t for s in c.splits().values() for t in s.texts)
    assert got == sorted(df["summaries"])  # same rows survive: no duplicate titles
    assert c.notes["duplicate_titles_dropped"] == 7
    assert c.notes["rows_read"] == 1000


def test_arxiv_label_sets_repeat_and_split_sizes(arxiv_sample: Path) -> None:
    c = load_corpus("arxiv", data_dir=arxiv_sample)
    counts = Counter(all_label_sets(c))
    assert min(counts.values()) >= 2
    n = sum(len(s) for s in c.splits().values())
    assert abs(len(c.test) + len(c.val) - 0.1 * n) <= 1
    assert abs(len(c.val) - len(c.test)) <= 1
    assert "split" in c.notes and c.stats()["train"]["documents"] == len(c.train)


def test_arxiv_split_is_deterministic_per_seed(arxiv_sample: Path) -> None:
    a = load_corpus("arxiv", data_dir=arxiv_sample, seed=1)
    b = load_corpus("arxiv", data_dir=arxiv_sample, seed=1)
    other = load_corpus("arxiv", data_dir=arxiv_sample, seed=2)
    assert a.train == b.train and a.val == b.val and a.test == b.test
    assert a.test.texts != other.test.texts


def test_arxiv_iterative_split(arxiv_sample: Path) -> None:
    c = load_corpus("arxiv", data_dir=arxiv_sample, split_method="iterative")
    n = sum(len(s) for s in c.splits().values())
    assert c.notes["split"] == "iterative"
    assert 0.07 * n <= len(c.val) + len(c.test) <= 0.13 * n
    assert len(c.val) > 0 and len(c.test) > 0
    # every label in val/test is also in train (iterative keeps rare labels spread)
    train_labels = {l for ls in c.train.labels for l in ls}
    assert {l for ls in c.test.labels for l in ls} <= train_labels


def test_max_docs_caps_train_only(arxiv_sample: Path) -> None:
    full = load_corpus("arxiv", data_dir=arxiv_sample)
    a = load_corpus("arxiv", data_dir=arxiv_sample, max_docs=100)
    b = load_corpus("arxiv", data_dir=arxiv_sample, max_docs=100)
    assert len(a.train) == 100 and a.train == b.train
    assert a.val == full.val and a.test == full.test
    assert set(a.train.texts) <= set(full.train.texts)
    assert a.notes["train_before_cap"] == len(full.train)
    assert "max_docs" in error_of(arxiv_sample, data_dir=arxiv_sample, max_docs=0)


def test_arxiv_env_var_and_missing_data_dir(arxiv_sample: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLBENCH_ARXIV", str(arxiv_sample.parent))
    assert load_corpus("arxiv").source == str(arxiv_sample)
    msg = error_of("arxiv", data_dir=tmp_path)
    assert str(tmp_path) in msg and "arxiv_data.csv" in msg


# ---------------------------------------------------------------- Reuters (real files)


def test_reuters_aptemod_counts(reuters_dir: Path) -> None:
    c = reuters(str(reuters_dir))
    assert abs(len(c.train) + len(c.val) - 7769) <= 1
    assert len(c.val) == 1000
    assert len(c.test) == 3019
    labels = {l for s in c.splits().values() for ls in s.labels for l in ls}
    assert len(labels) == 90 and c.notes["categories"] == 90
    assert all(c.train.labels) and all(t.strip() for t in c.test.texts)
    assert c.stats()["split_origin"] == "given train/test, val made by the suite"


def test_reuters_text_is_clean_and_split_deterministic(reuters_dir: Path) -> None:
    c = reuters(str(reuters_dir))
    texts = c.train.texts + c.val.texts + c.test.texts
    assert not any("&lt;" in t or "&#" in t or "\x03" in t or "<BODY>" in t for t in texts)
    assert any("<" in t for t in texts)  # &lt; became '<'
    again = load_corpus("reuters", data_dir=reuters_dir)
    assert again.val == c.val
    it = reuters(str(reuters_dir), "iterative")
    assert len(it.val) == 1000 and len(it.test) == 3019


def test_reuters_missing_files_and_options(tmp_path: Path) -> None:
    msg = error_of("reuters", data_dir=tmp_path)
    assert "reut2-000.sgm" in msg and str(tmp_path) in msg
    assert "label_sep" in error_of("reuters", data_dir=tmp_path, label_sep="|")


# ---------------------------------------------------------------- label cells


@pytest.mark.parametrize(
    "cell, sep, expected",
    [
        ("['cs.CV', 'cs.LG']", None, ("cs.CV", "cs.LG")),
        ('["a", "b"]', "|", ("a", "b")),
        (" a | b ||a ", "|", ("a", "b")),
        ("x,y", ",", ("x", "y")),
        ("x,y", None, ("x,y",)),
        (["  p ", "q", ""], None, ("p", "q")),
        ([3, "4"], None, ("3", "4")),
        ("[]", None, ()),
        ("", "|", ()),
        (None, None, ()),
    ],
)
def test_parse_label_cell_formats(cell, sep, expected) -> None:
    assert parse_label_cell(cell, sep) == expected


@pytest.mark.parametrize("cell", ["['a', ", "[1: 2]", "[{'a': 1}]", [["nested"]], 1.5, [None]])
def test_parse_label_cell_rejects(cell) -> None:
    with pytest.raises(LabelCellError):
        parse_label_cell(cell, "|")


def test_user_csv_label_formats(tmp_path: Path) -> None:
    rows = [[f"text {i}", ["['a', 'b']", '["a"]', "c | a", " c "][i % 4]] for i in range(40)]
    c = load_corpus(str(write_csv(tmp_path / "mine.csv", rows)), label_sep="|")
    assert c.name == "mine"
    assert sorted(set(all_label_sets(c))) == [("a",), ("a", "b"), ("a", "c"), ("c",)]
    assert len(c.train) + len(c.val) + len(c.test) == 40


def test_user_csv_with_bom_and_blank_lines(tmp_path: Path) -> None:
    body = "".join(f'doc {i},"[""a"", ""b""]"\n\n' for i in range(30))
    path = tmp_path / "bom.csv"
    path.write_text("\ufefftext,labels\n" + body, encoding="utf-8")
    c = load_corpus(str(path))
    assert sum(len(s) for s in c.splits().values()) == 30
    assert set(all_label_sets(c)) == {("a", "b")}


def test_user_jsonl_lists_and_custom_columns(tmp_path: Path) -> None:
    objs = [{"body": f"doc {i}", "tags": ["x", "y"] if i % 2 else "z;x"} for i in range(60)]
    path = write_jsonl(tmp_path / "mine.jsonl", objs)
    c = load_corpus(str(path), text_col="body", labels_col="tags", label_sep=";")
    assert set(all_label_sets(c)) == {("x", "y"), ("x", "z")}
    assert c.notes["split"] == "stratified"


def test_user_file_random_fallback_and_duplicates_kept(tmp_path: Path) -> None:
    rows = [["same text", f"['l{i}']"] for i in range(30)]  # every label set unique
    c = load_corpus(str(write_csv(tmp_path / "u.csv", rows)))
    assert c.notes["split"].startswith("random")
    assert sum(len(s) for s in c.splits().values()) == 30


# ---------------------------------------------------------------- error cases


def test_missing_file_and_unknown_dataset(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    msg = error_of(path)
    assert str(path) in msg and "not found" in msg
    assert "unknown dataset" in error_of("mnist")
    assert "split method" in error_of(path, split_method="kfold")


def test_missing_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", balanced_rows(), header=("body", "labels"))
    msg = error_of(path)
    assert str(path) in msg and "column 'text'" in msg and "'body'" in msg
    jpath = write_jsonl(tmp_path / "d.jsonl", [{"text": "t", "labels": ["a"]}, {"text": "u"}])
    msg = error_of(jpath)
    assert str(jpath) in msg and "row 2" in msg and "column 'labels'" in msg


def test_empty_text_names_row_and_column(tmp_path: Path) -> None:
    rows = balanced_rows()
    rows[4][0] = "   "  # sixth spreadsheet row (header is row 1)
    path = write_csv(tmp_path / "d.csv", rows)
    msg = error_of(path)
    assert str(path) in msg and "row 6" in msg and "column 'text'" in msg and "empty text" in msg


def test_empty_label_cell_names_row(tmp_path: Path) -> None:
    rows = balanced_rows()
    rows[0][1] = " | "
    msg = error_of(write_csv(tmp_path / "d.csv", rows), label_sep="|", unlabeled="error")
    assert "row 2" in msg and "column 'labels'" in msg and "empty label" in msg


def test_unparseable_label_cell_counts_multiline_rows(tmp_path: Path) -> None:
    rows = balanced_rows()
    rows[0][0] = "a text\nspanning\nthree lines"  # still one spreadsheet row
    rows[2][1] = "['a', 'b'"
    path = write_csv(tmp_path / "d.csv", rows)
    msg = error_of(path)
    assert str(path) in msg and "row 4" in msg and "column 'labels'" in msg


def test_non_utf8_bytes_report_row(tmp_path: Path) -> None:
    rows = balanced_rows()
    rows[0][0] = "line one\nline two"
    text = write_csv(tmp_path / "x.csv", rows).read_bytes()
    bad = text.replace(b"document number 6 ", b"caf\xe9 number 6 ")  # data row 7 -> row 8
    path = tmp_path / "latin1.csv"
    path.write_bytes(bad)
    msg = error_of(path)
    assert str(path) in msg and "row 8" in msg and "column 'text'" in msg and "UTF-8" in msg
    assert "line 9" in msg  # the multi-line cell adds one physical line

    jpath = tmp_path / "bad.jsonl"
    jpath.write_bytes(b'{"text": "ok", "labels": ["a"]}\n{"text": "caf\xe9", "labels": ["a"]}\n')
    msg = error_of(jpath)
    assert str(jpath) in msg and "row 2" in msg and "UTF-8" in msg


def test_malformed_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,labels\nfine,a\ntoo,many,fields\n", encoding="utf-8")
    assert "row 3" in error_of(path)
    jpath = tmp_path / "d.jsonl"
    jpath.write_text('{"text": "a", "labels": ["a"]}\n\n{"text": oops}\n', encoding="utf-8")
    msg = error_of(jpath)
    assert "row 3" in msg and "JSON" in msg
    jpath.write_text('{"text": 5, "labels": ["a"]}\n', encoding="utf-8")
    assert "row 1, column 'text'" in error_of(jpath)


def test_too_few_rows_to_split(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "tiny.csv", balanced_rows(8))
    msg = error_of(path)
    assert str(path) in msg and "8 usable documents" in msg
    header_only = write_csv(tmp_path / "empty.csv", [])
    assert "no data rows" in error_of(header_only)


def test_no_labels_left_after_filtering(tmp_path: Path) -> None:
    rows = [[f"title {i}", f"summary {i}", f"['t{i}']"] for i in range(30)]
    path = write_csv(tmp_path / "arxiv_data.csv", rows, header=("titles", "summaries", "terms"))
    msg = error_of("arxiv", data_dir=tmp_path)
    assert str(path) in msg and "no documents left" in msg


# ---------------------------------------------------------------- downloads (no network)


@pytest.fixture
def offline(tmp_path: Path, monkeypatch) -> Path:
    """Empty cache, no env-var copies, and every urlopen fails like a dead network."""
    monkeypatch.setenv("MLBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLBENCH_ARXIV", raising=False)
    monkeypatch.delenv("MLBENCH_REUTERS", raising=False)
    monkeypatch.delenv("MLBENCH_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise URLError("no network (test)")

    monkeypatch.setattr(download_mod, "urlopen", no_network)
    for module in (arxiv_mod, reuters_mod):  # and no ../shared/data copy beside the checkout
        monkeypatch.setattr(module, "sibling_data_dir", lambda name: None)
    return tmp_path / "cache"


def test_offline_falls_back_to_the_shared_copy(arxiv_sample, reuters_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLBENCH_ARXIV", raising=False)
    monkeypatch.delenv("MLBENCH_REUTERS", raising=False)
    monkeypatch.setattr(download_mod, "urlopen", lambda *a, **k: (_ for _ in ()).throw(URLError("offline")))
    # compared resolved: ../shared may be a symlink (CI copies it, a developer may link it)
    assert arxiv_mod.locate_arxiv().resolve() == arxiv_sample.resolve()
    assert reuters_mod.locate_reuters().resolve() == reuters_dir.resolve()


def test_offline_arxiv_says_where_to_put_the_file(offline: Path) -> None:
    msg = error_of("arxiv")
    assert str(offline / "arxiv" / "arxiv_data.csv") in msg
    assert "MLBENCH_ARXIV" in msg and "arXiv_data.csv" in msg and "https://" in msg
    assert not list((offline / "arxiv").glob("*"))  # no partial file left behind


def test_offline_reuters_says_where_to_put_the_files(offline: Path) -> None:
    msg = error_of("reuters")
    assert str(offline / "reuters21578") in msg and "MLBENCH_REUTERS" in msg


def test_download_writes_atomically_with_sha256(tmp_path: Path, monkeypatch) -> None:
    payload = b"x" * 5000

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

    monkeypatch.delenv("MLBENCH_OFFLINE", raising=False)
    monkeypatch.setattr(download_mod, "urlopen", lambda url, timeout: Resp(payload))
    dest = download_mod.download("http://x/f.csv", tmp_path / "f.csv", min_bytes=1000)
    assert dest.read_bytes() == payload
    assert (tmp_path / "f.csv.sha256").read_text().split()[0] == download_mod.sha256_of(dest)
    with pytest.raises(OSError, match="at least"):
        download_mod.download("http://x/g.csv", tmp_path / "g.csv", min_bytes=10**6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.csv", "f.csv.sha256"]


def test_registry_is_one_table_the_options_read() -> None:
    """Each built-in dataset is one `REGISTRY` row: its loader, its columns (error messages
    name them), and file-only options refused with one line naming the dataset."""
    from mlbench.data.registry import REGISTRY, data_columns
    from mlbench.errors import InputError

    assert DATASETS == tuple(REGISTRY) == ("arxiv", "reuters")
    assert data_columns("arxiv") == {"text": "summaries", "labels": "terms"}
    assert data_columns("ARXIV", labels_col="tags") == {"text": "summaries", "labels": "tags"}
    assert data_columns("reuters") is None
    assert data_columns("mine.csv", "body") == {"text": "body", "labels": "labels"}
    for name in REGISTRY:
        with pytest.raises(InputError, match=f"^{name}: split_col only apply to user files"):
            load_corpus(name, split_col="split")
    with pytest.raises(InputError, match="^reuters: text_col only apply to user files"):
        load_corpus("reuters", text_col="body")
