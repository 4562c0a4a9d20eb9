"""Cost of the data health check (`mlbench.data.health.check_health`) at scale.

Prints, for synthetic corpora of the given sizes, the seconds `check_health` takes
(wall and CPU), the process's peak RSS during the check (the kernel's peak mark is reset
just before it) and what that adds over the corpus alone, and how many of
the planted exact / near duplicates it found. Each size runs in its own child
process so peaks do not mix; SciPy is imported before the clock starts (a real run
has it loaded by scikit-learn). Not a unit test.

The corpus: Zipf-distributed words over a 30k-word vocabulary, log-normal lengths
(median ~60 words, clipped to [5, 400]), 1-3 of 150 Zipf-distributed labels; 1 % of
the documents are planted exact copies (different case/spacing) and 1 % are planted
near-copies (one word appended), half of each across train -> test.

    python benchmarks/health_cost.py --docs 100000,1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mlbench.data.corpus import Corpus, Split  # noqa: E402


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so the check's own peak is measured."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_corpus(n: int, seed: int = 0) -> tuple[Corpus, int, int]:
    """A train/val/test corpus of ``n`` documents with planted duplicates (80/10/10)."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(30_000)], dtype=object)
    lens = np.clip(rng.lognormal(np.log(60), 0.6, n).astype(int), 5, 400)
    ids = np.minimum(rng.zipf(1.1, int(lens.sum())) - 1, len(vocab) - 1)
    words = vocab[ids]
    ends = np.cumsum(lens)
    texts = [" ".join(words[e - l : e]) for e, l in zip(ends, lens)]
    n_labels = 150
    p = 1 / np.arange(1, n_labels + 1) ** 1.0
    p /= p.sum()
    k = rng.integers(1, 4, n)
    lab_ids = rng.choice(n_labels, size=int(k.sum()), p=p)
    kend = np.cumsum(k)
    labels = [tuple(dict.fromkeys(f"L{j}" for j in lab_ids[e - c : e])) for e, c in zip(kend, k)]
    n_train, n_val = int(0.8 * n), int(0.1 * n)
    plant = n // 100
    src = rng.choice(n_train, size=2 * plant, replace=False)
    dst_train = rng.choice(np.arange(n_train), size=plant, replace=False)
    dst_test = rng.choice(np.arange(n_train + n_val, n), size=plant, replace=False)
    dst = np.concatenate([dst_train[: plant // 2], dst_test[: plant // 2],
                          dst_train[plant // 2 :], dst_test[plant // 2 :]])
    for j, (s, d) in enumerate(zip(src, dst)):
        if s == d:
            continue
        if j < plant:  # exact copy, different case and spacing
            texts[d] = "  " + texts[s].upper().replace(" ", "   ")
        else:  # near copy: one word appended
            texts[d] = texts[s] + " extra"
    corpus = Corpus(
        "synthetic",
        Split(texts[:n_train], labels[:n_train]),
        Split(texts[n_train : n_train + n_val], labels[n_train : n_train + n_val]),
        Split(texts[n_train + n_val :], labels[n_train + n_val :]),
    )
    return corpus, plant, plant


def child(n: int) -> dict:
    import scipy.sparse.csgraph  # noqa: F401  (imported by scikit-learn in a real run)

    from mlbench.data.health import check_health

    t = time.perf_counter()
    corpus, exact, near = make_corpus(n)
    gen_s = time.perf_counter() - t
    import gc
    import os

    gc.collect()
    base = _status_mb("VmRSS")
    reset_peak()
    cpu0, load0 = cpu_s(), os.getloadavg()[0]
    report = check_health(corpus)
    stats = report.stats
    return {
        "docs": n,
        "generate_s": round(gen_s, 1),
        "check_s": round(report.seconds, 1),
        "check_cpu_s": round(cpu_s() - cpu0, 1),
        "load": f"{load0:.1f}->{os.getloadavg()[0]:.1f}",
        "stages": stats.get("seconds_by_stage", {}),
        "peak_rss_mb": round(_status_mb("VmHWM")),
        "rss_before_check_mb": round(base),
        "added_by_check_mb": round(_status_mb("VmHWM") - base),
        "planted_exact": exact,
        "planted_near": near,
        "found_exact_train_val": stats["exact_duplicates"]["train_val_repeats"],
        "found_exact_test": stats["exact_duplicates"].get("test_in_train_val", 0),
        "found_near": stats["near_duplicates"],
        "words_median": stats["words_per_document"]["median"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", default="100000,1000000", help="comma list of corpus sizes")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    for n in [int(x) for x in args.docs.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['docs']:>9,} docs (median {r['words_median']:.0f} words): check_health "
              f"{r['check_s']} s wall / {r['check_cpu_s']} s CPU (load average {r['load']}; "
              f"stages {r['stages']}), peak RSS {r['peak_rss_mb']:,} MB (corpus alone "
              f"{r['rss_before_check_mb']:,} MB, +{r['added_by_check_mb']:,} MB by the check); "
              f"planted {r['planted_exact']} exact + {r['planted_near']} near copies -> found "
              f"{r['found_exact_train_val']} train/val + {r['found_exact_test']} test exact, "
              f"near {r['found_near']}")


if __name__ == "__main__":
    main()
