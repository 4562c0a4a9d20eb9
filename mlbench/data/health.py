"""Dataset health checks, computed once from a Corpus before any model trains.

Why: a benchmark number is only as good as its data. A label separator that never
split, test documents copied from train, or labels that only occur in test all make
scores look better or worse than the models are, silently. `check_health` looks for
these problems and returns a `HealthReport` the run records and the driver prints;
`raise_for` turns its errors (and, with ``strict``, its warnings) into one InputError.

Checks (``Finding.check`` ids are stable; tests pin each one's severity):

=====================  ========  ===================================================
check                  severity  fires when
=====================  ========  ===================================================
label_sep_unsplit      error /   no document has two labels, yet >= 10 % of cells
                       warning   contain ``|`` ``;`` ``,`` or tab (other than the
                                 separator used); error when >= 80 % of documents
                                 then carry a label no other document has
label_sep_partial      warning / some documents have two labels, yet >= 10 % of documents
                       error     carry a label holding ``,`` ``;`` ``|`` ``/`` or
                                 whitespace (other than the separator used); for ``/``
                                 and whitespace only when most such labels are made of
                                 other labels (``a/b`` with ``a`` and ``b`` labels too);
                                 error when >= 50 % of documents then carry such a
                                 label that no other document has
label_case_variants    warning   labels equal up to case / surrounding whitespace
single_label           error     train has one distinct label
dominant_label         warning   one label on >= 99 % of training documents
rare_labels            warning   labels with < ``min_label_docs`` training documents
unseen_labels_val/     warning   labels in val / test absent from train (they drop
unseen_labels_test               out of y: the LabelSpace is built from train)
label_shift            warning   Jensen-Shannon divergence (base 2) of the label
                                 frequencies of a split pair >= 0.1 (always in
                                 ``stats["label_shift_jsd"]``)
duplicate_texts        warning   train/val documents repeating a train/val text
test_leakage           warning   test documents whose text is in train/val
duplicate_texts_test   info      test documents repeating a test text
near_duplicates        warning   distinct train/val texts with 3-word-shingle
                                 Jaccard >= 0.9 to another train/val text
test_near_leakage      warning   the same between a test and a train/val text
empty_texts            warning   no words
short_texts            info      fewer than 3 words
long_texts             info      more than 5,000 words
replacement_chars      warning   U+FFFD in the text
control_chars          warning   C0/C1 control characters other than tab/newline/CR
=====================  ========  ===================================================

Why these severities: an *error* means the data cannot give a meaningful benchmark;
a *warning* means it runs but its numbers are biased or noisy; *info* is usually
harmless. One label on >= 99 % of the training documents is a warning, not an error:
the data are still valid (e.g. every item tagged "news"), but a constant learns that
label and it inflates micro-averaged scores, so the report must say so.

Texts are compared after `mlbench.data.minhash.normalise_text`; exact duplicates by a
64-bit hash of the normalised word sequence, near-duplicates by MinHash + LSH (both from
`mlbench.data.minhash.index_texts`). `mlbench.data.dedupe` removes exact duplicates.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterable, Literal, Sequence

import numpy as np

from mlbench.data.corpus import Corpus, Split
from mlbench.data.minhash import NEAR_JACCARD, index_texts, near_duplicate_pairs
from mlbench.errors import InputError, where

__all__ = [
    "Finding",
    "HealthReport",
    "check_health",
    "raise_for",
    "jensen_shannon",
]

Severity = Literal["error", "warning", "info"]
SPLITS = ("train", "val", "test")
DELIMITERS = ("|", ";", ",", "\t")
DELIMITER_SHARE = 0.1  # a delimiter inside >= 10 % of single-label cells looks unsplit
#: separators a partly split label column may still hide: (name, separator; None = whitespace)
PARTIAL_SEPARATORS = ((",", ","), (";", ";"), ("|", "|"), ("/", "/"), ("whitespace", None))
STRONG_SEPARATORS = (",", ";", "|")  # rarely inside a real label name; "/" and spaces often are
MADE_OF_LABELS_SHARE = 0.5  # "/" or a space counts only when most such labels are other labels joined
PARTIAL_UNIQUE_SHARE = 0.5  # ... an error when most documents then carry a one-off label holding it
UNIQUE_CELL_SHARE = 0.8  # ... and is an error when >= 80 % of documents get a unique label
DOMINANT_SHARE = 0.99
SHORT_WORDS = 3  # fewer words than this is "very short"
LONG_WORDS = 5000  # more words than this is "very long" (sequence models truncate)
SHIFT_WARN_JSD = 0.1  # Jensen-Shannon divergence (base 2, in [0, 1]) that warns
N_EXAMPLES = 3


@dataclass(frozen=True)
class Finding:
    """One problem: a stable ``check`` id, its severity, how many items, one line, examples."""

    check: str
    severity: Severity
    count: int
    message: str
    examples: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class HealthReport:
    """All findings of one `check_health` call, plus statistics (``stats``) and its cost."""

    findings: list[Finding]
    stats: dict
    seconds: float

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def get(self, check: str) -> Finding | None:
        """The finding with this check id, or None when the check stayed silent."""
        return next((f for f in self.findings if f.check == check), None)

    def to_json(self) -> dict:
        return {
            "findings": [f.to_json() for f in self.findings],
            "stats": self.stats,
            "seconds": round(self.seconds, 3),
        }

    def console_lines(self, max_lines: int = 6) -> list[str]:
        """A summary line, the most severe findings (one line each), the label shift."""
        n_info = len(self.findings) - len(self.errors) - len(self.warnings)
        lines = [
            f"data health: {len(self.errors)} error(s), {len(self.warnings)} warning(s), "
            f"{n_info} note(s) ({self.seconds:.1f} s)"
        ]
        order = {"error": 0, "warning": 1, "info": 2}
        ranked = sorted(self.findings, key=lambda f: order[f.severity])
        for f in ranked[:max_lines]:
            lines.append(f"  {f.severity}: [{f.check}] {f.message}")
        if len(ranked) > max_lines:
            lines.append(f"  … {len(ranked) - max_lines} more in results.json")
        jsd = self.stats.get("label_shift_jsd", {})
        if jsd:
            pairs = ", ".join(f"{k} {v:.3f}" for k, v in jsd.items())
            lines.append(f"  label-frequency shift (Jensen-Shannon, base 2): {pairs}")
        return lines


def _short(text: str, n: int = 60) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= n else one[: n - 1] + "…"


def _names(items: Iterable[str], n: int = N_EXAMPLES) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (", …" if len(items) > n else "")


# ---------------------------------------------------------------- the entry point


def check_health(
    corpus: Corpus, *, min_label_docs: int = 2, label_sep: str | None = None
) -> HealthReport:
    """Run every check on ``corpus`` (train / val / test); never modifies it.

    ``label_sep`` is the separator the loader used (None: one label per cell unless
    the cell was a list); ``min_label_docs``: labels with fewer training documents
    are reported as rare.
    """
    if isinstance(min_label_docs, bool) or not isinstance(min_label_docs, int) or min_label_docs < 1:
        raise InputError(f"min_label_docs {min_label_docs!r}: must be a positive integer")
    start = time.perf_counter()
    splits = corpus.splits()
    findings: list[Finding] = []
    stats: dict = {}
    findings += _label_cell_checks(splits, label_sep)
    findings += _label_count_checks(corpus.train, min_label_docs)
    findings += _split_checks(splits, stats)
    t_labels = time.perf_counter()
    findings += _text_checks(splits, stats)
    stats.setdefault("seconds_by_stage", {})["labels"] = round(t_labels - start, 3)
    return HealthReport(findings, stats, time.perf_counter() - start)


# ---------------------------------------------------------------- label cells


def _label_cell_checks(splits: dict[str, Split], label_sep: str | None) -> list[Finding]:
    out: list[Finding] = []
    all_sets = [ls for s in splits.values() for ls in s.labels]
    labelled = [ls for ls in all_sets if ls]
    if labelled and max(len(ls) for ls in labelled) == 1:
        cells = [ls[0] for ls in labelled]
        counts = Counter(cells)
        for delim in DELIMITERS:
            if delim == label_sep:
                continue
            hits = [c for c in cells if delim in c]
            if len(hits) < 2 or len(hits) < DELIMITER_SHARE * len(cells):
                continue
            unique_share = sum(1 for c in cells if counts[c] == 1) / len(cells)
            severity: Severity = "error" if unique_share >= UNIQUE_CELL_SHARE else "warning"
            sep_txt = "no separator" if label_sep is None else f"label separator {label_sep!r}"
            out.append(Finding(
                "label_sep_unsplit", severity, len(hits),
                f"{sep_txt} never split a label cell, yet {len(hits)} of {len(cells)} cells "
                f"contain {delim!r} ({unique_share:.0%} of documents get a label no other "
                f"document has); pass the right separator (e.g. --label-sep {delim!r})",
                [_short(c) for c in dict.fromkeys(hits)][:N_EXAMPLES],
            ))
            break
    partial = _partial_split_check(labelled, label_sep)
    if partial is not None:
        out.append(partial)
    groups: dict[str, set[str]] = {}
    for name in {l for ls in all_sets for l in ls}:
        groups.setdefault(name.strip().casefold(), set()).add(name)
    variants = [sorted(g) for g in groups.values() if len(g) > 1]
    if variants:
        variants.sort()
        out.append(Finding(
            "label_case_variants", "warning", len(variants),
            f"{len(variants)} label(s) differ from another only in case or surrounding "
            f"whitespace (e.g. {' vs '.join(map(repr, variants[0]))}); they are kept as "
            "different labels",
            [" vs ".join(map(repr, g)) for g in variants[:N_EXAMPLES]],
        ))
    return out


def _pieces(label: str, sep: str | None) -> list[str]:
    """`label` split on `sep` (None: whitespace runs), pieces stripped, empty ones dropped."""
    parts = label.split() if sep is None else label.split(sep)
    return [p.strip() for p in parts if p.strip()]


def _partial_split_check(labelled: list[tuple[str, ...]], label_sep: str | None) -> Finding | None:
    """A separator that split some cells while many labels still hold another separator.

    Why: with ``--label-sep '|'`` on a column where most cells read ``a, b`` the run
    trains on labels like ``"a, b"``; nothing fails, the scores are just wrong.  The
    evidence for a separator is the share of documents carrying a label that holds it,
    and (for ``/`` and whitespace, which real label names contain: ``"New York"``) that
    such labels are mostly other labels joined (``"a/b"`` with ``a`` and ``b`` labels too).
    """
    if not labelled or max(len(ls) for ls in labelled) < 2:
        return None  # nothing was split: `label_sep_unsplit`'s case
    docs_of = Counter(l for ls in labelled for l in set(ls))
    used_blank = label_sep is not None and not label_sep.strip()
    found = []
    for name, sep in PARTIAL_SEPARATORS:
        if sep == label_sep or (sep is None and used_blank):
            continue
        compound = {l: ps for l in docs_of if len(ps := _pieces(l, sep)) >= 2}
        hits = [ls for ls in labelled if any(l in compound for l in ls)]
        if len(hits) < 2 or len(hits) < DELIMITER_SHARE * len(labelled):
            continue
        joined = [l for l, ps in compound.items() if all(p in docs_of for p in ps)]
        made_of = sum(docs_of[l] for l in joined) / sum(docs_of[l] for l in compound)
        if name not in STRONG_SEPARATORS and made_of < MADE_OF_LABELS_SHARE:
            continue
        unique = sum(1 for ls in hits if any(l in compound and docs_of[l] == 1 for l in ls))
        found.append((made_of, len(hits), name, sep, compound, joined, unique))
    if not found:
        return None
    made_of, n_hits, name, sep, compound, joined, unique = max(found, key=lambda f: (f[0], f[1]))
    unique_share = unique / len(labelled)
    severity: Severity = "error" if unique_share >= PARTIAL_UNIQUE_SHARE else "warning"
    n_multi = sum(1 for ls in labelled if len(ls) > 1)
    used = "list cells" if label_sep is None else f"label separator {label_sep!r}"
    flag = "' '" if sep is None else repr(sep)
    examples = sorted(compound, key=lambda l: (l not in joined, -docs_of[l], l))
    return Finding(
        "label_sep_partial", severity, n_hits,
        f"{used} gave {n_multi} of {len(labelled)} documents several labels, yet {n_hits} carry "
        f"a label holding {name if sep is None else repr(sep)} (e.g. {_names(examples, 2)}; "
        f"{made_of:.0%} of them are other labels joined; {unique_share:.0%} of documents get such a "
        f"label no other document has); the likely separator is {name if sep is None else repr(sep)}: "
        f"make the cells use one separator (e.g. --label-sep {flag})",
        [_short(l) for l in examples[:N_EXAMPLES]],
    )


def _label_count_checks(train: Split, min_label_docs: int) -> list[Finding]:
    out: list[Finding] = []
    counts = Counter(l for ls in train.labels for l in set(ls))
    n = len(train)
    if len(counts) == 1:
        (only,) = counts
        out.append(Finding(
            "single_label", "error", 1,
            f"the train split has one label only ({only!r}); there is nothing to classify",
            [only],
        ))
    elif counts and n:
        top, top_n = counts.most_common(1)[0]
        if top_n >= DOMINANT_SHARE * n:
            out.append(Finding(
                "dominant_label", "warning", top_n,
                f"label {top!r} is on {top_n} of {n} training documents ({top_n / n:.1%}): a "
                "constant predicts it, so it inflates micro-averaged scores",
                [top],
            ))
    rare = sorted((c, l) for l, c in counts.items() if c < min_label_docs)
    if rare:
        names = [l for _, l in rare]
        out.append(Finding(
            "rare_labels", "warning", len(rare),
            f"{len(rare)} of {len(counts)} labels have fewer than {min_label_docs} training "
            f"documents ({_names(names)}); their per-label scores are noise",
            names[:N_EXAMPLES],
        ))
    return out


# ---------------------------------------------------------------- splits


def _distribution(split: Split, vocab: dict[str, int]) -> np.ndarray:
    v = np.zeros(len(vocab))
    for ls in split.labels:
        for l in ls:
            v[vocab[l]] += 1
    total = v.sum()
    return v / total if total else v


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Base-2 Jensen-Shannon divergence of two distributions over the same labels, in [0, 1]."""
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return max(0.0, (kl(p) + kl(q)) / 2)


def _split_checks(splits: dict[str, Split], stats: dict) -> list[Finding]:
    out: list[Finding] = []
    train_labels = {l for ls in splits["train"].labels for l in ls}
    for name in ("val", "test"):
        split = splits[name]
        missing = Counter(l for ls in split.labels for l in set(ls) if l not in train_labels)
        if not missing:
            continue
        emptied = sum(1 for ls in split.labels if ls and not set(ls) & train_labels)
        names = [l for l, _ in missing.most_common()]
        out.append(Finding(
            f"unseen_labels_{name}", "warning", len(missing),
            f"{len(missing)} label(s) in {name} never occur in train ({_names(names)}; "
            f"{sum(missing.values())} {name} document-labels): the LabelSpace is built from "
            f"train, so they drop out of y and no metric counts them; {emptied} {name} "
            "document(s) become all-negative",
            names[:N_EXAMPLES],
        ))
    vocab = {l: i for i, l in enumerate(sorted({l for s in splits.values() for ls in s.labels for l in ls}))}
    dists = {n: _distribution(s, vocab) for n, s in splits.items() if len(s)}
    jsd: dict[str, float] = {}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        if a in dists and b in dists and dists[a].sum() and dists[b].sum():
            jsd[f"{a}-{b}"] = round(jensen_shannon(dists[a], dists[b]), 4)
    stats["label_shift_jsd"] = jsd
    shifted = {k: v for k, v in jsd.items() if v >= SHIFT_WARN_JSD}
    if shifted:
        out.append(Finding(
            "label_shift", "warning", len(shifted),
            "label frequencies differ between splits (Jensen-Shannon divergence, base 2: "
            + ", ".join(f"{k} {v:.3f}" for k, v in shifted.items())
            + f"; >= {SHIFT_WARN_JSD} warns): scores on one split do not predict the other",
            list(shifted)[:N_EXAMPLES],
        ))
    return out


# ---------------------------------------------------------------- texts


def _factorize(values: Iterable[str]) -> np.ndarray:
    """Integer codes of equal strings, shape (n,): equal values get equal codes."""
    codes: dict[str, int] = {}
    return np.fromiter((codes.setdefault(v, len(codes)) for v in values), dtype=np.int64)


def _text_checks(splits: dict[str, Split], stats: dict) -> list[Finding]:
    out: list[Finding] = []
    names = [n for n in SPLITS]
    texts = [t for n in names for t in splits[n].texts]
    split_of = np.concatenate([np.full(len(splits[n]), i, dtype=np.int8) for i, n in enumerate(names)])
    labels = [ls for n in names for ls in splits[n].labels]
    n = len(texts)
    if n == 0:
        return out

    t0 = time.perf_counter()
    index = index_texts(texts)
    t1 = time.perf_counter()
    words = index.words
    fffd, control = np.flatnonzero(index.fffd), np.flatnonzero(index.control)
    stats["words_per_document"] = {
        "median": float(np.median(words)), "p99": float(np.percentile(words, 99)),
        "max": int(words.max()),
    }

    def where_list(idx: Sequence[int] | np.ndarray) -> list[str]:
        return [f"{names[split_of[i]]} #{_index_in_split(i, split_of)}: {_short(texts[i])!r}"
                for i in list(idx)[:N_EXAMPLES]]

    empty = np.flatnonzero(words == 0)
    if len(empty):
        out.append(Finding("empty_texts", "warning", len(empty),
                           f"{len(empty)} document(s) have an empty text (nothing to classify)",
                           where_list(empty)))
    short = np.flatnonzero((words > 0) & (words < SHORT_WORDS))
    if len(short):
        out.append(Finding("short_texts", "info", len(short),
                           f"{len(short)} document(s) have fewer than {SHORT_WORDS} words",
                           where_list(short)))
    long = np.flatnonzero(words > LONG_WORDS)
    if len(long):
        out.append(Finding("long_texts", "info", len(long),
                           f"{len(long)} document(s) have more than {LONG_WORDS} words; "
                           "sequence models read only their beginning",
                           where_list(long)))
    if len(fffd):
        out.append(Finding("replacement_chars", "warning", len(fffd),
                           f"{len(fffd)} document(s) contain U+FFFD (bytes decoded with the wrong "
                           "encoding somewhere upstream)", where_list(fffd)))
    if len(control):
        out.append(Finding("control_chars", "warning", len(control),
                           f"{len(control)} document(s) contain control characters",
                           where_list(control)))

    # exact duplicates after normalisation
    _, group = np.unique(index.key, return_inverse=True)
    group = group.astype(np.int64)
    lab = _factorize("\x1f".join(sorted(set(ls))) for ls in labels)
    dev = split_of < 2  # train + val: the documents models learn and tune on
    out += _exact_duplicates(group, lab, split_of, dev, where_list, stats)
    t2 = time.perf_counter()
    out += _near_duplicates(index.sig, words, group, split_of, where_list, stats)
    stats["seconds_by_stage"] = {"text_index": round(t1 - t0, 3),
                                 "exact_duplicates": round(t2 - t1, 3),
                                 "near_duplicates": round(time.perf_counter() - t2, 3)}
    return out


def _index_in_split(i: int, split_of: np.ndarray) -> int:
    return int(i - np.searchsorted(split_of, split_of[i]))


def _exact_duplicates(group, lab, split_of, dev, where_list, stats) -> list[Finding]:
    out: list[Finding] = []
    n_groups = int(group.max()) + 1
    # first occurrence of each text in the dev pool (train first, then val)
    dev_idx = np.flatnonzero(dev)
    first = np.full(n_groups, -1, dtype=np.int64)
    first[group[dev_idx][::-1]] = dev_idx[::-1]
    repeats = dev_idx[first[group[dev_idx]] != dev_idx]
    conflicts = repeats[lab[repeats] != lab[first[group[repeats]]]]
    in_val_of_train = repeats[(split_of[repeats] == 1) & (split_of[first[group[repeats]]] == 0)]
    stats["exact_duplicates"] = {
        "train_val_repeats": int(len(repeats)), "train_val_label_conflicts": int(len(conflicts)),
        "val_in_train": int(len(in_val_of_train)),
    }
    if len(repeats):
        out.append(Finding(
            "duplicate_texts", "warning", int(len(repeats)),
            f"{len(repeats)} train/val document(s) repeat another's text after whitespace/case "
            f"normalisation ({len(conflicts)} with a different label set; {len(in_val_of_train)} "
            "val documents copy a train text): they weight training and flatter validation",
            where_list(conflicts if len(conflicts) else repeats),
        ))
    test_idx = np.flatnonzero(split_of == 2)
    if len(test_idx):
        leaked = test_idx[first[group[test_idx]] >= 0]
        pair_keys = np.unique(group[dev_idx] * (int(lab.max()) + 1) + lab[dev_idx])
        agree = np.isin(group[leaked] * (int(lab.max()) + 1) + lab[leaked], pair_keys)
        other = leaked[~agree]
        stats["exact_duplicates"].update(test_in_train_val=int(len(leaked)),
                                         test_in_train_val_other_labels=int(len(other)))
        if len(leaked):
            out.append(Finding(
                "test_leakage", "warning", int(len(leaked)),
                f"{len(leaked)} test document(s) have a text that also appears in train/val "
                f"({len(other)} of them with other labels there): test scores on them measure "
                "memory, not generalisation",
                where_list(other if len(other) else leaked),
            ))
        _, counts = np.unique(group[test_idx], return_counts=True)
        within = int((counts - 1).sum())
        stats["exact_duplicates"]["test_repeats"] = within
        if within:
            out.append(Finding(
                "duplicate_texts_test", "info", within,
                f"{within} test document(s) repeat another test document's text",
                [],
            ))
    return out


def _near_duplicates(sig, words, group, split_of, where_list, stats) -> list[Finding]:
    """Near (not exact) duplicates among distinct normalised texts, within train/val and
    from test into train/val."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    out: list[Finding] = []
    n_groups = int(group.max()) + 1
    rep = np.full(n_groups, -1, dtype=np.int64)
    rep[group[::-1]] = np.arange(len(group))[::-1]  # first document of each distinct text
    reps = rep[words[rep] > 0]
    pairs = near_duplicate_pairs(sig, reps)
    pairs = group[pairs] if len(pairs) else pairs  # document rows -> distinct-text ids
    if not len(pairs):
        stats["near_duplicates"] = {"pairs": 0}
        return out
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n_groups, n_groups))
    _, comp = connected_components(graph, directed=False)
    # which splits each distinct text occurs in
    has = np.zeros((n_groups, 3), dtype=bool)
    has[group, split_of] = True
    dev_texts = has[:, 0] | has[:, 1]
    comp_dev = np.bincount(comp, weights=dev_texts, minlength=n_groups)
    comp_size = np.bincount(comp, minlength=n_groups)
    in_pairs = comp_size[comp] > 1
    # dev: distinct dev texts in a near-duplicate cluster, beyond the first of each cluster
    dev_extra = int((comp_dev[comp_dev > 1] - 1).sum())
    # test: test documents whose text is not itself in train/val but is near one that is
    test_idx = np.flatnonzero(split_of == 2)
    g = group[test_idx]
    near_leak = test_idx[in_pairs[g] & ~dev_texts[g] & (comp_dev[comp[g]] > 0)]
    stats["near_duplicates"] = {"pairs": int(len(pairs)), "train_val_extra": dev_extra,
                                "test_near_train_val": int(len(near_leak))}
    if dev_extra:
        dev_docs = np.flatnonzero((split_of < 2) & in_pairs[group] & (comp_dev[comp[group]] > 1))
        out.append(Finding(
            "near_duplicates", "warning", dev_extra,
            f"{dev_extra} distinct train/val text(s) are near-duplicates (word-3-shingle "
            f"Jaccard >= {NEAR_JACCARD}, MinHash estimate) of another train/val text",
            where_list(dev_docs),
        ))
    if len(near_leak):
        out.append(Finding(
            "test_near_leakage", "warning", int(len(near_leak)),
            f"{len(near_leak)} test document(s) are near-duplicates (Jaccard >= {NEAR_JACCARD}) "
            "of a train/val text: their scores measure memory",
            where_list(near_leak),
        ))
    return out


# ---------------------------------------------------------------- acting on a report


#: the column each check is about: "labels" for the label checks, "text" for the rest
_LABEL_CHECKS = ("label_sep_unsplit", "label_sep_partial", "label_case_variants", "single_label",
                 "dominant_label", "rare_labels", "unseen_labels_val", "unseen_labels_test", "label_shift")


def raise_for(report: HealthReport, *, strict: bool = False, source: str = "",
              columns: dict[str, str] | None = None) -> None:
    """Raise one InputError for the first error finding (or warning, when ``strict``).

    The message names the data (``source``: the file(s); ``columns``: ``{"text": …,
    "labels": …}``, the finding's column is named when given), the check and an example,
    and counts the others, so the driver can print it as one ``error:`` line.
    """
    bad = report.errors + (report.warnings if strict else [])
    if not bad:
        return
    f = bad[0]
    example = f"; e.g. {f.examples[0]}" if f.examples and f.examples[0] not in f.message else ""
    more = f" (and {len(bad) - 1} more finding(s))" if len(bad) > 1 else ""
    how = "" if f.severity == "error" else " (a warning, refused because of --strict)"
    column = (columns or {}).get("labels" if f.check in _LABEL_CHECKS else "text")
    place = where(source, column=column) if source else (f"column {column!r}" if column else "")
    msg = f"{place + ': ' if place else ''}data health check '{f.check}' failed{how}: {f.message}{example}{more}"
    raise InputError(" ".join(msg.split()))
