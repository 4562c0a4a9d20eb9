"""`dedupe`: remove exact duplicate texts before training (opt-in, `--dedupe`)."""

from __future__ import annotations

from mlbench.data.corpus import Corpus, Split
from mlbench.data.minhash import normalise_text
from mlbench.errors import InputError

__all__ = ["dedupe", "DEDUPE_MODES"]

DEDUPE_MODES = ("none", "train", "cross")


def dedupe(corpus: Corpus, mode: str = "none") -> tuple[Corpus, dict]:
    """Remove exact duplicate texts (after normalisation); return the corpus and counts.

    * ``"none"`` (default): change nothing. Removing documents changes a published
      split, so scores would no longer compare with the literature; it is opt-in.
    * ``"train"``: drop train documents that repeat an earlier train text, and val
      documents that repeat an earlier train/val text (the first copy is kept, even
      when the copies' labels differ).
    * ``"cross"``: also drop train/val documents whose text is in test. The test split
      is never touched, so test scores stay comparable with other runs.

    The counts are ``{"mode", "train", "val", "test"}`` = documents removed per split;
    they are also recorded in the returned corpus's ``notes["dedupe"]``.
    """
    if mode not in DEDUPE_MODES:
        raise InputError(f"dedupe mode {mode!r}: use one of {', '.join(DEDUPE_MODES)}")
    removed = {"mode": mode, "train": 0, "val": 0, "test": 0}
    if mode == "none":
        return corpus, removed
    test_texts = {normalise_text(t) for t in corpus.test.texts} if mode == "cross" else set()
    seen: set[str] = set()
    kept: dict[str, Split] = {}
    for name in ("train", "val"):
        split = getattr(corpus, name)
        keep = []
        for i, text in enumerate(split.texts):
            key = normalise_text(text)
            if key in seen or key in test_texts:
                removed[name] += 1
            else:
                keep.append(i)
            seen.add(key)
        kept[name] = split.subset(keep)
    notes = {**corpus.notes, "dedupe": removed}
    return (
        Corpus(corpus.name, kept["train"], kept["val"], corpus.test, corpus.source, notes),
        removed,
    )
