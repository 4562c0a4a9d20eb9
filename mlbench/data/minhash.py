"""Near-duplicate engine: MinHash signatures of word-3-shingles and LSH banding, vectorised.

Why its own room: the health check (`mlbench.data.health`) asks it two questions (which
texts are equal after normalisation, which are near-equal) and needs none of its bit
tricks.  Texts are compared after `normalise_text` (case-folded, ASCII whitespace runs
collapsed).  `index_texts` makes one pass over the UTF-8 bytes in chunks: words, a 64-bit
key of the normalised word sequence and 64 MinHash values per document, so time and memory
are linear in the number of documents; `near_duplicate_pairs` finds pairs with LSH (8 bands
x 8 rows) and keeps those whose MinHash estimate of the Jaccard similarity is >= 0.9.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["TextIndex", "index_texts", "near_duplicate_pairs", "normalise_text",
           "NEAR_JACCARD", "SHINGLE_WORDS", "N_BANDS", "BAND_ROWS"]

NEAR_JACCARD = 0.9
SHINGLE_WORDS = 3
N_BANDS, BAND_ROWS = 8, 8
_CHUNK = 20_000  # documents per vectorised chunk
_CHUNK_CHARS = 16_000_000  # ... and at most about this many characters


def normalise_text(text: str) -> str:
    """The form duplicates are compared in: case-folded, ASCII whitespace runs collapsed."""
    raw = text.casefold().encode("utf-8", "surrogatepass")
    return b" ".join(raw.split()).decode("utf-8", "surrogatepass")



_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the bits of a uint64 array (vectorised)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32]] = True  # what bytes.split() splits on
_CTRL = np.zeros(256, dtype=bool)
_CTRL[[*range(0, 9), 11, 12, *range(14, 32), 127]] = True
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)


def _gather8(words64: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The 8 bytes starting at each byte offset ``at``, as little-endian uint64.

    ``words64`` is the zero-padded buffer viewed as aligned uint64; each value is
    assembled from the two aligned words it straddles.
    """
    q = at >> 3
    r = ((at & 7) * 8).astype(np.uint64)
    lo = words64[q] >> r
    hi = (words64[q + 1] << (np.uint64(63) - r)) << np.uint64(1)  # r == 0 shifts it all out
    return lo | hi


def _word_hashes(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """One uint64 per word from its length and its first, middle and last 8 bytes.

    Words up to 24 bytes are hashed from all their bytes; longer ones (rare: URLs,
    long numbers) from these 24, which is ample for duplicate detection.
    """
    pad = np.zeros(((len(buf) + 7) // 8 + 2) * 8, dtype=np.uint8)
    pad[: len(buf)] = buf
    words64 = pad.view("<u8")
    length = ends - starts
    h = _gather8(words64, starts) & _LOW_BYTES[np.minimum(length, 8)]
    h ^= length.astype(np.uint64) << np.uint64(59)
    long = np.flatnonzero(length > 8)
    if len(long):
        tail = _gather8(words64, ends[long] - 8)
        h[long] = _mix(h[long]) ^ tail
        longer = long[length[long] > 16]
        if len(longer):
            mid = _gather8(words64, starts[longer] + (length[longer] - 8) // 2)
            h[longer] = _mix(h[longer]) ^ mid
    return _mix(h)


@dataclass
class TextIndex:
    """What the text checks need, from one vectorised pass over the UTF-8 bytes.

    Shapes: ``words``, ``key`` (64-bit hash of the normalised word sequence),
    ``fffd``, ``control``: (n_docs,); ``sig``: (n_docs, 64) uint32 MinHash values of
    the 3-word shingles (all-max rows for empty texts).
    """

    words: np.ndarray
    key: np.ndarray
    fffd: np.ndarray
    control: np.ndarray
    sig: np.ndarray


def _index_chunk(texts: Sequence[str], a: np.ndarray, b: np.ndarray, first_doc: int) -> tuple:
    """Words, keys, character flags and MinHash rows of one chunk of documents."""
    n = len(texts)
    enc = [t.casefold().encode("utf-8", "surrogatepass") for t in texts]
    blen = np.fromiter(map(len, enc), dtype=np.int64, count=n)
    buf = np.frombuffer(b" ".join(enc) + b" ", dtype=np.uint8)
    doc_start = np.zeros(n, dtype=np.int64)
    doc_start[1:] = np.cumsum(blen + 1)[:-1]

    def per_doc(positions: np.ndarray) -> np.ndarray:
        flags = np.zeros(n, dtype=bool)
        flags[np.searchsorted(doc_start, positions, side="right") - 1] = True
        return flags

    ctrl = _CTRL[buf]
    c1 = np.flatnonzero((buf[:-1] == 0xC2) & (buf[1:] >= 0x80) & (buf[1:] <= 0x9F))
    control = per_doc(np.concatenate([np.flatnonzero(ctrl), c1]))
    fffd = per_doc(np.flatnonzero((buf[:-2] == 0xEF) & (buf[1:-1] == 0xBF) & (buf[2:] == 0xBD)))

    ws = _WS[buf]
    edge = np.empty(len(buf) + 1, dtype=bool)
    edge[0] = edge[-1] = True
    edge[1:-1] = ws[1:] != ws[:-1]
    bounds = np.flatnonzero(edge[:-1] & ~ws)  # token starts
    ends = np.flatnonzero(edge[1:] & ~ws) + 1
    th = _word_hashes(buf, bounds, ends)
    doc = np.searchsorted(doc_start, bounds, side="right") - 1
    words = np.bincount(doc, minlength=n).astype(np.int64)
    tok_off = np.zeros(n + 1, dtype=np.int64)
    tok_off[1:] = np.cumsum(words)
    pos = np.arange(len(th)) - tok_off[doc]
    nonempty = np.flatnonzero(words > 0)

    key = _mix(np.arange(first_doc, first_doc + n, dtype=np.uint64) + np.uint64(1 << 63))
    if len(nonempty):  # empty texts keep a unique key: they are reported as empty, not as duplicates
        contrib = _mix(th ^ _mix(pos.astype(np.uint64) + np.uint64(1)))
        key[nonempty] = _mix(np.add.reduceat(contrib, tok_off[:-1][nonempty]) + words[nonempty].astype(np.uint64))

    sig = np.full((n, len(a)), np.iinfo(np.uint32).max, dtype=np.uint32)
    if len(nonempty):
        sh = th.copy()
        for j in range(1, SHINGLE_WORDS):
            nxt = np.zeros_like(th)
            nxt[:-j] = th[j:]
            nxt[pos + j >= words[doc]] = 0  # past the document's end
            sh = _mix(sh * np.uint64(0x9E3779B97F4A7C15) + nxt)
        keep = (pos == 0) | (pos + SHINGLE_WORDS <= words[doc])
        sh = sh[keep]
        counts = np.bincount(doc[keep], minlength=n)
        starts = (np.cumsum(counts) - counts)[nonempty]
        block = np.empty((len(nonempty), len(a)), dtype=np.uint64)
        tmp = np.empty_like(sh)
        for p in range(len(a)):  # min of a 64-bit affine hash; its high half is kept
            np.multiply(sh, a[p], out=tmp)
            tmp += b[p]
            block[:, p] = np.minimum.reduceat(tmp, starts)
        sig[nonempty] = (block >> np.uint64(32)).astype(np.uint32)
    return words, key, fffd, control, sig


def _chunk_bounds(texts: Sequence[str]) -> list[tuple[int, int]]:
    """(lo, hi) ranges of at most 20k documents and about 16M characters each."""
    sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    bounds, lo, n = [], 0, len(texts)
    ends = np.cumsum(sizes)
    while lo < n:
        base = ends[lo - 1] if lo else 0
        by_chars = int(np.searchsorted(ends, base + _CHUNK_CHARS, side="right"))
        hi = min(lo + _CHUNK, n, max(by_chars, lo + 1))
        bounds.append((lo, hi))
        lo = hi
    return bounds


def index_texts(texts: Sequence[str], *, n_perm: int = N_BANDS * BAND_ROWS, seed: int = 0) -> TextIndex:
    """Index ``texts`` in chunks of 20k documents on up to two threads (NumPy releases the GIL).

    Words are runs of non-whitespace after ``casefold`` (ASCII whitespace, as in
    `normalise_text`); a document shorter than 3 words gives one shingle of the words
    it has; an empty one gives none.
    """
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, n_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, n_perm, dtype=np.uint64)
    chunks = [(texts[lo:hi], lo) for lo, hi in _chunk_bounds(texts)]
    workers = max(1, min(2, len(chunks), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda c: _index_chunk(c[0], a, b, c[1]), chunks))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return TextIndex(empty, empty.astype(np.uint64), empty.astype(bool), empty.astype(bool),
                         np.zeros((0, n_perm), dtype=np.uint32))
    return TextIndex(*(np.concatenate(col) for col in zip(*parts)))


def near_duplicate_pairs(
    sig: np.ndarray, candidates: np.ndarray | None = None, threshold: float = NEAR_JACCARD
) -> np.ndarray:
    """Pairs (i, j) of rows of ``sig`` (shape (n, 64)) whose estimated Jaccard is >= threshold.

    Shape (n_pairs, 2), i < j. ``candidates``: the rows to consider (default all).
    LSH: rows sharing all 8 MinHash values of any band are candidates; each band bucket
    is paired with its first member only (a star), so a bucket of m copies costs m - 1
    pairs, not m^2 / 2.
    """
    rows = np.arange(len(sig)) if candidates is None else np.asarray(candidates)
    if len(rows) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    mult = _mix(np.arange(1, BAND_ROWS + 1, dtype=np.uint64))
    pairs = []
    for band in range(sig.shape[1] // BAND_ROWS):
        cols = sig[rows, band * BAND_ROWS : (band + 1) * BAND_ROWS].astype(np.uint64)
        key = _mix((cols * mult).sum(axis=1, dtype=np.uint64) + np.uint64(band))
        order = np.argsort(key, kind="stable")
        sk = key[order]
        run_start = np.concatenate([[True], sk[1:] != sk[:-1]])
        head = order[np.maximum.accumulate(np.where(run_start, np.arange(len(sk)), 0))]
        member = ~run_start
        pairs.append(np.stack([rows[head[member]], rows[order[member]]], axis=1))
    cand = np.unique(np.sort(np.concatenate(pairs), axis=1), axis=0)
    if not len(cand):
        return cand.astype(np.int64)
    est = np.empty(len(cand))
    for lo in range(0, len(cand), 100_000):
        c = cand[lo : lo + 100_000]
        est[lo : lo + 100_000] = (sig[c[:, 0]] == sig[c[:, 1]]).mean(axis=1)
    return cand[est >= threshold].astype(np.int64)
