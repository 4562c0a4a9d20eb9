"""Data health checks: each fires on a small crafted corpus and stays silent on a clean one."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from mlbench.data import load_corpus
from mlbench.data.corpus import Corpus, Split
from mlbench.data.dedupe import dedupe
from mlbench.data.health import check_health, raise_for
from mlbench.data.minhash import index_texts, near_duplicate_pairs, normalise_text
from mlbench.errors import InputError

LABELS = [("a",), ("b",), ("c",), ("a", "b")]


def texts(n: int, seed: int = 0, words: int = 12) -> list[str]:
    """n distinct random texts (no two share a 3-word shingle, in practice)."""
    rng = np.random.default_rng(seed)
    vocab = [f"word{i}" for i in range(2000)]
    return [" ".join(rng.choice(vocab, words)) for _ in range(n)]


def clean(n_train: int = 40, n_val: int = 12, n_test: int = 12) -> dict[str, Split]:
    all_texts = texts(n_train + n_val + n_test)
    out, lo = {}, 0
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        out[name] = Split(all_texts[lo : lo + n], [LABELS[i % 4] for i in range(n)])
        lo += n
    return out


def corpus(**splits: Split) -> Corpus:
    base = clean()
    base.update(splits)
    return Corpus("t", base["train"], base["val"], base["test"])


def checks(c: Corpus, **kw) -> dict[str, str]:
    return {f.check: f.severity for f in check_health(c, **kw).findings}


def test_clean_corpus_is_silent() -> None:
    report = check_health(corpus())
    assert report.findings == []
    assert set(report.stats["label_shift_jsd"]) == {"train-val", "train-test", "val-test"}
    assert report.console_lines()[0].startswith("data health: 0 error(s), 0 warning(s)")
    raise_for(report, strict=True)  # nothing to raise
    assert report.to_json()["findings"] == []


def test_unsplit_separator_is_an_error_when_cells_become_unique() -> None:
    s = clean()
    n = 0
    for name, split in s.items():  # '|' never split: every cell is its own label
        s[name] = Split(split.texts, [(f"x{n + i}|y{n + i}",) for i in range(len(split))])
        n += len(split)
    f = check_health(corpus(**s), label_sep=None).get("label_sep_unsplit")
    assert f is not None and f.severity == "error" and "'|'" in f.message
    assert f.count == n


def test_unsplit_separator_is_a_warning_when_cells_repeat() -> None:
    def relabel(cells) -> dict[str, Split]:
        return {n: Split(sp.texts, [cells[i % 2] for i in range(len(sp))]) for n, sp in clean().items()}

    single = relabel([("a;b",), ("c;d",)])
    assert checks(corpus(**single), label_sep="|")["label_sep_unsplit"] == "warning"
    # the separator that was used is not suspected; a split that happened is not suspected
    assert "label_sep_unsplit" not in checks(corpus(**single), label_sep=";")
    assert "label_sep_unsplit" not in checks(corpus(**relabel([("a;b", "c"), ("c;d",)])))


def test_case_variants_single_and_dominant_label() -> None:
    base = clean()["train"]
    variant = [ls if i else ("A",) for i, ls in enumerate(base.labels)]
    f = check_health(corpus(train=Split(base.texts, variant))).get("label_case_variants")
    assert f.severity == "warning" and "'A' vs 'a'" in f.message

    one = [("only",)] * len(base)
    found = checks(corpus(train=Split(base.texts, one)))
    assert found["single_label"] == "error"

    n = 200
    dom = [("news",) if i else ("news", "rare") for i in range(n)]
    dom[1] = ("news", "rare")
    found = checks(corpus(train=Split(texts(n, seed=5), dom)))
    assert found["dominant_label"] == "warning"
    not_dom = [("news",) if i % 50 else ("other",) for i in range(n)]  # 98 %
    assert "dominant_label" not in checks(corpus(train=Split(texts(n, seed=5), not_dom)))


def test_rare_labels_respect_min_label_docs() -> None:
    base = clean()["train"]
    labels = list(base.labels)
    labels[0] = ("a", "lonely")
    f = check_health(corpus(train=Split(base.texts, labels))).get("rare_labels")
    assert f.count == 1 and f.examples == ["lonely"]
    assert check_health(corpus()).get("rare_labels") is None
    # with a higher bar the clean corpus' labels count too (a and b have >= 10 docs, c 10)
    f = check_health(corpus(), min_label_docs=11).get("rare_labels")
    assert f is not None and "c" in f.examples
    with pytest.raises(InputError, match="min_label_docs"):
        check_health(corpus(), min_label_docs=0)


def test_labels_missing_from_train_are_named() -> None:
    test = clean()["test"]
    labels = [("zzz",) if i == 0 else ls for i, ls in enumerate(test.labels)]
    labels[1] = labels[1] + ("zzz",)
    f = check_health(corpus(test=Split(test.texts, labels))).get("unseen_labels_test")
    assert f.severity == "warning" and f.examples == ["zzz"]
    assert "drop out of y" in f.message and "1 test document(s) become all-negative" in f.message


def test_label_shift_between_splits() -> None:
    test = clean()["test"]
    shifted = Split(test.texts, [("c",)] * len(test))
    report = check_health(corpus(test=shifted))
    assert report.get("label_shift").severity == "warning"
    assert report.stats["label_shift_jsd"]["train-test"] > 0.1
    assert check_health(corpus()).stats["label_shift_jsd"]["train-test"] < 0.1


def test_exact_duplicates_and_leakage() -> None:
    s = clean()
    tr = s["train"]
    t = list(tr.texts)
    lab = list(tr.labels)
    t[5] = "  " + t[0].upper() + " "  # same after normalisation, same labels
    lab[5] = lab[0]
    t[6] = t[1].replace(" ", "\n ")  # same text, other labels
    lab[6] = ("c",) if lab[1] != ("c",) else ("a",)
    te = list(s["test"].texts)
    te[0] = t[2]  # leaked with the same labels
    te[1] = t[3]  # leaked with other labels
    test_labels = list(s["test"].labels)
    test_labels[0] = lab[2]
    test_labels[1] = ("b",) if lab[3] != ("b",) else ("a",)
    te[2] = te[3]  # repeated inside test
    test_labels[2] = test_labels[3]
    report = check_health(corpus(train=Split(t, lab), test=Split(te, test_labels)))
    dup = report.get("duplicate_texts")
    assert dup.count == 2 and "1 with a different label set" in dup.message
    leak = report.get("test_leakage")
    assert leak.count == 2 and "1 of them with other labels" in leak.message
    assert report.get("duplicate_texts_test").severity == "info"
    assert report.stats["exact_duplicates"]["test_in_train_val_other_labels"] == 1


def test_near_duplicates_found_exact_ones_not_double_counted() -> None:
    s = clean()
    t = list(s["train"].texts)
    long = texts(1, seed=9, words=60)[0]
    t[0] = long
    t[1] = long + " extra"  # Jaccard 58/59 of 3-shingles
    te = list(s["test"].texts)
    te[0] = long.replace("word", "WORD", 1) + " more words"
    report = check_health(corpus(train=Split(t, s["train"].labels), test=Split(te, s["test"].labels)))
    assert report.get("near_duplicates").count == 1
    assert report.get("test_near_leakage").count == 1
    assert report.get("duplicate_texts") is None
    index = index_texts([long, long.upper() + " x", texts(1, 3)[0], "", ""])
    assert near_duplicate_pairs(index.sig, np.flatnonzero(index.words)).tolist() == [[0, 1]]
    assert index.words.tolist() == [60, 61, 12, 0, 0]
    assert len(set(index.key.tolist())) == 5  # empty texts are not duplicates of each other


def test_normalisation_matches_the_index() -> None:
    a, b = "Stra\u00dfe  Caf\u00e9\tNEWS\n", "strasse café news"
    assert normalise_text(a) == normalise_text(b) == "strasse café news"
    index = index_texts([a, b, "strasse cafe news"])
    assert index.key[0] == index.key[1] != index.key[2]


def test_chunked_threaded_index_equals_one_chunk(monkeypatch) -> None:
    from mlbench.data import minhash

    docs = texts(50, seed=2) + ["", "a b", texts(1, seed=2)[0].upper()]
    whole = index_texts(docs)
    monkeypatch.setattr(minhash, "_CHUNK", 7)
    parts = index_texts(docs)
    for name in ("words", "key", "fffd", "control", "sig"):
        assert np.array_equal(getattr(whole, name), getattr(parts, name)), name
    assert whole.key[0] == whole.key[-1]


def test_text_problems() -> None:
    s = clean()["train"]
    t = list(s.texts)
    t[0] = "   "
    t[1] = "hi"
    t[2] = " ".join(["w"] * 5001) + " tail"
    t[3] = t[3] + " caf\ufffd"
    t[4] = t[4] + "\x07"
    found = checks(corpus(train=Split(t, s.labels)))
    assert found["empty_texts"] == "warning"
    assert found["short_texts"] == "info"
    assert found["long_texts"] == "info"
    assert found["replacement_chars"] == "warning"
    assert found["control_chars"] == "warning"
    assert "\t" not in checks(corpus(train=Split([x + "\ttab\nnl" for x in s.texts], s.labels)))


def test_raise_for_errors_and_strict_warnings() -> None:
    base = clean()["train"]
    with pytest.raises(InputError) as info:
        raise_for(check_health(corpus(train=Split(base.texts, [("x",)] * len(base)))))
    msg = str(info.value)
    assert "single_label" in msg and "'x'" in msg and "\n" not in msg

    labels = list(base.labels)
    labels[0] = ("a", "lonely")
    warn_only = check_health(corpus(train=Split(base.texts, labels)))
    raise_for(warn_only, strict=False)
    with pytest.raises(InputError, match="rare_labels.*--strict.*lonely"):
        raise_for(warn_only, strict=True)


def test_dedupe_modes() -> None:
    s = clean()
    t = list(s["train"].texts)
    t[1] = t[0].upper()
    v = list(s["val"].texts)
    v[0] = t[2]
    te = list(s["test"].texts)
    t[3] = te[0]
    c = corpus(train=Split(t, s["train"].labels), val=Split(v, s["val"].labels),
               test=Split(te, s["test"].labels))
    same, counts = dedupe(c)
    assert same is c and counts == {"mode": "none", "train": 0, "val": 0, "test": 0}
    d, counts = dedupe(c, "train")
    assert (counts["train"], counts["val"], counts["test"]) == (1, 1, 0)
    assert len(d.train) == len(c.train) - 1 and d.notes["dedupe"] == counts
    d, counts = dedupe(c, "cross")
    assert (counts["train"], counts["val"], counts["test"]) == (2, 1, 0)
    assert d.test == c.test and check_health(d).get("test_leakage") is None
    with pytest.raises(InputError, match="dedupe mode"):
        dedupe(c, "all")


@lru_cache(maxsize=None)
def _reuters(path: str) -> Corpus:
    return load_corpus("reuters", data_dir=path)


def test_reuters_duplicates_and_leakage(reuters_dir: Path) -> None:
    report = check_health(_reuters(str(reuters_dir)))
    dup = report.stats["exact_duplicates"]
    assert dup["train_val_repeats"] == 96  # train + val is ApteMod train, whatever the val split
    assert dup["test_in_train_val"] == 6 and dup["test_in_train_val_other_labels"] == 4
    assert report.errors == []
    assert report.get("test_leakage").count == 6
    assert all(v < 0.1 for v in report.stats["label_shift_jsd"].values())
    assert len(report.console_lines()) <= 8
    assert json.loads(json.dumps(report.to_json()))["findings"][0]["check"]
