"""Comparisons that hold on any x86 CPU (AVX2 or AVX-512, any thread count).

Float32 results of the same graph differ in their last bits between batch sizes,
processes and SIMD widths (a matmul's blocking changes the summation order). A score is
in [0, 1] with float32 epsilon 6e-8; a sum of a few hundred such products reordered
moves it by at most a few ulps, measured up to 9e-8 on an AVX2-only EPYC. Hence:

* ``SCORE_ATOL`` (1e-6): scores of one model compared across batches or processes;
* a decision ``score >= threshold`` is compared only where the score is farther from its
  threshold than that tolerance; the rest may flip legitimately and are counted.
"""

from __future__ import annotations

import numpy as np

#: ~16 float32 ulps at 1.0: 10x the largest cross-batch difference measured, far below
#: any difference a real bug (wrong weights, wrong calibration) makes
SCORE_ATOL = 1e-6


def assert_decisions_match(scores: np.ndarray, thresholds: np.ndarray, decided: np.ndarray, *,
                           atol: float = SCORE_ATOL, max_ambiguous: float = 0.05) -> int:
    """Assert ``decided == (scores >= thresholds)`` wherever ``|scores - thresholds| > atol``.

    scores: float [n, L]; thresholds: float [L] or scalar; decided: {0, 1} [n, L]. The
    entries within ``atol`` of their threshold are not compared (another batch size may
    put them on the other side); they must stay a small share (``max_ambiguous``) so the
    check keeps its power. Returns how many were left out.
    """
    scores = np.asarray(scores, dtype=np.float64)
    cut = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), scores.shape)
    decided = np.asarray(decided).astype(bool)
    assert decided.shape == scores.shape, (decided.shape, scores.shape)
    clear = np.abs(scores - cut) > atol
    want = scores >= cut
    wrong = np.flatnonzero(clear & (decided != want))
    assert wrong.size == 0, f"{wrong.size} decisions disagree with scores >= threshold away from it"
    ambiguous = int((~clear).sum())
    assert ambiguous <= max_ambiguous * scores.size, f"{ambiguous} of {scores.size} scores sit on a threshold"
    return ambiguous
