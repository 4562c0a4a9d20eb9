"""TF-IDF + one-vs-rest linear SVM (scikit-learn): the strong classical baseline.

Word unigrams and bigrams with sublinear tf, then one `LinearSVC` per label (the
shared machinery: `baselines.linear_track`).

Solver: scikit-learn's liblinear, or above `dual_cd.AUTO_DCD_BYTES` of features the same
algorithm run on the features' own arrays (`baselines.dual_cd`: liblinear copies them per
fit, 16 bytes a non-zero in every worker); ``solver`` picks one.

Scores: a LinearSVC gives margins, not probabilities.  We map a margin m to
``sigmoid(scale · m)`` (scale 1 by default): monotone, so rankings (P@k, ROC-AUC)
are unchanged, and the SVM's own decision boundary m = 0 lands exactly on the
suite's default cut-off 0.5.  Tuned thresholds on these scores are therefore
hyperplane shifts (score t ⇔ margin logit(t) / scale).
"""

from __future__ import annotations

from typing import Any, ClassVar

from baselines.dual_cd import InPlaceLinearSVC
from baselines.linear_track import LINEAR_PARAMS, LinearTextTrack, QuietFit
from mlbench.tracks import UNSET, Param, TrainSettings, with_defaults

#: ``solver``: "liblinear" (scikit-learn's), "dcd" (the same algorithm in place,
#: `baselines.dual_cd`), "auto" (in place above `dual_cd.AUTO_DCD_BYTES` of features)
SOLVERS = ("auto", "liblinear", "dcd")


class _QuietLinearSVC(QuietFit, InPlaceLinearSVC):
    """LinearSVC that reports non-convergence through the track's notices only."""


class LinearSVMTrack(LinearTextTrack):
    """`--models svm`: TfidfVectorizer + OneVsRestClassifier(LinearSVC)."""

    name = "svm"
    estimator_name = "LinearSVC"
    params: ClassVar[dict[str, Param]] = {
        **LINEAR_PARAMS,
        "solver": Param("auto", lambda v: v in SOLVERS, " or ".join(map(repr, SOLVERS)), flag="--svm-solver",
                        help="SVM tracks: liblinear (scikit-learn's), dcd (the same algorithm without "
                             "liblinear's copy of the features per fit), auto (dcd above 256 MiB of features)"),
    }
    #: validation search (`mlbench.tuning`): a log grid of C, tf damping, class weights
    #: (so `svm_balanced` is one corner of it) and n-grams; min_df=2 keeps bigram fits
    #: fast.  The search starts at each option's first candidate (the cheap unigram,
    #: C=1 point) and sweeps the options in this order, the costly ones (balanced
    #: weights, bigrams) last.
    search_space: ClassVar[dict[str, list]] = {
        "C": [1.0, 0.5, 2.0, 4.0],
        "sublinear_tf": [True, False],
        "class_weight": [None, "balanced"],
        "ngram_range": [(1, 1), (1, 2)],
        "min_df": [2, 1],  # 1 keeps words seen once: what rare labels often hang on
    }
    #: the full grid has 64 points; the coordinate search stops after this many fits
    #: (one full sweep is 8: balanced bigram fits are the slow ones)
    search_budget: ClassVar[int | None] = 10

    def __init__(self, settings: TrainSettings | None = None, *, solver: str = UNSET, **linear: Any):
        super().__init__(settings, **linear)
        self.solver = self.resolve_params({"solver": solver})["solver"]

    def make_estimator(self) -> Any:
        return _QuietLinearSVC(C=self.C, class_weight=self.class_weight, random_state=self.settings.seed,
                               solver=self.solver)

    def describe(self) -> dict:
        used = sorted({getattr(e, "solver_", "?") for e in getattr(self.model, "estimators_", [])})
        return {**super().describe(), "solver": self.solver, **({"solver_used": ",".join(used)} if used else {})}


class BalancedLinearSVMTrack(LinearSVMTrack):
    """`--models svm_balanced`: the same SVM with ``class_weight="balanced"``, the
    usual scikit-learn answer to rare labels (compare it with tuned thresholds)."""

    name = "svm_balanced"
    #: the `svm` search already tries class_weight="balanced": not a default track of its own
    cpu_default = False

    params: ClassVar[dict[str, Param]] = with_defaults(LinearSVMTrack.params, class_weight="balanced")
    #: the class_weight="balanced" sub-grid of the `svm` search
    search_space: ClassVar[dict[str, list]] = {**LinearSVMTrack.search_space, "class_weight": ["balanced"]}
