"""TF-IDF + one-vs-rest linear SVM (scikit-learn): the strong classical baseline.

Word unigrams and bigrams with sublinear tf, then one `LinearSVC` per label.
Labels with no training positives (possible on small user files) get a constant
"never" classifier instead of crashing `LinearSVC`.

Scores: a LinearSVC gives margins, not probabilities.  We map a margin m to
``sigmoid(scale · m)`` (scale 1 by default): monotone, so rankings (P@k, ROC-AUC)
are unchanged, and the SVM's own decision boundary m = 0 lands exactly on the
suite's default cut-off 0.5.  Tuned thresholds on these scores are therefore
hyperplane shifts (score t ⇔ margin logit(t) / scale).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mlbench.data.corpus import Split
from mlbench.labels import LabelSpace
from mlbench.tracks import Track, TrainSettings


class LinearSVMTrack(Track):
    """`--models svm`: TfidfVectorizer + OneVsRestClassifier(LinearSVC)."""

    name = "svm"
    family = "baseline"

    def __init__(self, settings: TrainSettings | None = None, *, ngram_range: tuple[int, int] = (1, 2),
                 sublinear_tf: bool = True, min_df: int = 1, max_features: int | None = None,
                 C: float = 1.0, class_weight: str | None = None, score_scale: float = 1.0):
        super().__init__(settings)
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}")
        if class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}")
        if score_scale <= 0:
            raise ValueError(f"score_scale must be > 0, got {score_scale}")
        self.ngram_range, self.sublinear_tf = tuple(ngram_range), sublinear_tf
        self.min_df, self.max_features = min_df, max_features
        self.C, self.class_weight, self.score_scale = C, class_weight, score_scale
        self.vectorizer = None
        self.classifiers: list = []

    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict[str, list[float]]:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.svm import LinearSVC

        self.labels = labels
        self.vectorizer = TfidfVectorizer(
            ngram_range=self.ngram_range, sublinear_tf=self.sublinear_tf,
            min_df=self.min_df, max_features=self.max_features,
        )
        x = self.vectorizer.fit_transform(train.texts)
        y = labels.encode(train.labels).astype(np.int8)
        trainable = (y.sum(axis=0) > 0) & (y.sum(axis=0) < len(y))
        self._columns = np.flatnonzero(trainable)
        self._constant = np.where(y.sum(axis=0) >= len(y), 1.0, -1.0)  # margin for untrainable labels
        svc = LinearSVC(C=self.C, class_weight=self.class_weight, random_state=self.settings.seed)
        self.model = OneVsRestClassifier(svc).fit(x, y[:, self._columns]) if len(self._columns) else None
        return {}

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Raw margins [n, n_labels]; untrainable labels get ±1 constants."""
        if self.vectorizer is None:
            raise RuntimeError("fit the track before predicting")
        margins = np.tile(self._constant, (len(texts), 1)).astype(np.float64)
        if self.model is not None and len(texts):
            m = self.model.decision_function(self.vectorizer.transform(texts))
            margins[:, self._columns] = m.reshape(len(texts), -1)
        return margins

    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        from mlbench.numeric import sigmoid

        return sigmoid(self.score_scale * self.decision_function(texts))

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
            "score": f"sigmoid({self.score_scale} * margin)",
        }


class BalancedLinearSVMTrack(LinearSVMTrack):
    """`--models svm_balanced`: the same SVM with ``class_weight="balanced"``, the
    usual scikit-learn answer to rare labels (compare it with tuned thresholds)."""

    name = "svm_balanced"

    def __init__(self, settings: TrainSettings | None = None, **kwargs):
        kwargs.setdefault("class_weight", "balanced")
        super().__init__(settings, **kwargs)
