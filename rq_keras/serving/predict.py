"""Scoring files with a trained model (`python predict.py`).

`predict_files` reads CSV/TSV/text, Parquet and TFRecord files through the
model's feature spec (no label column needed), scores them batch by batch and
writes one row per kept input row to a Parquet or text table: the
`id_columns` first, then every output of the model, one column each, named
as in a run's `predictions.parquet` (`output_columns`).

The model is a finished `train.py` run (`model.keras`, called with
`training=False`) or an `export.py` version directory (the SavedModel's
`serving_default` signature); both give the outputs the SavedModel serves
(`rq_keras.serving.signatures.OUTPUTS`). Bad rows follow the training readers' policy
(`rq_keras.data`): `"fail"` raises `MalformedDataError` naming the file and
row, `"skip"` drops the row (and its ids) and counts it.

Memory stays bounded: the files are read in chunks (`read_chunks`), each
chunk is scored and appended to a temporary file beside the output (a
Parquet row group, or text lines), and the temporary file is renamed over
the output only when every row is written; a failed or interrupted run
leaves no partial output (a killed one may leave the hidden
`.NAME.tmp-PID-RANDOM-HOST` beside it).

Its command line is `rq_keras.cli.predict`.

The modules, by idea: `rq_keras.serving.scorers` loads the model (`Scorer`),
`rq_keras.evaluation.output_columns` names the output columns,
`rq_keras.serving.output_tables` writes the table, `rq_keras.serving.errors`
holds `PredictError`; this one checks the arguments and inputs and runs the
scoring.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rq_keras.atomic import atomic_path, unique_suffix
from rq_keras.data.progress import RowTicker
from rq_keras.evaluation.output_columns import output_columns
from rq_keras.serving.errors import PredictError
from rq_keras.serving.output_tables import OUTPUT_SUFFIXES, ParquetTable, TextTable
from rq_keras.serving.scorers import load_run_scorer, load_saved_model_scorer

__all__ = ["PredictResult", "predict_files"]

_PROGRESS_SECONDS = 1.0


@dataclasses.dataclass
class PredictResult:
    """What `predict_files` wrote.

    Attributes:
        output: the output file.
        rows_written: rows in it.
        rows_skipped: bad rows dropped (`on_bad_rows="skip"`).
        seconds: wall time, loading the model included.
        columns: the output's column names, in order.
        report: the `rq_keras.data.DataReport` of the inputs (rows read,
            kept and dropped per file and reason).
    """

    output: str
    rows_written: int
    rows_skipped: int
    seconds: float
    columns: list[str]
    report: Any


# ---------------------------------------------------------------- progress
class _Progress:
    """Lines on stderr with `verbose` 1 (while scoring, a `RowTicker` prints
    at most one a `_PROGRESS_SECONDS`)."""

    def __init__(self, verbose: int):
        self.verbose = verbose

    def say(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------- main
def _check_output(output: str, overwrite: bool) -> str | None:
    """The output's text delimiter (None for Parquet); refuses a bad output path."""
    suffix = os.path.splitext(output)[1].lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise PredictError(
            f"{output}: unknown output format {suffix or '(no suffix)'!r}; use .parquet, "
            ".csv, .tsv or .txt/.dat (whitespace-separated)"
        )
    if os.path.isdir(output):
        raise PredictError(f"{output} is a directory; --output must be a file")
    if os.path.lexists(output) and not overwrite:
        raise PredictError(f"{output} exists; pass --overwrite to replace it")
    return OUTPUT_SUFFIXES[suffix]


def _check_id_columns(id_columns: Sequence[str]) -> list[str]:
    if isinstance(id_columns, str):
        raise PredictError("`id_columns` must be a sequence of column names, not a string")
    ids = [str(c) for c in id_columns]
    if any(not c.strip() for c in ids):
        raise PredictError(f"--id-columns: an empty column name in {ids}")
    repeated = sorted({c for c in ids if ids.count(c) > 1})
    if repeated:
        raise PredictError(f"--id-columns: {repeated} named more than once")
    return ids


def _input_paths(inputs) -> list[str]:
    from rq_keras.data.readers import input_paths

    if not isinstance(inputs, (str, os.PathLike)):
        inputs = list(inputs)
        if not inputs:
            raise PredictError("no input files given")
    return input_paths(inputs)


def _check_inputs(paths, spec, extra, on_bad_rows) -> dict[str, Any]:
    """Checks the columns of every text and Parquet input before scoring any.

    Returns the Parquet types of the extra columns (first file that has them),
    so the output keeps them.
    """
    from rq_keras.data.readers import file_format, read_chunks
    from rq_keras.data.reports import FileReport

    types: dict[str, Any] = {}
    for path in paths:
        fmt = file_format(path)
        if fmt == "tfrecord":
            continue  # its features are per record: checked as it is read
        rows = read_chunks(
            path,
            spec,
            on_bad_rows=on_bad_rows,
            chunk_rows=1,
            with_label=False,
            report=FileReport(path),
            extra_columns=extra,
        )
        try:
            next(rows, None)
        finally:
            rows.close()
        if fmt == "parquet" and extra:
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            for name in extra:
                types.setdefault(name, schema.field(name).type)
    return types


def predict_files(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    model_dir: str | os.PathLike | None = None,
    saved_model: str | os.PathLike | None = None,
    id_columns: Sequence[str] = (),
    batch_size: int = 1024,
    on_bad_rows: str = "fail",
    overwrite: bool = False,
    verbose: int = 0,
    chunk_rows: int = 65_536,
) -> PredictResult:
    """Scores files with a trained model and writes one output row per kept row.

    Args:
        inputs: text, Parquet or TFRecord files (formats may be mixed), read
            through the model's feature spec; the label column is not needed.
        output: `.parquet`, or a `.csv`, `.tsv`, `.txt`/`.dat` text table.
        model_dir: a finished `train.py` run (its `model.keras`) ...
        saved_model: ... or an `export.py` version directory `BASE/N`.
        id_columns: input columns copied to the output before the model's
            outputs, row-aligned with them. A column that is not a feature is
            copied as read (text cells verbatim as strings; Parquet columns
            with their type; TFRecord: a feature with one value per record);
            a scalar feature is copied as the model reads it (a missing value
            as the spec default).
        batch_size: rows per model call.
        on_bad_rows: `"fail"` or `"skip"`, as in training (`rq_keras.data`).
        overwrite: replace an existing `output`.
        verbose: 1 prints progress (rows and rows/s, at most once a second)
            and a final line on stderr; 0 prints nothing.
        chunk_rows: rows read at a time (at least `batch_size`); bounds the
            memory with the batch size.

    Returns:
        a `PredictResult`.

    Raises:
        PredictError: a bad argument, output path or id column, or a
            directory that holds no model.
        FileNotFoundError: an input file does not exist.
        ValueError: an unknown input format, a missing column, an unreadable
            file (`rq_keras.data`'s messages, naming the file).
        MalformedDataError: a bad row under `on_bad_rows="fail"`.
    """
    from rq_keras.data.readers import BAD_ROW_POLICIES, chunk_length, read_chunks
    from rq_keras.data.reports import DataReport, FileReport

    start = time.perf_counter()
    if (model_dir is None) == (saved_model is None):
        raise PredictError("give one of `model_dir` (--model-dir) or `saved_model` (--saved-model)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PredictError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
    if on_bad_rows not in BAD_ROW_POLICIES:
        raise PredictError(f"--on-bad-rows must be one of {BAD_ROW_POLICIES}, got {on_bad_rows!r}")
    ids = _check_id_columns(id_columns)
    output = os.fspath(output)
    delimiter = _check_output(output, overwrite)
    paths = _input_paths(inputs)
    progress = _Progress(verbose)

    if model_dir is not None:
        scorer = load_run_scorer(model_dir)
    else:
        scorer = load_saved_model_scorer(saved_model)
    spec = scorer.spec
    progress.say(f"loaded {scorer.source} in {time.perf_counter() - start:.1f} s")
    for name in ids:
        if name in spec.feature_names and spec.feature(name).is_list:
            raise PredictError(
                f"--id-columns: {name!r} is a list feature; only single-value columns are copied"
            )
    extra = [c for c in ids if c not in spec.feature_names]
    types = _check_inputs(paths, spec, extra, on_bad_rows)

    def named(rows: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]):
        columns = {c: rows[c] for c in ids}
        scored = output_columns(
            outputs,
            quantiles=scorer.levels.get("quantiles"),
            thresholds=scorer.levels.get("thresholds"),
        )
        clash = [c for c in scored if c in columns]
        if clash:
            raise PredictError(f"--id-columns: {clash} are output columns of the model too")
        return {**columns, **scored}

    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    report = DataReport()
    written = 0
    columns: list[str] = []
    ticker = RowTicker(progress.say, "scored rows", every=_PROGRESS_SECONDS)
    # Written under a hidden temporary name and renamed when complete; removed on an error.
    with atomic_path(output, tmp_name=f".{os.path.basename(output)}.tmp-{unique_suffix()}") as tmp:
        table = ParquetTable(tmp, types, ids) if delimiter is None else TextTable(tmp, delimiter)
        try:
            for path in paths:
                file_report = FileReport(path)
                report.files.append(file_report)
                chunks = read_chunks(
                    path,
                    spec,
                    on_bad_rows=on_bad_rows,
                    chunk_rows=max(chunk_rows, batch_size),
                    with_label=False,
                    report=file_report,
                    extra_columns=extra,
                )
                for rows in chunks:
                    n = chunk_length(rows)
                    parts: dict[str, list[np.ndarray]] = {}
                    for lo in range(0, n, batch_size):
                        batch = {f.name: rows[f.name][lo : lo + batch_size] for f in spec.features}
                        for key, value in scorer(batch).items():
                            parts.setdefault(key, []).append(value)
                        ticker.at(written + min(lo + batch_size, n), path)
                    outputs = {k: np.concatenate(v) for k, v in parts.items()}
                    out = named(rows, outputs)
                    table.write(out, path)
                    columns = list(out)
                    written += n
            if not columns:  # no rows: the header (schema) alone
                empty = scorer.empty_rows()
                empty_ids = {c: np.zeros(0, dtype=object) for c in extra}
                out = named({**empty, **empty_ids}, scorer(empty))
                table.write(out, "the inputs")
                columns = list(out)
        finally:
            table.close()
    seconds = time.perf_counter() - start
    skipped = report.rows_dropped
    if skipped or report.non_finite:
        progress.say(report.summary())
    progress.say(f"wrote {written:,} rows to {output} ({skipped:,} skipped) in {seconds:.1f} s")
    return PredictResult(
        output=output,
        rows_written=written,
        rows_skipped=skipped,
        seconds=seconds,
        columns=columns,
        report=report,
    )
