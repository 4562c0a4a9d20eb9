"""The in-place dual coordinate-descent SVM (`baselines/dual_cd.py`): the same optimum as
scikit-learn's liblinear, no copy of the features, the SVM track's ``solver``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.svm import LinearSVC

from baselines import dual_cd
from baselines.dual_cd import InPlaceLinearSVC


def sparse_problem(n: int = 1500, v: int = 4000, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """Unit-norm sparse rows [n, v] and 0/1 targets that a few features explain (with
    noise: some rows end inside the margin, so both bounds of the dual are visited)."""
    rng = np.random.default_rng(seed)
    x = sp.random(n, v, density=0.01, format="csr", random_state=seed, dtype=np.float64)
    x.data = rng.random(x.nnz) + 0.1
    x = sp.csr_matrix(x.multiply(1 / np.sqrt(np.asarray(x.multiply(x).sum(axis=1)) + 1e-12)))
    truth = x[:, :40] @ rng.normal(size=40) + 0.3 * rng.normal(size=n)
    return x, (truth > np.quantile(truth, 0.85)).astype(np.int32)


def primal_objective(est, x, y) -> float:
    """LinearSVC's objective at its fitted weights: 0.5 ||[w, b]||² + Σ C_i loss_i."""
    from sklearn.utils.class_weight import compute_class_weight

    weights = compute_class_weight(est.class_weight, classes=np.array([0, 1]), y=y)
    c = est.C * weights[y]
    margin = np.where(y == 1, 1.0, -1.0) * est.decision_function(x)
    slack = np.maximum(0.0, 1.0 - margin)
    loss = slack**2 if est.loss == "squared_hinge" else slack
    w = np.ravel(est.coef_)
    return 0.5 * (w @ w + float(est.intercept_[0]) ** 2) + float(c @ loss)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
@pytest.mark.parametrize("loss", ["squared_hinge", "hinge"])
def test_in_place_solver_reaches_liblinears_optimum(class_weight, loss):
    """Both solvers stop at the same tolerance and land on the tightly converged optimum
    (liblinear at tol 1e-10): ours no further from its objective than 3× liblinear's gap
    at the default tolerance, margins within 2e-4."""
    x, y = sparse_problem()
    kw = dict(C=0.7, class_weight=class_weight, loss=loss, random_state=0)
    ours = InPlaceLinearSVC(solver="dcd", **kw).fit(x, y)
    theirs = LinearSVC(**kw).fit(x, y)
    tight = LinearSVC(tol=1e-10, max_iter=100_000, **kw).fit(x, y)
    assert ours.solver_ == "dcd" and ours.coef_.shape == (1, x.shape[1]) and ours.intercept_.shape == (1,)
    best = primal_objective(tight, x, y)
    gap = {name: primal_objective(fitted, x, y) - best for name, fitted in (("ours", ours), ("theirs", theirs))}
    # a floor of 1e-7 relative: last-bit differences between CPUs cannot fail it, a wrong
    # update or stopping rule (gaps of 1e-3 and more) does
    assert -1e-7 * best <= gap["ours"] <= 3 * max(gap["theirs"], 0.0) + 1e-7 * best
    for fitted in (ours, theirs):
        np.testing.assert_allclose(fitted.decision_function(x), tight.decision_function(x), atol=2e-4)
    assert ours.n_iter_ < ours.max_iter
    np.testing.assert_array_equal(ours.predict(x), tight.predict(x))


def test_same_seed_same_weights_and_string_classes():
    """Reproducible from the seed; the positive class is ``classes_[1]`` as in LinearSVC."""
    x, y = sparse_problem(seed=1)
    names = np.array(["absent", "present"])[y]
    a = InPlaceLinearSVC(solver="dcd", random_state=3).fit(x, names)
    b = InPlaceLinearSVC(solver="dcd", random_state=3).fit(x, names)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert list(a.classes_) == ["absent", "present"]
    reference = LinearSVC(random_state=3).fit(x, names)
    assert (a.predict(x) == reference.predict(x)).mean() > 0.99


def test_the_kernel_reads_the_callers_memory_mapped_arrays(tmp_path, monkeypatch):
    """No copy: the kernel is handed views of the file-backed CSR's own (read-only) arrays."""
    from baselines.linear_track import file_backed_csr

    x, y = sparse_problem(seed=2)
    mapped = file_backed_csr(x, str(tmp_path))
    seen = []
    real = dual_cd._kernel()

    def spy(data, indices, indptr, *rest):
        seen.append((data, indices, indptr))
        return real(data, indices, indptr, *rest)

    monkeypatch.setattr(dual_cd, "_kernel", lambda: spy)
    fitted = InPlaceLinearSVC(solver="dcd", random_state=0).fit(mapped, y)
    (data, indices, indptr), = seen
    for passed, own in ((data, mapped.data), (indices, mapped.indices), (indptr, mapped.indptr)):
        assert np.shares_memory(passed, own) and not passed.flags.writeable
    np.testing.assert_array_equal(fitted.coef_, InPlaceLinearSVC(solver="dcd", random_state=0).fit(x, y).coef_)


def test_liblinear_where_the_in_place_solver_does_not_apply(monkeypatch):
    """Dense features, sample weights, several classes, an L1 penalty and ``solver=
    "liblinear"`` fit with scikit-learn's liblinear; "auto" only above `AUTO_DCD_BYTES`."""
    x, y = sparse_problem(n=400, v=600, seed=3)
    assert InPlaceLinearSVC(solver="dcd").fit(x.toarray(), y).solver_ == "liblinear"
    assert InPlaceLinearSVC(solver="dcd").fit(x, y, sample_weight=np.ones(len(y))).solver_ == "liblinear"
    assert InPlaceLinearSVC(solver="dcd").fit(x, np.arange(len(y)) % 3).solver_ == "liblinear"
    assert InPlaceLinearSVC(solver="dcd", penalty="l1", dual=False).fit(x, y).solver_ == "liblinear"
    assert InPlaceLinearSVC(solver="liblinear").fit(x, y).solver_ == "liblinear"
    assert InPlaceLinearSVC().fit(x, y).solver_ == "liblinear"
    monkeypatch.setattr(dual_cd, "AUTO_DCD_BYTES", x.data.nbytes + x.indices.nbytes - 1)
    assert InPlaceLinearSVC().fit(x, y).solver_ == "dcd"
    with pytest.raises(ValueError, match="solver"):
        InPlaceLinearSVC(solver="newton").fit(x, y)


def test_svm_track_solver_option_in_parallel_on_file_backed_features(monkeypatch):
    """The SVM track with ``solver="dcd"`` in 2 joblib workers on a file-backed CSR (the
    large-corpus path, forced small) fits every label in place and predicts what the
    liblinear track predicts: margins within 1e-3, the same micro-F1."""
    import baselines.linear_track as linear_track
    from baselines.svm import LinearSVMTrack
    from mlbench.data.synthetic import synthetic_corpus
    from mlbench.labels import LabelSpace
    from mlbench.tracks import TrainSettings

    monkeypatch.setattr(linear_track, "FILE_BACKED_X_BYTES", 0)
    corpus = synthetic_corpus(1200, seed=0, n_labels=8, vocab_size=3000, median_words=40)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    margins, solvers = {}, {}
    for solver in ("dcd", "liblinear"):
        track = LinearSVMTrack(TrainSettings(n_jobs=2, seed=0), solver=solver)
        track.fit(corpus.train, corpus.val, labels)
        margins[solver] = track.decision_function(corpus.test.texts)
        solvers[solver] = {e.solver_ for e in track.model.estimators_}
        assert track.describe()["solver"] == track.describe()["solver_used"] == solver
    assert solvers == {"dcd": {"dcd"}, "liblinear": {"liblinear"}}
    np.testing.assert_allclose(margins["dcd"], margins["liblinear"], atol=1e-3)
    np.testing.assert_array_equal(margins["dcd"] >= 0, margins["liblinear"] >= 0)


def test_svm_track_solver_is_validated_and_a_run_flag():
    from baselines.svm import BalancedLinearSVMTrack, LinearSVMTrack
    from mlbench.tracks import TrainSettings, track_flags

    assert LinearSVMTrack().solver == "auto"
    assert LinearSVMTrack(TrainSettings(options={"solver": "dcd"})).make_estimator().solver == "dcd"
    assert BalancedLinearSVMTrack(solver="liblinear").class_weight == "balanced"
    with pytest.raises(ValueError, match="solver must be 'auto' or 'liblinear' or 'dcd', got 'newton'"):
        LinearSVMTrack(solver="newton")
    assert {track for track, key, _ in track_flags()["--svm-solver"]} >= {"svm", "svm_balanced"}
