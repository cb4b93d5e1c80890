"""Scoring files with a trained model (`python predict.py`).

`predict_files` reads CSV/TSV/text, Parquet and TFRecord files through the
model's feature spec (no label column needed), scores them batch by batch and
writes one row per kept input row to a Parquet or text table: the
`id_columns` first, then every output of the model, one column each, named
as in a run's `predictions.parquet` (`output_columns`).

The model is a finished `train.py` run (`model.keras`, called with
`training=False`) or an `export.py` version directory (the SavedModel's
`serving_default` signature); both give the outputs the SavedModel serves
(`rq_keras.export.OUTPUTS`). Bad rows follow the training readers' policy
(`rq_keras.data`): `"fail"` raises `MalformedDataError` naming the file and
row, `"skip"` drops the row (and its ids) and counts it.

Memory stays bounded: the files are read in chunks (`read_chunks`), each
chunk is scored and appended to a temporary file beside the output (a
Parquet row group, or text lines), and the temporary file is renamed over
the output only when every row is written; a failed or interrupted run
leaves no partial output (a killed one may leave the hidden
`.NAME.tmp-PID` beside it).

Its command line is `rq_keras.cli.predict`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rq_keras.atomic import atomic_path
from rq_keras.config import PREDICTIONS
from rq_keras.progress import RowTicker

__all__ = [
    "OUTPUT_SUFFIXES",
    "PredictError",
    "PredictResult",
    "output_columns",
    "output_levels",
    "predict_files",
]

# Output table formats by suffix; text ones with their delimiter (" " for
# whitespace-separated tables, as `rq_keras.data.write_table` writes them).
OUTPUT_SUFFIXES = {".parquet": None, ".csv": ",", ".tsv": "\t", ".txt": " ", ".dat": " "}
# Column-name prefixes of the 2-D outputs; the levels of `quantiles` and
# `exceedance` name their columns when known, an index (from 1) otherwise.
_PREFIXES = {
    "quantiles": "quantile_",
    "exceedance": "p_above_",
    "codes": "code_",
    "level_values": "level_value_",
}
# Index names when the levels are unknown: `exceedance_1`, never `p_above_1`,
# which would read as the threshold 1.
_INDEX_PREFIXES = {"quantiles": "quantile_", "exceedance": "exceedance_"}
_LEVELS = {"quantiles": "quantiles", "exceedance": "thresholds"}
_PROGRESS_SECONDS = 1.0


class PredictError(ValueError):
    """Scoring cannot start or go on: a bad argument, model, output or id column."""


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


# ------------------------------------------------------------ column names
def output_columns(
    outputs: Mapping[str, np.ndarray],
    *,
    quantiles: Sequence[float] | None = None,
    thresholds: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """Per-row model outputs -> named 1-D columns, in the order of `outputs`.

    A `(batch,)` output keeps its name (`prediction`, `regressor`, `mean`,
    `median`, `positive_mean`); a `(batch, n)` one gives n columns: `quantile_0.1`..,
    `p_above_0`.. (the levels formatted with `:g`), `code_1`..,
    `level_value_1`.., `NAME_1`.. for any other. Without `quantiles`
    (`thresholds`) the columns are numbered instead: `quantile_1`..,
    `exceedance_1`...

    Args:
        outputs: output name -> `(batch,)` or `(batch, n)` array.
        quantiles: the levels of the `quantiles` output, or None if unknown.
        thresholds: the thresholds t of the `exceedance` output P(y > t),
            or None if unknown.

    Returns:
        column name -> `(batch,)` array (views of `outputs`).

    Raises:
        ValueError: known levels whose number differs from the output's
            columns.
    """
    levels = {"quantiles": quantiles, "exceedance": thresholds}
    columns: dict[str, np.ndarray] = {}
    for key, value in outputs.items():
        value = np.asarray(value)
        if value.ndim == 1:
            columns[key] = value
            continue
        width = value.shape[1]
        known = levels.get(key)
        if known is not None:
            known = list(known)
            if len(known) != width:
                raise ValueError(
                    f"output {key!r} has {width} columns but {len(known)} "
                    f"{_LEVELS[key]} are given ({known})"
                )
            names = [f"{_PREFIXES[key]}{v:g}" for v in known]
        else:
            prefix = _INDEX_PREFIXES.get(key) or _PREFIXES.get(key) or f"{key}_"
            names = [f"{prefix}{j + 1}" for j in range(width)]
        for j, name in enumerate(names):
            columns[name] = value[:, j]
    return columns


def output_levels(model) -> dict[str, list[float]] | None:
    """`{"quantiles": [...], "thresholds": [...]}` of a model's decoder, or None.

    None for a model without an RQ decoder (a baseline head), which has no
    `quantiles` or `exceedance` output. `export.py` writes this as
    `assets.extra/outputs.json`.
    """
    decoder = getattr(model, "decoder", None)
    if decoder is None or not hasattr(decoder, "quantiles"):
        return None
    return {
        "quantiles": [float(q) for q in decoder.quantiles],
        "thresholds": [float(t) for t in getattr(decoder, "thresholds", ())],
    }


# ----------------------------------------------------------------- models
class _Scorer:
    """A loaded model: `(spec, levels)` and a call from numpy rows to outputs."""

    def __init__(
        self,
        spec,
        levels: Mapping[str, list[float]] | None,
        call: Callable[[dict], Mapping[str, Any]],
        source: str,
        holds: Any = None,
    ):
        self.spec = spec
        self.levels = dict(levels or {})
        self.source = source
        self._call = call
        self._holds = holds  # what `call` needs alive (a loaded SavedModel)

    def __call__(self, rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feature rows (the readers' form) -> outputs, in `OUTPUTS` order.

        Floats as float32 (`prediction` and the other per-row values
        `(batch,)`), `codes` int32, as the SavedModel serves them.
        """
        from rq_keras.export import OUTPUTS, feature_tensors

        out = self._call(feature_tensors(self.spec, rows))
        result = {}
        for key in OUTPUTS:
            if key not in out:
                continue
            value = np.asarray(out[key])
            if key == "prediction" or key in PREDICTIONS:
                value = value.reshape(-1)
            result[key] = value.astype(np.int32 if key == "codes" else np.float32, copy=False)
        if "prediction" not in result:
            raise PredictError(f"{self.source}: the model's outputs have no `prediction`")
        return result

    def empty_rows(self) -> dict[str, np.ndarray]:
        """Zero rows of every feature: scoring them gives the output columns."""
        out = {}
        for f in self.spec.features:
            dtype = object if f.dtype == "string" else np.dtype(f.tf_dtype_name)
            out[f.name] = np.zeros((0, *f.shape), dtype=dtype)
        return out


def _load_run(model_dir: str | os.PathLike) -> _Scorer:
    import tensorflow as tf

    from rq_keras.export import OUTPUTS
    from rq_keras.run_dir import load_trained

    run = pathlib.Path(model_dir)
    try:
        model, spec = load_trained(run)
    except FileNotFoundError as err:
        raise PredictError(str(err)) from None

    @tf.function(reduce_retracing=True, autograph=False)
    def step(features):
        out = model(features, training=False)
        return {k: out[k] for k in OUTPUTS if k in out}

    def call(features):
        return {k: v.numpy() for k, v in step(features).items()}

    return _Scorer(spec, output_levels(model), call, str(run / "model.keras"))


def _load_saved_model(export_dir: str | os.PathLike) -> _Scorer:
    from rq_keras.export import OUTPUTS_FILE, SPEC_FILE, latest_version
    from rq_keras.features import FeatureSpec

    path = pathlib.Path(export_dir)
    if not (path / "saved_model.pb").is_file():
        latest = latest_version(path)
        hint = f" (it holds versions: the latest is {path / str(latest)})" if latest else ""
        raise PredictError(
            f"{path} is not a SavedModel (no saved_model.pb): --saved-model must be an "
            f"export.py version directory BASE/N{hint}"
        )
    spec_path = path / "assets.extra" / SPEC_FILE
    if not spec_path.is_file():
        raise PredictError(
            f"{spec_path} is missing: --saved-model must be a SavedModel written by export.py"
        )
    spec = FeatureSpec.load(spec_path)
    levels = None
    levels_path = path / "assets.extra" / OUTPUTS_FILE
    if levels_path.is_file():
        levels = _read_levels(levels_path)

    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        serve = loaded.signatures["serving_default"]
    except Exception as err:  # noqa: BLE001  TF raises many kinds for a damaged SavedModel
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise PredictError(
            f"{path} cannot be loaded as a SavedModel ({type(err).__name__}: {first})"
        ) from None

    def call(features):
        out = serve(**features)
        return {k: v.numpy() for k, v in out.items()}

    return _Scorer(spec, levels, call, str(path), holds=loaded)


def _read_levels(path: pathlib.Path) -> dict[str, list[float]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PredictError(f"{path} cannot be read: {err}") from None
    ok = isinstance(doc, dict) and all(
        isinstance(doc.get(k, []), list)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in doc.get(k, []))
        for k in ("quantiles", "thresholds")
    )
    if not ok:
        raise PredictError(f"{path} does not hold lists of `quantiles` and `thresholds`")
    return {k: [float(v) for v in doc[k]] for k in ("quantiles", "thresholds") if k in doc}


# ---------------------------------------------------------------- writers
class _ParquetTable:
    """Appends chunks to a Parquet file, one row group each.

    A column's type is fixed by `types` (the input's Parquet type of an id
    column) or else by its first chunk (all-null: string). In the `ids`
    columns NaN and None are nulls; the model's outputs are written as they
    are (a NaN stays NaN).
    """

    def __init__(self, path: str, types: Mapping[str, Any], ids: Sequence[str]):
        self.path = path
        self.types = dict(types)
        self.ids = set(ids)
        self.writer = None
        self.schema = None

    def write(self, columns: Mapping[str, np.ndarray], source: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = []
        for name, values in columns.items():
            want = self.schema.field(name).type if self.schema is not None else self.types.get(name)
            try:
                array = pa.array(values, type=want, from_pandas=name in self.ids)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
                raise PredictError(
                    f"{source}: column {name!r} does not fit the output's type {want} "
                    f"(set by the earlier rows or files): {err}"
                ) from None
            if want is None and pa.types.is_null(array.type):
                array = pa.array(values, type=pa.string(), from_pandas=True)
            arrays.append(array)
        table = pa.Table.from_arrays(arrays, names=list(columns))
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _TextTable:
    """Appends chunks to a delimited text table, the header line first.

    Cells holding the delimiter, a quote or a line break are quoted (CSV
    rules); missing values are empty cells.
    """

    def __init__(self, path: str, delimiter: str):
        self.path = path
        self.delimiter = delimiter
        self.fh = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115  closed in close()
        self.header = True

    def write(self, columns: Mapping[str, np.ndarray], source: str) -> None:
        import pandas as pd

        frame = pd.DataFrame(dict(columns), copy=False)
        frame.to_csv(
            self.fh, sep=self.delimiter, index=False, header=self.header, lineterminator="\n"
        )
        self.header = False

    def close(self) -> None:
        self.fh.close()


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
    from rq_keras.data import input_paths

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
    from rq_keras.data import FileReport, file_format, read_chunks

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
    from rq_keras.data import BAD_ROW_POLICIES, DataReport, FileReport, chunk_length, read_chunks

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

    scorer = _load_run(model_dir) if model_dir is not None else _load_saved_model(saved_model)
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
    # Written under `.NAME.tmp-PID` and renamed when complete; removed on an error.
    with atomic_path(output, tmp_name=f".{os.path.basename(output)}.tmp-{os.getpid()}") as tmp:
        table = _ParquetTable(tmp, types, ids) if delimiter is None else _TextTable(tmp, delimiter)
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
    if skipped:
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
