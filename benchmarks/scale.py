"""How the tracks scale with documents and labels, on synthetic Zipf corpora.

    python benchmarks/scale.py --docs 50000,200000,1000000 --labels 150 --tracks mlp,svm,encoder --mirrored
    python benchmarks/scale.py --docs 200000 --labels 5000 --tracks mlp,svm
    python benchmarks/scale.py --docs 200000,1000000 --labels 150 --tracks mlp,svm --peers

Why child processes: each configuration (documents, labels, track, strategy) runs in
a fresh process, so its peak RSS (``ru_maxrss``) is its own and the logical CPU
devices of ``--mirrored`` (2, `mlbench.keras.strategy`) can be set before TensorFlow
starts.  Each child prints one JSON line; the parent prints one table row per child
and, with ``--json``, appends the rows to a file.  A child that runs past
``--timeout`` or dies (out of memory) is reported as such: that is where a track
stops scaling.

Figures per row: corpus generation seconds, then per phase: vectorize (the SVM's
TfidfVectorizer on train; the Keras tracks build theirs inside fit), fit, predict (test
features and scores); seconds per epoch (Keras tracks: the mean of the timed epochs),
training docs/s (train docs / epoch time; otherwise train docs / fit time), peak MB
(this process and its joblib workers: `TreeMemory`), test micro-F1 at 0.5, the CPU
seconds of that process tree (the whole row) and the load averages at the row's start
and end (on a shared machine wall seconds measure the load as much as the code).
``--peers`` adds, on the same corpora and in the same table, scikit-learn's OvR
LinearSVC and fastText as a user would write them (`benchmarks.scale_peers`).
The encoder runs only up to ``--encoder-max-docs`` (default 50k) and with its quick
preset; the MLP caps its vocabulary at ``--max-tokens`` (uni+bigrams grow with the
corpus, and the first layer is V × 512).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: what ``--peers`` adds on the same corpora (`benchmarks.scale_peers`)
PEERS = ("peer-svm", "fasttext")
OURS = ("mlp", "svm", "encoder")


class TreeMemory:
    """Peak memory of this process and its children (the SVM's joblib workers), sampled.

    Why: ``ru_maxrss`` sees one process, and ``RUSAGE_CHILDREN`` only children already
    reaped; the loky workers live on.  Sums each process's PSS from
    ``/proc/<pid>/smaps_rollup`` (shared pages, e.g. joblib's memory-mapped features,
    counted once overall) every `interval` seconds; RSS where PSS is unreadable.
    """

    def __init__(self, interval: float = 0.5):
        import threading

        self.peak = 0
        #: when the tree's peak was sampled, and this process's own largest RSS and when
        self.peak_at = self.self_peak_at = time.perf_counter()
        self.self_peak = 0
        self._ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    @staticmethod
    def _proc_bytes(pid: int, name: str, field: str) -> int | None:
        """The ``field:`` line of ``/proc/<pid>/<name>`` (kB) in bytes; None if unreadable."""
        try:
            with open(f"/proc/{pid}/{name}", encoding="ascii") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    @classmethod
    def _pss(cls, pid: int) -> int:
        pss = cls._proc_bytes(pid, "smaps_rollup", "Pss")
        if pss is not None:
            return pss
        try:
            import psutil

            return psutil.Process(pid).memory_info().rss
        except Exception:  # the process is gone
            return 0

    @classmethod
    def _rss(cls, pid: int) -> int:
        """Resident bytes of `pid` now (``VmRSS``; 0 if unreadable)."""
        return cls._proc_bytes(pid, "status", "VmRSS") or 0

    def _pids(self) -> list[int]:
        try:
            import psutil

            return [os.getpid()] + [c.pid for c in psutil.Process().children(recursive=True)]
        except ImportError:
            return [os.getpid()]

    @staticmethod
    def _cpu_ticks(pid: int) -> int:
        """User + system CPU clock ticks of `pid` so far (0 if it is gone)."""
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            return 0

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            pids = self._pids()
            now, total = time.perf_counter(), sum(self._pss(pid) for pid in pids)
            if total > self.peak:
                self.peak, self.peak_at = total, now
            own = self._rss(os.getpid())
            if own > self.self_peak:
                self.self_peak, self.self_peak_at = own, now
            for pid in pids:  # the last reading of each process (workers may end)
                self._ticks[pid] = max(self._ticks.get(pid, 0), self._cpu_ticks(pid))

    def cpu_seconds(self) -> float:
        """CPU seconds of this process and its children as last sampled (load-independent,
        unlike wall seconds on a shared machine); call after `stop`."""
        self._ticks[os.getpid()] = self._cpu_ticks(os.getpid())
        return sum(self._ticks.values()) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """Stop sampling; the peak in MB."""
        self._stop.set()
        self._thread.join()
        return round(self.peak / 2**20)


def micro_f1(truth, scores, threshold: float = 0.5) -> float:
    """Micro-F1 of ``scores >= threshold`` [n, L] against CSR 0/1 `truth` [n, L] (the
    suite's `evaluate` figure) without `evaluate`'s n × L AUC sorts at 5,000 labels."""
    import numpy as np

    rows, cols = truth.nonzero()
    tp = float((np.asarray(scores[rows, cols]) >= threshold).sum())
    predicted = float((scores >= threshold).sum())
    denominator = predicted + truth.nnz
    return 0.0 if denominator == 0 else 2 * tp / denominator


def child(spec: dict) -> dict:
    """Run one configuration in this (fresh) process; return its figures."""
    sys.path.insert(0, str(REPO))
    from mlbench.runtime import set_environment

    set_environment()
    memory = TreeMemory()
    out: dict = dict(spec)
    if spec["strategy"] != "default":
        from mlbench.keras.device import configure_device

        configure_device("cpu", cpu_devices=spec["cpu_devices"])
    from mlbench.data.synthetic import synthetic_corpus
    from mlbench.labels import LabelSpace

    t = time.perf_counter()
    corpus = synthetic_corpus(spec["docs"], seed=0, n_labels=spec["labels"])
    out["corpus_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    labels = LabelSpace.from_training_labels(corpus.train.labels)
    out["label_space_s"] = round(time.perf_counter() - t, 2)
    out["train_docs"], out["n_labels"] = len(corpus.train), len(labels)
    out["rss_before_fit_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    out["load_start"] = _load()
    started = time.perf_counter()
    if spec["track"] in PEERS:
        result = _peer(spec, corpus)
    else:
        result = _ours(spec, corpus, labels)
    out.update({k: v for k, v in result.items() if not k.startswith("_")})
    out["docs_per_s"] = round(len(corpus.train) / (out["s_per_epoch"] if "s_per_epoch" in out else out["fit_s"]))
    if spec.get("save_predictions"):
        import scipy.sparse as sp

        from benchmarks.scale_peers import as_csr

        folder = Path(spec["save_predictions"])
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{spec['docs']}-{spec['labels']}-{spec['track']}-{spec['strategy']}"
        sp.save_npz(folder / f"{stem}-truth.npz", as_csr(result["_truth"]))
        sp.save_npz(folder / f"{stem}-predicted.npz", as_csr(result["_predicted"]))
    out["load_end"] = _load()
    out["peak_self_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["peak_mb"] = max(memory.stop(), out["peak_self_mb"])  # with the joblib workers
    # which phase the sampled peaks fell in (the phases run one after another from `started`)
    out["peak_phase"] = phase_at(out, started, memory.peak_at)
    out["self_peak_phase"] = phase_at(out, started, memory.self_peak_at)
    out["cpu_s"] = round(memory.cpu_seconds(), 1)  # the whole row, corpus generation included
    return out


def phase_at(row: dict, started: float, when: float) -> str:
    """The phase of `row` running at `when`: "corpus" before `started`, then vectorize,
    fit and predict in turn for as many seconds as the row took in each (those it has),
    "evaluate" after them."""
    if when < started:
        return "corpus"
    end = started
    for name, key in (("vectorize", "vectorize_s"), ("fit", "fit_s"), ("predict", "predict_s")):
        end += row.get(key) or 0.0
        if when <= end:
            return name
    return "evaluate"


def _load() -> str:
    """The 1, 5 and 15 minute load averages (`uptime`): the machine is shared."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _peer(spec: dict, corpus) -> dict:
    """A peer's phases and test micro-F1 (`benchmarks.scale_peers`)."""
    from benchmarks.scale_peers import peer_fasttext, peer_svm

    if spec["track"] == "peer-svm":
        return peer_svm(corpus, spec.get("n_jobs"))
    from joblib import effective_n_jobs

    return peer_fasttext(corpus, threads=effective_n_jobs(-1 if spec.get("n_jobs") is None else spec["n_jobs"]))


def _ours(spec: dict, corpus, labels) -> dict:
    """One of the suite's tracks: phase seconds (the SVM's vectorizer apart from its
    solver; the Keras tracks build their vocabulary inside fit) and test micro-F1."""
    import numpy as np

    from mlbench.tracks import TrainSettings

    out: dict = {}
    settings = TrainSettings(epochs=spec["epochs"], seed=0, strategy=spec["strategy"], verbose=0,
                             quick=spec["track"] == "encoder", n_jobs=spec.get("n_jobs"),
                             batch_size=spec.get("batch_size"))
    timer = None
    if spec["track"] == "svm":
        from baselines.svm import LinearSVMTrack

        track = LinearSVMTrack(settings, min_df=2, max_features=spec.get("svm_max_features"),
                               solver=spec.get("svm_solver") or "auto")
    else:
        import keras

        class EpochTimer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._t)

        timer = EpochTimer()
        if spec["track"] == "mlp":
            from baselines.tfidf_mlp import TfidfMLPTrack

            track = TfidfMLPTrack(settings, max_tokens=spec["max_tokens"], callbacks=[timer])
        else:
            from transformers_track.encoder import EncoderTrack

            track = EncoderTrack(settings, callbacks=[timer])
    if spec.get("svm_label_sample"):
        return _svm_label_sample(track, corpus, labels, spec["svm_label_sample"])
    t = time.perf_counter()
    track.fit(corpus.train, corpus.val, labels)
    out["train_s"] = out["fit_s"] = round(time.perf_counter() - t, 2)  # train_s: the old rows' "fit s"
    if spec["track"] == "svm":  # its vectorizer and its solver apart (`LinearTextTrack.phase_seconds`)
        out["vectorize_s"] = round(track.phase_seconds["vectorize"], 2)
        out["fit_s"] = round(track.phase_seconds["fit"], 2)
        out["n_features"] = len(track.vectorizer.vocabulary_)
        coefs = [e.coef_ for e in getattr(track.model, "estimators_", [])]
        out["svm_solver_used"] = track.describe().get("solver_used")
        out["coef_mb"] = round(sum(c.data.nbytes + getattr(c, "indices", np.empty(0)).nbytes
                                   for c in coefs) / 2**20)
    if timer is not None and timer.seconds:
        epoch_s = sum(timer.seconds) / len(timer.seconds)
        out["epochs_run"], out["s_per_epoch"] = len(timer.seconds), round(epoch_s, 2)
    out["notices"] = list(getattr(track, "notices", []) or [])
    t = time.perf_counter()
    scores = track.predict_scores(corpus.test.texts)
    out["predict_s"] = round(time.perf_counter() - t, 2)
    out["predict_docs_per_s"] = round(len(corpus.test) / out["predict_s"]) if out["predict_s"] else None
    truth = labels.encode_sparse(corpus.test.labels)
    out["test_f1_micro"] = round(micro_f1(truth, scores), 4)
    return {**out, "_truth": truth, "_predicted": scores >= 0.5}


def _svm_label_sample(track, corpus, labels, k: int) -> dict:
    """Fit `k` of the SVM's labels (evenly spaced in frequency rank, one process) and
    extrapolate the full fit: the per-label CPU seconds times the trainable labels over
    the joblib workers, and the weights' bytes (`compact_coef`, as the full fit stores
    them).  For label counts whose full fit would not finish in the time at hand."""
    import numpy as np
    from joblib import effective_n_jobs

    from baselines.linear_track import COEF_FLOAT32_BYTES, compact_coef

    t = time.perf_counter()
    vectorizer = track.build_vectorizer()
    x = vectorizer.fit_transform(corpus.train.texts)
    out: dict = {"vectorize_s": round(time.perf_counter() - t, 2), "n_features": x.shape[1]}
    y = labels.encode_sparse(corpus.train.labels).tocsc()
    positives = np.asarray(y.sum(axis=0)).ravel()
    trainable = np.flatnonzero((positives > 0) & (positives < y.shape[0]))
    ranked = trainable[np.argsort(-positives[trainable], kind="stable")]
    sample = ranked[np.unique(np.linspace(0, len(ranked) - 1, min(k, len(ranked))).astype(int))]
    compact = len(trainable) * x.shape[1] * 8 > COEF_FLOAT32_BYTES
    cpu, wall, coef_bytes = [], [], []
    for j in sample:
        c, w = time.process_time(), time.perf_counter()
        est = track.make_estimator().fit(x, y[:, j].toarray().ravel().astype(np.int32))
        est = compact_coef(est) if compact else est
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
        coef = est.coef_
        coef_bytes.append(coef.data.nbytes + getattr(coef, "indices", np.empty(0)).nbytes)
    workers = min(effective_n_jobs(-1 if track.settings.n_jobs is None else track.settings.n_jobs), len(trainable))
    out.update(sampled_labels=len(sample), trainable_labels=len(trainable),
               label_cpu_s_mean=round(float(np.mean(cpu)), 3), label_wall_s_mean=round(float(np.mean(wall)), 3),
               extrapolated_fit_cpu_s=round(float(np.mean(cpu)) * len(trainable)),
               extrapolated_fit_s=round(float(np.mean(cpu)) * len(trainable) / workers),
               extrapolated_coef_mb=round(float(np.mean(coef_bytes)) * len(trainable) / 2**20),
               fit_s=round(float(np.sum(wall)), 2), predict_s=0.0, test_f1_micro=float("nan"))
    return {**out, "_truth": np.zeros((0, 0)), "_predicted": np.zeros((0, 0))}


def run_child(spec: dict, timeout: float) -> dict:
    """`child(spec)` in a fresh interpreter, bounded by `timeout` seconds."""
    start = time.perf_counter()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "status": f"timeout after {timeout:.0f} s"}
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
        return {**spec, "status": f"exit {proc.returncode} after {time.perf_counter() - start:.0f} s: {tail}"}
    return {**json.loads(lines[-1]), "status": "ok"}


HEADER = (f"{'docs':>8} {'labels':>6} {'track':<14} {'corpus_s':>8} {'vec_s':>8} {'fit_s':>8} "
          f"{'pred_s':>7} {'s/epoch':>8} {'docs/s':>7} {'peak_MB':>8} {'test_F1':>7} {'cpu_s':>7}  load 1/5/15 min (start → end)")


def _row(r: dict) -> str:
    """One table row: ours and the peers' in the same columns (vec_s "in fit": the
    Keras tracks build their vocabulary inside fit)."""
    name = f"{r['track']}{'/' + r['strategy'] if r['strategy'] != 'default' else ''}"
    if r.get("svm_label_sample") and r["track"] == "svm":
        name += "/sample"
    if r.get("svm_solver_used"):
        name += f"/{r['svm_solver_used']}"
    if r.get("status") != "ok":
        return f"{r['docs']:>8} {r['labels']:>6} {name:<14} {r['status']}"
    vec = r.get("vectorize_s", "in fit")
    epoch = r.get("s_per_epoch", "—")
    return (f"{r['docs']:>8} {r['labels']:>6} {name:<14} {r['corpus_s']:>8} {vec:>8} {r['fit_s']:>8} "
            f"{r['predict_s']:>7} {epoch:>8} {r['docs_per_s']:>7} {r['peak_mb']:>8} {r['test_f1_micro']:>7}"
            f" {r.get('cpu_s', '—'):>7}  {r['load_start']} → {r['load_end']}"
            + (f"\n{'':>16}peak {r['peak_mb']} MB in {r['peak_phase']}; this process alone "
               f"{r['peak_self_mb']} MB, in {r['self_peak_phase']}" if "peak_phase" in r else "")
            + (f"\n{'':>16}sample of {r['sampled_labels']} of {r['trainable_labels']} trainable labels: "
               f"{r['label_cpu_s_mean']} CPU s ({r['label_wall_s_mean']} wall s) per label → EXTRAPOLATED fit "
               f"{r['extrapolated_fit_cpu_s']} CPU s, {r['extrapolated_fit_s']} s on the workers, "
               f"weights {r['extrapolated_coef_mb']} MB" if "extrapolated_fit_s" in r else ""))


#: the timed phases of a row, as `growth_lines` names them
PHASES = (("corpus", "corpus_s"), ("vectorize", "vectorize_s"), ("fit", "fit_s"), ("predict", "predict_s"),
          ("peak MB", "peak_mb"))


def growth_lines(rows: list[dict]) -> list[str]:
    """Per track and strategy, each phase's growth between consecutive corpus sizes: its
    ratio and that ratio over the documents' ratio (1.0 = linear), from rows that
    finished ("status" "ok"); of two rows of one size, the later."""
    lines = []
    keys = sorted({(r["track"], r["strategy"]) for r in rows}, key=str)
    for track, strategy in keys:
        by_size = {r["docs"]: r for r in rows if (r["track"], r["strategy"]) == (track, strategy)
                   and r.get("status") == "ok"}  # a size measured twice: its last row
        done = [by_size[d] for d in sorted(by_size)]
        for small, large in zip(done, done[1:]):
            docs = large["docs"] / small["docs"]
            parts = [f"{name} ×{large[key] / small[key]:.2f} ({large[key] / small[key] / docs:.2f} of linear)"
                     for name, key in PHASES
                     if isinstance(small.get(key), (int, float)) and isinstance(large.get(key), (int, float))
                     and small[key] > 0]
            lines.append(f"growth {track}{'' if strategy == 'default' else '/' + strategy} "
                         f"{small['docs']} → {large['docs']} documents (×{docs:g}): " + ", ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", default="50000,200000,1000000", help="comma list of corpus sizes")
    p.add_argument("--labels", type=int, default=150)
    p.add_argument("--tracks", default="mlp,svm,encoder")
    p.add_argument("--mirrored", action="store_true", help="also run the Keras tracks under mirrored")
    p.add_argument("--cpu-devices", type=int, default=2, help="logical CPU devices for --mirrored")
    p.add_argument("--mirrored-max-docs", type=int, default=50_000,
                   help="largest corpus run under mirrored")
    p.add_argument("--mirrored-batch-size", type=int, default=None,
                   help="per-replica batch of the mirrored rows (default: the track's own, so the global "
                        "batch grows with the devices; 64 on 2 devices keeps the MLP's global 128)")
    p.add_argument("--encoder-max-docs", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=200_000, help="MLP vocabulary cap (uni+bigrams)")
    p.add_argument("--n-jobs", type=int, default=None, help="SVM joblib jobs (default: all cores)")
    p.add_argument("--svm-max-features", type=int, default=None,
                   help="SVM vocabulary cap (default: none; its weights are labels × features, dense)")
    p.add_argument("--svm-solver", default="auto", choices=("auto", "liblinear", "dcd"),
                   help="the SVM's solver (`baselines.dual_cd`; auto: dcd above 256 MiB of features)")
    p.add_argument("--peers", action="store_true",
                   help="also run scikit-learn's OvR LinearSVC and fastText on the same corpora")
    p.add_argument("--svm-label-sample", type=int, default=None,
                   help="fit only this many SVM labels (spread over frequency) and extrapolate the full fit")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per configuration")
    p.add_argument("--save-predictions", type=Path,
                   help="write each row's 0/1 test truth and decisions (CSR .npz) to this folder")
    p.add_argument("--json", type=Path, help="append each row as a JSON line to this file")
    p.add_argument("--growth-from", type=Path,
                   help="print each phase's growth between the corpus sizes of the rows in this "
                        "--json file (rows of separate runs) and exit")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.growth_from:
        try:
            rows = [json.loads(line) for line in args.growth_from.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
        except (OSError, ValueError) as e:
            p.error(f"--growth-from {args.growth_from}: {e}")
        for line in growth_lines(rows):
            print(line)
        return 0
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    tracks = [t.strip() for t in args.tracks.split(",") if t.strip()]
    unknown = sorted(set(tracks) - set(OURS) - set(PEERS))
    if unknown:
        p.error(f"--tracks: unknown {', '.join(unknown)} (one of {', '.join(OURS + PEERS)})")
    if args.peers:
        tracks += [t for t in PEERS if t not in tracks]
    try:
        sizes = [int(d) for d in args.docs.split(",")]
    except ValueError:
        p.error(f"--docs: expected comma-separated integers, got {args.docs!r}")
    print(HEADER, flush=True)
    rows = []
    for docs in sizes:
        for track in tracks:
            if track == "encoder" and docs > args.encoder_max_docs:
                continue
            strategies = ["default"]
            if args.mirrored and track in ("mlp", "encoder") and docs <= args.mirrored_max_docs:
                strategies.append("mirrored")
            for strategy in strategies:
                spec = dict(docs=docs, labels=args.labels, track=track, strategy=strategy,
                            cpu_devices=args.cpu_devices, epochs=1 if track == "encoder" else args.epochs,
                            max_tokens=args.max_tokens, n_jobs=args.n_jobs,
                            svm_max_features=args.svm_max_features, svm_solver=args.svm_solver,
                            svm_label_sample=args.svm_label_sample,
                            save_predictions=str(args.save_predictions.resolve()) if args.save_predictions else None,
                            batch_size=args.mirrored_batch_size if strategy == "mirrored" else None)
                row = run_child(spec, args.timeout)
                rows.append(row)
                print(_row(row), flush=True)
                if args.json:
                    with args.json.open("a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
    for line in growth_lines(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
