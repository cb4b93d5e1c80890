"""Readers, writers and `tf.data` pipelines driven by a feature spec.

Formats, picked by file suffix:

* text tables: `.csv`, `.tsv`, whitespace-separated `.txt`/`.dat`, with a
  header line; columns are found by name, never by position;
* Parquet (`.parquet`): read into `tf.data` by tensorflow-io's
  `IODataset.from_parquet`; a file with nulls in a needed column goes through
  the checked pyarrow reader instead, because tensorflow-io returns stale
  values for null strings instead of failing;
* TFRecord of `tf.Example` (`.tfrecord`, `.tfrecords`, `.tfrec`; `.gz` for
  GZIP), parsed with the spec's `parse_spec`.

List features are one text cell with the ids joined by the feature's
`separator` in text and Parquet files, and a repeated feature in `tf.Example`.
Every reader yields the model's input form: scalars `(batch,)`, lists padded
or cut to `(batch, max_length)` with the pad value (`""` or `-1`), labels
float64 `(batch,)`. Integer ids stay int64 from the file to the model (never
through float64, which rounds ids above 2**53). A table with two columns of
one name is refused (`MalformedDataError`).

Bad rows. A row is bad when its column count is wrong (text), a number or an
integer id does not parse (or is outside int64), a numeric feature value is
NaN, infinite or beyond the float32 range (`1e39`; the model reads float32),
or its label is missing, NaN or infinite; a `tf.Example` record that does not
parse with the spec is bad too (the reason names a numeric feature or label
held as an int64 or bytes list: they are float lists). Empty cells, nulls and
the tokens `nan`,
`na`, `n/a`, `null`, `none` (lower, upper or capitalized) in a feature are
missing values and take the spec default; an absent `tf.Example` feature is
missing too. `on_bad_rows` says
what happens to bad rows: `"fail"` raises `MalformedDataError` naming the
file, the row (1-based, the header not counted) and the reason; `"skip"` drops
them and counts them, with the first row numbers, in a `DataReport`. Nothing
is dropped silently: `check_files` (and `read_chunks`) give the exact report
per file, and the `tf.data` pipeline applies the same policy.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from rq_keras.atomic import atomic_path
from rq_keras.features import Feature, FeatureSpec

__all__ = [
    "DataReport",
    "FileReport",
    "MalformedDataError",
    "check_files",
    "chunk_length",
    "delimiter_for",
    "file_format",
    "input_paths",
    "iter_files",
    "make_dataset",
    "make_example",
    "read_chunks",
    "read_column",
    "to_model_inputs",
    "write_table",
    "write_tfrecord",
]

BAD_ROW_POLICIES = ("fail", "skip")
_TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None, ".dat": None}
_TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrec")
_MISSING_TOKENS = ("", "nan", "na", "null", "none")
_MISSING_CELLS = frozenset(
    v for t in _MISSING_TOKENS for v in (t, t.upper(), t.capitalize(), "NaN", "N/A", "n/a")
)
_MAX_LISTED = 5
DEFAULT_CHUNK_ROWS = 65_536


class MalformedDataError(ValueError):
    """A bad row under `on_bad_rows="fail"`; names the file, row and reason."""


# --------------------------------------------------------------------- reports
@dataclasses.dataclass
class FileReport:
    """What reading one file found.

    Attributes:
        path: the file.
        rows_read: data rows read (the header not counted).
        rows_kept: rows that reached the output.
        bad_rows: reason -> number of rows dropped for it.
        first_bad_rows: reason -> the first row numbers (1-based).
    """

    path: str
    rows_read: int = 0
    rows_kept: int = 0
    bad_rows: dict[str, int] = dataclasses.field(default_factory=dict)
    first_bad_rows: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        return sum(self.bad_rows.values())

    def add_bad(self, reason: str, rows: np.ndarray) -> None:
        if rows.size == 0:
            return
        self.bad_rows[reason] = self.bad_rows.get(reason, 0) + int(rows.size)
        listed = self.first_bad_rows.setdefault(reason, [])
        listed.extend(int(r) for r in rows[: max(0, _MAX_LISTED - len(listed))])


@dataclasses.dataclass
class DataReport:
    """What reading a set of files found, per file and in total."""

    files: list[FileReport] = dataclasses.field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_kept(self) -> int:
        return sum(f.rows_kept for f in self.files)

    @property
    def rows_dropped(self) -> int:
        return sum(f.rows_dropped for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_dropped": self.rows_dropped,
            "files": [dataclasses.asdict(f) | {"rows_dropped": f.rows_dropped} for f in self.files],
        }

    def summary(self) -> str:
        """One line per file with drops, for logs."""
        lines = [f"{self.rows_kept} of {self.rows_read} rows kept"]
        for f in self.files:
            for reason, count in f.bad_rows.items():
                rows = ", ".join(map(str, f.first_bad_rows[reason]))
                lines.append(f"  {f.path}: {count} row(s) dropped, {reason} (rows {rows}, ...)")
        return "\n".join(lines)


# ---------------------------------------------------------------- file formats
def delimiter_for(path: str) -> str | None:
    """The delimiter a text table of this name uses; None means whitespace."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _TEXT_SUFFIXES:
        raise ValueError(
            f"{path}: unknown table format {suffix!r}; use .csv, .tsv, .txt/.dat "
            "(whitespace-separated), .parquet or .npy, or pass a delimiter"
        )
    return _TEXT_SUFFIXES[suffix]


def file_format(path: str) -> str:
    """`"text"`, `"parquet"` or `"tfrecord"`, from the file name."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(_TFRECORD_SUFFIXES):
        return "tfrecord"
    if name.endswith(".parquet"):
        return "parquet"
    if os.path.splitext(name)[1] in _TEXT_SUFFIXES:
        return "text"
    raise ValueError(
        f"{path}: unknown data format; use .csv, .tsv, .txt/.dat, .parquet or "
        f"{'/'.join(_TFRECORD_SUFFIXES)} (optionally .gz)"
    )


def input_paths(files: str | os.PathLike | Iterable) -> list[str]:
    """One file or several -> their paths, each an existing file of a known
    format (ValueError when none is given or the format is unknown,
    FileNotFoundError for a missing one)."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths = [os.fspath(f) for f in files]
    if not paths:
        raise ValueError("no input files given")
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p}: no such file")
        file_format(p)
    return paths


def _check_policy(on_bad_rows: str) -> None:
    if on_bad_rows not in BAD_ROW_POLICIES:
        raise ValueError(f"`on_bad_rows` must be one of {BAD_ROW_POLICIES}, got {on_bad_rows!r}")


# ------------------------------------------------------ cell -> column parsing
class _Chunk:
    """Raw column values of one chunk plus the bookkeeping of its bad rows."""

    def __init__(self, report: FileReport, row_numbers: np.ndarray, on_bad_rows: str):
        self.report = report
        self.rows = row_numbers
        self.bad = np.zeros(row_numbers.size, dtype=bool)
        self.on_bad_rows = on_bad_rows
        self.first_failure: tuple[int, str] | None = None

    def flag(self, mask: np.ndarray, reason: str, values: np.ndarray | None = None) -> None:
        """Marks rows bad for `reason`; `values` (one per row) go into the error."""
        mask = mask & ~self.bad
        if not mask.any():
            return
        self.bad |= mask
        if self.on_bad_rows == "fail":
            first = np.flatnonzero(mask)[0]
            row = int(self.rows[first])
            if values is not None:
                reason = f"{reason}: {_show(values[first])}"
            if self.first_failure is None or row < self.first_failure[0]:
                self.first_failure = (row, reason)
            return
        self.report.add_bad(reason, self.rows[mask])

    def raise_first_failure(self) -> None:
        """Under "fail": raises for the earliest bad row of the chunk."""
        if self.first_failure is not None:
            row, reason = self.first_failure
            raise MalformedDataError(f"{self.report.path}: row {row}: {reason}")


def _show(value: Any) -> str:
    """A cell or value for an error message: text quoted, numbers plain."""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.integer):
        return repr(int(value))
    return repr(value)


def _check_unique_columns(path: str, names: Sequence[str]) -> None:
    """Refuses two columns of one name: which one the reader took would be a guess."""
    names = list(names)
    repeated = sorted({n for n in names if names.count(n) > 1}, key=names.index)
    if repeated:
        raise MalformedDataError(
            f"{path}: duplicate column name(s) {repeated}; every column needs its own name"
        )


def _is_missing(values: np.ndarray) -> np.ndarray:
    """Cells that are None, empty or a missing-value token (any common case)."""
    import pandas as pd

    return pd.Series(values, dtype=object).isin(_MISSING_CELLS).to_numpy() | np.equal(values, None)


def _parse_floats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, unparsable mask) for an object array of text cells.

    Correctly rounded (numpy's cast uses Python's float parser), so a float
    written with `repr` reads back bit for bit; `pandas.to_numeric` is not.
    """
    try:
        return np.asarray(values, dtype=str).astype(np.float64), np.zeros(len(values), bool)
    except ValueError:
        pass
    out = np.full(len(values), np.nan)
    bad = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            bad[i] = True
    return out, bad


def _parse_ints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, unparsable mask); a float text like "3.5" does not parse."""
    try:
        return np.asarray(values).astype(str).astype(np.int64), np.zeros(len(values), bool)
    except (ValueError, OverflowError):
        pass
    out = np.zeros(len(values), dtype=np.int64)
    bad = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        try:
            out[i] = int(str(v).strip())
        except (ValueError, OverflowError):
            bad[i] = True
    return out, bad


def _scalar_column(feature: Feature, raw: np.ndarray, chunk: _Chunk) -> np.ndarray:
    """Text or object cells -> the feature's dtype; missing -> default."""
    missing = _is_missing(raw)
    if feature.dtype == "string":
        return np.where(missing, feature.default, raw).astype(object)
    present = ~missing
    if feature.dtype == "int64":
        out = np.full(raw.size, feature.default, dtype=np.int64)
        parsed, bad = _parse_ints(raw[present])
        out[present] = parsed
        where = np.zeros(raw.size, bool)
        where[present] = bad
        chunk.flag(where, f"column {feature.name!r}: not an integer id", raw)
        return out
    out = np.full(raw.size, feature.default, dtype=np.float64)
    parsed, bad = _parse_floats(raw[present])
    out[present] = parsed
    where = np.zeros(raw.size, bool)
    where[present] = bad
    chunk.flag(where, f"column {feature.name!r}: not a number", raw)
    return _float32_column(feature, out, chunk, raw)


def _float32_column(feature: Feature, values: np.ndarray, chunk: _Chunk, shown) -> np.ndarray:
    """Numeric values (missing ones already the default) -> float32.

    A value that is NaN or infinite, or finite in float64 but beyond the
    float32 range, is a bad value: the row is bad. `shown` holds the values
    as read, for the error message.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(values).astype(np.float32)
    finite = np.isfinite(out)
    chunk.flag(~finite, f"column {feature.name!r}: not a finite float32 value", shown)
    out[~finite] = feature.default
    return out


def _list_column(feature: Feature, raw: np.ndarray, chunk: _Chunk) -> np.ndarray:
    """Joined list cells -> `(n, max_length)` padded ids."""
    n, width = raw.size, feature.max_length
    missing = _is_missing(raw)
    pad = feature.pad_value
    dtype = object if feature.dtype == "string" else np.int64
    out = np.full((n, width), pad, dtype=dtype)
    sep = feature.separator
    for i in np.flatnonzero(~missing):
        ids = [t.strip() for t in str(raw[i]).split(sep)]
        ids = [t for t in ids if t][:width]
        if dtype is object:
            out[i, : len(ids)] = ids
            continue
        try:
            out[i, : len(ids)] = [int(t) for t in ids]
        except (ValueError, OverflowError):
            mask = np.zeros(n, bool)
            mask[i] = True
            chunk.flag(mask, f"column {feature.name!r}: a list id is not an integer", raw)
    return out


def _label_column(spec: FeatureSpec, raw: np.ndarray, chunk: _Chunk) -> np.ndarray:
    name = spec.label.name
    if raw.dtype.kind == "f":
        y = raw.astype(np.float64)
        chunk.flag(np.isnan(y), f"label {name!r}: missing or NaN")
    else:
        missing = _is_missing(raw)
        chunk.flag(missing, f"label {name!r}: missing or NaN")
        y, bad = _parse_floats(np.where(missing, "0", raw))
        chunk.flag(bad, f"label {name!r}: not a number")
    chunk.flag(np.isinf(y), f"label {name!r}: infinite", raw)
    return y


def _finish_chunk(columns: dict[str, np.ndarray], chunk: _Chunk) -> dict[str, np.ndarray] | None:
    chunk.raise_first_failure()
    keep = ~chunk.bad
    chunk.report.rows_read += int(chunk.rows.size)
    chunk.report.rows_kept += int(keep.sum())
    if not keep.any():
        return None
    if keep.all():
        return columns
    return {k: v[keep] for k, v in columns.items()}


# ------------------------------------------------------------ format readers
def _text_rows(path: str, delimiter: str | None) -> Iterator[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        if delimiter is None:
            for line in fh:
                if line.strip():
                    yield line.split()
        else:
            yield from csv.reader(fh, delimiter=delimiter)


def _read_text(path, spec, on_bad_rows, chunk_rows, with_label, report, delimiter, extra=()):
    sep = delimiter_for(path) if delimiter == "auto" else delimiter
    rows = _text_rows(path, sep)
    try:
        header = [h.strip() for h in next(rows)]
    except StopIteration:
        raise ValueError(f"{path}: empty file (no header line)") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable text table ({e})") from e
    _check_unique_columns(path, header)
    needed = [*(spec.columns if with_label else spec.feature_names), *extra]
    missing = [c for c in needed if c not in header]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; the header has {header}")
    index = {c: header.index(c) for c in needed}
    width = len(header)
    start = 1
    while True:
        try:
            batch = [r for _, r in zip(range(chunk_rows), rows)]
        except (UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"{path}: not a readable text table near row {start} ({e})") from e
        if not batch:
            return
        numbers = np.arange(start, start + len(batch))
        start += len(batch)
        chunk = _Chunk(report, numbers, on_bad_rows)
        counts = np.fromiter(map(len, batch), dtype=np.int64, count=len(batch))
        wrong = counts != width
        if wrong.any():
            for got in np.unique(counts[wrong]):
                chunk.flag(counts == got, f"expected {width} columns, got {got}")
            batch = [r if len(r) == width else [""] * width for r in batch]
        transposed = list(zip(*batch))
        cells = {c: np.asarray(transposed[i], dtype=object) for c, i in index.items()}
        columns = _convert(spec, cells, chunk, with_label)
        for c in extra:
            columns[c] = cells[c]  # the cell text, verbatim
        out = _finish_chunk(columns, chunk)
        if out is not None:
            yield out


def _convert(spec, cells, chunk, with_label):
    columns = {}
    for f in spec.features:
        fn = _list_column if f.is_list else _scalar_column
        columns[f.name] = fn(f, cells[f.name], chunk)
    if with_label:
        columns[spec.label.name] = _label_column(spec, cells[spec.label.name], chunk)
    return columns


def _parquet_file(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: not a readable Parquet file ({e})") from e


def _check_parquet_schema(path, schema, spec, with_label, extra=()) -> None:
    import pyarrow as pa

    _check_unique_columns(path, schema.names)
    needed = [*(spec.columns if with_label else spec.feature_names), *extra]
    missing = [c for c in needed if c not in schema.names]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; columns are {schema.names}")
    for f in spec.features:
        t = schema.field(f.name).type
        if f.is_list or f.dtype == "string":
            ok = pa.types.is_string(t) or pa.types.is_large_string(t)
            ok = ok or (not f.is_list and pa.types.is_integer(t))
            want = "a string column (list ids joined by the separator)" if f.is_list else "string"
        elif f.dtype == "int64":
            ok = pa.types.is_integer(t) or pa.types.is_floating(t)
            want = "an integer column"
        else:
            ok = pa.types.is_integer(t) or pa.types.is_floating(t)
            want = "a numeric column"
        if not ok:
            raise ValueError(f"{path}: column {f.name!r} is {t}, feature {f.name!r} needs {want}")
    if with_label:
        t = schema.field(spec.label.name).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise ValueError(f"{path}: label column {spec.label.name!r} is {t}, not numeric")


def _read_parquet(path, spec, on_bad_rows, chunk_rows, with_label, report, extra=()):
    pf = _parquet_file(path)
    schema = pf.schema_arrow
    _check_parquet_schema(path, schema, spec, with_label, extra)
    needed = [*(spec.columns if with_label else spec.feature_names), *extra]
    start = 1
    for batch in pf.iter_batches(batch_size=chunk_rows, columns=needed):
        n = batch.num_rows
        chunk = _Chunk(report, np.arange(start, start + n), on_bad_rows)
        start += n
        columns = {}
        for f in spec.features:
            col = batch.column(f.name)
            if f.is_list or f.dtype == "string":
                raw = np.asarray(col.cast("string").to_pylist(), dtype=object)
                fn = _list_column if f.is_list else _scalar_column
                columns[f.name] = fn(f, raw, chunk)
                continue
            nulls = np.asarray(col.is_null())
            if f.dtype == "int64":
                columns[f.name] = _parquet_ids(f, col, nulls, chunk)
                continue
            # a null is missing (the default); a NaN value is a bad value
            values = col.to_numpy(zero_copy_only=False).astype(np.float64)
            values[nulls] = f.default
            columns[f.name] = _float32_column(f, values, chunk, values)
        if with_label:
            col = batch.column(spec.label.name)
            y = col.to_numpy(zero_copy_only=False).astype(np.float64)
            y[np.asarray(col.is_null())] = np.nan
            columns[spec.label.name] = _label_column(spec, y, chunk)
        for c in extra:
            columns[c] = _parquet_extra(batch.column(c))
        out = _finish_chunk(columns, chunk)
        if out is not None:
            yield out


def _parquet_extra(col) -> np.ndarray:
    """A Parquet column carried along as it is: its numpy form, nulls kept.

    Integer and boolean columns with nulls become object arrays of Python
    values and None (numpy's form would be float64, which rounds ids above
    2**53); string columns are object arrays of str and None.
    """
    import pyarrow as pa

    if col.null_count and (pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)):
        out = np.empty(len(col), dtype=object)
        out[:] = col.to_pylist()
        return out
    return col.to_numpy(zero_copy_only=False)


def _parquet_ids(feature: Feature, col, nulls: np.ndarray, chunk: _Chunk) -> np.ndarray:
    """A Parquet integer or float column -> int64 ids, exactly; nulls -> default.

    Integer columns never pass through float64 (which rounds ids above
    2**53); a float value is an id only if it is integral and inside int64.
    """
    import pyarrow as pa

    reason = f"column {feature.name!r}: not an integer id"
    if pa.types.is_integer(col.type):
        values = col.fill_null(0).to_numpy(zero_copy_only=False)
        if values.dtype == np.uint64:
            chunk.flag(values > np.uint64(np.iinfo(np.int64).max), reason, values)
        ids = values.astype(np.int64)
    else:
        values = col.to_numpy(zero_copy_only=False).astype(np.float64)
        with np.errstate(invalid="ignore"):
            ok = (np.floor(values) == values) & (values >= -(2.0**63)) & (values < 2.0**63)
        chunk.flag(~nulls & ~ok, reason, values)
        ids = np.where(ok, values, 0.0).astype(np.int64)
    ids[nulls] = feature.default
    return ids


def _tfrecord_compression(path: str) -> str:
    return "GZIP" if path.lower().endswith(".gz") else ""


def _read_tfrecord(path, spec, on_bad_rows, chunk_rows, with_label, report, extra=()):
    import tensorflow as tf

    parse_spec = spec.parse_spec(with_label=with_label)
    records = tf.data.TFRecordDataset(path, compression_type=_tfrecord_compression(path))
    start = 1
    iterator = iter(records.batch(chunk_rows))
    while True:
        try:
            serialized = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            raise ValueError(f"{path}: not a readable TFRecord file ({e.message})") from e
        n = int(serialized.shape[0])
        chunk = _Chunk(report, np.arange(start, start + n), on_bad_rows)
        start += n
        try:
            parsed = tf.io.parse_example(serialized, parse_spec)
        except tf.errors.InvalidArgumentError:
            parsed = _parse_records_one_by_one(serialized, parse_spec, spec, chunk)
        columns = {k: v.numpy() for k, v in to_model_inputs(parsed, spec).items()}
        for f in spec.features:
            if f.is_numeric:
                columns[f.name] = _float32_column(f, columns[f.name], chunk, columns[f.name])
        if with_label:
            y = parsed[spec.label.name].numpy().astype(np.float64)
            y[chunk.bad] = 0.0
            columns[spec.label.name] = _label_column(spec, y, chunk)
        for f in spec.features:
            if f.dtype == "string":
                columns[f.name] = columns[f.name].astype(str).astype(object)
        if extra:
            columns.update(_example_values(path, serialized.numpy(), extra, chunk, start - n == 1))
        out = _finish_chunk(columns, chunk)
        if out is not None:
            yield out


def _example_values(path, records, names, chunk, first: bool) -> dict[str, np.ndarray]:
    """Features of serialized `tf.Example`s by name, one value per record.

    An int64, float or bytes (read as UTF-8 text) feature with exactly one
    value per record gives an object array of int, float or str. A record
    without the feature, with more than one value, or with bytes that are not
    UTF-8 is a bad row. A name that no record of the file's first chunk
    (`first`) holds is refused, like a missing column of a table.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    out = {name: np.full(len(records), None, dtype=object) for name in names}
    seen = dict.fromkeys(names, False)
    problems = {name: np.zeros(len(records), dtype=bool) for name in names}
    for i, record in enumerate(records):
        try:
            features = tf.train.Example.FromString(record).features.feature
        except DecodeError:
            continue  # not a tf.Example: the spec's parse has made the row bad
        for name in names:
            if name not in features:
                problems[name][i] = True
                continue
            seen[name] = True
            feature = features[name]
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            if len(values) != 1:
                problems[name][i] = True
                continue
            value = values[0]
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    problems[name][i] = True
                    continue
            out[name][i] = value
    for name in names:
        if first and not seen[name]:
            raise ValueError(
                f"{path}: no feature {name!r} in the first {len(records)} record(s); "
                "a column carried along needs one value in every record"
            )
        chunk.flag(problems[name], f"column {name!r}: not exactly one int64, float or text value")
    return out


def _float_list_mismatch(record: bytes, spec: FeatureSpec, parse_spec) -> str | None:
    """Why a record did not parse, when a numeric feature or the label is not a float list.

    Numeric features and the label are `tf.train.FloatList`s; a writer that
    stores a whole number as an `Int64List` gets only TensorFlow's type
    mismatch from the parse, without the fix. None when that is not the cause.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        features = tf.train.Example.FromString(record).features.feature
    except DecodeError:
        return None
    floats = [
        (f"feature {f.name!r}", f.name, "numeric features are float lists")
        for f in spec.features
        if f.is_numeric
    ]
    if spec.label.name in parse_spec:
        floats.append((f"label {spec.label.name!r}", spec.label.name, "the label is a float list"))
    for what, name, expected in floats:
        kind = features[name].WhichOneof("kind") if name in features else None
        if kind in ("int64_list", "bytes_list"):
            held = kind.removesuffix("_list")
            return f"{what} holds {held} values; {expected} (tf.train.FloatList)"
    return None


def _parse_records_one_by_one(serialized, parse_spec, spec, chunk):
    """Parses a batch record by record; records that fail are bad rows."""
    import tensorflow as tf

    values = serialized.numpy()
    good = np.ones(values.size, dtype=bool)
    reasons = np.full(values.size, "not a tf.Example matching the feature spec", dtype=object)
    for i, record in enumerate(values):
        try:
            tf.io.parse_example(tf.constant([record]), parse_spec)
        except tf.errors.InvalidArgumentError:
            good[i] = False
            reasons[i] = _float_list_mismatch(record, spec, parse_spec) or reasons[i]
    for reason in dict.fromkeys(reasons[~good]):
        chunk.flag(~good & (reasons == reason), reason)
    # An empty record parses (every feature takes its default) and stands in
    # for the bad ones, which the chunk drops.
    return tf.io.parse_example(tf.constant(np.where(good, values, b"")), parse_spec)


def read_chunks(
    path: str | os.PathLike,
    spec: FeatureSpec,
    *,
    on_bad_rows: str = "fail",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    with_label: bool = True,
    report: FileReport | None = None,
    delimiter: str | None = "auto",
    extra_columns: Sequence[str] = (),
) -> Iterator[dict[str, np.ndarray]]:
    """Reads one file as numpy chunks in the model's input form.

    Args:
        path: a text, Parquet or TFRecord file (see the module docstring).
        spec: the feature spec; its columns are found by name.
        on_bad_rows: `"fail"` or `"skip"` (see the module docstring).
        chunk_rows: rows per chunk (the last one may be smaller; skipped rows
            make chunks smaller).
        with_label: read and check the label column too.
        report: a `FileReport` to fill (one is made if None).
        delimiter: text files only: `"auto"` (from the suffix), a delimiter,
            or None for runs of whitespace.
        extra_columns: other columns (ids, say) to carry along, unparsed and
            never making a row bad in text and Parquet: text cells as object
            arrays of str, verbatim; Parquet columns in their numpy form
            (integer columns with nulls as object arrays with None). In
            TFRecord, a feature of the `tf.Example` with one int64, float or
            bytes (UTF-8) value per record, as an object array of int, float
            or str; a record without exactly one such value is a bad row.
            Neither a feature nor the label it reads.

    Yields:
        dicts of feature name (and label name) -> numpy array: strings as
        object arrays of str, int64 ids, float32 numerics, lists
        `(n, max_length)`, the label float64; then the `extra_columns`, rows
        aligned with the features (bad rows dropped from them too).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown format, missing column, wrong column type, an
            unreadable file; the message names the file.
        MalformedDataError: a bad row under `on_bad_rows="fail"`.
    """
    _check_policy(on_bad_rows)
    if chunk_rows < 1:
        raise ValueError(f"`chunk_rows` must be >= 1, got {chunk_rows}")
    (path,) = input_paths([path])
    extra = _check_extra_columns(extra_columns, spec, with_label)
    report = report if report is not None else FileReport(path)
    fmt = file_format(path)
    args = (path, spec, on_bad_rows, chunk_rows, with_label, report)
    if fmt == "text":
        yield from _read_text(*args, delimiter, extra)
    elif fmt == "parquet":
        yield from _read_parquet(*args, extra)
    else:
        yield from _read_tfrecord(*args, extra)


def _check_extra_columns(extra_columns, spec: FeatureSpec, with_label: bool) -> tuple[str, ...]:
    if isinstance(extra_columns, str):
        raise TypeError("`extra_columns` must be a sequence of column names, not a string")
    extra = tuple(extra_columns)
    repeated = sorted({c for c in extra if extra.count(c) > 1})
    if repeated:
        raise ValueError(f"`extra_columns` names {repeated} more than once")
    read = set(spec.columns if with_label else spec.feature_names)
    clash = [c for c in extra if c in read]
    if clash:
        raise ValueError(f"`extra_columns` {clash} are read already (a feature or the label)")
    return extra


def iter_files(
    files: str | os.PathLike | Sequence,
    spec: FeatureSpec,
    *,
    report: DataReport,
    on_bad_rows: str = "fail",
    with_label: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[dict[str, np.ndarray]]:
    """`read_chunks` over several files, one `FileReport` each in `report`."""
    for path in input_paths(files):
        file_report = FileReport(path)
        report.files.append(file_report)
        yield from read_chunks(
            path,
            spec,
            on_bad_rows=on_bad_rows,
            chunk_rows=chunk_rows,
            with_label=with_label,
            report=file_report,
        )


def check_files(
    files: str | os.PathLike | Sequence,
    spec: FeatureSpec,
    *,
    on_bad_rows: str = "fail",
    with_label: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_chunk: Callable[[int, str], None] | None = None,
) -> DataReport:
    """Reads every file once and reports its rows and bad rows.

    Run it before training: it fails fast on a missing column, an unreadable
    file or (under `"fail"`) the first bad row, naming the file and row.
    `on_chunk(rows, path)` is called after each chunk of kept rows (progress).
    """
    report = DataReport()
    for chunk in iter_files(
        files,
        spec,
        report=report,
        on_bad_rows=on_bad_rows,
        with_label=with_label,
        chunk_rows=chunk_rows,
    ):
        if on_chunk is not None:
            on_chunk(chunk_length(chunk), report.files[-1].path)
    return report


def chunk_length(chunk: Mapping[str, np.ndarray]) -> int:
    """The number of rows of a reader's chunk (column name -> array)."""
    return len(next(iter(chunk.values()))) if chunk else 0


# --------------------------------------------------------------- graph helpers
def to_model_inputs(values: dict[str, Any], spec: FeatureSpec) -> dict[str, Any]:
    """Graph-side: parsed or read tensors -> the model's input form.

    Ragged or sparse lists (from `tf.Example`) and joined list cells (text
    and Parquet strings) become `(batch, max_length)` padded tensors; scalars
    pass through, cast to the spec dtype.
    """
    import tensorflow as tf

    out = {}
    for f in spec.features:
        v = values[f.name]
        dtype = tf.as_dtype(f.tf_dtype_name)
        if not f.is_list:
            out[f.name] = tf.cast(v, dtype) if v.dtype != dtype else v
            continue
        if isinstance(v, tf.SparseTensor):
            v = tf.RaggedTensor.from_sparse(v)
        if not isinstance(v, tf.RaggedTensor):
            if v.dtype == tf.string and v.shape.rank == 1:
                tokens = tf.strings.strip(tf.strings.split(v, sep=f.separator))
                tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)
                v = tokens if dtype == tf.string else tf.strings.to_number(tokens, tf.int64)
            else:
                v = tf.RaggedTensor.from_tensor(v)
        dense = v.to_tensor(default_value=f.pad_value, shape=[None, f.max_length])
        out[f.name] = tf.cast(dense, dtype) if dense.dtype != dtype else dense
    return out


def _element_signature(spec: FeatureSpec, with_label: bool):
    import tensorflow as tf

    sig = {
        f.name: tf.TensorSpec((None, *f.shape), tf.as_dtype(f.tf_dtype_name)) for f in spec.features
    }
    if with_label:
        sig[spec.label.name] = tf.TensorSpec((None,), tf.float64)
    return sig


def _parquet_has_nulls(pf, needed: set[str]) -> bool:
    """True unless every row group's statistics show no nulls in `needed`."""
    meta = pf.metadata
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            if column.path_in_schema not in needed:
                continue
            stats = column.statistics
            if stats is None or not stats.has_null_count or stats.null_count > 0:
                return True
    return False


class _FiniteFilter:
    """Graph-side bad-value policy for tf.Example and tensorflow-io batches.

    The checked readers' policy: a numeric feature not finite in float32 (the
    batch is already float32) or a missing, NaN or infinite label is a bad
    row. Under `"fail"` the step fails naming the column (and `source`, the
    file, when known); under `"skip"` the rows are dropped.
    """

    def __init__(self, spec: FeatureSpec, on_bad_rows: str, with_label: bool, source=None):
        self.on_bad_rows = on_bad_rows
        self.where = f"{source}: " if source else ""
        self.columns = [f.name for f in spec.features if f.is_numeric]
        self.label = spec.label.name if with_label else None
        if self.label is not None:
            self.columns.append(self.label)

    def mask(self, batch):
        """True where every checked column is finite: `(batch,)`, or a scalar for one row."""
        import tensorflow as tf

        if not self.columns:
            return tf.constant(True)
        finite = [tf.math.is_finite(batch[c]) for c in self.columns]
        return tf.reduce_all(tf.stack(finite), axis=0)

    def _message(self, column: str) -> str:
        what = (
            f"label {column!r} is missing, NaN or infinite"
            if column == self.label
            else f"column {column!r} is not a finite float32 value"
        )
        return f"{self.where}{what} in some row; rq_keras.data.check_files names the file and row"

    def __call__(self, batch):
        import tensorflow as tf

        if self.on_bad_rows == "fail":
            out = dict(batch)
            for c in self.columns:
                out[c] = tf.debugging.check_numerics(batch[c], self._message(c))
            return out
        if not self.columns:
            return batch
        keep = self.mask(batch)
        return {k: tf.boolean_mask(v, keep) for k, v in batch.items()}


def _tfio_columns(path: str, spec: FeatureSpec, with_label: bool):
    """tensorflow-io column specs for a Parquet file, or None to use pyarrow.

    None when a needed column may hold nulls (tensorflow-io returns stale
    values for them) or has a type tensorflow-io does not read.
    """
    import pyarrow as pa
    import tensorflow as tf

    pf = _parquet_file(path)
    schema = pf.schema_arrow
    _check_parquet_schema(path, schema, spec, with_label)
    if _parquet_has_nulls(pf, set(spec.columns if with_label else spec.feature_names)):
        return None
    for f in spec.features:
        if f.dtype == "int64" and not f.is_list and pa.types.is_floating(schema.field(f.name).type):
            return None  # float ids: the checked reader refuses non-integral ones
    types = {
        pa.int32(): tf.int32,
        pa.int64(): tf.int64,
        pa.float32(): tf.float32,
        pa.float64(): tf.float64,
        pa.string(): tf.string,
    }
    columns = {}
    for name in spec.columns if with_label else spec.feature_names:
        dtype = types.get(schema.field(name).type)
        if dtype is None:
            return None
        columns[name] = tf.TensorSpec([], dtype)
    return columns


def _file_dataset(path, spec, fmt, on_bad_rows, with_label, batch_size, chunk_rows):
    """Batches of one file in the model's input form (label included)."""
    import tensorflow as tf

    columns = _tfio_columns(path, spec, with_label) if fmt == "parquet" else None
    if columns is not None:
        import tensorflow_io as tfio

        ds = tfio.IODataset.from_parquet(path, columns=columns).batch(batch_size)

        def convert(batch):
            batch = dict(batch)
            for f in spec.features:
                v = batch[f.name]
                if f.dtype == "string" and not f.is_list and v.dtype != tf.string:
                    batch[f.name] = tf.strings.as_string(v)
            out = to_model_inputs(batch, spec)
            if with_label:
                out[spec.label.name] = tf.cast(batch[spec.label.name], tf.float64)
            return out

        ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.map(_FiniteFilter(spec, on_bad_rows, with_label, source=path))
    signature = _element_signature(spec, with_label)

    def generate():
        yield from read_chunks(
            path, spec, on_bad_rows=on_bad_rows, chunk_rows=chunk_rows, with_label=with_label
        )

    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def make_dataset(
    files: str | os.PathLike | Sequence,
    spec: FeatureSpec,
    *,
    batch_size: int = 1024,
    shuffle: bool = False,
    shuffle_buffer: int = 65_536,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    deterministic: bool = True,
    on_bad_rows: str = "fail",
    with_label: bool = True,
    num_shards: int = 1,
    shard_index: int = 0,
    input_context: Any = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
):
    """A `tf.data` pipeline of `(features, label)` batches from files.

    Args:
        files: one path or a list; the formats may be mixed.
        spec: the feature spec.
        batch_size: rows per batch.
        shuffle: shuffle rows (and file order) each epoch, seeded by `seed`.
        shuffle_buffer: rows held by the shuffle buffer.
        seed: shuffle seed (None: a fresh order each run).
        repeat: repeat forever (for `steps_per_epoch` training).
        drop_remainder: drop a last partial batch (fixed shapes for TPUs).
        deterministic: keep element order fixed across runs (with a seed);
            False lets parallel stages run out of order, slightly faster.
        on_bad_rows: `"fail"` or `"skip"` (see the module docstring). In the
            pipeline a bad `tf.Example`, or a non-finite label or numeric
            feature in TFRecord or Parquet, fails the step naming the column
            but not the row under `"fail"`; run `check_files` first for the
            exact row.
        with_label: yield `(features, label)`; False yields features only.
        num_shards: the input is split into this many shards (workers) ...
        shard_index: ... and this pipeline reads shard `shard_index`. With as
            many files as shards or more, whole files are dealt round-robin;
            with fewer, every shard reads every file and keeps every
            `num_shards`-th row.
        input_context: a `tf.distribute.InputContext`; overrides the two
            above and makes `batch_size` the global batch (each pipeline
            gets `input_context.get_per_replica_batch_size(batch_size)`).
        chunk_rows: rows per read chunk of the checked (text) reader.

    Returns:
        `tf.data.Dataset` of `(features, label)` with features a dict of
        feature name -> tensor in the model's input form and the label
        float64 `(batch,)`; features only when `with_label` is False.
    """
    import tensorflow as tf

    _check_policy(on_bad_rows)
    paths = input_paths(files)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    if input_context is not None:
        num_shards = input_context.num_input_pipelines
        shard_index = input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(
            f"`shard_index` must be in [0, num_shards), got {shard_index} of {num_shards}"
        )
    row_sharding = num_shards > 1 and len(paths) < num_shards
    if num_shards > 1 and not row_sharding:
        paths = paths[shard_index::num_shards]

    label = spec.label.name
    read_batch = min(chunk_rows, max(batch_size, 1024))
    parts = []
    for path in paths:
        fmt = file_format(path)
        if fmt == "tfrecord":
            parts.append(("tfrecord", path))
        else:
            parts.append(
                (
                    "batched",
                    _file_dataset(path, spec, fmt, on_bad_rows, with_label, read_batch, chunk_rows),
                )
            )

    parse_spec = spec.parse_spec(with_label=with_label)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, parse_spec)
        out = to_model_inputs(parsed, spec)
        if with_label:
            out[label] = tf.cast(parsed[label], tf.float64)
        return out

    def parse_one(serialized):
        return parse(tf.expand_dims(serialized, 0))

    datasets = []
    for kind, part in parts:
        if kind == "tfrecord":
            ds = tf.data.TFRecordDataset(part, compression_type=_tfrecord_compression(part))
            if row_sharding:
                ds = ds.shard(num_shards, shard_index)
            if on_bad_rows == "skip":
                # Record by record, so one bad record drops only itself.
                ds = ds.map(parse_one, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
                ds = ds.unbatch()
            else:
                datasets.append(("serialized", ds))
                continue
            ds = ds.filter(_FiniteFilter(spec, "skip", with_label).mask)
            datasets.append(("rows", ds))
        elif shuffle or row_sharding:
            ds = part.unbatch()
            if row_sharding:
                ds = ds.shard(num_shards, shard_index)
            datasets.append(("rows", ds))
        else:
            datasets.append(("batches", part))

    # Serialized records are shuffled and batched before parsing (cheapest);
    # rows from the other readers are shuffled and batched as rows; in file
    # order, the readers' batches are only cut to size (no per-row work).
    pipelines = []
    serialized = [d for k, d in datasets if k == "serialized"]
    rows = [d for k, d in datasets if k == "rows"]
    batches = [d for k, d in datasets if k == "batches"]
    if batches:
        ds = _mix(batches, False, seed)
        pipelines.append(ds.rebatch(batch_size, drop_remainder=drop_remainder))
    for group, is_serialized in ((serialized, True), (rows, False)):
        if not group:
            continue
        ds = _mix(group, shuffle, seed)
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if is_serialized:
            ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
            ds = ds.map(_FiniteFilter(spec, on_bad_rows, with_label))
        pipelines.append(ds)
    ds = pipelines[0]
    for other in pipelines[1:]:
        ds = ds.concatenate(other)
    if with_label:
        ds = ds.map(lambda b: ({k: v for k, v in b.items() if k != label}, b[label]))
    if repeat:
        ds = ds.repeat()
    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is not None or num_shards > 1:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _mix(group, shuffle: bool, seed):
    """One dataset from several: in file order, or rows drawn at random (seeded)."""
    import tensorflow as tf

    if len(group) == 1:
        return group[0]
    if shuffle:
        return tf.data.Dataset.sample_from_datasets(group, seed=seed, stop_on_empty_dataset=False)
    out = group[0]
    for other in group[1:]:
        out = out.concatenate(other)
    return out


# ------------------------------------------------------------------- writers
def make_example(spec: FeatureSpec, values, label: float | None = None):
    """One row as a `tf.train.Example`, the way the readers and the `examples` signature parse it.

    The one `tf.Example` encoder of rq_keras: `write_tfrecord` and
    `rq_keras.serving` both call it. It converts, it does not check types
    (`rq_keras.serving.example_from_dict` checks a caller's row first).

    Args:
        spec: the feature spec; its dtypes pick the `tf.train.Feature` kind:
            strings a `BytesList`, int64 ids an `Int64List`, numerics a
            `FloatList`.
        values: feature name -> value. A scalar feature's value, or None
            (or NaN) when missing: left out, so parsing gives the spec
            default; a feature absent from `values` is missing too. A list
            feature's ids as a sequence (None: empty), without pad values.
        label: written as a float list when given and not NaN.

    Returns:
        a `tf.train.Example` (`.SerializeToString()` gives the record).
    """
    import tensorflow as tf

    train = tf.train
    feature = {}
    for f in spec.features:
        v = values.get(f.name)
        if f.is_list:
            ids = [] if v is None else list(v)
        elif v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
            continue  # missing: the parser gives the spec default
        else:
            ids = [v]
        if f.dtype == "string":
            data = [t if isinstance(t, bytes) else str(t).encode() for t in ids]
            feature[f.name] = train.Feature(bytes_list=train.BytesList(value=data))
        elif f.dtype == "int64":
            data = [int(t) for t in ids]
            feature[f.name] = train.Feature(int64_list=train.Int64List(value=data))
        else:
            data = [float(t) for t in ids]
            feature[f.name] = train.Feature(float_list=train.FloatList(value=data))
    if label is not None and not math.isnan(label):
        feature[spec.label.name] = train.Feature(float_list=train.FloatList(value=[label]))
    return train.Example(features=train.Features(feature=feature))


def _example_bytes(spec: FeatureSpec, frame) -> Iterator[bytes]:
    """The rows of a DataFrame (list features as joined text cells) as records."""
    columns = [(f, frame[f.name].tolist()) for f in spec.features]
    label = frame[spec.label.name].astype(np.float64).tolist() if spec.label.name in frame else None
    for i in range(len(frame)):
        row = {}
        for f, values in columns:
            v = values[i]
            if f.is_list:
                ids = [] if v is None else [t.strip() for t in str(v).split(f.separator)]
                v = [t for t in ids if t]
            row[f.name] = v
        example = make_example(spec, row, None if label is None else label[i])
        yield example.SerializeToString()


def write_tfrecord(frames, spec: FeatureSpec, path: str | os.PathLike) -> int:
    """Writes rows as `tf.Example` records; returns the number written.

    Args:
        frames: a pandas DataFrame, or an iterable of them (written in order,
            so a large table can be written chunk by chunk), with the spec's
            columns; list features as joined text cells.
        spec: the feature spec (its dtypes pick the `tf.train.Feature` kind).
        path: the output file; `.gz` writes GZIP.

    Missing values (None/NaN) are left out of the record, so parsing gives the
    spec default; a missing label is left out too and is a bad row on read.
    The file is written to a temporary name and renamed when complete.
    """
    import pandas as pd
    import tensorflow as tf

    path = os.fspath(path)
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    options = tf.io.TFRecordOptions(compression_type=_tfrecord_compression(path))
    written = 0
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp, options) as writer:
        for frame in frames:
            missing = [c for c in spec.feature_names if c not in frame.columns]
            if missing:
                raise ValueError(f"{path}: the rows lack feature column(s) {missing}")
            for record in _example_bytes(spec, frame):
                writer.write(record)
                written += 1
    return written


def write_table(
    frame, spec: FeatureSpec, path: str | os.PathLike, *, keep: Sequence[str] = ()
) -> int:
    """Writes a DataFrame in the format of `path`'s suffix; returns its rows.

    Text and Parquet keep the `keep` columns, then the spec's columns in spec
    order (label last); TFRecord writes `tf.Example` records of the spec's
    columns (`write_tfrecord`). Written to a temporary name and renamed when
    complete.
    """
    path = os.fspath(path)
    fmt = file_format(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt == "tfrecord":
        return write_tfrecord(frame, spec, path)
    columns = [*keep, *(c for c in spec.columns if c in frame.columns and c not in keep)]
    missing = [c for c in (*keep, *spec.feature_names) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: the rows lack feature column(s) {missing}")
    part = frame[columns]
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            part.to_parquet(tmp, index=False, row_group_size=131_072)
        else:
            sep = delimiter_for(path) or " "
            part.to_csv(tmp, index=False, sep=sep)
    return len(part)


# ------------------------------------------------------------ single column
def read_column(path: str | os.PathLike, column: str | None, delimiter: str | None = "auto"):
    """Reads one column of a table as a numpy array, values untouched.

    Args:
        path: `.csv`/`.tsv`/`.txt`/`.dat` text with a header line, `.parquet`,
            or `.npy` (a 1-D array, or 2-D with one column; `column` ignored).
        column: the column name (text and Parquet).
        delimiter: `"auto"` (from the file name), a delimiter string, or None
            for runs of whitespace.

    Returns:
        1-D array; text columns keep their raw strings where they do not parse
        as numbers, so the caller can report the rows.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown format, missing column (the message lists the
            columns there are), or an unreadable file; messages name the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{path}: not a numeric .npy array ({e})") from e
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"{path}: expected a 1-D array, got shape {arr.shape}")
        return arr
    if column is None:
        raise ValueError(f"{path}: a column name is needed for {suffix or 'this'} files")
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as e:
            raise ValueError(f"{path}: not a readable Parquet file ({e})") from e
        _check_unique_columns(path, schema.names)
        if column not in schema.names:
            raise ValueError(f"{path}: no column {column!r}; columns are {schema.names}")
        values = pq.read_table(path, columns=[column]).column(0)
        return values.to_numpy(zero_copy_only=False)
    import pandas as pd

    sep = delimiter_for(path) if delimiter == "auto" else delimiter
    try:
        header = pd.read_csv(path, sep=sep if sep is not None else r"\s+", nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable table ({e})") from e
    # pandas renames a repeated name ("a", "a.1"); the header line has the real ones
    rows = _text_rows(path, sep)
    try:
        _check_unique_columns(path, [h.strip() for h in next(rows, [])])
    finally:
        rows.close()
    names = [str(c) for c in header.columns]
    if column not in names:
        raise ValueError(f"{path}: no column {column!r}; columns are {names}")
    try:
        frame = pd.read_csv(
            path,
            sep=sep if sep is not None else r"\s+",
            usecols=[column],
            dtype={column: str},
            keep_default_na=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable table ({e})") from e
    raw = frame[column].to_numpy()
    numeric = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    unparsed = np.isnan(numeric) & (np.char.lower(raw.astype(str)) != "nan")
    if unparsed.any():
        return raw  # the caller names the rows that are not numbers
    return numeric
