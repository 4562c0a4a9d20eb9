"""A fused in-place lazy-Adam row update: a tiny TensorFlow C++ op, built once per machine.

Why: TensorFlow has fused in-place sparse updates for Adagrad, FTRL, RMSProp… but
not for Adam.  Composing one from gathers, a dense Adam on the gathered rows and
scatters moves every row ~19 times (~30 ms a Reuters step on 2 cores); this kernel
does it in place (~8 ms).  It is compiled with ``$CXX`` (default g++) against the
installed TensorFlow on first use and cached; without a compiler, or with
``MLBENCH_FUSED_ADAM=0``, `fused_row_adam_op()` returns None and `LazyAdam` uses
the TF-ops update instead (same numbers, slower).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import tensorflow as tf


# -- the fused row update (a tiny C++ kernel, compiled once per machine) -----------------
_FUSED_SOURCE = r"""
// MlbenchLazyAdamRows: Keras's Adam step, in place, on rows `indices` [k] (distinct) of
// var, m, v; gradient row i of `grad` [n, width] belongs to indices[positions[i]], and
// the rows of one id are summed first (in row order, as unsorted_segment_sum does): the
// gradient of a replicated model arrives as each replica's rows concatenated.
// Arithmetic in Keras's order and without FMA contraction, so the touched rows
// match keras.optimizers.Adam's update (tests/test_mlp.py checks it).
#define EIGEN_USE_THREADS
#include <algorithm>
#include <cmath>
#include <vector>
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/kernels/training_op_helpers.h"
#include "tensorflow/core/util/work_sharder.h"

namespace {
using tensorflow::int64;
using CPUDevice = Eigen::ThreadPoolDevice;

void UpdateRow(const float* __restrict__ g, float* __restrict__ w, float* __restrict__ m,
               float* __restrict__ v, int64_t width, float alpha, float one_b1, float one_b2,
               float eps) {
  for (int64_t j = 0; j < width; ++j) {
    const float mj = m[j] + (g[j] - m[j]) * one_b1;
    const float vj = v[j] + (g[j] * g[j] - v[j]) * one_b2;
    m[j] = mj;
    v[j] = vj;
    w[j] -= (mj * alpha) / (std::sqrt(vj) + eps);
  }
}

class LazyAdamRowsOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(tensorflow::OpKernelContext* ctx) override {
    using namespace tensorflow;
    // Dense (copy-on-write) access, like ResourceApplyAdam: a buffer still shared
    // with a reader (e.g. Keras's best-weights snapshot) is copied once, and reads
    // never copy.  (Sparse access would put the variable in copy-on-read mode,
    // where every full read — each epoch's snapshot — copies V x units.)
    auto locks = MaybeLockVariableInputMutexesInOrder<CPUDevice, float>(ctx, true, false, {0, 1, 2});
    Tensor var, m, v;
    OP_REQUIRES_OK(ctx, GetInputTensorFromVariable<CPUDevice, float>(ctx, 0, true, false, &var));
    OP_REQUIRES_OK(ctx, GetInputTensorFromVariable<CPUDevice, float>(ctx, 1, true, false, &m));
    OP_REQUIRES_OK(ctx, GetInputTensorFromVariable<CPUDevice, float>(ctx, 2, true, false, &v));
    const float alpha = ctx->input(3).scalar<float>()();
    const float one_b1 = ctx->input(4).scalar<float>()();
    const float one_b2 = ctx->input(5).scalar<float>()();
    const float eps = ctx->input(6).scalar<float>()();
    const Tensor& grad = ctx->input(7);
    const Tensor& indices = ctx->input(8);
    const Tensor& positions = ctx->input(9);
    OP_REQUIRES(ctx, var.dims() == 2 && m.shape() == var.shape() && v.shape() == var.shape(),
                errors::InvalidArgument("var, m and v must be matrices of one shape"));
    const int64_t rows = var.dim_size(0), width = var.dim_size(1), k = indices.NumElements();
    const int64_t n = positions.NumElements();
    OP_REQUIRES(ctx, grad.dims() == 2 && grad.dim_size(0) == n && grad.dim_size(1) == width,
                errors::InvalidArgument("grad must be [len(positions), var.shape[1]]"));
    const int64_t* ids = indices.flat<int64_t>().data();
    const int64_t* pos = positions.flat<int64_t>().data();
    for (int64_t j = 0; j < k; ++j) {
      OP_REQUIRES(ctx, ids[j] >= 0 && ids[j] < rows, errors::InvalidArgument("row index out of range"));
    }
    // the gradient rows of each id, in row order (a stable counting sort)
    std::vector<int64_t> start(k + 1, 0), order(n);
    for (int64_t i = 0; i < n; ++i) {
      OP_REQUIRES(ctx, pos[i] >= 0 && pos[i] < k, errors::InvalidArgument("position out of range"));
      ++start[pos[i] + 1];
    }
    for (int64_t j = 0; j < k; ++j) start[j + 1] += start[j];
    {
      std::vector<int64_t> next(start.begin(), start.end() - 1);
      for (int64_t i = 0; i < n; ++i) order[next[pos[i]]++] = i;
    }
    float* w = var.flat<float>().data();
    float* mm = m.flat<float>().data();
    float* vv = v.flat<float>().data();
    const float* g = grad.flat<float>().data();
    const int64_t* first = start.data();
    const int64_t* rows_of = order.data();
    auto work = [=](int64_t begin, int64_t end) {  // ids are distinct: no two shards share a row
      std::vector<float> sum(width);
      for (int64_t j = begin; j < end; ++j) {
        const int64_t a = first[j], b = first[j + 1];
        if (a == b) continue;  // no gradient row: left as it is
        const float* gj = g + rows_of[a] * width;
        if (b - a > 1) {
          std::fill(sum.begin(), sum.end(), 0.0f);
          for (int64_t r = a; r < b; ++r) {
            const float* row = g + rows_of[r] * width;
            for (int64_t c = 0; c < width; ++c) sum[c] += row[c];
          }
          gj = sum.data();
        }
        const int64_t at = ids[j] * width;
        UpdateRow(gj, w + at, mm + at, vv + at, width, alpha, one_b1, one_b2, eps);
      }
    };
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
    Shard(pool->num_threads, pool->workers, k, 10 * width, work);
  }
};
}  // namespace

REGISTER_OP("MlbenchLazyAdamRows")
    .Input("var: resource").Input("m: resource").Input("v: resource")
    .Input("alpha: float").Input("one_minus_beta1: float").Input("one_minus_beta2: float")
    .Input("epsilon: float").Input("grad: float").Input("indices: int64").Input("positions: int64")
    .SetIsStateful()
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext*) { return absl::OkStatus(); });
REGISTER_KERNEL_BUILDER(Name("MlbenchLazyAdamRows").Device(tensorflow::DEVICE_CPU), LazyAdamRowsOp);
"""


def _ops_cache_dir() -> Path:
    base = os.environ.get("MLBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mlbench")
    return Path(base) / "ops"


def _cpu_flags() -> list[str]:
    """-mavx2 -mfma where the CPU has them (the update is ~25% faster than with SSE)."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return []
    flags = set(next((l for l in info.splitlines() if l.startswith("flags")), "").split())
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= flags else []


@functools.lru_cache(maxsize=None)
def fused_row_adam_op():
    """The compiled ``MlbenchLazyAdamRows`` op, or None where it cannot be built.

    Why a C++ kernel: TensorFlow has fused in-place sparse updates for Adagrad,
    FTRL, RMSProp… but not for Adam, and composing one from gathers, a fused
    dense Adam on the gathered rows and scatters moves every row ~19 times
    through memory instead of 7 — the lazy update then costs ~30 ms of a ~45 ms
    Reuters step on 2 CPU cores instead of ~8 ms.  Built with the compiler in
    ``$CXX`` (default g++) against the installed TensorFlow's headers on first use
    (~10 s), cached under ``$MLBENCH_CACHE`` (default ~/.cache/mlbench), and keyed
    by source, flags and TensorFlow version.  ``MLBENCH_FUSED_ADAM=0`` turns it
    off; without a compiler LazyAdam falls back to the TensorFlow-ops update (same
    results, slower).
    """
    if os.environ.get("MLBENCH_FUSED_ADAM", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        logging.getLogger(__name__).info("LazyAdam: no C++ compiler; using the TensorFlow-ops update")
        return None
    flags = ["-shared", "-fPIC", "-O3", "-ffp-contract=off", "-fno-math-errno", "-w", *_cpu_flags()]
    tf_flags = [*tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
    key = hashlib.sha256("\n".join([_FUSED_SOURCE, tf.__version__, *flags, *tf_flags]).encode()).hexdigest()[:16]
    library = _ops_cache_dir() / f"lazy_adam_rows-{key}.so"
    try:
        if not library.exists():
            library.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
                source = Path(tmp) / "lazy_adam_rows.cc"
                source.write_text(_FUSED_SOURCE)
                built = Path(tmp) / library.name
                subprocess.run([compiler, *flags, str(source), "-o", str(built), *tf_flags],
                               check=True, capture_output=True, timeout=300)
                os.replace(built, library)  # atomic: concurrent builders never see half a file
        return tf.load_op_library(str(library))
    except (OSError, subprocess.SubprocessError, tf.errors.OpError) as err:
        logging.getLogger(__name__).warning("LazyAdam: fused row update unavailable (%s); "
                                            "using the TensorFlow-ops update", err)
        return None
