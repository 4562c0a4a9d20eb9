"""The chunked TF-IDF fit equals scikit-learn's `TfidfVectorizer.fit_transform` bit for bit."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from baselines.chunked_tfidf import ChunkedTfidfVectorizer, fit_transform
from baselines.svm import LinearSVMTrack
from mlbench.data.synthetic import synthetic_corpus


def assert_same_fit(texts, new_texts, chunk_docs: int, **params) -> None:
    """Same CSR arrays (values, positions, dtypes), vocabulary, IDF and transform of unseen text."""
    ours, theirs = TfidfVectorizer(**params), TfidfVectorizer(**params)
    x = fit_transform(ours, texts, chunk_docs=chunk_docs)
    expected = theirs.fit_transform(texts)
    assert type(x) is type(expected) and x.shape == expected.shape
    for name in ("indptr", "indices", "data"):
        a, b = getattr(x, name), getattr(expected, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)  # exact, no tolerance
    assert ours.vocabulary_ == theirs.vocabulary_
    if theirs.use_idf:
        np.testing.assert_array_equal(ours.idf_, theirs.idf_)
    assert (ours.transform(new_texts) != theirs.transform(new_texts)).nnz == 0


@pytest.fixture(scope="module")
def corpus():
    return synthetic_corpus(3_000, n_labels=12, seed=3, vocab_size=4_000)


@pytest.mark.parametrize("params", [
    dict(ngram_range=(1, 2), sublinear_tf=True, min_df=2),   # the SVM's and logreg's features
    dict(min_df=1),
    dict(ngram_range=(1, 2), min_df=2, max_features=2_500),  # the tie order of max_features
    dict(max_df=0.4, min_df=0.002, binary=True, norm=None),
    dict(dtype=np.float32, use_idf=False, norm="l1"),
])
def test_equals_scikit_learn_across_chunk_boundaries(corpus, params):
    # 700 documents a chunk: terms first seen in a later chunk, pruning across chunks
    assert_same_fit(corpus.train.texts, corpus.test.texts, chunk_docs=700, **params)


def test_one_chunk_and_one_document_chunks_agree(corpus):
    texts = corpus.train.texts[:400]
    assert_same_fit(texts, corpus.test.texts[:50], chunk_docs=10_000, ngram_range=(1, 2), min_df=2)
    assert_same_fit(texts, corpus.test.texts[:50], chunk_docs=1, ngram_range=(1, 2), min_df=2)


def test_errors_are_scikit_learn_s():
    for texts, params in ((["a b"], {}), (["alpha beta", "gamma delta"], {"min_df": 2}),
                          (["alpha beta", "alpha gamma"], {"min_df": 2, "max_df": 1})):
        with pytest.raises(ValueError) as expected:
            TfidfVectorizer(**params).fit_transform(texts)
        with pytest.raises(ValueError) as ours:
            fit_transform(TfidfVectorizer(**params), texts, chunk_docs=1)
        assert str(ours.value) == str(expected.value)


def test_fixed_vocabulary_falls_back_to_scikit_learn():
    v = ChunkedTfidfVectorizer(vocabulary=["alpha", "beta"])
    x = v.fit_transform(["alpha beta beta", "gamma"])
    np.testing.assert_array_equal(x.toarray(), TfidfVectorizer(vocabulary=["alpha", "beta"])
                                  .fit_transform(["alpha beta beta", "gamma"]).toarray())


def test_the_linear_tracks_fit_the_chunked_vectorizer_and_it_pickles(corpus):
    track = LinearSVMTrack(min_df=2)
    v = track.build_vectorizer()
    assert isinstance(v, ChunkedTfidfVectorizer) and isinstance(v, TfidfVectorizer)
    v.fit(corpus.train.texts[:300])
    again = pickle.loads(pickle.dumps(v))
    assert (again.transform(corpus.test.texts[:20]) != v.transform(corpus.test.texts[:20])).nnz == 0


def test_reuters_train_features_are_scikit_learn_s(reuters_dir):
    from mlbench.data import load_corpus

    c = load_corpus("reuters", data_dir=reuters_dir)
    track = LinearSVMTrack()
    params = {k: getattr(track, k) for k in track.vectorizer_keys}
    assert_same_fit(c.train.texts, c.test.texts[:500], chunk_docs=2_000, **params)
