"""The peers of `benchmarks/scale.py --peers`, written as a user would write them.

* ``peer-svm``: scikit-learn's ``OneVsRestClassifier(LinearSVC(), n_jobs=...)`` on
  ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)`` (the features of
  the suite's SVM row) with dense ``MultiLabelBinarizer`` targets [n, L];
* ``fasttext``: the fasttext-wheel package's multi-label tutorial line
  (``train_supervised(loss="ova", wordNgrams=2, epoch=25, lr=0.5, dim=50, bucket=200000)``)
  on a training file of ``__label__<name> ... text`` lines, decisions at probability 0.5.

Each returns its phase seconds (vectorize = features or the training file, fit, predict =
test features and decisions), test micro-F1 from `sklearn.metrics.f1_score` and the 0/1
truth and decisions [n_test, L] (CSR, columns = the labels seen in training, sorted).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _truth(corpus):
    from sklearn.preprocessing import MultiLabelBinarizer

    mlb = MultiLabelBinarizer().fit(corpus.train.labels)
    return mlb, mlb.transform(corpus.train.labels)


def peer_svm(corpus, n_jobs: int | None) -> dict:
    """OvR LinearSVC on uni+bigram TF-IDF, as in scikit-learn's documentation."""
    import warnings

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    out: dict = {}
    t = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x_train = vectorizer.fit_transform(corpus.train.texts)
    mlb, y_train = _truth(corpus)
    out["vectorize_s"] = round(time.perf_counter() - t, 2)
    out["n_features"] = len(vectorizer.vocabulary_)
    t = time.perf_counter()
    model = OneVsRestClassifier(LinearSVC(), n_jobs=-1 if n_jobs is None else n_jobs).fit(x_train, y_train)
    out["fit_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    predicted = model.predict(vectorizer.transform(corpus.test.texts))
    out["predict_s"] = round(time.perf_counter() - t, 2)
    with warnings.catch_warnings():  # test labels unseen in training are left out, as for our rows
        warnings.simplefilter("ignore", UserWarning)
        truth = mlb.transform(corpus.test.labels)
    out["test_f1_micro"] = round(float(f1_score(truth, predicted, average="micro")), 4)
    return {**out, "_truth": truth, "_predicted": predicted}


def fasttext_line(labels, text: str) -> str:
    """One training line: ``__label__a __label__b text`` (the synthetic texts are already
    lower-case words separated by spaces, one line each)."""
    return " ".join(f"__label__{name}" for name in labels) + " " + text


def peer_fasttext(corpus, threads: int, workdir: str | None = None) -> dict:
    """fastText OVA (the multi-label tutorial's settings), decisions at probability 0.5."""
    import warnings

    import fasttext
    from sklearn.metrics import f1_score

    out: dict = {}
    mlb, _ = _truth(corpus)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "train.txt"
        t = time.perf_counter()
        with path.open("w", encoding="utf-8") as f:
            for labels, text in zip(corpus.train.labels, corpus.train.texts):
                f.write(fasttext_line(labels, text) + "\n")
        out["vectorize_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        model = fasttext.train_supervised(input=str(path), loss="ova", wordNgrams=2, epoch=25, lr=0.5,
                                          dim=50, bucket=200_000, thread=threads, verbose=0)
        out["fit_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    names, _ = model.predict(list(corpus.test.texts), k=-1, threshold=0.5)
    with warnings.catch_warnings():  # a label fastText predicts is always a training label
        warnings.simplefilter("ignore", UserWarning)
        predicted = mlb.transform([[n[len("__label__"):] for n in row] for row in names])
        truth = mlb.transform(corpus.test.labels)
    out["predict_s"] = round(time.perf_counter() - t, 2)
    out["n_features"] = len(model.words)
    out["test_f1_micro"] = round(float(f1_score(truth, predicted, average="micro")), 4)
    return {**out, "_truth": truth, "_predicted": predicted}


def as_csr(a) -> "object":
    """A 0/1 matrix as int8 CSR (for ``--save-predictions``)."""
    import scipy.sparse as sp

    return sp.csr_matrix(np.asarray(a) if not sp.issparse(a) else a, dtype=np.int8)
