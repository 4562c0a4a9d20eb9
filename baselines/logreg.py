"""TF-IDF + one-vs-rest logistic regression: the linear peer with native probabilities.

The same vectorizer, fitting, export and exact explanations as the SVM
(`baselines.linear_track`); only the loss differs. Its score ``sigmoid(margin)`` is
scikit-learn's own ``predict_proba`` for each label.
"""

from __future__ import annotations

from typing import Any, ClassVar

import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from baselines.linear_track import LinearTextTrack, QuietFit
from mlbench.tracks import Param, with_defaults


class _QuietLogisticRegression(QuietFit, LogisticRegression):
    """LogisticRegression that reports non-convergence through the track's notices only."""


class LogisticRegressionTrack(LinearTextTrack):
    """`--models logreg`: TfidfVectorizer + OneVsRestClassifier(LogisticRegression, liblinear)."""

    name = "logreg"
    estimator_name = "LogisticRegression"
    params: ClassVar[dict[str, Param]] = with_defaults(LinearTextTrack.params, C=30.0, min_df=2,
                                                       ngram_range=(1, 1))
    #: log loss needs a weaker penalty than the hinge on unit-norm TF-IDF rows: C from 30.
    #: Unigrams only: on Reuters validation bigrams cost 4x the fit time for no gain
    search_space: ClassVar[dict[str, list]] = {
        "C": [30.0, 10.0, 100.0],
        "class_weight": [None, "balanced"],
    }

    def make_estimator(self) -> Any:
        return _QuietLogisticRegression(C=self.C, class_weight=self.class_weight, solver="liblinear",
                                        random_state=self.settings.seed)

    def fit_features(self, vectorizer: Any, x: Any, y: Any, labels: Any) -> dict[str, list[float]]:
        # scikit-learn's logistic path sorts a CSR matrix's indices in place, which the
        # workers' read-only memmap of `x` forbids (TfidfVectorizer leaves them unsorted
        # after min_df): hand them sorted rows, one copy per fit
        if sp.issparse(x) and not x.has_sorted_indices:
            x = x.copy()
            x.sort_indices()
        return super().fit_features(vectorizer, x, y, labels)
