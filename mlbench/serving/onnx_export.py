"""Exported SavedModel folder → ONNX folder (float or dynamic int8) with its text front end.

ONNX cannot hold the raw-string part of our graphs (regex replace, string split,
n-grams, hash-table lookups), and tf2onnx does not convert the MLP's custom
`SparseDense`.  So an ONNX export is two halves in one folder:

* ``model.onnx`` — the numeric core, converted with tf2onnx (opset 18) from a TF
  function rebuilt out of the SavedModel's own variables; with ``int8`` its weights
  are quantised by onnxruntime's ``quantize_dynamic`` (QInt8);
* the text front end (`mlbench.serving.text_frontend`: ``frontend.json``,
  ``vocabulary.json``, ``idf.npy``), whose vocabulary and idf are read out of the
  SavedModel's lookup table and constants.

Cores, by track (inputs → outputs ``logits``, ``scores`` = sigmoid(logits)):

* ``mlp`` — TF-IDF rows in COO form (``rows``, ``cols`` int64 [nnz], ``values``
  float32 [nnz], ``n_docs`` int64 []) → first layer as ``Gather(kernel, cols) ·
  values`` summed per row (``ScatterND`` add: the sparse product, not a dense
  [n, V] × [V, 512] MatMul) → relu Dense layers → logits [n, L];
* ``svm`` / ``svm_balanced`` (any `baselines.linear_export` model) — the same COO
  input → ``X @ W + b`` margins (score scale folded in) [n, L];
* ``encoder`` — ``token_ids`` int64 [n, T] → the rebuilt Keras encoder → logits.

Why COO and not a dense [n, V] input: Reuters' V is 55k (MLP) to ~10⁵ (SVM), so a
dense batch of 256 is 50–100 MB and the first MatMul multiplies zeros; and dynamic
int8 would quantise that input per tensor, where the MLP's ``[UNK]`` column (most of
a row's norm) would leave the real TF-IDF values a handful of levels.  With Gather,
int8 applies to the weights only (``Gather`` on int8 + ``DequantizeLinear``); the
table's columns are scaled to max 1 first (the scale re-applied in float), so its one
int8 scale acts as a scale per column.  The hidden MatMuls stay float (< 2% of the
bytes; int8 there would add per-batch activation quantisation).

Every export checks itself: the ONNX folder and the SavedModel score the same
probe texts (vocabulary words, case, punctuation, unknown words, empty strings, and
any `probe_texts` given); a float export more than `tolerance` away raises.  The
figures land in ``mlbench.json`` (``"parity"``).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mlbench.errors import InputError

ONNX_FORMAT = "onnx"
MODEL_FILE = "model.onnx"
OPSET = 18
LABELS_FILE = "labels.json"
META_FILE = "mlbench.json"
THRESHOLDS_FILE = "thresholds.json"
#: the optional extra's pins (pyproject ``[project.optional-dependencies] onnx``)
ONNX_PINS = ("onnx==1.23.2", "onnxruntime==1.31.1", "tf2onnx==1.17.0")
LINEAR_TRACKS = ("svm", "svm_balanced", "logreg")

__all__ = ["export_onnx", "ONNX_FORMAT", "MODEL_FILE", "ONNX_PINS", "require_onnx"]


def require_onnx(what: str = "ONNX export") -> None:
    """InputError naming the pins unless onnx, onnxruntime and tf2onnx import."""
    missing = []
    for module in ("onnx", "onnxruntime", "tf2onnx"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise InputError(f"{what} needs {', '.join(missing)}: pip install " + " ".join(ONNX_PINS)
                         + " (or pip install -e '.[onnx]')")


# -- reading a SavedModel back -----------------------------------------------------------------
class _Source:
    """A loaded raw-string SavedModel: its variables, lookup table(s) and captured constants."""

    def __init__(self, directory: Path):
        import tensorflow as tf

        from mlbench.serving.export import SERVE_SIGNATURE, _import_requirements

        self.directory = directory
        if not (directory / "saved_model.pb").exists():
            raise InputError(f"{directory}: not an exported SavedModel (no saved_model.pb)")
        self.meta: dict = _import_requirements(directory)
        self.labels: list[str] = json.loads((directory / LABELS_FILE).read_text(encoding="utf-8"))
        self.loaded = tf.saved_model.load(str(directory))
        self.serve = self.loaded.signatures[SERVE_SIGNATURE]
        objects = tf.train.TrackableView(self.loaded).descendants()
        self.variables: dict[str, np.ndarray] = {}
        for obj in objects:
            if isinstance(obj, tf.Variable):
                name = re.sub(r":\d+$", "", obj.name)
                if obj.dtype.is_floating:
                    self.variables.setdefault(name, obj.numpy())
        self.tables = [obj for obj in objects if "HashTable" in type(obj).__name__
                       and hasattr(obj, "resource_handle")]
        self.constants = [t.numpy() for t in self.serve.captured_inputs
                          if t.dtype != tf.resource]

    def table(self) -> dict[bytes, int]:
        """The one string → id lookup table of the graph (its vocabulary)."""
        import tensorflow as tf

        if len(self.tables) != 1:
            raise InputError(f"{self.directory}: expected one vocabulary table, found {len(self.tables)}")
        keys, values = tf.raw_ops.LookupTableExportV2(
            table_handle=self.tables[0].resource_handle, Tkeys=tf.string, Tvalues=tf.int64)
        return dict(zip(keys.numpy().tolist(), values.numpy().tolist()))

    def scores(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """The SavedModel's own scores [n, L] (the parity reference)."""
        import tensorflow as tf

        from mlbench.serving.export import INPUT_NAME

        out = [self.serve(**{INPUT_NAME: tf.constant(list(texts[i : i + batch_size]), tf.string)})
               ["scores"].numpy() for i in range(0, len(texts), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)


def _vocabulary(table: dict[bytes, int], size: int, reserved: dict[int, str]) -> list[str]:
    """Terms in id order [size]: `reserved` ids (OOV, padding) first, the table's terms at theirs."""
    vocab: list[str | None] = [None] * size
    for j, name in reserved.items():
        vocab[j] = name
    for term, j in table.items():
        if not 0 <= j < size or vocab[j] is not None:
            raise InputError(f"vocabulary table maps {term!r} to id {j}, outside 0..{size - 1} or taken")
        vocab[j] = term.decode("utf-8", "surrogateescape")
    holes = [j for j, t in enumerate(vocab) if t is None]
    if holes:
        raise InputError(f"vocabulary table leaves {len(holes)} ids without a term (first: {holes[0]})")
    return vocab  # type: ignore[return-value]


def _rank1(candidates: list[np.ndarray], size: int, what: str) -> np.ndarray:
    """The one float vector of length `size` among `candidates` (equal copies allowed)."""
    found = [np.asarray(c) for c in candidates
             if np.ndim(c) == 1 and np.shape(c)[0] == size and np.asarray(c).dtype.kind == "f"]
    if not found or any(not np.array_equal(found[0], f) for f in found[1:]):
        raise InputError(f"cannot find the {what} [{size}] in the SavedModel ({len(found)} candidates)")
    return found[0]


# -- numeric cores -------------------------------------------------------------------------------
def _coo_spec():
    import tensorflow as tf

    return [tf.TensorSpec([None], tf.int64, name="rows"), tf.TensorSpec([None], tf.int64, name="cols"),
            tf.TensorSpec([None], tf.float32, name="values"), tf.TensorSpec([], tf.int64, name="n_docs")]


def _column_scaled(kernel: np.ndarray):
    """(kernel / s, s) with s [units] the columns' max |value|, as tf.Variables.

    Why: dynamic int8 quantises a Gather table with one scale for the whole tensor;
    with every column scaled to max 1 first (and s applied after the sum, in float)
    that one scale is as good as a scale per column.  Float results are unchanged
    up to rounding.
    """
    import tensorflow as tf

    scale = np.max(np.abs(kernel), axis=0).astype(np.float32)
    scale[scale == 0] = 1.0
    return tf.Variable((kernel / scale).astype(np.float32)), tf.Variable(scale)


def _sparse_first_layer(kernel, scale, rows, cols, values, n_docs):
    """(Σ_j values_j · kernel[cols_j]) · scale per row: the sparse [n, V] × [V, units] product."""
    import tensorflow as tf

    units = tf.constant(int(kernel.shape[1]), tf.int64)
    contrib = tf.gather(kernel, cols) * values[:, None]
    total = tf.tensor_scatter_nd_add(tf.zeros(tf.stack([n_docs, units]), tf.float32), rows[:, None], contrib)
    return total * scale


def _outputs(logits) -> dict:
    import tensorflow as tf

    return {"logits": tf.identity(logits, name="logits"), "scores": tf.sigmoid(logits, name="scores")}


def _mlp_core(source: _Source):
    """(front end, tf.function over COO TF-IDF → logits/scores) of an `mlp` export."""
    import tensorflow as tf

    from mlbench.serving.text_frontend import KerasTfidfFrontEnd

    pattern = re.compile(r"^(?:dense_(\d+)|logits)/(kernel|bias)$")
    layers: dict[float, dict[str, np.ndarray]] = {}
    for name, value in source.variables.items():
        m = pattern.match(name)
        if m:
            order = float(m.group(1)) if m.group(1) is not None else float("inf")
            layers.setdefault(order, {})[m.group(2)] = value
    chain = [layers[k] for k in sorted(layers)]
    if len(chain) < 2 or any(set(c) != {"kernel", "bias"} for c in chain):
        raise InputError(f"{source.directory}: expected dense_0…dense_k + logits kernels and biases, "
                         f"found {sorted(source.variables)}")
    for a, b in zip(chain, chain[1:]):
        if a["kernel"].shape[1] != b["kernel"].shape[0]:
            raise InputError(f"{source.directory}: layer shapes do not chain")
    n_features = int(chain[0]["kernel"].shape[0])
    idf = _rank1(source.constants + [v for k, v in source.variables.items() if not pattern.match(k)],
                 n_features, "TF-IDF idf weights")
    ngrams = source.meta.get("ngrams", 2)
    widths = tuple(range(1, int(ngrams) + 1)) if isinstance(ngrams, int) else tuple(ngrams)
    frontend = KerasTfidfFrontEnd(_vocabulary(source.table(), n_features, {0: "[UNK]"}), idf,
                                  ngrams=widths, drop_oov=bool(source.meta.get("drop_oov", False)))

    k0, s0 = _column_scaled(chain[0]["kernel"])
    weights = [(tf.Variable(c["kernel"]), tf.Variable(c["bias"])) for c in chain]

    @tf.function(input_signature=_coo_spec(), autograph=False)
    def core(rows, cols, values, n_docs):
        (_, b0), rest = weights[0], weights[1:]
        h = tf.nn.relu(_sparse_first_layer(k0, s0, rows, cols, values, n_docs) + b0)
        for i, (k, b) in enumerate(rest):
            h = tf.matmul(h, k) + b
            if i < len(rest) - 1:
                h = tf.nn.relu(h)
        return _outputs(h)

    core._mlbench_weights = (k0, s0, weights)  # keep the variables alive with the function
    return frontend, core


def _linear_core(source: _Source):
    """(front end, tf.function over COO TF-IDF → margins/scores) of a linear (SVM) export."""
    import tensorflow as tf

    from mlbench.serving.text_frontend import SklearnTfidfFrontEnd

    n_labels = len(source.labels)
    table = source.table()
    n_features = len(table)
    v = source.variables
    weights = v.get("weights")
    if weights is None or weights.shape != (n_features, n_labels):
        cands = [a for a in v.values() if a.shape == (n_features, n_labels)]
        if len(cands) != 1:
            raise InputError(f"{source.directory}: cannot find the linear weights [{n_features}, {n_labels}]")
        weights = cands[0]
    bias = v["bias"] if "bias" in v and v["bias"].shape == (n_labels,) else \
        _rank1([a for a in v.values()], n_labels, "bias")
    idf = v["idf"] if "idf" in v and v["idf"].shape == (n_features,) else \
        _rank1([a for a in v.values()], n_features, "idf")
    meta = source.meta
    frontend = SklearnTfidfFrontEnd(
        _vocabulary(table, n_features, {}), np.asarray(idf, np.float64),
        ngram_range=meta.get("ngram_range", (1, 1)), sublinear_tf=bool(meta.get("sublinear_tf", False)),
        norm=meta.get("norm", "l2"), lowercase=bool(meta.get("lowercase", True)),
        binary=bool(meta.get("binary", False)))
    w, scale = _column_scaled(np.asarray(weights, np.float32))
    b = tf.Variable(np.asarray(bias, np.float32))

    @tf.function(input_signature=_coo_spec(), autograph=False)
    def core(rows, cols, values, n_docs):
        return _outputs(_sparse_first_layer(w, scale, rows, cols, values, n_docs) + b)

    core._mlbench_weights = (w, scale, b)
    return frontend, core


def _gelu_erf(x):
    """Exact GELU as ``0.5·x·(1 + erf(x/√2))`` (ONNX has Erf, not Erfc)."""
    import tensorflow as tf

    return 0.5 * x * (1.0 + tf.math.erf(x * np.float32(1.0 / np.sqrt(2.0))))


def _encoder_core(source: _Source):
    """(front end, tf.function over token ids [n, T] → logits/scores) of an `encoder` export."""
    import tensorflow as tf

    from mlbench.serving.text_frontend import KerasIdsFrontEnd
    from transformers_track.encoder import build_backbone, build_classifier

    v = source.variables
    try:
        tokens = v["embedding/token_embedding/embeddings"]
        positions = v["embedding/position_embedding/embeddings"]
        query = v["block_0/attention/query/kernel"]
        ffn_in = v["block_0/ffn_in/kernel"]
    except KeyError as err:
        raise InputError(f"{source.directory}: not an encoder export (no variable {err})") from None
    vocab_size, d_model = tokens.shape
    seq_len = int(source.meta.get("seq_len") or positions.shape[0])
    num_blocks = len({m.group(1) for k in v if (m := re.match(r"^block_(\d+)/", k))})
    norm_first = "final_norm/gamma" in v
    backbone = build_backbone(int(vocab_size), int(positions.shape[0]), d_model=int(d_model),
                              num_blocks=num_blocks, num_heads=int(query.shape[1]),
                              ff_dim=int(ffn_in.shape[1]), dropout=0.0, norm_first=norm_first)
    model = build_classifier(backbone, len(source.labels), dropout=0.0)
    for layer in backbone.layers:  # TF writes exact GELU with Erfc, which ONNX lacks
        ffn_in = getattr(layer, "ffn_in", None)
        if ffn_in is not None:
            ffn_in.activation = _gelu_erf
    assigned = set()
    for var in model.weights:
        if var.path not in v:
            raise InputError(f"{source.directory}: the rebuilt encoder has {var.path}, the export does not")
        var.assign(v[var.path])
        assigned.add(var.path)
    unused = [k for k in v if k not in assigned and "seed_generator" not in k]
    if unused:
        raise InputError(f"{source.directory}: encoder variables not placed in the rebuilt model: {unused[:5]}")
    frontend = KerasIdsFrontEnd(_vocabulary(source.table(), int(vocab_size), {0: "", 1: "[UNK]"}),
                                sequence_length=seq_len)

    @tf.function(input_signature=[tf.TensorSpec([None, seq_len], tf.int64, name="token_ids")],
                 autograph=False)
    def core(token_ids):
        return _outputs(model(tf.cast(token_ids, tf.int32), training=False))

    core._mlbench_model = model
    return frontend, core


def _core_for(source: _Source) -> tuple[Any, Callable]:
    track = source.meta.get("track")
    if track == "mlp":
        return _mlp_core(source)
    if track in LINEAR_TRACKS or "token_pattern" in (source.meta.get("tokenizer") or {}):
        return _linear_core(source)
    if track == "encoder":
        return _encoder_core(source)
    raise InputError(f"{source.directory}: no ONNX export for track {track!r} "
                     f"(supported: mlp, {', '.join(LINEAR_TRACKS)}, encoder)")


# -- probes ------------------------------------------------------------------------------------------
def probe_texts(vocabulary: Sequence[str], n: int = 48, seed: int = 0) -> list[str]:
    """Texts that exercise a front end: vocabulary words in random case and punctuation,
    unknown and non-ASCII words, odd whitespace, empty strings."""
    rng = np.random.default_rng(seed)
    words = sorted({w for t in vocabulary for w in t.split(" ") if w and w not in ("[UNK]",)})
    extra = ["Zzqxv", "naïve", "Straße", "ÉCOLE", "U.S.", "don't", "e-mail", "x_y", "42", "3.5%",
             "\u00a0", "\t", "\n", "(TRADE)", "price,", "“quoted”"]
    out = ["", "   ", "Oil prices ROSE after OPEC cut output.", "\u00a0".join(words[:5])]
    for _ in range(n):
        k = int(rng.integers(0, 60))
        picks = [str(w) for w in rng.choice(words, size=k)] if words and k else []
        picks = [w.upper() if rng.random() < 0.1 else w.capitalize() if rng.random() < 0.1 else w
                 for w in picks]
        picks += [str(rng.choice(extra)) for _ in range(int(rng.integers(0, 4)))]
        rng.shuffle(picks)
        out.append(" ".join(picks) + ("." if rng.random() < 0.5 else ""))
    return out


def _check_standard_ops(model, directory: Path) -> None:
    """RuntimeError naming any node tf2onnx left as an unconverted TensorFlow op."""
    import onnx

    unknown = sorted({n.op_type for n in model.graph.node
                      if not onnx.defs.has(n.op_type, n.domain or "")})
    if unknown:
        raise RuntimeError(f"{directory}: tf2onnx could not convert the TensorFlow ops {unknown}")


# -- the export ----------------------------------------------------------------------------------------
def export_onnx(model_dir: Path, out_dir: Path, *, int8: bool = False,
                probe: Sequence[str] | None = None, tolerance: float = 1e-4) -> Path:
    """Convert the SavedModel export in `model_dir` to an ONNX folder `out_dir`.

    `int8` quantises the weights (onnxruntime ``quantize_dynamic``, QInt8).  `probe`
    texts are scored by both models on top of the built-in probes; a float export
    whose scores differ by more than `tolerance` raises RuntimeError.  Returns `out_dir`,
    holding model.onnx, the front end files, labels.json, thresholds.json (copied,
    when present) and mlbench.json (``"format": "onnx"``).
    """
    require_onnx()
    import onnx
    import onnxruntime
    import tf2onnx

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; refusing to overwrite")
    source = _Source(model_dir)
    frontend, core = _core_for(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / MODEL_FILE
        tf2onnx.convert.from_function(core, input_signature=core.input_signature, opset=OPSET,
                                      output_path=str(float_path))
        _check_standard_ops(onnx.load(str(float_path)), source.directory)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # TF-IDF cores: only the big Gather table (the small hidden MatMuls would add
            # per-batch activation quantisation for < 2% of the bytes); encoder: all
            ops = ["Gather"] if frontend.kind != "keras_ids" else None
            # 7-bit weights: on x86 CPUs without VNNI (AVX2, AVX-512 before Cascade Lake) the
            # u8 x s8 kernels add pairs of products in int16 and saturate with 8-bit weights
            # (onnxruntime's quantization docs); reduce_range keeps int8 scores the same there
            quantize_dynamic(str(float_path), str(out_dir / MODEL_FILE), weight_type=QuantType.QInt8,
                             op_types_to_quantize=ops, reduce_range=True)
        else:
            shutil.copyfile(float_path, out_dir / MODEL_FILE)
    frontend.save(out_dir)
    shutil.copyfile(model_dir / LABELS_FILE, out_dir / LABELS_FILE)
    if (model_dir / THRESHOLDS_FILE).exists():
        shutil.copyfile(model_dir / THRESHOLDS_FILE, out_dir / THRESHOLDS_FILE)
    session_model = onnx.load(str(out_dir / MODEL_FILE), load_external_data=False)
    meta = {
        "track": source.meta.get("track"), "format": ONNX_FORMAT, "int8": bool(int8),
        "model_file": MODEL_FILE, "opset": OPSET, "frontend": frontend.kind,
        "inputs": [i.name for i in session_model.graph.input],
        "outputs": [o.name for o in session_model.graph.output],
        "thresholds": source.meta.get("thresholds"),
        "source": {"path": str(model_dir), "format": source.meta.get("format", "savedmodel"),
                   **{k: v for k, v in source.meta.items()
                      if k not in ("format", "thresholds", "signatures")}},
        "versions": {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")

    from mlbench.serving.onnx_artifact import OnnxArtifact

    texts = probe_texts(frontend.vocabulary) + list(probe or [])
    want, got = source.scores(texts), OnnxArtifact(out_dir).predict(texts)
    diff = float(np.max(np.abs(want - got))) if want.size else 0.0
    top1 = float(np.mean(np.argmax(want, 1) == np.argmax(got, 1))) if want.size else 1.0
    meta["parity"] = {"probe_texts": len(texts), "max_abs_score_diff": diff, "top1_agreement": top1}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if not int8 and diff > tolerance:
        raise RuntimeError(f"{out_dir}: ONNX scores differ from the SavedModel's by {diff:.3g} "
                           f"(> {tolerance}) on {len(texts)} probe texts")
    return out_dir
