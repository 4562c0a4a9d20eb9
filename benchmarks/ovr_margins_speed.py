"""One-vs-rest margins: `ovr_margins` (each CSR label's weights as a dense vector) against scikit-learn's
`OneVsRestClassifier.decision_function` (one product per label), same fitted model.

Fits the SVM's per-label LinearSVCs on a synthetic corpus with the large-model weight
forms forced (`compact_coef`: CSR for sparse labels, float32 for dense ones, as above
2 GiB of weights), then times both on the test rows (best of `--repeats`) and checks
the margins are equal number for number.

    python benchmarks/ovr_margins_speed.py --docs 20000 --labels 150

``--features V`` times a synthetic problem of the 1M-document corpus's shape instead
(random rows of 170 non-zeros over V features, CSR weights of 13 % density): the
product one label at a time against blocks of `BLOCK_LABELS` (what `ovr_margins` does
past `BLOCK_ABOVE_BYTES`), and the peer's form (dense float64 weights, one label at a time).

    python benchmarks/ovr_margins_speed.py --features 5670000 --docs 200000 --labels 32
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def best_of(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), np.asarray(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--labels", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sparse-density", type=float, default=None,
                        help="store labels with at most this share of non-zero weights as CSR "
                             "(default: the track's own cut)")
    parser.add_argument("--features", type=int, default=None,
                        help="time a synthetic problem with this many features (see above)")
    args = parser.parse_args(argv)
    if args.features:
        return synthetic(args)

    import scipy.sparse as sp

    import baselines.linear_track as linear_track
    from baselines.svm import LinearSVMTrack, _QuietLinearSVC
    from mlbench.data.synthetic import synthetic_corpus
    from mlbench.labels import LabelSpace

    corpus = synthetic_corpus(args.docs, n_labels=args.labels, seed=0)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    vectorizer = LinearSVMTrack(min_df=2).build_vectorizer()
    x = vectorizer.fit_transform(corpus.train.texts)
    x_test = vectorizer.transform(corpus.test.texts)
    y = labels.encode_sparse(corpus.train.labels).astype(np.int32)
    y = y[:, np.flatnonzero(np.asarray(y.sum(axis=0)).ravel() > 0)]
    linear_track.COEF_FLOAT32_BYTES = 0  # the large-model forms, at a size that fits here
    if args.sparse_density is not None:
        linear_track.SPARSE_COEF_MAX_DENSITY = args.sparse_density
    model = linear_track.fit_one_vs_rest(_QuietLinearSVC(random_state=0), x, y, n_jobs=1)  # in this process: the patched cuts apply
    n_sparse = sum(sp.issparse(e.coef_) for e in model.estimators_)
    ovr_s, ref = best_of(lambda: model.decision_function(x_test), args.repeats)
    block_s, ours = best_of(lambda: linear_track.ovr_margins(model.estimators_, x_test), args.repeats)
    # the peer's form: every label's weights dense float64, as OvR(LinearSVC) keeps them
    dense = [copy.copy(e) for e in model.estimators_]
    for e in dense:
        e.coef_ = e.coef_.toarray() if sp.issparse(e.coef_) else np.asarray(e.coef_, np.float64)
    dense_s, dense_margins = best_of(lambda: linear_track.ovr_margins(dense, x_test), args.repeats)
    print(f"{x_test.shape[0]} test documents × {len(model.estimators_)} labels "
          f"({n_sparse} CSR, {len(model.estimators_) - n_sparse} float32), {x.shape[1]} features")
    print(f"{'margins':<44} {'seconds':>8} {'docs/s':>9}")
    print(f"{'OneVsRestClassifier.decision_function':<44} {ovr_s:>8.3f} {x_test.shape[0] / ovr_s:>9.0f}")
    print(f"{'ovr_margins':<44} {block_s:>8.3f} {x_test.shape[0] / block_s:>9.0f}")
    print(f"{'reference: all weights dense float64 (peer)':<44} {dense_s:>8.3f} {x_test.shape[0] / dense_s:>9.0f}"
          f"  (max |margin difference| {np.abs(dense_margins - ours).max():.1e}: float32 labels)")
    print(f"speed-up {ovr_s / block_s:.1f}×; margins equal number for number: {np.array_equal(ours, ref)}")
    return 0


def synthetic(args: argparse.Namespace) -> int:
    """`--features`: per-label products against blocks of labels, on random data."""
    import scipy.sparse as sp

    import baselines.linear_track as linear_track

    rng = np.random.default_rng(0)
    n, v, per_row = args.docs, args.features, 170
    indices = np.sort(rng.integers(0, v, size=(n, per_row), dtype=np.int32), axis=1).ravel()
    x = sp.csr_matrix((rng.random(n * per_row), indices, np.arange(0, n * per_row + 1, per_row)), shape=(n, v))
    estimators = []
    for j in range(args.labels):
        e = argparse.Namespace(coef_=sp.random(1, v, density=0.13, format="csr", random_state=j),
                               intercept_=np.array([0.1 * j]))
        estimators.append(e)
    dense = [argparse.Namespace(coef_=e.coef_.toarray(), intercept_=e.intercept_) for e in estimators]
    blocks = linear_track.BLOCK_ABOVE_BYTES
    linear_track.BLOCK_ABOVE_BYTES = float("inf")
    single_s, single = best_of(lambda: linear_track.ovr_margins(estimators, x), args.repeats)
    peer_s, peer = best_of(lambda: linear_track.ovr_margins(dense, x), args.repeats)
    linear_track.BLOCK_ABOVE_BYTES = 0
    block_s, block = best_of(lambda: linear_track.ovr_margins(estimators, x), args.repeats)
    linear_track.BLOCK_ABOVE_BYTES = blocks
    print(f"{n} rows × {v} features ({x.nnz} non-zeros), {args.labels} labels, "
          f"blocks of {linear_track.BLOCK_LABELS}; best of {args.repeats}")
    for name, seconds in (("one label at a time, CSR weights", single_s),
                          ("one label at a time, dense float64 (peer)", peer_s),
                          (f"blocks of {linear_track.BLOCK_LABELS} labels (ovr_margins)", block_s)):
        print(f"{name:<44} {seconds:>8.3f}")
    print(f"blocks vs one at a time: {single_s / block_s:.2f}×, vs the peer's form {peer_s / block_s:.2f}×; "
          f"margins equal number for number: {np.array_equal(single, block) and np.array_equal(peer, block)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
