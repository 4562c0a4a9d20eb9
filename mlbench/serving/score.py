"""`mlbench score`: calibrated soft labels for a whole corpus, in chunks, resumable.

Input: a .csv / .tsv / .jsonl / .parquet file (each optionally .gz) read with the
training readers (`mlbench.data.records`), so the same rows are numbered the same way
and the same bad input stops with one line naming file, row and column.  A text that
is not a string, is not valid UTF-8 (a lone surrogate from a JSON ``\\ud800`` escape) or
holds a NUL is an error (`text_checks`, the server's rule too); an empty text is skipped
and counted.

Output (``--out`` .csv / .jsonl / .parquet), one row per scored input row:
``row`` (the input's row number, as error messages give it), with ``--id-col NAME`` that
column of the input under its own name (the value as read: a string from CSV, any JSON
value from JSONL, the column's type from Parquet), ``labels`` (the labels
predicted under the export's best decision rule, applied to the raw scores it was tuned
on; a JSON list in CSV cells) and ``prob:<label>`` for every label (the calibrated
probability from calibration.json; an export without one gets ``score:<label>`` raw scores).

Resuming: an existing ``--out`` is appended to only when its sidecar
(``<out>.mlbench.json``, `score_sidecar`) names a model folder with this model's content
hash and its columns are exactly this model's; rows already in it are skipped.  Any
other existing file (another model's output, a file without a sidecar) is refused,
never overwritten.  ``--out`` in a folder that does not exist is refused (a typo should
not create folders).
CSV / JSONL are appended chunk by chunk (an interrupted run keeps its finished chunks; a
torn last line is dropped on resume); Parquet is rewritten to a temporary file with the
old rows first and swapped in at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mlbench.errors import InputError, where

__all__ = ["score_file", "ScoreSummary", "OUT_SUFFIXES", "output_columns"]

OUT_SUFFIXES = (".csv", ".jsonl", ".parquet")
ROW, LABELS = "row", "labels"


@dataclass
class ScoreSummary:
    """What one `score_file` call did (counts of input rows)."""

    out: Path
    scored: int = 0
    already: int = 0
    empty: int = 0
    empty_rows: list[int] = field(default_factory=list)
    calibrated: bool = True
    seconds: float = 0.0


def output_columns(labels: Sequence[str], calibrated: bool, id_col: str | None = None) -> list[str]:
    """The output's columns: row, [id_col,] labels, then prob:<label> (score:<label> uncalibrated)."""
    prefix = "prob:" if calibrated else "score:"
    return [ROW] + ([id_col] if id_col else []) + [LABELS] + [prefix + str(name) for name in labels]


def _out_format(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix not in OUT_SUFFIXES:
        raise InputError(f"--out {out}: unsupported output type; use {', '.join(OUT_SUFFIXES)}")
    if not out.parent.is_dir():
        what = "is not a folder" if out.parent.exists() else "does not exist"
        raise InputError(f"--out {out}: the folder {out.parent} {what} (create it first)")
    return suffix[1:]


# ----------------------------------------------------------------------------- resume
def _trim_torn_line(out: Path) -> None:
    """Drop a last line without its newline (a write interrupted mid-line)."""
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(out, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _refuse(out: Path, why: str) -> InputError:
    return InputError(f"--out {out}: exists and is not an output of this model ({why}); "
                      "refusing to overwrite it, choose another --out")


def _done_rows(out: Path, fmt: str, columns: list[str]) -> set[int]:
    """Row numbers an existing output of ours already holds; InputError if it is not ours."""
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(out)
        except Exception as err:  # noqa: BLE001 - any unreadable file is "not ours"
            raise _refuse(out, f"not a readable Parquet file: {err}") from None
        if table.column_names != columns:
            raise _refuse(out, "its columns differ")
        return {int(r) for r in table.column(ROW).to_pylist()}
    _trim_torn_line(out)
    try:
        text = out.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _refuse(out, "not UTF-8 text") from None
    done: set[int] = set()
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows:
            return done
        if rows[0] != columns:
            raise _refuse(out, "its header differs")
        for i, r in enumerate(rows[1:], start=2):
            try:
                done.add(int(r[0]))
            except (ValueError, IndexError):
                raise _refuse(out, f"row {i} has no row number") from None
        return done
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise _refuse(out, f"line {i} is not JSON") from None
        if not isinstance(obj, dict) or list(obj) != columns:
            raise _refuse(out, f"line {i} has other keys")
        done.add(int(obj[ROW]))
    return done


# ----------------------------------------------------------------------------- writers
def _id_cell(value: object) -> str:
    """An id value as a CSV cell: strings as they are, None empty, others as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def _id_type(ids: Sequence[object]):
    """The Parquet type of the id column: what pyarrow infers from every id of the input
    (string when they are all null); None when they mix types (then stored as text)."""
    import pyarrow as pa

    try:
        kind = pa.array(list(ids)).type
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None
    return pa.string() if pa.types.is_null(kind) else kind


class _Writer:
    """Appends chunks to a CSV / JSONL file, or collects them into a temp Parquet file.

    `id_col` (or None) is the column copied from the input, `id_type` its Parquet type
    (None: the values' text)."""

    def __init__(self, out: Path, fmt: str, columns: list[str], labels: list[str],
                 id_col: str | None = None, id_type=None):
        self.out, self.fmt, self.columns, self.labels = out, fmt, columns, labels
        self.id_col, self.id_type = id_col, id_type
        self._pq = None
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            ident = [(id_col, id_type or pa.string())] if id_col else []
            n_fixed = 2 + bool(id_col)
            self.schema = pa.schema([(ROW, pa.int64())] + ident + [(LABELS, pa.list_(pa.string()))]
                                    + [(c, pa.float32()) for c in columns[n_fixed:]])
            self.tmp = out.with_name(f".{out.name}.partial")
            old = pq.ParquetFile(out) if out.exists() else None
            if old is not None and id_col and old.schema_arrow.field(id_col).type != self.schema.field(id_col).type:
                self.schema = old.schema_arrow  # keep the existing output's id type
                self.id_type = self.schema.field(id_col).type
            self._pq = pq.ParquetWriter(self.tmp, self.schema)
            if old is not None:
                for i in range(old.num_row_groups):
                    self._pq.write_table(old.read_row_group(i).cast(self.schema))
        elif not out.exists() or out.stat().st_size == 0:
            self._append(self._csv_line(columns) if fmt == "csv" else "")

    @staticmethod
    def _csv_line(values: list) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()

    def _append(self, text: str) -> None:
        with open(self.out, "a", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def write(self, rows: list[int], probs: np.ndarray, decided: np.ndarray,
              ids: list | None = None) -> None:
        names = [[self.labels[j] for j in np.flatnonzero(d)] for d in decided]
        ids = ids if self.id_col else None
        if self._pq is not None:
            import pyarrow as pa

            arrays = [pa.array(rows, pa.int64())]
            if ids is not None:
                if self.id_type is None:
                    arrays.append(pa.array([None if v is None else _id_cell(v) for v in ids], pa.string()))
                else:
                    try:
                        arrays.append(pa.array(ids, self.id_type))
                    except (pa.ArrowException, TypeError, ValueError, OverflowError) as err:
                        raise InputError(f"--id-col {self.id_col}: a value of row {rows[0]}–{rows[-1]} does "
                                         f"not fit the output's {self.id_type} column ({err})") from None
            arrays.append(pa.array(names, pa.list_(pa.string())))
            arrays += [pa.array(probs[:, j].astype(np.float32)) for j in range(probs.shape[1])]
            self._pq.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
            return
        parts = []
        for k, (row, labels, p) in enumerate(zip(rows, names, probs)):
            values = [float(f"{v:.9g}") for v in p.astype(np.float32)]  # float32 round-trips
            ident = [] if ids is None else [ids[k]]
            if self.fmt == "csv":
                parts.append(self._csv_line([row] + [_id_cell(v) for v in ident]
                                            + [json.dumps(labels, ensure_ascii=False)]
                                            + [f"{v:.9g}" for v in values]))
            else:
                parts.append(json.dumps(dict(zip(self.columns, [row] + ident + [labels] + values)),
                                        ensure_ascii=False, default=str) + "\n")
        self._append("".join(parts))

    def close(self, ok: bool) -> None:
        if self._pq is not None:
            self._pq.close()
            if ok:
                self.tmp.replace(self.out)
            else:
                self.tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- scoring
@dataclass
class _Input:
    """The input's rows not yet in the output (row numbers, texts, ``--id-col`` ids), the
    empty-text rows, the count already done, and the ids of every non-empty row (the
    Parquet id column takes their type)."""

    rows: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    ids: list = field(default_factory=list)
    empty: list[int] = field(default_factory=list)
    all_ids: list = field(default_factory=list)
    already: int = 0


def _read_input(path: Path, text_col: str, id_col: str | None, done: set[int]) -> _Input:
    """Read and check every row of the input; InputError names the first bad row (and
    counts the others)."""
    from mlbench.data.records import read_records
    from mlbench.serving.text_checks import bad_texts, text_problem

    found, kept = _Input(), []
    for rec in read_records(path, [text_col] + ([id_col] if id_col else [])):
        text = rec.fields[text_col]
        if text is not None and not isinstance(text, str):
            raise InputError(f"{where(path, rec.row, text_col)}: text must be a string, "
                             f"got {type(text).__name__}")
        ident = rec.fields[id_col] if id_col else None
        if isinstance(ident, str) and text_problem(ident):
            raise InputError(f"{where(path, rec.row, id_col)}: {text_problem(ident)}")
        if not text or not text.strip():
            found.empty.append(rec.row)
        else:
            kept.append((rec.row, text, ident))
    bad = bad_texts([text for _, text, _ in kept])
    if bad:
        i, reason = bad[0]
        more = f" (and {len(bad) - 1} more row(s))" if len(bad) > 1 else ""
        raise InputError(f"{where(path, kept[i][0], text_col)}: {reason}{more}")
    for row, text, ident in kept:
        found.all_ids.append(ident)
        if row in done:
            found.already += 1
        else:
            found.rows.append(row)
            found.texts.append(text)
            found.ids.append(ident)
    return found


def _check_id_col(id_col: str | None, columns: list[str]) -> None:
    if id_col is not None and (not id_col.strip() or columns.count(id_col) > 1):
        raise InputError(f"--id-col {id_col!r}: names one of the output's own columns (row, labels, "
                         "prob:/score:<label>) or is empty; rename the column in the input")


def score_file(model: str | Path, input_path: str | Path, out: str | Path, *, text_col: str = "text",
               chunk: int = 2048, id_col: str | None = None, progress=None) -> ScoreSummary:
    """Score every non-empty text of `input_path` with the export in `model`, writing
    `out` (see the module docstring) and its sidecar; returns the counts.
    `progress(line)` gets ETA lines."""
    from mlbench.progress import eta_line
    from mlbench.serving.artifacts import load_artifact
    from mlbench.serving.layout import read_calibration
    from mlbench.serving.score_sidecar import check_owner, model_fingerprint, write_sidecar

    if int(chunk) < 1:
        raise InputError(f"--chunk: expected a positive integer, got {chunk}")
    input_path, out = Path(input_path), Path(out)
    fmt = _out_format(out)
    if out.exists() and input_path.exists() and out.resolve() == input_path.resolve():
        raise InputError(f"--out {out}: is the --input file; refusing to overwrite it")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder, expected a file")
    artifact = load_artifact(model)
    labels = [str(n) for n in artifact.labels]
    cal = read_calibration(Path(model))
    columns = output_columns(labels, cal is not None, id_col)
    _check_id_col(id_col, columns)
    owner = model_fingerprint(Path(model))
    resuming = out.exists() and out.stat().st_size > 0
    if resuming:
        check_owner(out, owner)
    done = _done_rows(out, fmt, columns) if resuming else set()
    todo = _read_input(input_path, text_col, id_col, done)
    rows, texts, empty = todo.rows, todo.texts, todo.empty
    threshold = np.broadcast_to(np.asarray(artifact.threshold(), dtype=np.float64), (len(labels),))
    summary = ScoreSummary(out, already=todo.already, empty=len(empty), empty_rows=empty[:20],
                           calibrated=cal is not None)
    write_sidecar(out, owner, input=str(input_path.resolve()), text_col=text_col, id_col=id_col,
                  columns=columns)
    start = time.perf_counter()
    id_type = _id_type(todo.all_ids) if id_col and fmt == "parquet" else None
    writer = _Writer(out, fmt, columns, labels, id_col, id_type)
    ok = False
    try:
        for i in range(0, len(texts), int(chunk)):
            batch = texts[i: i + int(chunk)]
            scores = np.asarray(artifact.predict(batch), dtype=np.float64)
            probs = cal.apply(scores) if cal is not None else scores
            writer.write(rows[i: i + len(batch)], probs, scores >= threshold, todo.ids[i: i + len(batch)])
            summary.scored += len(batch)
            if progress:
                progress(eta_line("score", summary.scored, len(texts), time.perf_counter() - start))
        ok = True
    finally:
        writer.close(ok)
    summary.seconds = time.perf_counter() - start
    return summary


def score_command(*, model: str, input_path: str, out: str, text_col: str = "text",
                  chunk: int = 2048, id_col: str | None = None) -> int:
    """The `mlbench score` command: score, then one summary line on stderr."""
    from mlbench.progress import say
    from mlbench.runtime import import_tensorflow

    import_tensorflow()  # quietly, before the artifact loads it
    s = score_file(model, input_path, out, text_col=text_col, chunk=chunk, id_col=id_col, progress=say)
    what = "calibrated probabilities" if s.calibrated else "raw scores (the export has no calibration)"
    skipped = f"; skipped {s.empty} empty text(s) (rows {', '.join(map(str, s.empty_rows))}" \
              f"{', …' if s.empty > len(s.empty_rows) else ''})" if s.empty else ""
    say(f"scored {s.scored} row(s) into {s.out} ({what}; labels under the best decision rule on raw "
        f"scores); {s.already} already there{skipped}")
    return 0
