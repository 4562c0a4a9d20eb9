"""Seeded synthetic multi-label corpora for scale benchmarks (and tests).

Why synthetic: to see how the TF-IDF MLP's time and memory grow with the number of
documents we need corpora of 50k and 200k documents with the statistics that
matter for speed, and no such dataset ships with the repository.  What matters:

* text length: log-normal, median ~120 words (Reuters: mean 131; arXiv
  abstracts: ~150–250), clipped to [12, 600];
* vocabulary: word frequencies follow Zipf's law (exponent ~1.1) over
  `vocab_size` pronounceable pseudo-words, so the uni+bigram vocabulary, the
  non-zeros per document and the features shared within a batch look like real
  text;
* labels: `n_labels` labels whose frequencies are themselves Zipf-distributed
  (a long tail: the head label on ~20% of documents, tail labels on a handful),
  1–4 labels per document; each label owns a set of topic words, and ~15% of a
  document's words come from its labels' topic words, so the labels are learnable.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments
give the same corpus (texts, labels and split) on every machine.

Lives in the package (not in benchmarks/) because tests use it too, and tests never
import benchmarks/.

    python -m mlbench.data.synthetic --docs 1000 --show 3
"""

from __future__ import annotations

import argparse

import numpy as np

from mlbench.data.corpus import Corpus, Split

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]  # 70 syllables


def pseudo_word(rank: int) -> str:
    """A distinct lower-case ASCII word for each rank (bijective base-70 syllables).

    Letters only, so Keras's default standardization leaves it unchanged.
    """
    syllables = []
    n = rank
    while True:
        n, digit = divmod(n, len(_SYLLABLES))
        syllables.append(_SYLLABLES[digit])
        if n == 0:
            break
        n -= 1
    return "".join(reversed(syllables))


def zipf_probabilities(n: int, exponent: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return p / p.sum()


_CHUNK = 1 << 22  # draws per chunk (32 MB of float64)


def _chunks(total: int) -> list[int]:
    """Sizes of consecutive chunks of `total` draws."""
    return [min(_CHUNK, total - i) for i in range(0, total, _CHUNK)]


def _choice_in_chunks(rng: np.random.Generator, p: np.ndarray, total: int) -> np.ndarray:
    """``rng.choice(len(p), size=total, p=p)`` as int32, drawn in chunks (same numbers:
    `choice` is ``cdf.searchsorted(rng.random(total), side="right")``, see `_draw_label_sets`)."""
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    cdf /= cdf[-1]
    parts = [cdf.searchsorted(rng.random(n), side="right").astype(np.int32) for n in _chunks(total)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def _draw_label_sets(rng: np.random.Generator, p: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """``[np.unique(rng.choice(len(p), size=k, p=p)) for k in sizes]`` in one draw.

    Why: that loop recomputes the cumulative distribution of `p` for every document
    (n_docs × n_labels work: minutes at 200k documents × 5,000 labels).  `choice` with `p`
    is ``cdf.searchsorted(rng.random(k), side="right")`` and consecutive ``random``
    calls continue one stream, so one call over ``sizes.sum()`` draws gives the same
    label sets, number for number.
    """
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    cdf /= cdf[-1]
    picks = cdf.searchsorted(rng.random(int(np.sum(sizes))), side="right")
    return [np.unique(part) for part in np.split(picks, np.cumsum(sizes)[:-1])]


def synthetic_corpus(
    n_docs: int,
    *,
    seed: int = 0,
    vocab_size: int = 30_000,
    n_labels: int = 150,
    zipf_exponent: float = 1.1,
    label_exponent: float = 1.2,
    median_words: int = 120,
    topic_share: float = 0.15,
    topic_words: int = 40,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Corpus:
    """A `Corpus` of `n_docs` documents split train/val/test (80/10/10 by default)."""
    if n_docs < 10:
        raise ValueError(f"n_docs must be >= 10, got {n_docs}")
    if not 0.0 <= topic_share < 1.0:
        raise ValueError(f"topic_share must be in [0, 1), got {topic_share}")
    rng = np.random.default_rng(seed)
    vocab = [pseudo_word(i) for i in range(vocab_size)]

    # labels: long-tailed frequencies, 1-4 per document (mostly 1)
    label_p = zipf_probabilities(n_labels, label_exponent)
    n_per_doc = np.minimum(rng.geometric(0.6, size=n_docs), 4)
    label_ids = _draw_label_sets(rng, label_p, n_per_doc)
    # each label's topic words: mid-frequency ranks (not stop words, not hapaxes)
    lo, hi = min(200, vocab_size // 4), max(min(vocab_size, 20_000), vocab_size // 2)
    topics = rng.integers(lo, hi, size=(n_labels, topic_words))

    lengths = np.clip(rng.lognormal(np.log(median_words), 0.6, size=n_docs), 12, 600).astype(np.int64)
    total = int(lengths.sum())
    # The draws of ``rng.choice(vocab_size, total, p)``, ``rng.random(total) < topic_share``,
    # ``rng.integers(0, topic_words, total)`` and ``rng.random(total)``, number for number,
    # kept compact: int32 word ids, and the topic / label picks only where a topic word
    # goes (the float64 / int64 arrays in full are ~4 GB at 1M documents).
    background = _choice_in_chunks(rng, zipf_probabilities(vocab_size, zipf_exponent), total)
    from_topic = np.concatenate([rng.random(n) < topic_share for n in _chunks(total)] or [np.zeros(0, bool)])
    topic_pick = rng.integers(0, topic_words, size=total)[from_topic]  # one call: its draws are buffered
    label_pick = np.concatenate([rng.random(n)[from_topic[i:i + n]]
                                 for i, n in zip(range(0, total, _CHUNK), _chunks(total))] or [np.zeros(0)])

    texts: list[str] = []
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    topic_starts = np.concatenate([[0], np.cumsum(np.add.reduceat(from_topic, starts))]) if total else [0]
    for doc, (start, length) in enumerate(zip(starts, lengths)):
        ids = background[start : start + length].copy()
        mask = from_topic[start : start + length]
        if mask.any():
            t0, t1 = topic_starts[doc], topic_starts[doc + 1]
            labels_of_doc = label_ids[doc]
            which = labels_of_doc[(label_pick[t0:t1] * len(labels_of_doc)).astype(int)]
            ids[mask] = topics[which, topic_pick[t0:t1]]
        texts.append(" ".join([vocab[i] for i in ids.tolist()]))
    label_sets = [tuple(f"label_{i:03d}" for i in ids) for ids in label_ids]

    order = rng.permutation(n_docs)
    n_val, n_test = int(round(n_docs * val_fraction)), int(round(n_docs * test_fraction))
    n_train = n_docs - n_val - n_test
    parts = np.split(order, [n_train, n_train + n_val])
    train, val, test = (Split([texts[i] for i in idx], [label_sets[i] for i in idx]) for idx in parts)
    return Corpus(
        f"synthetic-{n_docs}", train, val, test, source="mlbench.data.synthetic",
        notes={"seed": seed, "vocab_size": vocab_size, "n_labels": n_labels,
               "zipf_exponent": zipf_exponent, "median_words": median_words},
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show", type=int, default=2, help="print this many training documents")
    args = p.parse_args(argv)
    corpus = synthetic_corpus(args.docs, seed=args.seed)
    stats = corpus.stats()
    for split in ("train", "val", "test"):
        print(split, stats[split])
    for text, labels in list(zip(corpus.train.texts, corpus.train.labels))[: args.show]:
        print(labels, text[:200], "...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
