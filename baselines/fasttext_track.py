"""fastText supervised, one-vs-all: the peer a practitioner would pick instead.

`fasttext.train_supervised(loss="ova", wordNgrams=2)`: averaged word and bigram
embeddings, one independent logistic output per label, so scores are per-label
probabilities (not a softmax over labels).  Defaults follow fastText's multi-label
tutorial (lr 0.5, 25 epochs, dim 50, 200k hash buckets).

Determinism: fastText trains with Hogwild threads, so two runs differ unless there
is one thread; we train with ``thread=1`` and the settings' seed, and then the same
data gives the same model bit for bit.

Documents: each becomes one line (`mlbench.serving.artifacts.fasttext_line`:
newlines removed, punctuation split off, lowercased); label column i is the token
``__label__i`` so names with spaces are safe.  fastText skips training lines with no
label, so unlabelled documents do not train it.  Needs ``fasttext-wheel==0.9.2``
(`fasttext` 0.9.3 is source-only, the `fasttext` extra); without it the registry
skips this track (`requires`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from mlbench.data.corpus import Split
from mlbench.labels import LabelSpace
from mlbench.serving.fasttext_artifact import fasttext_label, fasttext_line, fasttext_scores
from mlbench.serving.layout import FASTTEXT_FORMAT, FASTTEXT_MODEL_FILE, decision_thresholds, write_side_files
from mlbench.tracks import UNSET, Param, Track, TrainSettings


def _at_least_one(v: int) -> bool:
    return v >= 1


class FastTextTrack(Track):
    """`--models fasttext`: fastText supervised with ``loss="ova"`` and word bigrams."""

    name = "fasttext"
    family = "baseline"
    export_format: ClassVar[str] = FASTTEXT_FORMAT
    #: validation search grid (read by the tuner)
    #: the tutorial's point first (the coordinate search starts there), then a sweep of
    #: epochs and learning rates; 4 fits keep its budget in line with the SVM's
    search_space: ClassVar[dict[str, list]] = {"epoch": [25, 50, 10], "lr": [0.5, 1.0, 0.1]}
    search_budget: ClassVar[int | None] = 4
    #: under --protocol cv: fitted on K folds of train+val, then refit (`mlbench.protocol`)
    cheap_fit: ClassVar[bool] = True
    extra = "fasttext"
    requires = ("fasttext",)
    #: fastText's multi-label tutorial: lr 0.5, 25 epochs (5 under --quick; --epochs wins), dim 50
    params: ClassVar[dict[str, Param]] = {
        "epoch": Param(lambda s, _: s.epochs or (5 if s.quick else 25), _at_least_one, ">= 1", convert=int),
        "lr": Param(0.5, lambda v: v > 0, "> 0", convert=float),
        "dim": Param(50, _at_least_one, ">= 1", convert=int),
        "word_ngrams": Param(2, _at_least_one, ">= 1", convert=int),
        "bucket": Param(200_000, lambda v: v >= 0, ">= 0", convert=int),
        "min_count": Param(1, _at_least_one, ">= 1", convert=int),
        "lowercase": Param(True, convert=bool),
    }

    def __init__(self, settings: TrainSettings | None = None, *, epoch: int = UNSET, lr: float = UNSET,
                 dim: int = UNSET, word_ngrams: int = UNSET, bucket: int = UNSET, min_count: int = UNSET,
                 lowercase: bool = UNSET):
        super().__init__(settings)
        p = self.resolve_params(dict(epoch=epoch, lr=lr, dim=dim, word_ngrams=word_ngrams, bucket=bucket,
                                     min_count=min_count, lowercase=lowercase))
        self.epoch, self.lr, self.dim, self.bucket = p["epoch"], p["lr"], p["dim"], p["bucket"]
        self.word_ngrams, self.min_count, self.lowercase = p["word_ngrams"], p["min_count"], p["lowercase"]
        self.model = None

    def _lines(self, texts: Sequence[str]) -> list[str]:
        return [fasttext_line(t, lowercase=self.lowercase) for t in texts]

    def fit(self, train: Split, val: Split, labels: LabelSpace) -> dict[str, list[float]]:
        """Train on `train` only (fastText has no validation-driven early stopping)."""
        self.labels = labels
        index = {n: i for i, n in enumerate(labels.names)}
        rows = []
        for line, label_set in zip(self._lines(train.texts), train.labels):
            tokens = [fasttext_label(index[l]) for l in label_set if l in index]
            if tokens:
                rows.append(" ".join(tokens) + " " + line)
        if not rows:
            raise ValueError("fastText needs at least one training document with a known label")
        workdir = self.settings.workdir
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        import fasttext

        with tempfile.TemporaryDirectory(dir=workdir) as tmp:  # the training file, one doc a line
            path = Path(tmp) / "train.txt"
            path.write_text("\n".join(rows) + "\n", encoding="utf-8")
            self.model = fasttext.train_supervised(
                input=str(path), loss="ova", wordNgrams=self.word_ngrams, epoch=self.epoch, lr=self.lr,
                dim=self.dim, bucket=self.bucket, minCount=self.min_count,
                seed=int(self.settings.seed), thread=1, verbose=0,
            )
        return {}

    def predict_scores(self, texts: Sequence[str]) -> np.ndarray:
        """OVA probabilities of every label, float32 [len(texts), n_labels] in LabelSpace order."""
        if self.model is None:
            raise RuntimeError("fit the track before predicting")
        return fasttext_scores(self.model, self._lines(texts), len(self.labels))

    def export(self, directory: Path, *, thresholds: np.ndarray | None = None) -> Path:
        """A folder with model.bin, labels.json and mlbench.json (format "fasttext").

        Read it back with `mlbench.serving.artifacts.load_artifact`; `thresholds`
        (scalar or [n_labels]; None → 0.5) are stored in mlbench.json, the rule used
        when thresholds.json is absent (as for SavedModel exports).
        """
        if self.model is None:
            raise RuntimeError("fit the track before exporting")
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()):
            raise FileExistsError(f"{directory} exists and is not empty; refusing to overwrite")
        meta = {
            "track": self.name, "format": FASTTEXT_FORMAT, "model_file": FASTTEXT_MODEL_FILE,
            "lowercase": self.lowercase, "label_tokens": "__label__<column index>",
            "fasttext": self.describe(),
            "thresholds": [float(v) for v in decision_thresholds(thresholds, len(self.labels))],
        }
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_model(str(directory / FASTTEXT_MODEL_FILE))
        write_side_files(directory, self.labels.names, meta)
        return directory

    def size_bytes(self) -> int | None:
        """Bytes of the input and output matrices (float32), what model.bin mostly holds."""
        if self.model is None:
            return None
        from mlbench.sizes import weights_size

        return weights_size([self.model.get_input_matrix(), self.model.get_output_matrix()])

    def describe(self) -> dict:
        return {
            "loss": "ova", "wordNgrams": self.word_ngrams, "epoch": self.epoch, "lr": self.lr,
            "dim": self.dim, "bucket": self.bucket, "minCount": self.min_count, "thread": 1,
            "seed": self.settings.seed, "lowercase": self.lowercase,
            "vocabulary": len(self.model.words) if self.model is not None else None,
        }
