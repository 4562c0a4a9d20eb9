"""`mlbench.evaluation.errors`: confusions against a brute-force loop, the single- vs
multi-label breakdown against scikit-learn, ordering of the false negatives / positives,
explanations equal to `explain` for the erring label, the over-fitted token mass, an
unsupported track noted, and the Reuters test split's 2,583 / 436 documents."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mlbench.evaluation.errors import MAX_EXPLAINED, confusion_counts, error_analysis, subset_breakdown


def random_case(seed: int = 0, n: int = 120, L: int = 6):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, L)) < np.linspace(0.05, 0.4, L)).astype(int)
    y[:5] = 0  # unlabeled documents
    s = np.clip(0.45 * y + 0.6 * rng.random((n, L)), 0, 1)
    return y, s


def test_confusions_equal_a_brute_force_count():
    y, s = random_case()
    p = (s >= 0.5).astype(int)
    c = confusion_counts(y, p)
    want = np.zeros_like(c)
    for i in range(len(y)):
        for a in range(y.shape[1]):
            for b in range(y.shape[1]):
                want[a, b] += y[i, a] == 1 and p[i, a] == 0 and p[i, b] == 1 and y[i, b] == 0
    np.testing.assert_array_equal(c, want)
    assert np.all(np.diag(c) == 0)


def test_breakdown_equals_scikit_learn_on_each_subset():
    y, s = random_case(1)
    p = (s >= 0.5).astype(int)
    out = subset_breakdown(y, p)
    k = y.sum(axis=1)
    for name, mask in (("single", k == 1), ("multi", k >= 2), ("unlabeled", k == 0)):
        assert out[name]["documents"] == int(mask.sum())
        for avg in ("micro", "macro"):
            assert out[name][f"f1_{avg}"] == pytest.approx(
                f1_score(y[mask], p[mask], average=avg, zero_division=0))


def test_orderings_and_counts_without_explanations():
    y, s = random_case(2)
    t = np.array([0.5, 0.55, 0.5, 0.6, 0.5, 0.5])
    counts = [3, 40, 1, 100, 8, 20]
    texts = [f"doc {i}" for i in range(len(y))]
    out = error_analysis(y, s, t, texts=texts, label_names=list("abcdef"), train_counts=counts,
                         track=None, rule="per_label")
    p = s >= t
    assert out["errors"] == {"false_negatives": int((y & ~p).sum()), "false_positives": int((p & ~y.astype(bool)).sum())}
    fp = [e["score"] for e in out["false_positives"]]
    assert fp == sorted(fp, reverse=True) and fp[0] == pytest.approx(np.max(np.where(p & (y == 0), s, -1)))
    ranks = [sorted(counts).index(e["train_count"]) for e in out["false_negatives"]]
    assert ranks == sorted(ranks)  # rarest (tail) labels first
    assert out["false_negatives"][0]["label"] == "c"  # 1 training document
    c = confusion_counts(y, p)
    top = out["confusions"][0]
    assert top["count"] == c.max()
    for conf in out["confusions"]:
        a, b = "abcdef".index(conf["true"]), "abcdef".index(conf["predicted"])
        assert conf["count"] == c[a, b]
        for ex in conf["examples"]:
            assert conf["true"] in ex["true"] and conf["true"] not in ex["predicted"]
            assert conf["predicted"] in ex["predicted"] and conf["predicted"] not in ex["true"]
    assert out["explained"] == 0 and "no explanations" in out["explain_note"]
    assert out["breakdown"]["unlabeled"]["documents"] == int((y.sum(axis=1) == 0).sum()) >= 5


@pytest.fixture(scope="module")
def svm_case():
    pytest.importorskip("tensorflow")
    from baselines.svm import LinearSVMTrack
    from mlbench.data.synthetic import synthetic_corpus
    from mlbench.labels import LabelSpace
    from mlbench.tracks import TrainSettings

    corpus = synthetic_corpus(400, seed=11, vocab_size=1500, n_labels=8, median_words=40)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    track = LinearSVMTrack(TrainSettings(seed=0))
    track.fit(corpus.train, corpus.val, labels)
    return corpus, labels, track


def test_explanations_are_explain_for_the_erring_label(svm_case):
    from mlbench.explain import explain

    corpus, labels, track = svm_case
    y, s = labels.encode(corpus.test.labels), track.predict_scores(corpus.test.texts)
    out = error_analysis(y, s, 0.4, texts=corpus.test.texts, label_names=labels.names,
                         train_counts=labels.train_counts, track=track, rule="global", top_n=4)
    assert out["explain_note"] is None and 0 < out["explained"] <= MAX_EXPLAINED
    fp = out["false_positives"][0]
    L = len(labels)
    l = labels.names.index(fp["label"])
    only = np.full(L, 2.0)
    only[l] = -1.0
    want = explain(track, [corpus.test.texts[fp["doc"]]], top_n=4, threshold=only)[0][fp["label"]]
    assert fp["explanation"] == [[t, pytest.approx(w)] for t, w in want]
    mass: dict[str, float] = {}
    for e in out["false_positives"]:
        for tok, w in e["explanation"] or []:
            if w > 0:
                mass[tok] = mass.get(tok, 0.0) + w
    best = max(mass.items(), key=lambda kv: kv[1])
    assert out["overfitted_tokens"][0][0] == best[0] and out["overfitted_tokens"][0][1] == pytest.approx(best[1])


def test_unsupported_track_is_noted(svm_case):
    corpus, labels, _ = svm_case

    class Fake:  # e.g. fastText / ensemble: explain has no explainer for it
        def __init__(self):
            self.labels = labels

        def predict_scores(self, texts):
            return np.full((len(texts), len(labels)), 0.7)

    y = labels.encode(corpus.test.labels)
    s = np.full(y.shape, 0.7)
    out = error_analysis(y, s, 0.5, texts=corpus.test.texts, label_names=labels.names,
                         train_counts=labels.train_counts, track=Fake())
    assert out["explained"] == 0 and "no explainer for a Fake track" in out["explain_note"]
    assert all(e["explanation"] is None for e in out["false_positives"])


def test_reuters_test_split_single_vs_multi_label(reuters_dir):
    from mlbench.data.reuters import load_reuters
    from mlbench.labels import LabelSpace

    corpus = load_reuters(reuters_dir)
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    y = labels.encode(corpus.test.labels)
    out = subset_breakdown(y, y)
    assert (out["single"]["documents"], out["multi"]["documents"]) == (2583, 436)  # Huang et al. 2021
    assert "unlabeled" not in out and out["single"]["f1_micro"] == 1.0


def test_missed_tail_labels_list_each_text_once():
    """One document missing both tail labels, and a second copy of its text, are shown once."""
    from mlbench.evaluation.errors import error_analysis

    texts = ["rare words here", "rare  words here", "common words", "other text"]
    y = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]])
    scores = np.array([[0.1, 0.2, 0.0], [0.1, 0.2, 0.0], [0.0, 0.0, 0.1], [0.0, 0.0, 0.2]])
    out = error_analysis(y, scores, 0.5, texts=texts, label_names=["a", "b", "c"], train_counts=[1, 2, 50],
                         track=None)
    shown = [" ".join(e["text"].split()) for e in out["false_negatives"]]
    assert len(shown) == len(set(shown)) == 3  # 6 missed (doc, label) pairs, 3 distinct texts
    assert out["false_negatives"][0]["label"] == "a"  # still rarest label first
