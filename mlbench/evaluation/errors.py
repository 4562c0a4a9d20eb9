"""Error analysis of one model on test, under its micro-chosen decision rule.

Why: a micro-F1 says how often a model errs, not how; a reader choosing a model wants
the errors themselves.  `error_analysis` gives, for test labels y [n, L] and decisions
p [n, L] (raw scores [n, L] >= the rule's thresholds):

* ``confusions``: label pairs (a, b) counted over documents where a is true and missed
  AND b is predicted and not true (``C = FN^T @ FP``, [L, L]), most frequent first;
* ``false_negatives``: missed true labels of tail labels (fewest training documents),
  highest score first (the near misses);
* ``false_positives``: the most confident false positives (highest score first);
* ``breakdown``: test micro / macro F1 of single-label vs multi-label documents (Huang et
  al. 2021 split Reuters test into 2,583 single- and 436 multi-label documents) and of
  unlabeled ones when there are any;
* ``overfitted_tokens``: tokens carrying the most positive attribution mass across the
  explained false positives (tokens that push a label up where it does not belong).

Each example is explained with `mlbench.explain.explain` for the model that erred (the
label in question only; at most `MAX_EXPLAINED` documents, so the run stays short);
tracks `explain` does not support (fastText, ensemble, pretrained) get no explanations
and a note saying so.  Test is only read here, nothing is fitted on it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["error_analysis", "confusion_counts", "subset_breakdown", "MAX_EXPLAINED"]

#: most documents explained per model (integrated gradients costs ~steps forward passes each)
MAX_EXPLAINED = 30
EXCERPT_CHARS = 300


def confusion_counts(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """C [L, L]: C[a, b] = documents where label a is true but missed and label b is
    predicted but not true (a != b by construction)."""
    yy, pp = np.asarray(y) != 0, np.asarray(pred) != 0
    fn, fp = (yy & ~pp).astype(np.int64), (pp & ~yy).astype(np.int64)
    return fn.T @ fp


def _f1s(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(micro F1, macro F1) as `mlbench.evaluation.metrics.evaluate` computes them."""
    from mlbench.evaluation.metrics import evaluate

    m = evaluate(y, pred.astype(np.float32), threshold=0.5, ks=())
    return float(m["f1_micro"]), float(m["f1_macro"])


def subset_breakdown(y: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, Any]]:
    """Micro / macro F1 of the single-label, multi-label (and unlabeled) test documents."""
    k = (np.asarray(y) != 0).sum(axis=1)
    out: dict[str, dict[str, Any]] = {}
    for name, mask in (("single", k == 1), ("multi", k >= 2), ("unlabeled", k == 0)):
        n = int(mask.sum())
        if n == 0 and name == "unlabeled":
            continue
        micro, macro = _f1s(y[mask], pred[mask]) if n else (None, None)
        out[name] = {"documents": n, "f1_micro": micro, "f1_macro": macro}
    return out


def _excerpt(text: str, chars: int = EXCERPT_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= chars else text[:chars].rstrip() + "…"


class _Explainer:
    """`explain` for one label of one document at a time, within a document budget."""

    def __init__(self, track: Any, n_labels: int, budget: int, top_n: int):
        self.track, self.n_labels, self.budget, self.top_n = track, n_labels, budget, top_n
        self.used = 0
        self.explainer = None
        self.note: str | None = None
        if track is None:
            self.note = "no fitted model in this process (a resumed run), so no explanations"

    def __call__(self, text: str, label: int) -> list[list] | None:
        if self.note is not None or self.used >= self.budget:
            return None
        from mlbench.explain import explain, explainer_of

        threshold = np.full(self.n_labels, 2.0)  # only `label` passes: explain that one
        threshold[label] = -1.0
        try:
            if self.explainer is None:  # one explainer: its graph is traced once
                self.explainer = explainer_of(self.track, self.top_n)
            out = explain(self.track, [text], top_n=self.top_n, threshold=threshold,
                          explainer=self.explainer)
        except TypeError as err:  # explainer_of's "no explainer for this track"
            self.note = f"no explanations: {err}"
            return None
        self.used += 1
        pairs = next(iter(out[0].values()), [])
        return [[str(tok), float(w)] for tok, w in pairs]


def distinct_documents(order: np.ndarray, rows: np.ndarray, texts: Sequence[str], n: int) -> np.ndarray:
    """The first `n` entries of `order` whose document text (whitespace-normalised) is new.

    Why: a document missing three tail labels, or three test copies of one text, would
    otherwise fill the list with one text; the reader sees its other labels in its chips."""
    seen: set[str] = set()
    keep = []
    for k in order:
        key = " ".join(str(texts[rows[k]]).split())
        if key not in seen:
            seen.add(key)
            keep.append(k)
            if len(keep) == n:
                break
    return np.asarray(keep, dtype=np.int64)


def error_analysis(y: np.ndarray, scores: np.ndarray, thresholds: float | np.ndarray, *,
                   texts: Sequence[str], label_names: Sequence[str], train_counts: Sequence[int],
                   track: Any = None, rule: str = "", n_confusions: int = 8, per_confusion: int = 2,
                   n_false_negatives: int = 8, n_false_positives: int = 10, top_n: int = 5,
                   max_explained: int = MAX_EXPLAINED) -> dict[str, Any]:
    """The error analysis (see the module docstring) as a JSON-ready dict.

    y, scores: test [n, L]; thresholds: the rule's (scalar or [L]); texts [n];
    train_counts [L] pick the tail labels; `track` explains (None: no explanations).
    """
    y = np.asarray(y) != 0
    s = np.asarray(scores, dtype=np.float64)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (s.shape[1],))
    pred = s >= t
    names = [str(n) for n in label_names]
    counts = np.asarray(train_counts if train_counts is not None else np.zeros(s.shape[1]), dtype=np.int64)
    explainer = _Explainer(track, s.shape[1], max_explained, top_n)

    def doc(i: int) -> dict[str, Any]:
        return {"doc": int(i), "text": _excerpt(texts[i]),
                "true": [names[j] for j in np.flatnonzero(y[i])],
                "predicted": [names[j] for j in np.flatnonzero(pred[i])]}

    conf = confusion_counts(y, pred)
    pairs = np.argwhere(conf > 0)
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -conf[pairs[:, 0], pairs[:, 1]])) if len(pairs) else []
    fn_all, fp_all = y & ~pred, pred & ~y
    confusions = []
    for a, b in (pairs[i] for i in list(order)[:n_confusions]):
        docs = np.flatnonzero(fn_all[:, a] & fp_all[:, b])
        docs = docs[np.argsort(-s[docs, b], kind="stable")][:per_confusion]
        confusions.append({
            "true": names[a], "predicted": names[b], "count": int(conf[a, b]),
            "examples": [{**doc(i), "score": float(s[i, b]), "explanation": explainer(texts[i], int(b))}
                         for i in docs]})

    tail = np.argsort(counts, kind="stable")  # rarest first
    fn_rows, fn_cols = np.nonzero(fn_all)
    rank = np.empty(len(counts), dtype=np.int64)
    rank[tail] = np.arange(len(counts))
    fn_order = distinct_documents(np.lexsort((-s[fn_rows, fn_cols], rank[fn_cols])), fn_rows, texts,
                                  n_false_negatives)
    false_negatives = [{**doc(i), "label": names[l], "train_count": int(counts[l]), "score": float(s[i, l]),
                        "threshold": float(t[l]), "explanation": explainer(texts[i], int(l))}
                       for i, l in zip(fn_rows[fn_order], fn_cols[fn_order])]

    fp_rows, fp_cols = np.nonzero(fp_all)
    fp_order = np.argsort(-s[fp_rows, fp_cols], kind="stable")[:n_false_positives]
    false_positives = []
    mass: dict[str, list[float]] = {}
    for i, l in zip(fp_rows[fp_order], fp_cols[fp_order]):
        att = explainer(texts[i], int(l))
        false_positives.append({**doc(i), "label": names[l], "score": float(s[i, l]),
                                "threshold": float(t[l]), "explanation": att})
        for tok, w in att or []:
            if w > 0:
                entry = mass.setdefault(tok, [0.0, 0])
                entry[0] += w
                entry[1] += 1
    overfitted = sorted(([tok, m, int(n)] for tok, (m, n) in mass.items()), key=lambda r: -r[1])[:12]
    return {
        "rule": rule,
        "errors": {"false_negatives": int(fn_all.sum()), "false_positives": int(fp_all.sum())},
        "confusions": confusions,
        "false_negatives": false_negatives,
        "false_positives": false_positives,
        "breakdown": subset_breakdown(y, pred),
        "overfitted_tokens": overfitted,
        "explained": explainer.used,
        "explain_note": explainer.note,
        "explain_top_n": int(top_n),
    }
