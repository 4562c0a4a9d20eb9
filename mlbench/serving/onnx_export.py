"""Exported SavedModel folder (calibrated or not) → ONNX folder (float or int8).

Which ONNX model a track gets is declared on the track (`mlbench.tracks.Track.onnx_core`,
read through the registry with the export's ``track``):

* ``linear`` (svm, svm_balanced, any `baselines.linear_export` model) — by default ONE
  graph from raw strings to scores (`mlbench.serving.onnx_graph.linear_text_graph`:
  ONNX's string ops + onnxruntime's ``Tokenizer``), its vocabulary, idf, weights and
  bias read out of the SavedModel; with ``python_frontend`` the COO core below;
* ``tfidf_mlp`` and ``token_ids`` — ONNX cannot hold the MLP's / encoder's string ops
  (Keras' regex replace, string split, n-grams, hash-table lookups), and tf2onnx does
  not convert the MLP's custom `SparseDense`.  So the folder holds two halves:
  ``model.onnx``, the numeric core converted with tf2onnx (opset 18) from a TF function
  rebuilt out of the SavedModel's own variables, and the text front end
  (`mlbench.serving.text_frontend`: ``frontend.json``, ``vocabulary.json.gz``,
  ``idf.npz``) whose vocabulary and idf are read out of the SavedModel's lookup table
  and constants.

Cores (inputs → outputs ``logits``, ``scores`` = sigmoid(logits)):

* MLP — TF-IDF rows in COO form (``rows``, ``cols`` int64 [nnz], ``values``
  float32 [nnz], ``n_docs`` int64 []) → first layer as ``Gather(kernel, cols) ·
  values`` summed per row (``ScatterND`` add: the sparse product, not a dense
  [n, V] × [V, 512] MatMul) → relu Dense layers → logits [n, L];
* linear with ``python_frontend`` — the same COO input → ``X @ W + b`` margins
  (score scale folded in) [n, L];
* token ids — ``token_ids`` int64 [n, T] → the track's Keras classifier, rebuilt by the
  track itself from the architecture in mlbench.json (`Track.onnx_keras_model`; serving
  imports no track) and given the SavedModel's weights → logits.

Why COO and not a dense [n, V] input: Reuters' V is 55k (MLP) to ~10⁵ (SVM), so a
dense batch of 256 is 50–100 MB and the first MatMul multiplies zeros; and dynamic
int8 would quantise that input per tensor, where the MLP's ``[UNK]`` column (most of
a row's norm) would leave the real TF-IDF values a handful of levels.  With Gather,
int8 applies to the weights only (``Gather`` on int8 + ``DequantizeLinear``); the
table's columns are scaled to max 1 first (the scale re-applied in float), so its one
int8 scale acts as a scale per column.  The hidden MatMuls get int8 weights with a
scale per column, dequantised in the graph (dynamic int8 there would add per-batch
activation quantisation).  (The self-contained linear graph does compute the dense
[n, V] TF-IDF: ONNX's ``TfIdfVectorizer`` emits it.)

Every model.onnx then gets the heads of `onnx_graph.add_heads`: ``labels`` (the saved
best rule) and, when the export is calibrated (calibration.json), ``probabilities``.
A calibrated export is the original model re-saved inside a wrapper
(`mlbench.serving.calibrated`), so its weights and constants are read from the
original graph (`_Source`).

Every export checks itself: the ONNX folder and the SavedModel score the same
probe texts (vocabulary words, case, punctuation, unknown words, empty strings, and
any `probe_texts` given); a float export more than `tolerance` away raises, and the
folder is not written.  The figures land in ``mlbench.json`` (``"parity"``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mlbench.errors import InputError
from mlbench.serving.layout import (CALIBRATION_FILE, INPUT_NAME, LABELS_FILE, META_FILE, ONNX_FORMAT,
                                    ONNX_MODEL_FILE, PROBABILITIES, SAVEDMODEL_FILE, SAVEDMODEL_FORMAT,
                                    SCORES, SERVE_SIGNATURE, THRESHOLDS_FILE, import_requirements,
                                    read_calibration, read_labels, saved_threshold, write_meta)
from mlbench.serving.onnx_artifact import OnnxArtifact
from mlbench.serving.onnx_graph import (LOCALE, add_heads, int8_matmul_weights, linear_text_graph,
                                        lowercase_mismatches)
from mlbench.serving.text_frontend import (KerasIdsFrontEnd, KerasTfidfFrontEnd, SklearnTfidfFrontEnd,
                                           StringsFrontEnd)
from mlbench.serving.word_class import python_word_class
from mlbench.tracks import get_track_class, track_names

OPSET = 18
#: the optional extra's pins (pyproject ``[project.optional-dependencies] onnx``)
ONNX_PINS = ("onnx==1.23.2", "onnxruntime==1.31.1", "tf2onnx==1.17.0")

__all__ = ["export_onnx", "ONNX_PINS", "require_onnx"]


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
    """A loaded raw-string SavedModel: its variables, lookup table(s), captured constants
    and calibration.

    A calibrated export (`mlbench.serving.calibrated.add_calibration`) is the original
    model re-saved inside a wrapper (``.model``) whose signatures add ``probabilities``:
    the constants are read from the original's own ``serving_default`` (not the
    calibration map's), and tables are recognised by what they do (a string → int64
    `LookupTableExportV2` answers), since a reloaded table's Python type is a generic
    restored resource.
    """

    def __init__(self, directory: Path):
        import tensorflow as tf

        self.directory = directory
        if not (directory / SAVEDMODEL_FILE).exists():
            raise InputError(f"{directory}: not an exported SavedModel (no {SAVEDMODEL_FILE})")
        self.meta: dict = import_requirements(directory)
        self.labels: list[str] = read_labels(directory)
        self.calibration = read_calibration(directory)
        self.loaded = tf.saved_model.load(str(directory))
        self.serve = self.loaded.signatures[SERVE_SIGNATURE]
        inner = self.loaded
        while self.meta.get("calibrated") and SERVE_SIGNATURE in getattr(getattr(inner, "model", None),
                                                                         "signatures", {}):
            inner = inner.model  # the export as it was before calibration
        objects = tf.train.TrackableView(self.loaded).descendants()
        self.variables: dict[str, np.ndarray] = {}
        for obj in objects:
            if isinstance(obj, tf.Variable):
                name = re.sub(r":\d+$", "", obj.name)
                if obj.dtype.is_floating:
                    self.variables.setdefault(name, obj.numpy())
        self.tables = [obj for obj in objects if not isinstance(obj, tf.Variable)
                       and hasattr(obj, "resource_handle") and _string_table(obj) is not None]
        self.constants = [t.numpy() for t in inner.signatures[SERVE_SIGNATURE].captured_inputs
                          if t.dtype != tf.resource]

    def table(self) -> dict[bytes, int]:
        """The one string → id lookup table of the graph (its vocabulary)."""
        if len(self.tables) != 1:
            raise InputError(f"{self.directory}: expected one vocabulary table, found {len(self.tables)}")
        return _string_table(self.tables[0])  # type: ignore[return-value]

    def outputs(self, texts: Sequence[str], batch_size: int = 256) -> dict[str, np.ndarray]:
        """The SavedModel's own ``serving_default`` outputs over `texts` (the parity
        reference): ``scores`` [n, L] and, when calibrated, ``probabilities`` [n, L]."""
        import tensorflow as tf

        batches = [self.serve(**{INPUT_NAME: tf.constant(list(texts[i : i + batch_size]), tf.string)})
                   for i in range(0, len(texts), batch_size)]
        names = list(self.serve.structured_outputs)
        if not batches:
            return {k: np.zeros((0, len(self.labels)), np.float32) for k in names}
        return {k: np.concatenate([b[k].numpy() for b in batches]) for k in names}


def _string_table(resource) -> dict[bytes, int] | None:
    """{key: id} of a string → int64 lookup table resource; None for any other resource."""
    import tensorflow as tf

    try:
        keys, values = tf.raw_ops.LookupTableExportV2(
            table_handle=resource.resource_handle, Tkeys=tf.string, Tvalues=tf.int64)
    except (tf.errors.OpError, TypeError, ValueError):
        return None
    return dict(zip(keys.numpy().tolist(), values.numpy().tolist()))


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

    return {"logits": tf.identity(logits, name="logits"), SCORES: tf.sigmoid(logits, name=SCORES)}


def _mlp_core(source: _Source):
    """(front end, tf.function over COO TF-IDF → logits/scores) of an `mlp` export."""
    import tensorflow as tf

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


def _linear_parts(source: _Source) -> dict[str, Any]:
    """The fitted TF-IDF + linear model inside a linear export (`baselines.linear_export`):
    vocabulary [V] (column order), idf [V], weights [V, L], bias [L] (logit units) and
    the vectorizer settings."""
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
    return {"vocabulary": _vocabulary(table, n_features, {}), "idf": np.asarray(idf, np.float64),
            "weights": np.asarray(weights, np.float32), "bias": np.asarray(bias, np.float32),
            "ngram_range": tuple(meta.get("ngram_range", (1, 1))),
            "sublinear_tf": bool(meta.get("sublinear_tf", False)), "norm": meta.get("norm", "l2"),
            "lowercase": bool(meta.get("lowercase", True)), "binary": bool(meta.get("binary", False))}


def _linear_core(source: _Source):
    """(front end, tf.function over COO TF-IDF → margins/scores) of a linear (SVM) export."""
    import tensorflow as tf

    parts = _linear_parts(source)
    frontend = SklearnTfidfFrontEnd(
        parts["vocabulary"], parts["idf"], ngram_range=parts["ngram_range"],
        sublinear_tf=parts["sublinear_tf"], norm=parts["norm"], lowercase=parts["lowercase"],
        binary=parts["binary"])
    w, scale = _column_scaled(parts["weights"])
    b = tf.Variable(parts["bias"])

    @tf.function(input_signature=_coo_spec(), autograph=False)
    def core(rows, cols, values, n_docs):
        return _outputs(_sparse_first_layer(w, scale, rows, cols, values, n_docs) + b)

    core._mlbench_weights = (w, scale, b)
    return frontend, core


def _linear_graph(source: _Source, *, int8: bool):
    """(vocabulary, ONNX model from raw strings, tokenizer notes) of a linear export:
    `mlbench.serving.onnx_graph.linear_text_graph` with the export's own word class."""
    parts = _linear_parts(source)
    model = linear_text_graph(parts["vocabulary"], parts["idf"],
                              parts["weights"], parts["bias"], word_class=python_word_class(),
                              ngram_range=parts["ngram_range"], sublinear_tf=parts["sublinear_tf"],
                              norm=parts["norm"], lowercase=parts["lowercase"], binary=parts["binary"],
                              int8=int8, opset=OPSET)
    notes = {"locale": LOCALE, "token_pattern": "runs of >= 2 Python word characters",
             "lowercase_mismatches": [f"U+{c:04X}" for c in lowercase_mismatches()] if parts["lowercase"]
             else []}
    return parts["vocabulary"], model, notes


def _token_ids_core(source: _Source):
    """(front end, tf.function over token ids [n, T] → logits/scores) of a token-id export.

    The track rebuilds its own classifier from the architecture in mlbench.json
    (`mlbench.tracks.Track.onnx_keras_model`, found through the registry by the export's
    ``track``); this function only gives it the SavedModel's weights, by variable path."""
    import tensorflow as tf

    v = source.variables
    seq_len = source.meta.get("seq_len")
    if not seq_len:
        raise InputError(f"{source.directory}: {META_FILE} has no seq_len (the token-id input length)")
    track = get_track_class(source.meta.get("track"))
    try:
        model = track.onnx_keras_model(source.meta, len(source.labels), {k: a.shape for k, a in v.items()})
    except InputError as err:
        raise InputError(f"{source.directory}: {err}") from None
    assigned = set()
    for var in model.weights:
        if var.path not in v:
            raise InputError(f"{source.directory}: the rebuilt model has {var.path}, the export does not")
        var.assign(v[var.path])
        assigned.add(var.path)
    unused = [k for k in v if k not in assigned and "seed_generator" not in k]
    if unused:
        raise InputError(f"{source.directory}: variables not placed in the rebuilt model: {unused[:5]}")
    table = source.table()  # ids 0 (padding) and 1 (OOV) are not in it
    frontend = KerasIdsFrontEnd(_vocabulary(table, len(table) + 2, {0: "", 1: "[UNK]"}),
                                sequence_length=int(seq_len))

    @tf.function(input_signature=[tf.TensorSpec([None, int(seq_len)], tf.int64, name="token_ids")],
                 autograph=False)
    def core(token_ids):
        return _outputs(model(tf.cast(token_ids, tf.int32), training=False))

    core._mlbench_model = model
    return frontend, core


#: the numeric cores a track can name as its ``onnx_core`` (`mlbench.tracks.Track`)
_CORES: dict[str, Callable[[_Source], tuple[Any, Callable]]] = {
    "tfidf_mlp": _mlp_core, "linear": _linear_core, "token_ids": _token_ids_core}


def onnx_tracks() -> list[str]:
    """Registered tracks that declare an ONNX core (for messages)."""
    out = []
    for name in track_names():
        try:
            if getattr(get_track_class(name), "onnx_core", None):
                out.append(name)
        except (ImportError, AttributeError):
            continue
    return out


def core_name(source: _Source) -> str:
    """The export's ONNX core: its track's ``onnx_core`` in the registry; for a track the
    registry does not know, "linear" when mlbench.json says it is a `baselines.linear_export`
    graph (its tokenizer record); else InputError naming the folder."""
    track = source.meta.get("track")
    name = None
    if track in track_names():
        name = getattr(get_track_class(track), "onnx_core", None)
    elif "token_pattern" in (source.meta.get("tokenizer") or {}):
        name = "linear"
    if name not in _CORES:
        raise InputError(f"{source.directory}: no ONNX export for track {track!r} "
                         f"(tracks with one: {', '.join(onnx_tracks())})")
    return name


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
def _convert_core(core: Callable, frontend: Any, directory: Path, *, int8: bool):
    """tf2onnx conversion of a numeric core (+ dynamic int8 weights): an `onnx.ModelProto`."""
    import onnx
    import tf2onnx

    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / ONNX_MODEL_FILE
        tf2onnx.convert.from_function(core, input_signature=core.input_signature, opset=OPSET,
                                      output_path=str(float_path))
        _check_standard_ops(onnx.load(str(float_path)), directory)
        if not int8:
            return onnx.load(str(float_path))
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # TF-IDF cores: dynamic int8 for the big Gather table only; the hidden MatMuls get
        # int8 weights dequantised in the graph (dynamic int8 there would quantise the
        # activations per batch for < 2% of the bytes); encoder: all dynamic
        ops = ["Gather"] if frontend.kind != "keras_ids" else None
        int8_path = Path(tmp) / f"int8_{ONNX_MODEL_FILE}"
        # 7-bit weights: on x86 CPUs without VNNI (AVX2, AVX-512 before Cascade Lake) the
        # u8 x s8 kernels add pairs of products in int16 and saturate with 8-bit weights
        # (onnxruntime's quantization docs); reduce_range keeps int8 scores the same there
        quantize_dynamic(str(float_path), str(int8_path), weight_type=QuantType.QInt8,
                         op_types_to_quantize=ops, reduce_range=True)
        model = onnx.load(str(int8_path))
        if ops is not None:  # hidden layers: int8 weights, float activations
            int8_matmul_weights(model)
        return model


def export_onnx(model_dir: Path, out_dir: Path, *, int8: bool = False,
                probe: Sequence[str] | None = None, tolerance: float = 1e-4,
                python_frontend: bool = False) -> Path:
    """Convert the SavedModel export in `model_dir` (calibrated or not) to an ONNX folder `out_dir`.

    Linear tracks become ONE graph from raw strings (`onnx_graph.linear_text_graph`)
    unless `python_frontend`; the other tracks (and linear ones with `python_frontend`)
    a numeric core with the text front end beside it.  Every model.onnx answers
    ``scores``, ``labels`` (the saved best decision rule) and, for a calibrated export,
    ``probabilities``.  `int8` quantises the weights (linear graph: int8 weights with a
    scale per label; cores: onnxruntime ``quantize_dynamic``, QInt8).  `probe` texts are
    scored by both models on top of the built-in probes; a float export whose scores
    differ by more than `tolerance` raises RuntimeError, and so does any export whose
    probabilities differ from `Calibration.apply` of its own scores by more than 1e-5.
    Returns `out_dir`, holding model.onnx, the front end files, labels.json,
    thresholds.json and calibration.json (copied, when present) and mlbench.json
    (``"format": "onnx"``).
    """
    require_onnx()
    import onnx

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; refusing to overwrite")
    source = _Source(model_dir)
    kind = core_name(source)
    tokenizer = None
    if kind == "linear" and not python_frontend:
        vocabulary, model, tokenizer = _linear_graph(source, int8=int8)
        frontend: Any = StringsFrontEnd()
    else:
        frontend, core = _CORES[kind](source)
        vocabulary = frontend.vocabulary
        model = _convert_core(core, frontend, source.directory, int8=int8)
    thresholds = saved_threshold(model_dir, source.labels, source.meta)
    add_heads(model, calibration=source.calibration, thresholds=thresholds)
    onnx.checker.check_model(model)
    # written beside `out_dir` and moved in when it passed its checks: a failed export leaves nothing
    work = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _write_folder(work, model, frontend, model_dir)
        meta = _folder_meta(source, model, frontend, kind, int8, thresholds, tokenizer, model_dir)
        write_meta(work, meta)
        _check_parity(source, work, meta, probe_texts(vocabulary) + list(probe or []),
                      tolerance=None if int8 else tolerance, target=out_dir)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        work.rename(out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out_dir


def _write_folder(work: Path, model, frontend: Any, model_dir: Path) -> None:
    """model.onnx, the front end, and the export's labels / thresholds / calibration files."""
    import onnx

    onnx.save(model, str(work / ONNX_MODEL_FILE))
    frontend.save(work)
    for name in (LABELS_FILE, THRESHOLDS_FILE, CALIBRATION_FILE):
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, work / name)


def _folder_meta(source: _Source, model, frontend: Any, kind: str, int8: bool, thresholds: Any,
                 tokenizer: dict | None, model_dir: Path) -> dict:
    """mlbench.json of an ONNX folder (``"format": "onnx"``)."""
    import onnx
    import onnxruntime
    import tf2onnx

    return {
        "track": source.meta.get("track"), "format": ONNX_FORMAT, "int8": bool(int8),
        "model_file": ONNX_MODEL_FILE, "opset": OPSET, "frontend": frontend.kind, "core": kind,
        "self_contained": frontend.kind == StringsFrontEnd.kind,
        "inputs": [i.name for i in model.graph.input],
        "outputs": [o.name for o in model.graph.output],
        "calibrated": source.calibration is not None,
        "thresholds": source.meta.get("thresholds"),
        "labels_output_thresholds": np.broadcast_to(np.asarray(thresholds, np.float64),
                                                    (len(source.labels),)).tolist(),
        **({"tokenizer": tokenizer} if tokenizer else {}),
        "source": {"path": str(model_dir), "format": source.meta.get("format", SAVEDMODEL_FORMAT),
                   **{k: v for k, v in source.meta.items()
                      if k not in ("format", "thresholds", "signatures")}},
        "versions": {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
    }


def _check_parity(source: _Source, out_dir: Path, meta: dict, texts: list[str], *,
                  tolerance: float | None, target: Path) -> None:
    """Score `texts` with the SavedModel and the ONNX folder; record the figures in
    mlbench.json (``"parity"``); RuntimeError when scores differ by more than `tolerance`
    (None: no bound, int8) or the graph's probabilities are not `Calibration.apply` of
    its own scores (1e-5: float64 maps of the same float32 scores, then float32 rounding).
    `target` is the folder the messages name (`out_dir` is where it is being written)."""
    artifact = OnnxArtifact(out_dir)
    want, got = source.outputs(texts), artifact.outputs(texts)
    diff = float(np.max(np.abs(want[SCORES] - got[SCORES]))) if len(texts) else 0.0
    top1 = float(np.mean(np.argmax(want[SCORES], 1) == np.argmax(got[SCORES], 1))) if len(texts) else 1.0
    parity = {"probe_texts": len(texts), "max_abs_score_diff": diff, "top1_agreement": top1}
    if source.calibration is not None and len(texts):
        mapped = source.calibration.apply(np.clip(got[SCORES], 0.0, 1.0))
        own = float(np.max(np.abs(got[PROBABILITIES] - mapped)))
        parity["max_abs_probability_diff"] = float(np.max(np.abs(want[PROBABILITIES] - got[PROBABILITIES])))
        parity["max_abs_calibration_map_diff"] = own
        if own > 1e-5:
            raise RuntimeError(f"{target}: not written: the graph's probabilities differ from the calibration map "
                               f"of its own scores by {own:.3g} (> 1e-5)")
    meta["parity"] = parity
    write_meta(out_dir, meta)
    if tolerance is not None and diff > tolerance:
        hint = (" (try --python-frontend: the text front end in Python)" if meta.get("self_contained")
                else "")
        raise RuntimeError(f"{target}: not written: ONNX scores differ from the SavedModel's by {diff:.3g} "
                           f"(> {tolerance}) on {len(texts)} probe texts{hint}")
