"""Seeded train/val/test splitting, stratified when the data allow it.

Why: keras-io splits arXiv with ``train_test_split(stratify=label set)``; on small or
long-tailed files stratification is impossible (a label set with one member), so we
fall back to a plain seeded random split and say so in ``Corpus.notes["split"]``
instead of failing. ``method="iterative"`` uses iterative stratification
(Sechidis et al.) on the multi-hot matrix instead of the label-set string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mlbench.data.corpus import Corpus, Split
from mlbench.errors import InputError

__all__ = [
    "SPLIT_METHODS",
    "TEST_FRACTION",
    "MIN_DOCUMENTS",
    "MIN_TRAIN",
    "SplitIndices",
    "label_set_key",
    "split_off",
    "three_way_split",
    "cap_indices",
    "split_corpus",
    "given_split_corpus",
    "VAL_FRACTION",
    "SPLIT_ORIGINS",
]

SPLIT_METHODS = ("stratified", "iterative")
TEST_FRACTION = 0.1  # held out, then halved into val and test (keras-io)
MIN_DOCUMENTS = 20  # below this a 90/5/5 split leaves val or test empty
MIN_TRAIN = 10
VAL_FRACTION = 0.1  # of train, when a given split has train and test but no validation
# corpus.notes["split_origin"]: where the partition came from
SPLIT_ORIGINS = ("given", "given train/test, val made by the suite", "made by the suite")


@dataclass(frozen=True)
class SplitIndices:
    """Row indices of each split and a one-line description of how they were made."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    note: str


def label_set_key(labels: Sequence[str]) -> str:
    """The stratification key: the label set, order-free."""
    return "\x1f".join(sorted(labels))


def split_off(
    indices: np.ndarray,
    labels: Sequence[tuple[str, ...]],
    test_size: float | int,
    seed: int,
    method: str,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Split `indices` (into `labels`) in two; return (kept, split_off, how).

    ``how`` is "stratified", "iterative" or "random (...why...)".
    """
    from sklearn.model_selection import train_test_split

    indices = np.asarray(indices)
    if method not in SPLIT_METHODS:
        raise InputError(f"split method {method!r}: use one of {', '.join(SPLIT_METHODS)}")
    try:
        if method == "iterative":
            kept, off = _iterative(indices, labels, test_size, seed)
            if isinstance(test_size, int):  # iterative sizes drift by a few documents
                kept, off = _exact_size(kept, off, test_size, seed)
        else:
            keys = [label_set_key(labels[i]) for i in indices]
            kept, off = train_test_split(
                indices, test_size=test_size, random_state=seed, stratify=keys
            )
        return np.asarray(kept), np.asarray(off), method
    except ValueError as err:
        reason = str(err).split(".")[0]
    kept, off = train_test_split(indices, test_size=test_size, random_state=seed)
    return np.asarray(kept), np.asarray(off), f"random ({method} impossible: {reason})"


def _exact_size(
    kept: np.ndarray, off: np.ndarray, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Move randomly chosen documents so that ``len(off) == size`` exactly."""
    rng = np.random.default_rng(seed)
    if len(off) > size:
        move = rng.choice(len(off), len(off) - size, replace=False)
        kept, off = np.concatenate([kept, off[move]]), np.delete(off, move)
    elif len(off) < size:
        move = rng.choice(len(kept), size - len(off), replace=False)
        kept, off = np.delete(kept, move), np.concatenate([off, kept[move]])
    return kept, off


def _iterative(indices: np.ndarray, labels, test_size, seed) -> tuple[np.ndarray, np.ndarray]:
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    vocab = sorted({l for i in indices for l in labels[i]})
    col = {name: j for j, name in enumerate(vocab)}
    y = np.zeros((len(indices), len(vocab)), dtype=np.int8)
    for r, i in enumerate(indices):
        for name in labels[i]:
            y[r, col[name]] = 1
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    kept, off = next(splitter.split(np.zeros(len(indices)), y))
    return indices[kept], indices[off]


def three_way_split(
    labels: Sequence[tuple[str, ...]], seed: int, method: str = "stratified", source: str = ""
) -> SplitIndices:
    """keras-io's scheme: hold out 10 %, then halve the held-out part into val / test.

    Raises InputError (naming ``source``) when there are too few documents to split.
    """
    n = len(labels)
    if n < MIN_DOCUMENTS:
        raise InputError(
            f"{source}: only {n} usable documents; need at least {MIN_DOCUMENTS} "
            "to make train/val/test splits"
        )
    train, held, how1 = split_off(np.arange(n), labels, TEST_FRACTION, seed, method)
    val, test, how2 = split_off(held, labels, 0.5, seed, method)
    note = how1 if how1 == how2 else f"train vs held-out: {how1}; val vs test: {how2}"
    return SplitIndices(train, val, test, note)


def cap_indices(n: int, cap: int, seed: int) -> np.ndarray:
    """Deterministic subsample of ``cap`` of ``n`` positions (sorted), for --max-docs."""
    if cap >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=cap, replace=False))


def split_corpus(
    name: str,
    texts: Sequence[str],
    labels: Sequence[tuple[str, ...]],
    *,
    seed: int,
    method: str,
    source: str,
    notes: dict | None = None,
) -> Corpus:
    """Split documents with `three_way_split` and wrap them in a Corpus."""
    plan = three_way_split(labels, seed, method, source)
    full = Split(list(texts), list(labels))
    return Corpus(
        name=name,
        train=full.subset(plan.train),
        val=full.subset(plan.val),
        test=full.subset(plan.test),
        source=source,
        notes={**(notes or {}), "split_origin": "made by the suite",
               "split": plan.note, "seed": seed},
    )


def given_split_corpus(
    name: str,
    texts: Sequence[str],
    labels: Sequence[tuple[str, ...]],
    splits: Sequence[str],
    *,
    seed: int,
    method: str,
    source: str,
    given_by: str,
    val_size: float | int = VAL_FRACTION,
    notes: dict | None = None,
) -> Corpus:
    """Keep a partition the data came with (``splits[i]`` in train / val / test).

    With no val documents, ``val_size`` (a share or a count) of train is split off
    with ``seed`` and ``method``; train and test must not be empty. ``given_by`` says
    where the partition came from (e.g. "column 'split'") for the notes.
    """
    idx = {k: np.array([i for i, s in enumerate(splits) if s == k], dtype=np.int64)
           for k in ("train", "val", "test")}
    for k in ("train", "test"):
        if len(idx[k]) == 0:
            raise InputError(f"{source}: the given split has no {k} documents ({given_by})")
    extra: dict = {"split_origin": "given", "split": f"given by {given_by}"}
    if len(idx["val"]) == 0:
        if isinstance(val_size, bool) or not (
            (isinstance(val_size, int) and 0 < val_size < len(idx["train"]))
            or (isinstance(val_size, float) and 0 < val_size < 1)
        ):
            raise InputError(
                f"val_size {val_size!r}: must be a share in (0, 1) or a count below the "
                f"{len(idx['train'])} train documents"
            )
        idx["train"], idx["val"], how = split_off(idx["train"], labels, val_size, seed, method)
        extra = {"split_origin": "given train/test, val made by the suite",
                 "split": f"train/test given by {given_by}; val = {val_size} of train, {how}",
                 "seed": seed}
    full = Split(list(texts), list(labels))
    return Corpus(
        name=name,
        train=full.subset(idx["train"]),
        val=full.subset(idx["val"]),
        test=full.subset(idx["test"]),
        source=source,
        notes={**(notes or {}), **extra},
    )
