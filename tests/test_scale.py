"""The scale-out code paths give the results of the simple ones they replace.

Each fast path (one label draw and chunked word draws for a synthetic corpus, whole-batch TF-IDF
counting for the MLP's vocabulary, chunked one-vs-rest SVM fits) is compared with the
straightforward implementation on a small input, number for number.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mlbench.data.synthetic import _draw_label_sets, synthetic_corpus, zipf_probabilities
from mlbench.labels import LabelSpace


@pytest.mark.parametrize("n_labels, n_docs", [(6, 300), (150, 2000), (5000, 500)])
def test_one_label_draw_equals_the_per_document_choice(n_labels, n_docs):
    p = zipf_probabilities(n_labels, 1.2)
    ref_rng, new_rng = np.random.default_rng(11), np.random.default_rng(11)
    sizes = np.minimum(ref_rng.geometric(0.6, size=n_docs), 4)
    assert np.array_equal(sizes, np.minimum(new_rng.geometric(0.6, size=n_docs), 4))
    ref = [np.unique(ref_rng.choice(n_labels, size=k, p=p)) for k in sizes]
    new = _draw_label_sets(new_rng, p, sizes)
    assert len(new) == n_docs and all(np.array_equal(a, b) for a, b in zip(ref, new))
    assert ref_rng.random() == new_rng.random()  # the stream continues where it did


def test_chunked_word_draws_equal_one_choice_call(monkeypatch):
    import mlbench.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "_CHUNK", 1000)  # several chunks and a partial one
    p = zipf_probabilities(3000, 1.1)
    ref_rng, new_rng = np.random.default_rng(2), np.random.default_rng(2)
    ref = ref_rng.choice(len(p), size=4321, p=p)
    new = synthetic._choice_in_chunks(new_rng, p, 4321)
    assert new.dtype == np.int32 and np.array_equal(ref, new)
    assert ref_rng.random() == new_rng.random()
    # the corpus does not depend on the chunk size
    small = synthetic.synthetic_corpus(300, seed=9, vocab_size=2000, n_labels=10)
    monkeypatch.setattr(synthetic, "_CHUNK", 1 << 22)
    assert synthetic.synthetic_corpus(300, seed=9, vocab_size=2000, n_labels=10).train.texts == small.train.texts


@pytest.fixture(scope="module")
def texts() -> list[str]:
    c = synthetic_corpus(400, seed=4, vocab_size=1500, n_labels=8, median_words=30)
    return c.train.texts + ["", "   ", "Hello, World! U.S. don't stop", "Café STRASSE ΟΔΟΣ naïve 中文 ٣٤",
                            "a", "a a a b b"]


@pytest.mark.parametrize("max_tokens", [None, 800])
def test_fast_tfidf_adapt_equals_keras_adapt(texts, max_tokens):
    pytest.importorskip("tensorflow")
    from baselines.tfidf_vectorizer import adapt_tfidf, adapt_tfidf_fast

    ref = adapt_tfidf(texts, ngrams=2, max_tokens=max_tokens, batch_size=64)
    new = adapt_tfidf_fast(texts, ngrams=2, max_tokens=max_tokens, batch_size=64)
    assert new.get_vocabulary() == ref.get_vocabulary()
    if max_tokens is not None:
        assert len(new.get_vocabulary()) == max_tokens
    np.testing.assert_array_equal(np.asarray(new._lookup_layer.idf_weights_const),
                                  np.asarray(ref._lookup_layer.idf_weights_const))
    probe = texts[:3] + ["Hello, World! unseen words"]
    np.testing.assert_array_equal(np.asarray(new(probe)), np.asarray(ref(probe)))


@pytest.fixture(scope="module")
def svm_data():
    from sklearn.feature_extraction.text import TfidfVectorizer

    c = synthetic_corpus(600, seed=6, vocab_size=1500, n_labels=12, median_words=30)
    labels = LabelSpace.from_training_labels(c.train.labels)
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vec.fit_transform(c.train.texts)
    y = labels.encode_sparse(c.train.labels).astype(np.int32)
    keep = np.flatnonzero(np.asarray(y.sum(axis=0)).ravel() > 0)
    return x, y[:, keep], vec.transform(c.test.texts)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_chunked_one_vs_rest_equals_sklearn(svm_data, n_jobs):
    from sklearn.multiclass import OneVsRestClassifier

    from baselines.linear_track import fit_one_vs_rest
    from baselines.svm import _QuietLinearSVC

    x, y, x_test = svm_data
    svc = _QuietLinearSVC(random_state=0)
    ref = OneVsRestClassifier(svc, n_jobs=1).fit(x, y)
    new = fit_one_vs_rest(svc, x, y, n_jobs=n_jobs)
    assert len(new.estimators_) == y.shape[1] and new.n_jobs == n_jobs
    np.testing.assert_array_equal(new.decision_function(x_test), ref.decision_function(x_test))
    np.testing.assert_array_equal(new.predict(x_test).toarray(), ref.predict(x_test).toarray())
    assert all(e.coef_.dtype == np.float64 for e in new.estimators_)  # small: float64 kept


def test_large_one_vs_rest_weights_are_stored_as_float32(svm_data, monkeypatch):
    import baselines.linear_track as linear_track
    from baselines.svm import _QuietLinearSVC

    x, y, x_test = svm_data
    svc = _QuietLinearSVC(random_state=0)
    ref = linear_track.fit_one_vs_rest(svc, x, y, n_jobs=1)
    monkeypatch.setattr(linear_track, "COEF_FLOAT32_BYTES", 0)
    small = linear_track.fit_one_vs_rest(svc, x, y, n_jobs=2)
    assert all(e.coef_.dtype == np.float32 for e in small.estimators_)
    np.testing.assert_allclose(small.decision_function(x_test), ref.decision_function(x_test), atol=1e-6)


def test_svm_track_takes_dense_or_sparse_targets():
    """`fit` passes CSR targets, the tuner dense rows: the same margins either way."""
    from baselines.svm import LinearSVMTrack
    from mlbench.tracks import TrainSettings

    c = synthetic_corpus(300, seed=8, vocab_size=1000, n_labels=10, median_words=25)
    labels = LabelSpace.from_training_labels(c.train.labels)
    margins = []
    for dense in (False, True):
        track = LinearSVMTrack(TrainSettings(n_jobs=1))
        vec = track.build_vectorizer()
        x = vec.fit_transform(c.train.texts)
        y = labels.encode_sparse(c.train.labels)
        track.fit_features(vec, x, y.toarray() if dense else y, labels)
        margins.append(track.decision_function(c.test.texts))
    assert sp.issparse(labels.encode_sparse(c.train.labels))
    np.testing.assert_array_equal(margins[0], margins[1])
    assert margins[0].shape == (len(c.test), len(labels))


def test_scale_peers_table_reports_sklearn_micro_f1_of_the_same_arrays(tmp_path):
    """`benchmarks/scale.py --peers` on a tiny corpus: one row for our SVM and each peer,
    and every printed micro-F1 is scikit-learn's on the truth and decisions the row used,
    whose truth is the test split's labels."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    pytest.importorskip("fasttext")
    repo = Path(__file__).resolve().parents[1]
    docs, n_labels = 600, 8
    rows_file, saved = tmp_path / "rows.jsonl", tmp_path / "pred"
    proc = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "scale.py"), "--docs", str(docs), "--labels", str(n_labels),
         "--tracks", "svm", "--peers", "--n-jobs", "1", "--timeout", "200", "--json", str(rows_file),
         "--save-predictions", str(saved)],
        capture_output=True, text=True, timeout=400, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert [r["track"] for r in rows] == ["svm", "peer-svm", "fasttext"]
    assert all(r["status"] == "ok" for r in rows), rows
    # a row's name is its track, then "/" and its SVM solver (a small corpus: liblinear)
    printed = {line.split()[2].split("/")[0]: line.split() for line in proc.stdout.splitlines()[1:]}
    assert printed["svm"][2] == "svm/liblinear"
    # each row names the phase of its memory peak (the phases `scale.py` times, in order)
    phases = {"corpus", "vectorize", "fit", "predict", "evaluate"}
    assert all(r["peak_phase"] in phases and r["self_peak_phase"] in phases for r in rows)

    corpus = synthetic_corpus(docs, seed=0, n_labels=n_labels)
    mlb = MultiLabelBinarizer().fit(corpus.train.labels)
    for r in rows:
        stem = saved / f"{docs}-{n_labels}-{r['track']}-default"
        truth, predicted = sp.load_npz(f"{stem}-truth.npz"), sp.load_npz(f"{stem}-predicted.npz")
        assert truth.shape == predicted.shape == (len(corpus.test), len(mlb.classes_))
        if r["track"] != "svm":  # the peers' columns are MultiLabelBinarizer's
            np.testing.assert_array_equal(truth.toarray(), mlb.transform(corpus.test.labels))
        assert truth.nnz == sum(len(set(ls) & set(mlb.classes_)) for ls in corpus.test.labels)
        expected = round(float(f1_score(truth.toarray(), predicted.toarray(), average="micro")), 4)
        assert r["test_f1_micro"] == expected
        assert float(printed[r["track"]][10]) == expected  # the table's test_F1 column
        assert r["fit_s"] > 0 and r["predict_s"] >= 0 and r["peak_mb"] > 0 and r["load_start"]  # a tiny predict rounds to 0.0


def test_compact_weights_keep_each_label_s_exact_non_zeros_or_float32(svm_data, monkeypatch):
    """Above the size threshold a label's weights are CSR (its exact non-zeros) where that is
    smaller, else float32; margins equal the float64 fit's (to float32 precision where
    dense), and the export reads either form."""
    import baselines.linear_track as linear_track
    from baselines.linear_export import linear_weights
    from baselines.svm import _QuietLinearSVC

    x, y, x_test = svm_data
    svc = _QuietLinearSVC(random_state=0)
    ref = linear_track.fit_one_vs_rest(svc, x, y, n_jobs=1)
    dense = np.vstack([e.coef_ for e in ref.estimators_])
    # on 480 documents nearly every document is a support vector (the rare labels' weights
    # are ~94 % non-zero; ~10 % at 40k documents × 5,000 labels): a density cut that sparsifies
    # the rarer half here
    density = np.count_nonzero(dense, axis=1) / dense.shape[1]
    monkeypatch.setattr(linear_track, "SPARSE_COEF_MAX_DENSITY", float(np.median(density)))
    monkeypatch.setattr(linear_track, "COEF_FLOAT32_BYTES", 0)
    new = linear_track.fit_one_vs_rest(svc, x, y, n_jobs=1)  # in this process: the patched cut applies
    sparse_rows = [j for j, e in enumerate(new.estimators_) if sp.issparse(e.coef_)]
    for j, e in enumerate(new.estimators_):
        nonzeros = np.count_nonzero(dense[j])
        assert sp.issparse(e.coef_) == (nonzeros <= linear_track.SPARSE_COEF_MAX_DENSITY * dense.shape[1])
        if sp.issparse(e.coef_):  # exactly the fitted weights, zeros left out
            assert e.coef_.nnz == nonzeros
            np.testing.assert_array_equal(e.coef_.toarray().ravel(), dense[j])
        else:
            assert e.coef_.dtype == np.float32
    assert 0 < len(sparse_rows) < y.shape[1]  # both forms
    np.testing.assert_allclose(new.decision_function(x_test), ref.decision_function(x_test), atol=1e-6)
    exact = np.asarray(ref.decision_function(x_test))[:, sparse_rows]
    np.testing.assert_allclose(np.asarray(new.decision_function(x_test))[:, sparse_rows], exact,
                               rtol=1e-12, atol=1e-12)
    w, b = linear_weights(new, x.shape[1])
    np.testing.assert_allclose(x_test @ w + b, ref.decision_function(x_test), atol=1e-6)


def test_ovr_margins_equal_one_vs_rest_s_for_every_weight_form(svm_data, monkeypatch):
    """`ovr_margins` (what the linear tracks predict with) equals OvR's per-label
    `decision_function` number for number: dense float64, dense float32 and CSR weights."""
    import baselines.linear_track as linear_track
    from baselines.svm import _QuietLinearSVC

    x, y, x_test = svm_data
    svc = _QuietLinearSVC(random_state=0)
    plain = linear_track.fit_one_vs_rest(svc, x, y, n_jobs=1)
    dense = np.vstack([e.coef_ for e in plain.estimators_])
    monkeypatch.setattr(linear_track, "SPARSE_COEF_MAX_DENSITY",
                        float(np.median(np.count_nonzero(dense, axis=1) / dense.shape[1])))
    monkeypatch.setattr(linear_track, "COEF_FLOAT32_BYTES", 0)
    mixed = linear_track.fit_one_vs_rest(svc, x, y, n_jobs=1)
    forms = {(sp.issparse(e.coef_), e.coef_.dtype.name) for e in mixed.estimators_}
    assert forms == {(True, "float64"), (False, "float32")}
    for model in (plain, mixed):
        np.testing.assert_array_equal(linear_track.ovr_margins(model.estimators_, x_test),
                                      model.decision_function(x_test))
    # blocks of labels (past BLOCK_ABOVE_BYTES; forced here, with a last block part-filled)
    monkeypatch.setattr(linear_track, "BLOCK_ABOVE_BYTES", 0)
    monkeypatch.setattr(linear_track, "BLOCK_LABELS", 5)
    assert len(mixed.estimators_) % 5
    for model in (plain, mixed):
        np.testing.assert_array_equal(linear_track.ovr_margins(model.estimators_, x_test),
                                      model.decision_function(x_test))


def test_svm_track_on_file_backed_features_gives_the_same_margins(monkeypatch):
    """`fit` hands large features to the joblib workers through a memory-mapped file:
    the margins are those of the in-memory fit, number for number."""
    import baselines.linear_track as linear_track
    from baselines.svm import LinearSVMTrack
    from mlbench.tracks import TrainSettings

    c = synthetic_corpus(400, seed=3, vocab_size=1000, n_labels=6, median_words=25)
    labels = LabelSpace.from_training_labels(c.train.labels)
    ref = LinearSVMTrack(TrainSettings(n_jobs=2))
    ref.fit(c.train, c.val, labels)
    calls = []
    real = linear_track.file_backed_csr
    monkeypatch.setattr(linear_track, "file_backed_csr", lambda x, folder: calls.append(x.shape) or real(x, folder))
    monkeypatch.setattr(linear_track, "FILE_BACKED_X_BYTES", 0)
    new = LinearSVMTrack(TrainSettings(n_jobs=2))
    new.fit(c.train, c.val, labels)
    assert len(calls) == 1 and set(new.phase_seconds) == {"vectorize", "fit"}
    np.testing.assert_array_equal(new.decision_function(c.test.texts), ref.decision_function(c.test.texts))


def test_growth_lines_state_each_phase_s_ratio_against_the_documents_ratio(tmp_path):
    """`scale.py --growth-from rows.jsonl`: each phase's ratio between consecutive sizes and
    that ratio over the documents' ratio; unfinished rows and zero phases left out."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    rows = [dict(track="svm", strategy="default", status="ok", docs=d, corpus_s=c, vectorize_s=v, fit_s=f,
                 predict_s=p, peak_mb=m) for d, c, v, f, p, m in
            [(200, 1.0, 2.0, 10.0, 0.0, 100), (1000, 5.0, 9.0, 60.0, 1.0, 300)]]
    rows.append(dict(track="svm", strategy="default", status="timeout after 9 s", docs=5000))
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "scale.py"), "--growth-from", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = proc.stdout.splitlines()
    assert line.startswith("growth svm 200 → 1000 documents (×5):")
    assert "vectorize ×4.50 (0.90 of linear)" in line and "fit ×6.00 (1.20 of linear)" in line
    assert "corpus ×5.00 (1.00 of linear)" in line and "peak MB ×3.00 (0.60 of linear)" in line
    assert "predict" not in line


def test_file_backed_features_are_written_without_mapping_them_into_this_process(tmp_path):
    """`file_backed_csr` writes its files with plain writes: this process's resident peak
    grows by far less than the features' bytes (a writable map would add all of them:
    at 1M documents that was the run's peak), and the mapped arrays equal the originals."""
    import scipy.sparse as sp

    import baselines.linear_track as linear_track

    def status(field: str) -> int:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

    n, per_row = 100_000, 200  # 20M non-zeros: 240 MB of data and indices
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random(n * per_row), rng.integers(0, 50_000, n * per_row, dtype=np.int32),
                       np.arange(0, n * per_row + 1, per_row, dtype=np.int32)), shape=(n, 50_000))
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # reset this process's resident high-water mark (VmHWM)
    except OSError:
        pytest.skip("cannot reset the resident high-water mark here")
    before = status("VmRSS")
    mapped = linear_track.file_backed_csr(x, str(tmp_path))
    grown = status("VmHWM") - before
    assert grown < (x.data.nbytes + x.indices.nbytes) / 4, grown
    for name in ("data", "indices", "indptr"):
        assert not getattr(mapped, name).flags.writeable  # a read-only map of the file
        np.testing.assert_array_equal(getattr(mapped, name), getattr(x, name))
