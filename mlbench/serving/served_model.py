"""The model behind `mlbench serve`: loaded once, its signatures described, texts scored in shared batches.

`ServedModel` is what the server knows about an export (labels, decision rules, the
SavedModel's signatures as TF Serving describes them) and the calls it makes on it;
`MicroBatcher` lets concurrent requests share one model call.  No web framework here:
`mlbench.serving.server` is the only module that speaks HTTP.

Outputs follow the SavedModel's ``serving_default`` signature: ``scores`` float32 [n, L]
and, for a calibrated export, ``probabilities`` float32 [n, L] (computed in the graph;
for exports without a graph, such as fastText, from ``calibration.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from mlbench.errors import InputError
from mlbench.record import RULES, RunRecord
from mlbench.serving.artifacts import load_artifact
from mlbench.serving.layout import (EXPLAIN_LABELS_INPUT, EXPLAIN_SIGNATURE, INPUT_NAME,
                                    LABELS_OUTPUT, PROBABILITIES, SAVEDMODEL_FILE, SCORES, SERVE_SIGNATURE,
                                    best_rule_name, explanations, read_calibration, signature_outputs)

log = logging.getLogger("mlbench.serving")

__all__ = ["ServedModel", "MicroBatcher", "model_name_of", "Outputs", "BEST", "MODEL_VERSION"]

#: what `mlbench.naming.export_dir_name` appends to a variant: a SavedModel, another format
EXPORT_SUFFIXES = ("_savedmodel", "_model")
BEST = "best"
INIT_OP = "__saved_model_init_op"
MODEL_VERSION = "1"
PREDICT_METHOD = "tensorflow/serving/predict"

#: {output name: array [n, ...]} for n texts
Outputs = dict[str, np.ndarray]


def model_name_of(model_dir: Path) -> str:
    """The served name of an export folder (`mlbench.naming.export_dir_name` backwards):
    ``RUN/mlp_savedmodel`` → ``mlp``, ``RUN/fasttext_model`` → ``fasttext``."""
    name = Path(model_dir).resolve().name
    for suffix in EXPORT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


# --------------------------------------------------------------------------- signatures
def read_signature_defs(directory: Path) -> dict[str, dict]:
    """The ``serve`` MetaGraph's signature_def map of a SavedModel, in the JSON form TF Serving's
    metadata API answers (proto field names, default values printed, int64 as strings)."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(directory) / SAVEDMODEL_FILE).read_bytes())
    graph = next((m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags), proto.meta_graphs[0])
    return {name: json_format.MessageToDict(sig, always_print_fields_with_no_presence=True,
                                            preserving_proto_field_name=True)
            for name, sig in graph.signature_def.items()}


def synthetic_signature_defs(n_labels: int, calibrated: bool) -> dict[str, dict]:
    """The signatures an export without a SavedModel graph (fastText, ONNX) answers as if it had one."""
    def tensor(name: str, dtype: str, dims: list[int]) -> dict:
        return {"name": name, "dtype": dtype, "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}}

    def outputs(names: list[str]) -> dict:  # float outputs first, then the int32 labels
        return {name: tensor(name, "DT_INT32" if name == LABELS_OUTPUT else "DT_FLOAT", [-1, n_labels])
                for name in sorted(names, key=lambda name: name == LABELS_OUTPUT)}

    def texts(signature: str) -> dict:
        return {INPUT_NAME: tensor(f"{signature}_{INPUT_NAME}:0", "DT_STRING", [-1])}

    return {signature: {"inputs": texts(signature), "outputs": outputs(names),
                        "method_name": PREDICT_METHOD, "defaults": {}}
            for signature, names in signature_outputs(calibrated).items()}


# --------------------------------------------------------------------------- the model
@dataclass
class ServedModel:
    """The loaded artifact and everything about it computed once at start-up."""

    directory: Path
    name: str
    artifact: Any
    labels: list[str]
    meta: dict
    rules: dict[str, np.ndarray]  # rule name -> float32 [L]; "best" included
    best_rule: str  # the rule "best" stands for
    baked: np.ndarray  # the thresholds of the SavedModel's ``decisions`` signature
    calibration: Any = None  # the validation-fitted map of calibration.json (None: raw scores only)
    signature_defs: dict[str, dict] = field(default_factory=dict)  # TF Serving's metadata form

    @classmethod
    def load(cls, model_dir: Path, name: str | None = None) -> "ServedModel":
        directory = Path(model_dir)
        artifact = load_artifact(directory)
        labels = [str(n) for n in artifact.labels]
        n = len(labels)
        rules: dict[str, np.ndarray] = {}
        for rule in RULES:
            try:
                rules[rule] = np.broadcast_to(np.asarray(artifact.threshold(rule), np.float32), (n,)).copy()
            except InputError:
                continue  # this export has no such rule
        best_rule = "export"
        with contextlib.suppress(InputError, OSError):
            best_rule = best_rule_name(directory) or best_rule
        rules[BEST] = np.broadcast_to(np.asarray(artifact.threshold(None), np.float32), (n,)).copy()
        meta = dict(getattr(artifact, "meta", {}) or {})
        stored = meta.get("thresholds")
        baked = (np.broadcast_to(np.asarray(stored, np.float32), (n,)).copy() if stored is not None
                 else rules[BEST])
        calibration = read_calibration(directory)
        if hasattr(artifact, "signature_outputs"):
            signature_defs = read_signature_defs(directory)
        else:
            signature_defs = synthetic_signature_defs(n, calibration is not None)
        model = cls(directory, name or model_name_of(directory), artifact, labels, meta, rules,
                    best_rule, baked, calibration, signature_defs)
        model.outputs([""])  # warm-up: the first TF call pays for graph set-up, not a client
        return model

    # -- what the model says ---------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        """Whether probabilities can be given: a graph output or calibration.json."""
        return self.calibration is not None or PROBABILITIES in self.signature_defs[SERVE_SIGNATURE]["outputs"]

    def probabilities(self, out: Outputs) -> np.ndarray | None:
        """Calibrated probabilities [n, L] for `out` (the graph's, else calibration.json on the
        scores; None for an export without calibration)."""
        if PROBABILITIES in out:
            return out[PROBABILITIES]
        if self.calibration is None:
            return None
        return self.calibration.apply(out[SCORES]).astype(np.float32)

    def outputs(self, texts: list[str]) -> Outputs:
        """The ``serving_default`` outputs for `texts`: ``scores`` (+ ``probabilities``), float32 [n, L]."""
        n = len(texts)
        if hasattr(self.artifact, "signature_outputs"):
            out = {k: np.asarray(v) for k, v in self.artifact.signature_outputs(SERVE_SIGNATURE, texts).items()}
        else:
            out = {SCORES: np.asarray(self.artifact.predict(texts), dtype=np.float32)}
            if self.calibration is not None:
                out[PROBABILITIES] = self.calibration.apply(out[SCORES]).astype(np.float32)
        for key, value in out.items():
            if value.shape != (n, len(self.labels)):
                raise RuntimeError(f"model returned {key} of shape {value.shape} for {n} texts")
        return out

    def predict(self, texts: list[str]) -> np.ndarray:
        """Raw scores float32 [n, L]."""
        return self.outputs(texts)[SCORES]

    def decisions(self, out: Outputs) -> Outputs:
        """The ``decisions`` signature's outputs from ``serving_default``'s: labels = scores >= the
        thresholds baked in at export (the comparison the graph makes, on the same float32 scores)."""
        return {**out, LABELS_OUTPUT: (out[SCORES] >= self.baked).astype(np.int32)}

    def threshold_probabilities(self, thresholds: np.ndarray) -> np.ndarray | None:
        """Where each label's score threshold lands on the probability scale ([L]; None uncalibrated).

        The calibration maps are monotone per label, so score >= t implies probability >= p(t):
        the page marks p(t) on a bar that shows probabilities."""
        if self.calibration is None:
            return None
        return self.calibration.apply(thresholds[None].astype(np.float32))[0].astype(np.float32)

    @property
    def explains(self) -> bool:
        return bool(getattr(self.artifact, "has_explanations", False))

    def explain(self, texts: list[str], labels: list[list[int]]) -> list[dict]:
        """{label: [{"token", "weight"}, ...]} per text (`layout.explanations`)."""
        return [{label: [{"token": tok, "weight": w} for tok, w in pairs] for label, pairs in doc.items()}
                for doc in explanations(self.artifact, texts, labels)]

    def explain_outputs(self, texts: list[str], labels: np.ndarray) -> Outputs:
        """The raw outputs of the SavedModel's ``explain`` signature (texts [n], labels int32 [n, K])."""
        return self.artifact.signature_outputs(EXPLAIN_SIGNATURE, texts, **{EXPLAIN_LABELS_INPUT: labels})

    def run_metrics(self) -> dict | None:
        """Test metrics of this export's variant from the run's results.json (None if absent)."""
        try:
            record = RunRecord.load(self.directory.resolve().parent)
        except InputError:
            return None
        for variant, result in record.models.items():
            if result.export_dir == self.directory.resolve().name:
                return {"run_id": record.run_id, "variant": variant, "rule": result.best_rule,
                        "test": result.test_metrics()}
        return None


# --------------------------------------------------------------------------- micro-batching
Result = Union[np.ndarray, Outputs]


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


def _rows(result: Result, start: int, stop: int) -> Result:
    if isinstance(result, dict):
        return {k: v[start:stop] for k, v in result.items()}
    return result[start:stop]


class MicroBatcher:
    """Collects texts from concurrent requests and scores them in one `predict` call.

    A batch closes `window_s` after its oldest text arrived, or as soon as `max_batch`
    texts wait; a request's texts are never split across batches (one request larger
    than `max_batch` is a batch of its own).  `predict` runs on `executor` while the
    next batch collects, so under load batches fill up without waiting for the window.
    `predict` returns an array [n, ...] or a dict of them; each request gets its rows.
    A batch whose call fails is retried request by request, so only the request that
    made it fail gets the error.
    """

    def __init__(self, predict: Callable[[list[str]], Result], *, window_s: float,
                 max_batch: int, executor: ThreadPoolExecutor):
        self._predict, self.window_s, self.max_batch, self._executor = predict, window_s, max_batch, executor
        self._queue: deque[_Pending] = deque()
        self._waiting = 0  # texts in the queue
        self._arrived = asyncio.Event()  # the queue became non-empty
        self._full = asyncio.Event()  # max_batch texts wait
        self._task: asyncio.Task | None = None
        self.batches = 0  # counters for /healthz and the tests
        self.texts = 0
        self.retried = 0  # batches that failed and were retried request by request

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mlbench-batcher")
        self._task.add_done_callback(lambda _: self._fail_waiting())

    def _fail_waiting(self) -> None:
        """A stopped worker must not leave requests waiting forever: fail them (-> 500)."""
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the batching worker stopped"))
        self._waiting = 0

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_waiting()

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def predict(self, texts: list[str]) -> Result:
        """The model's answer for `texts` ([len(texts), ...] rows), computed in a shared batch."""
        if not self.alive:
            raise RuntimeError("the batching worker is not running")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(texts, future))
        self._waiting += len(texts)
        self._arrived.set()
        if self._waiting >= self.max_batch:
            self._full.set()
        return await future

    def _take(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        n = len(batch[0].texts)
        while self._queue and n + len(self._queue[0].texts) <= self.max_batch:
            item = self._queue.popleft()
            batch.append(item)
            n += len(item.texts)
        self._waiting -= n
        if self._waiting < self.max_batch:
            self._full.clear()
        if not self._queue:
            self._arrived.clear()
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            left = self._queue[0].arrived + self.window_s - time.perf_counter()
            if left > 0 and self._waiting < self.max_batch:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._full.wait(), left)
            batch = self._take()
            texts = [t for item in batch for t in item.texts]
            try:
                result = await loop.run_in_executor(self._executor, self._predict, texts)
            except Exception as err:
                if len(batch) == 1:
                    if not batch[0].future.done():
                        batch[0].future.set_exception(err)
                    continue
                self.retried += 1
                log.warning("a batch of %d requests failed (%s); retrying them one by one",
                            len(batch), type(err).__name__)
                await self._one_by_one(batch)
                continue
            self.batches += 1
            self.texts += len(texts)
            start = 0
            for item in batch:
                stop = start + len(item.texts)
                if not item.future.done():  # a client that went away cancelled its future
                    item.future.set_result(_rows(result, start, stop))
                start = stop

    async def _one_by_one(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        for item in batch:
            if item.future.done():
                continue
            try:
                result = await loop.run_in_executor(self._executor, self._predict, item.texts)
            except Exception as err:  # only this request fails (-> 500)
                if not item.future.done():
                    item.future.set_exception(err)
                continue
            self.batches += 1
            self.texts += len(item.texts)
            if not item.future.done():
                item.future.set_result(result)
