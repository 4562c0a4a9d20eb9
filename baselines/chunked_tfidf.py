"""`TfidfVectorizer.fit_transform` in bounded memory, equal bit for bit.

Why: scikit-learn's `CountVectorizer._count_vocab` keeps one Python int per (document,
term) pair in a list until the whole corpus is read (about 36 bytes a pair, ~9 GB at a
million synthetic documents) and then copies the matrix a few times while it prunes,
sorts and weighs it.  Here the same counting loop turns every `chunk_docs` documents into
int32 arrays (8 bytes a pair), and the pruned, sorted, tf-idf-weighted rows are written
chunk by chunk into arrays allocated once for the result.

What stays equal (tested against scikit-learn): the vocabulary and its indices, the IDF,
and every stored value at its position in the CSR arrays (each row keeps scikit-learn's
entry order, so even the row norms are summed in the same order).  Vectorizers this
module does not reproduce (a fixed vocabulary, a non-float dtype) fall back to
scikit-learn's own `fit_transform`.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from numbers import Integral
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer

#: documents counted per chunk: ~20k × a few hundred pairs of Python ints at a time
CHUNK_DOCS = 20_000


def _count_chunks(analyze, texts: Sequence[str], chunk_docs: int) -> tuple[defaultdict, list]:
    """scikit-learn's `_count_vocab` loop, one chunk at a time.

    Returns the provisional vocabulary (term → index in order of first appearance, as
    scikit-learn numbers it) and per chunk a CSR of counts [rows, terms seen so far] with
    int32 indices and counts, each row's entries sorted by provisional index.
    """
    vocabulary: defaultdict = defaultdict()
    vocabulary.default_factory = vocabulary.__len__
    chunks = []
    for start in range(0, len(texts), chunk_docs):
        j_indices: list[int] = []
        values = array("i")
        indptr = [0]
        for doc in texts[start:start + chunk_docs]:
            feature_counter: dict[int, int] = {}
            for feature in analyze(doc):
                feature_idx = vocabulary[feature]
                if feature_idx not in feature_counter:
                    feature_counter[feature_idx] = 1
                else:
                    feature_counter[feature_idx] += 1
            j_indices.extend(feature_counter.keys())
            values.extend(feature_counter.values())
            indptr.append(len(j_indices))
        counts = sp.csr_matrix(
            (np.frombuffer(values, dtype=np.intc), np.asarray(j_indices, dtype=np.int32),
             np.asarray(indptr, dtype=np.int64)),
            shape=(len(indptr) - 1, len(vocabulary)))
        counts.sort_indices()
        chunks.append(counts)
    vocabulary.default_factory = None  # a plain lookup from here on (no copy: it may hold millions)
    return vocabulary, chunks


def _kept_terms(vectorizer: Any, vocabulary: dict, df: np.ndarray, tf: np.ndarray,
                n_doc: int) -> tuple[dict, np.ndarray]:
    """The final vocabulary (term → column) and provisional index → final column (-1:
    pruned), by `CountVectorizer.fit_transform`'s rules (min_df, max_df, max_features with
    its tie order; kept terms numbered alphabetically).

    The kept terms go into a new dict, so the caller can drop the provisional one and its
    table (scikit-learn deletes the pruned terms in place: the table keeps its size).
    """
    max_df, min_df, limit = vectorizer.max_df, vectorizer.min_df, vectorizer.max_features
    high = max_df if isinstance(max_df, Integral) else max_df * n_doc
    low = min_df if isinstance(min_df, Integral) else min_df * n_doc
    if high < low:
        raise ValueError("max_df corresponds to < documents than min_df")
    mask = (df <= high) & (df >= low)
    if limit is not None and mask.sum() > limit:
        # scikit-learn sorts the terms first, then keeps the `limit` largest totals in that order
        order = np.empty(len(vocabulary), dtype=np.int64)  # alphabetical rank → provisional index
        for rank, (_, old) in enumerate(sorted(vocabulary.items())):
            order[rank] = old
        sorted_mask, sorted_tf = mask[order], tf[order]
        mask_inds = (-sorted_tf[sorted_mask]).argsort()[:limit]
        keep_sorted = np.zeros(len(order), dtype=bool)
        keep_sorted[np.where(sorted_mask)[0][mask_inds]] = True
        mask = np.zeros(len(order), dtype=bool)
        mask[order[keep_sorted]] = True
    kept = {term: old for term, old in vocabulary.items() if mask[old]}
    if not kept:
        raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
    new_index = np.full(len(mask), -1, dtype=np.int64)
    for new, term in enumerate(sorted(kept)):
        new_index[kept[term]] = new
        kept[term] = new
    return kept, new_index


def _idf(transformer: Any, df: np.ndarray, n_doc: int, dtype: Any) -> np.ndarray:
    """`TfidfTransformer.fit`'s IDF from document frequencies `df` [V]."""
    df = df.astype(dtype, copy=False)
    df += float(transformer.smooth_idf)
    n_samples = n_doc + int(transformer.smooth_idf)
    idf = np.full_like(df, fill_value=n_samples, dtype=dtype)
    idf /= df
    np.log(idf, out=idf)
    idf += 1.0
    return idf


def fit_transform(vectorizer: Any, texts: Sequence[str], *, chunk_docs: int = CHUNK_DOCS) -> Any:
    """``vectorizer.fit_transform(texts)`` for a scikit-learn `TfidfVectorizer`: the same
    fitted vectorizer and the same CSR [n, V], built `chunk_docs` documents at a time."""
    dtype = np.dtype(vectorizer.dtype)
    if vectorizer.vocabulary is not None or dtype not in (np.float64, np.float32) or isinstance(texts, str):
        return TfidfVectorizer.fit_transform(vectorizer, texts)
    vectorizer._validate_params()
    vectorizer._check_params()
    vectorizer._validate_ngram_range()
    vectorizer._warn_for_unused_params()
    vectorizer._validate_vocabulary()
    texts = texts if hasattr(texts, "__getitem__") else list(texts)

    vocabulary, chunks = _count_chunks(vectorizer.build_analyzer(), texts, chunk_docs)
    if not vocabulary:
        raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
    n_doc, n_terms = len(texts), len(vocabulary)
    df = np.zeros(n_terms, dtype=np.int64)
    tf = np.zeros(n_terms, dtype=np.int64)
    for counts in chunks:
        df[:counts.shape[1]] += np.bincount(counts.indices, minlength=counts.shape[1])
        if vectorizer.max_features is not None:
            tf[:counts.shape[1]] += np.bincount(counts.indices, weights=counts.data,
                                                minlength=counts.shape[1]).astype(np.int64)
    if vectorizer.binary:
        for counts in chunks:
            counts.data.fill(1)
        tf = df
    vocabulary, new_index = _kept_terms(vectorizer, vocabulary, df, tf, n_doc)  # the provisional one goes
    n_features = len(vocabulary)

    transformer = TfidfTransformer(norm=vectorizer.norm, use_idf=vectorizer.use_idf,
                                   smooth_idf=vectorizer.smooth_idf, sublinear_tf=vectorizer.sublinear_tf)
    transformer.n_features_in_ = n_features
    if transformer.use_idf:
        kept = new_index >= 0
        final_df = np.empty(n_features, dtype=np.int64)
        final_df[new_index[kept]] = df[kept]
        transformer.idf_ = _idf(transformer, final_df, n_doc, dtype)

    kept_nnz = sum(int(np.count_nonzero(new_index[c.indices] >= 0)) for c in chunks)
    index_dtype = np.int32 if max(kept_nnz, n_features) < np.iinfo(np.int32).max else np.int64
    data = np.empty(kept_nnz, dtype=dtype)
    indices = np.empty(kept_nnz, dtype=index_dtype)
    indptr = np.zeros(n_doc + 1, dtype=index_dtype)
    row = at = 0
    while chunks:
        counts = chunks.pop(0)  # each chunk's counts go once its rows are written
        columns = new_index[counts.indices]
        keep = columns >= 0
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        pruned = sp.csr_matrix((counts.data[keep].astype(dtype), columns[keep].astype(index_dtype),
                                kept_before[counts.indptr]), shape=(counts.shape[0], n_features))
        rows = transformer.transform(pruned, copy=False)
        end = at + rows.nnz
        data[at:end], indices[at:end] = rows.data, rows.indices
        indptr[row + 1:row + 1 + rows.shape[0]] = rows.indptr[1:] + at
        row, at = row + rows.shape[0], end
    vectorizer.vocabulary_ = vocabulary
    vectorizer._tfidf = transformer
    x = sp.csr_matrix((data, indices, indptr), shape=(n_doc, n_features), copy=False)
    return x



class ChunkedTfidfVectorizer(TfidfVectorizer):
    """A `TfidfVectorizer` whose fit reads the corpus in chunks (`fit_transform` above):
    the same parameters, fitted state and matrix; `transform` is scikit-learn's own."""

    def fit_transform(self, raw_documents, y=None):
        return fit_transform(self, raw_documents)

    def fit(self, raw_documents, y=None):
        fit_transform(self, raw_documents)
        return self
