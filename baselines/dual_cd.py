"""A linear SVM fitted by dual coordinate descent on the caller's CSR arrays, in place.

Why: scikit-learn's liblinear binding copies the features into liblinear's own
16-byte ``feature_node`` per non-zero for every fit.  Fitting one label per joblib
worker on 170M non-zeros, each worker then holds a 2.7 GB copy of features that are
already shared through a memory-mapped file (`linear_track.file_backed_csr`).  This
solver runs liblinear's own algorithm for ``-s 1``/``-s 3`` (Hsieh et al. 2008, "A Dual
Coordinate Descent Method for Large-scale Linear SVM", with liblinear's shrinking and
stopping rule) on ``X.data`` / ``X.indices`` / ``X.indptr`` as they are, so a worker
holds O(n + V) floats of its own.

It minimises the same objective as `LinearSVC` (L2 penalty, hinge or squared hinge, the
intercept as a regularised feature of value ``intercept_scaling``, C per class), which
has one minimiser for the squared hinge: the two solvers stop at the same tolerance on
the dual's projected gradient from different visiting orders (liblinear's own random
generator is not reachable), so their weights agree to about the tolerance, not bit for
bit (`tests/test_dual_cd.py` compares both with a tightly converged fit).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import StrOptions

#: ``solver="auto"`` uses dual coordinate descent in place above this many bytes of
#: features (data + indices): where liblinear's per-fit copy starts to cost gigabytes
#: across workers.  Below it, scikit-learn's liblinear: results a ten-line script repeats.
AUTO_DCD_BYTES = 256 * 1024**2


def _kernel():
    """The numba-compiled solver (compiled on first use, cached beside this module)."""
    global _KERNEL
    if _KERNEL is None:
        from numba import njit

        _KERNEL = njit(cache=True, nogil=True)(_dcd_l2r_svc)
    return _KERNEL


_KERNEL = None


def _dcd_l2r_svc(data, indices, indptr, y_sign, c_pos, c_neg, bias, squared_hinge, tol, max_iter, seed,
                 n_features):
    """liblinear's ``solve_l2r_l1l2_svc`` on CSR rows [n, V] with ±1 targets `y_sign` [n]:
    returns (w [V + 1] with the bias weight last, iterations run).

    Plain Python here (numba compiles it, `_kernel`): the loop is liblinear's, line for
    line — a random order each pass, rows whose gradient says they stay at a bound are
    shrunk out, and the pass that brings max - min of the projected gradient under `tol`
    on all rows ends it.
    """
    inf = np.inf
    n = indptr.shape[0] - 1
    w = np.zeros(n_features + 1)
    alpha = np.zeros(n)
    qd = np.empty(n)
    diag = np.empty(n)
    upper = np.empty(n)
    for i in range(n):
        c = c_pos if y_sign[i] > 0 else c_neg
        if squared_hinge:
            diag[i] = 0.5 / c
            upper[i] = inf
        else:
            diag[i] = 0.0
            upper[i] = c
        s = bias * bias
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * data[k]
        qd[i] = diag[i] + s
    index = np.arange(n)
    np.random.seed(seed)
    active = n
    pg_max_old, pg_min_old = inf, -inf
    it = 0
    while it < max_iter:
        pg_max_new, pg_min_new = -inf, inf
        for s in range(active):
            j = s + np.random.randint(0, active - s)
            index[s], index[j] = index[j], index[s]
        s = 0
        while s < active:
            i = index[s]
            yi = y_sign[i]
            g = w[n_features] * bias
            for k in range(indptr[i], indptr[i + 1]):
                g += w[indices[k]] * data[k]
            g = g * yi - 1.0 + alpha[i] * diag[i]
            pg = 0.0
            if alpha[i] == 0.0:
                if g > pg_max_old:
                    active -= 1
                    index[s], index[active] = index[active], index[s]
                    continue
                elif g < 0.0:
                    pg = g
            elif alpha[i] == upper[i]:
                if g < pg_min_old:
                    active -= 1
                    index[s], index[active] = index[active], index[s]
                    continue
                elif g > 0.0:
                    pg = g
            else:
                pg = g
            pg_max_new = max(pg_max_new, pg)
            pg_min_new = min(pg_min_new, pg)
            if abs(pg) > 1.0e-12 and qd[i] > 0.0:
                old = alpha[i]
                alpha[i] = min(max(old - g / qd[i], 0.0), upper[i])
                d = (alpha[i] - old) * yi
                for k in range(indptr[i], indptr[i + 1]):
                    w[indices[k]] += d * data[k]
                w[n_features] += d * bias
            s += 1
        it += 1
        if pg_max_new - pg_min_new <= tol:
            if active == n:
                break
            active = n  # converged on the active rows: check all of them once more
            pg_max_old, pg_min_old = inf, -inf
            continue
        pg_max_old, pg_min_old = pg_max_new, pg_min_new
        if pg_max_old <= 0.0:
            pg_max_old = inf
        if pg_min_old >= 0.0:
            pg_min_old = -inf
    return w, it


class InPlaceLinearSVC(LinearSVC):
    """`LinearSVC` whose binary fit on CSR features runs dual coordinate descent on the
    features' own arrays (no per-fit copy; a memory-mapped CSR stays shared).

    ``solver``: ``"liblinear"`` is scikit-learn's fit unchanged; ``"dcd"`` the in-place
    solver wherever it applies (CSR `X`, two classes, L2 penalty, one-vs-rest, no sample
    weights; otherwise liblinear); ``"auto"`` the in-place solver for features over
    `AUTO_DCD_BYTES`; ``solver_`` says which one fitted.  Everything after the fit (``decision_function``, ``sparsify``) is
    `LinearSVC`'s.
    """

    _parameter_constraints: dict = {
        **LinearSVC._parameter_constraints,
        "solver": [StrOptions({"auto", "liblinear", "dcd"})],
    }

    def __init__(self, penalty="l2", loss="squared_hinge", *, dual="auto", tol=1e-4, C=1.0,
                 multi_class="ovr", fit_intercept=True, intercept_scaling=1, class_weight=None, verbose=0,
                 random_state=None, max_iter=1000, solver="auto"):
        super().__init__(penalty=penalty, loss=loss, dual=dual, tol=tol, C=C, multi_class=multi_class,
                         fit_intercept=fit_intercept, intercept_scaling=intercept_scaling,
                         class_weight=class_weight, verbose=verbose, random_state=random_state,
                         max_iter=max_iter)
        self.solver = solver

    def _uses_dcd(self, X: Any, sample_weight: Any) -> bool:
        import scipy.sparse as sp

        if self.solver == "liblinear" or not sp.issparse(X) or X.format != "csr" or sample_weight is not None:
            return False
        if self.penalty != "l2" or self.multi_class != "ovr":
            return False
        return self.solver == "dcd" or X.data.nbytes + X.indices.nbytes > AUTO_DCD_BYTES

    def fit(self, X, y, sample_weight=None):
        """`LinearSVC.fit`; with the in-place solver for binary CSR problems (`solver`)."""
        if not self._uses_dcd(X, sample_weight):
            self.solver_ = "liblinear"
            return super().fit(X, y, sample_weight=sample_weight)
        from sklearn.utils.class_weight import compute_class_weight
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import validate_data

        self._validate_params()
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64, order="C",
                             accept_large_sparse=False)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            self.solver_ = "liblinear"
            return super().fit(X, y)
        if not self.fit_intercept:
            bias = 0.0
        elif isinstance(self.intercept_scaling, numbers.Real) and self.intercept_scaling > 0:
            bias = float(self.intercept_scaling)
        else:
            raise ValueError(f"intercept_scaling should be a positive number, got {self.intercept_scaling!r}")
        weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        y_sign = np.where(y == self.classes_[1], 1.0, -1.0)
        seed = np.random.RandomState(self.random_state).randint(np.iinfo(np.int32).max)
        # np.asarray: a memory-mapped array reaches the kernel as a view, not a copy
        w, n_iter = _kernel()(np.asarray(X.data), np.asarray(X.indices), np.asarray(X.indptr), y_sign,
                              float(self.C * weights[1]), float(self.C * weights[0]), bias,
                              self.loss == "squared_hinge", float(self.tol), int(self.max_iter), int(seed),
                              X.shape[1])
        self.coef_ = w[None, :-1]
        self.intercept_ = np.array([bias * w[-1]]) if self.fit_intercept else np.zeros(1)
        self.n_iter_ = int(n_iter)
        self.solver_ = "dcd"
        return self
