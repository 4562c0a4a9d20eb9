"""TF-IDF + one linear model per label (scikit-learn): the shared base of the linear tracks.

What a linear track is: a `TfidfVectorizer`, then one binary linear classifier per
label fitted one-vs-rest, scores ``sigmoid(score_scale · margin)``. A subclass names
its estimator (`make_estimator`), its defaults (`with_defaults`) and its search space; fitting, the
tuner's fast path (`fit_features` on a shared vectorizer), the raw-string SavedModel
export and the exact explanations are the same for all (`baselines/svm.py`,
`baselines/logreg.py`).

Labels with no training positives (possible on small user files) get a constant
"never" classifier instead of crashing the solver.
"""

from __future__ import annotations

import abc
import numbers
import warnings
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from mlbench.data.corpus import Split
from mlbench.labels import LabelSpace
from mlbench.tracks import UNSET, Param, SharedFeatures, Track, TrainSettings


def _ngram_range(value: Any) -> tuple[int, int]:
    return tuple(int(n) for n in value)


#: the linear tracks' hyper-parameters: defaults beside their constraints
LINEAR_PARAMS: dict[str, Param] = {
    "ngram_range": Param((1, 2), lambda v: len(v) == 2 and 1 <= v[0] <= v[1], "(lo, hi) with 1 <= lo <= hi",
                         convert=_ngram_range),
    "sublinear_tf": Param(True, convert=bool),
    "min_df": Param(1, lambda v: isinstance(v, numbers.Real) and v > 0, "> 0"),
    "max_features": Param(None, lambda v: v is None or (isinstance(v, numbers.Integral) and v > 0),
                          "None or a positive integer"),
    "C": Param(1.0, lambda v: v > 0, "> 0", convert=float),
    "class_weight": Param(None, lambda v: v in (None, "balanced"), "None or 'balanced'"),
    "score_scale": Param(1.0, lambda v: v > 0, "> 0", convert=float),
}


class QuietFit:
    """Mixin for a scikit-learn estimator whose fit keeps its ConvergenceWarning to itself:
    it runs in joblib workers, where a caller's warning filters do not reach, and
    `LinearTextTrack.fit_features` reports non-convergence once, from ``n_iter_``, as a
    notice in the record."""

    def fit(self, X, y, sample_weight=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return super().fit(X, y, sample_weight=sample_weight)


#: above this many bytes of float64 one-vs-rest weights (labels × features × 8) each
#: label's estimator keeps its `coef_` [1, V] in the smaller of two forms: CSR with
#: exactly its non-zeros in float64 (`LinearSVC.sparsify`: the same weights; a rare
#: label's SVM is a sum of a few support vectors, so most of its weights are exact
#: zeros) when they are under a third of V, else dense float32 (margins then differ in
#: the 7th digit).  With millions of bi-gram features and thousands of labels dense
#: float64 weights would be most of a large run's memory.  Reuters- and arXiv-size
#: models stay dense float64, unchanged.
COEF_FLOAT32_BYTES = 2 * 1024**3
#: `fit` hands features of more than this many bytes (data + indices) to the label fits
#: through a file (`file_backed_csr`) when they run in several processes
FILE_BACKED_X_BYTES = 256 * 1024**2
#: a CSR weight costs 12 bytes (float64 value + int32 index), a dense float32 one 4
SPARSE_COEF_MAX_DENSITY = 1 / 3


def compact_coef(est: Any) -> Any:
    """Store `est.coef_` [1, V] as CSR (its exact non-zeros) or dense float32, whichever is
    smaller (`COEF_FLOAT32_BYTES`); ``decision_function`` reads either."""
    coef = np.asarray(est.coef_)
    if np.count_nonzero(coef) <= SPARSE_COEF_MAX_DENSITY * coef.size:
        est.sparsify()  # scikit-learn's own: coef_ = csr_matrix(coef_)
    else:
        est.coef_ = coef.astype(np.float32)
    return est


def _fit_label_chunk(estimator: Any, x: Any, y: Any, compact: bool) -> list:
    """One joblib task: a clone of `estimator` fitted on `x` [n, V] for each 0/1 column of
    the CSC targets `y` [n, k], in column order (what `OneVsRestClassifier` fits per label);
    with `compact`, each fitted `coef_` is stored by `compact_coef` before the next fit
    (a worker holds its chunk's weights until it returns them)."""
    from sklearn.base import clone

    fitted = []
    for j in range(y.shape[1]):
        est = clone(estimator).fit(x, y[:, j].toarray().ravel())
        fitted.append(compact_coef(est) if compact else est)
    return fitted


def file_backed_csr(x: Any, folder: str) -> Any:
    """`x` (CSR [n, V]) with its three arrays in .npy files under `folder`, memory-mapped
    read-only (the same values).

    Why: joblib's loky workers get a large array through a memory map; an array already
    mapped from a file is passed by its file name, so the parent and the workers share one
    copy of the pages instead of the parent's heap copy plus joblib's dump of it
    (12 bytes per non-zero saved, ~1.8 GB at 800k documents).  The pages are a file's, so
    the kernel may also drop them under memory pressure and read them back.  The files
    are written with plain writes (`np.save`), not through a writable map: mapped dirty
    pages would count in this process's memory beside the heap copy (2 GB more at 1M
    documents, the run's peak), page-cache pages do not.
    """
    import os

    import scipy.sparse as sp

    arrays = []
    for name in ("data", "indices", "indptr"):
        path = os.path.join(folder, f"{name}.npy")
        np.save(path, getattr(x, name), allow_pickle=False)
        arrays.append(np.load(path, mmap_mode="r"))
    mapped = sp.csr_matrix(tuple(arrays), shape=x.shape, copy=False)
    mapped.has_sorted_indices = x.has_sorted_indices  # known: no scan (and no write) needed
    return mapped


def fit_one_vs_rest(estimator: Any, x: Any, y: Any, *, n_jobs: int):
    """`OneVsRestClassifier(estimator, n_jobs).fit(x, y)` for CSR 0/1 targets `y` [n, L],
    each label present and absent; the same fitted estimators, shipped to the workers in
    chunks.

    Why not OvR's own fit: it makes one joblib task per label, and each task pickles `x`
    again (joblib hashes every array to find its memory map, per task: a full pass over
    `x` per label); here each worker gets `x` a few times (labels dealt round-robin
    into ~4 chunks per worker, so slow head labels spread out).  Each label's fit is
    unchanged, so the margins equal OvR's (and the serial fit's) exactly.  Under
    ``--dask`` the chunks are tasks on the cluster (`mlbench.cluster.map_tasks`; `x`
    broadcast to each worker once), `n_jobs` aside.
    """
    import scipy.sparse as sp
    from joblib import Parallel, delayed, effective_n_jobs
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import LabelBinarizer

    from mlbench.cluster import cluster_threads, map_tasks

    y = sp.csc_matrix(y)
    n_labels = y.shape[1]
    remote = cluster_threads()  # under --dask: the chunks are tasks on the cluster's workers
    workers = min(remote or effective_n_jobs(n_jobs), n_labels)
    n_chunks = 1 if workers <= 1 else min(n_labels, 4 * workers)
    chunks = [np.arange(k, n_labels, n_chunks) for k in range(n_chunks)]
    float32_coef = n_labels * x.shape[1] * 8 > COEF_FLOAT32_BYTES
    if remote:
        parts = map_tasks(_fit_label_chunk, [(estimator, x, y[:, cols], float32_coef) for cols in chunks])
    else:
        parts = Parallel(n_jobs=workers)(delayed(_fit_label_chunk)(estimator, x, y[:, cols], float32_coef)
                                         for cols in chunks)
    estimators: list = [None] * n_labels
    for cols, fitted in zip(chunks, parts):
        for j, est in zip(cols, fitted):
            estimators[j] = est
    model = OneVsRestClassifier(estimator, n_jobs=n_jobs)
    model.label_binarizer_ = LabelBinarizer(sparse_output=True).fit(y.tocsr())
    model.classes_ = model.label_binarizer_.classes_
    model.estimators_ = estimators
    model.n_features_in_ = estimators[0].n_features_in_
    return model


#: `ovr_margins` multiplies this many labels at once (a block [V, 8] of float64 weights:
#: each non-zero of a row reads one 64-byte cache line of them) when one label's weight
#: vector is over `BLOCK_ABOVE_BYTES`, too large for the cache to keep between rows
BLOCK_LABELS = 8
BLOCK_ABOVE_BYTES = 8 * 1024**2


def ovr_margins(estimators: Sequence[Any], x: Any) -> np.ndarray:
    """Margins [n, k] of the fitted binary estimators (``coef_`` [1, V] dense or CSR,
    ``intercept_``) on CSR rows `x` [n, V]: what ``OneVsRestClassifier.decision_function``
    returns, number for number (tested).

    Why not OvR's: with CSR weights (`compact_coef`) it makes a sparse × sparse product
    per label; here each label's weights are a dense float64 vector [V] for the product (a
    sparse-matrix × vector pass), which sums the same terms in the same order.  Past
    `BLOCK_ABOVE_BYTES` a vector no longer stays in cache, and every non-zero of `x` costs a
    cache miss per label; `BLOCK_LABELS` labels then share one pass over `x` with their
    weights side by side in a block [V, 8] (one line per non-zero; each column's sum keeps
    its order, so the margins stay equal).  Below it a block is slower
    (`benchmarks/ovr_margins_speed.py`).
    """
    import scipy.sparse as sp

    n_features = x.shape[1]
    out = np.empty((x.shape[0], len(estimators)))
    width = BLOCK_LABELS if n_features * 8 > BLOCK_ABOVE_BYTES else 1
    block = np.zeros((n_features, width)) if width > 1 else None
    for start in range(0, len(estimators), width):
        group = estimators[start:start + width]
        if block is None:
            coef = group[0].coef_
            w = coef.toarray() if sp.issparse(coef) else coef
            out[:, start] = x @ np.asarray(w, dtype=np.float64).ravel()
            continue
        block.fill(0.0)
        for c, e in enumerate(group):
            if sp.issparse(e.coef_):
                coef = e.coef_.tocsr()
                block[coef.indices, c] = coef.data
            else:
                block[:, c] = np.ravel(e.coef_)
        out[:, start:start + len(group)] = (x @ block)[:, :len(group)]
    out += np.array([float(np.ravel(e.intercept_)[0]) for e in estimators])
    return out


class LinearTextTrack(SharedFeatures, Track):
    """TfidfVectorizer + one-vs-rest linear classifier; subclasses give `make_estimator`.

    Each parameter comes from the constructor, else ``settings.options`` (how the
    tuner sets it), else its declared default (`Track.resolve_params`).
    """

    family = "baseline"
    onnx_core = "linear"  # `mlbench export-onnx`: one graph from raw strings to scores
    #: liblinear's coordinate descent converges to the same optimum: no seed repeats
    stochastic = False
    params: ClassVar[dict[str, Param]] = LINEAR_PARAMS
    explains = "exact attributions tfidf_j · W[j, l] (logit units)"
    #: under --protocol cv: fitted on K folds of train+val, then refit (`mlbench.protocol`)
    cheap_fit: ClassVar[bool] = True
    #: under --dask: folds and search points are sent to the cluster as tasks (`mlbench.cluster`)
    cluster_fit: ClassVar[bool] = True
    #: parameters of the vectorizer: the tuner builds each combination once (`fit_features`)
    vectorizer_keys: ClassVar[tuple[str, ...]] = ("ngram_range", "sublinear_tf", "min_df", "max_features")
    #: the per-label estimator, as notices name it
    estimator_name: ClassVar[str]
    #: what the scores are, for the record and the export's metadata
    score_formula: ClassVar[str] = "sigmoid({scale} * margin)"

    def __init__(self, settings: TrainSettings | None = None, *, ngram_range: tuple[int, int] = UNSET,
                 sublinear_tf: bool = UNSET, min_df: int = UNSET, max_features: int | None = UNSET,
                 C: float = UNSET, class_weight: str | None = UNSET, score_scale: float = UNSET):
        super().__init__(settings)
        p = self.resolve_params(dict(ngram_range=ngram_range, sublinear_tf=sublinear_tf, min_df=min_df,
                                     max_features=max_features, C=C, class_weight=class_weight,
                                     score_scale=score_scale))
        self.ngram_range, self.sublinear_tf = p["ngram_range"], p["sublinear_tf"]
        self.min_df, self.max_features = p["min_df"], p["max_features"]
        self.C, self.class_weight, self.score_scale = p["C"], p["class_weight"], p["score_scale"]
        self.vectorizer = None
        self.model = None

    @abc.abstractmethod
    def make_estimator(self) -> Any:
        """A fresh binary scikit-learn linear classifier (``coef_``, ``intercept_``,
        ``n_iter_``, ``max_iter``) with this track's C and class weights, seeded."""

    def build_vectorizer(self):
        """A fresh (unfitted) TfidfVectorizer of this track's `vectorizer_keys`; its fit
        reads the corpus in chunks (`baselines.chunked_tfidf`: the same matrix, bounded memory)."""
        from baselines.chunked_tfidf import ChunkedTfidfVectorizer

        return ChunkedTfidfVectorizer(
            ngram_range=self.ngram_range, sublinear_tf=self.sublinear_tf,
            min_df=self.min_df, max_features=self.max_features,
        )

    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict[str, list[float]]:
        """Vectorize `train`, then fit the classifiers; `phase_seconds` keeps the two times."""
        import tempfile
        import time

        from joblib import effective_n_jobs

        start = time.perf_counter()
        vectorizer = self.build_vectorizer()
        x = vectorizer.fit_transform(train.texts)
        self.phase_seconds = {"vectorize": time.perf_counter() - start}
        start = time.perf_counter()
        n_jobs = -1 if self.settings.n_jobs is None else int(self.settings.n_jobs)
        if self.settings.workdir is not None:
            Path(self.settings.workdir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.settings.workdir) as folder:
            if x.data.nbytes + x.indices.nbytes > FILE_BACKED_X_BYTES and effective_n_jobs(n_jobs) > 1:
                x = file_backed_csr(x, folder)  # the heap copy goes: one copy shared with the workers
            # CSR targets: no dense n × L copy at thousands of labels
            history = self.fit_features(vectorizer, x, labels.encode_sparse(train.labels), labels)
            del x
        self.phase_seconds["fit"] = time.perf_counter() - start
        return history

    def fit_features(self, vectorizer: Any, x: Any, y: np.ndarray, labels: LabelSpace) -> dict[str, list[float]]:
        """Fit the classifiers on `x` = ``vectorizer.transform(train)`` [n, V] with 0/1
        targets `y` [n, L]; lets the tuner reuse one vectorizer's matrices across C and
        class weights."""
        import scipy.sparse as sp

        self.labels, self.vectorizer = labels, vectorizer
        # 0/1 targets: dense or CSR (`fit` passes CSR: no n × L dense copy at thousands of labels)
        y = y.tocsr().astype(np.int8) if sp.issparse(y) else np.asarray(y).astype(np.int8)
        positives = np.asarray(y.sum(axis=0)).ravel()
        n_docs = y.shape[0]
        trainable = (positives > 0) & (positives < n_docs)
        self._columns = np.flatnonzero(trainable)
        self._constant = np.where(positives >= n_docs, 1.0, -1.0)  # margin for untrainable labels
        estimator = self.make_estimator()
        # labels fit in parallel (joblib; `--n-jobs`, default all cores): each label's
        # estimator is independent, so the result equals the serial fit
        n_jobs = -1 if self.settings.n_jobs is None else int(self.settings.n_jobs)
        # targets as int32 CSR: an int8 y makes scikit-learn 1.9's OvR train some labels on
        # wrong targets (train accuracy 0.61 vs 1.0 on a 150-label synthetic corpus), and a
        # sparse y stays small at thousands of labels
        self.model = (fit_one_vs_rest(estimator, x, sp.csr_matrix(y)[:, self._columns].astype(np.int32),
                                      n_jobs=n_jobs)
                      if len(self._columns) else None)
        # counted from the fitted models (each worker silenced its own ConvergenceWarning)
        unconverged = sum(int(np.max(getattr(e, "n_iter_", 0))) >= estimator.max_iter
                          for e in getattr(self.model, "estimators_", []))
        # one fact about the run instead of one library warning per label
        self.notices = ([f"{self.estimator_name} did not converge "
                         f"within {estimator.max_iter} iterations for {unconverged} of {len(self._columns)} "
                         f"labels (C={self.C}, class_weight={self.class_weight})"]
                        if unconverged else [])
        return {}

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Raw margins [n, n_labels]; untrainable labels get ±1 constants."""
        if self.vectorizer is None:
            raise RuntimeError("fit the track before predicting")
        return self.decision_function_features(self.vectorizer.transform(texts) if len(texts) else None,
                                               len(texts))

    def decision_function_features(self, x: Any, n: int | None = None) -> np.ndarray:
        """Margins [n, n_labels] of rows `x` already vectorized by `self.vectorizer`."""
        n = x.shape[0] if n is None else n
        if self.model is not None and n and len(self._columns) == len(self._constant):
            return ovr_margins(self.model.estimators_, x)  # every label trained: no n × L copy
        margins = np.tile(self._constant, (n, 1)).astype(np.float64)
        if self.model is not None and n:
            margins[:, self._columns] = ovr_margins(self.model.estimators_, x)
        return margins

    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        return self.scores_from_margins(self.decision_function(texts))

    def scores_from_margins(self, margins: np.ndarray) -> np.ndarray:
        """Scores in [0, 1]: ``sigmoid(score_scale · margin)``, same shape as `margins`."""
        from mlbench.numeric import sigmoid

        return sigmoid(self.score_scale * margins)

    def logit_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(weights [V, L], bias [L]) with ``logit = tfidf(text) @ weights + bias``, the
        score scale folded in (what the export and the explainer compute)."""
        from baselines.linear_export import linear_weights

        if self.vectorizer is None or self.labels is None:
            raise RuntimeError("fit the track before exporting or explaining it")
        n_labels, n_features = len(self.labels), len(self.vectorizer.vocabulary_)
        # untrainable labels (no positives / all positives) keep their constant margin
        bias = np.asarray(self._constant, np.float64).copy()
        columns = np.asarray(self._columns, np.int64)
        weights = np.zeros((n_features, n_labels))
        if self.model is not None and len(columns):
            w, b = linear_weights(self.model, n_features)
            if w.shape[1] != len(columns):
                raise RuntimeError(f"the linear model has {w.shape[1]} outputs for {len(columns)} labels")
            weights[:, columns], bias[columns] = w, b
        return self.score_scale * weights, self.score_scale * bias

    def export(self, directory: Path, *, thresholds: np.ndarray | None = None) -> Path:
        """Raw-string SavedModel: the fitted TF-IDF and margins as a TF graph
        (`baselines.linear_export`), scores ``sigmoid(score_scale · margin)``."""
        from baselines.linear_export import export_linear_text_model

        weights, bias = self.logit_weights()
        return export_linear_text_model(
            directory, self.vectorizer, weights, bias, self.labels.names, track=self.name,
            thresholds=thresholds, metadata={"score": self.score_formula.format(scale=self.score_scale)})

    def explainer(self, top_n: int | None = None):
        """Exact attributions ``tfidf_j · W[j, l]`` (logit units) as the export computes
        them (`baselines.linear_export.linear_explainer`)."""
        from baselines.linear_export import linear_explainer, linear_text_model

        weights, bias = self.logit_weights()
        return linear_explainer(linear_text_model(self.vectorizer, weights, bias), top_n)

    def size_bytes(self) -> int | None:
        if self.vectorizer is None:
            return None
        from mlbench.sizes import pickled_size

        return pickled_size((self.vectorizer, self.model))

    def describe(self) -> dict:
        n_features = len(self.vectorizer.vocabulary_) if self.vectorizer is not None else None
        return {
            "vectorizer": f"TfidfVectorizer(ngram_range={self.ngram_range}, sublinear_tf={self.sublinear_tf}, min_df={self.min_df})",
            "vocabulary": n_features, "C": self.C, "class_weight": self.class_weight,
            "score": self.score_formula.format(scale=self.score_scale),
        }
