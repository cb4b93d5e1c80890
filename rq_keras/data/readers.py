"""The checked readers: files -> numpy chunks in the model's input form (no TF).

File formats by name, text tables, `read_chunks` (text, Parquet or TFRecord)
and the passes over several files built on it (`iter_files`, `check_files`),
and `read_column`, one raw column of a table. The formats and the bad-row
policy are described in `rq_keras.data`. Nothing here imports TensorFlow when
the module loads; reading a TFRecord file imports it then.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from rq_keras.data.columns import Chunk, check_unique_columns, convert_cells, finish_chunk
from rq_keras.data.parquet import read_parquet
from rq_keras.data.reports import DataReport, FileReport
from rq_keras.data.tfrecord import read_tfrecord
from rq_keras.features.spec import FeatureSpec

__all__ = [
    "BAD_ROW_POLICIES",
    "DEFAULT_CHUNK_ROWS",
    "check_files",
    "check_policy",
    "chunk_length",
    "delimiter_for",
    "file_format",
    "input_paths",
    "iter_files",
    "read_chunks",
    "read_column",
]

BAD_ROW_POLICIES = ("fail", "skip")
_TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None, ".dat": None}
_TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrec")
DEFAULT_CHUNK_ROWS = 65_536


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


def check_policy(on_bad_rows: str) -> None:
    """Refuses an `on_bad_rows` that is not one of `BAD_ROW_POLICIES`."""
    if on_bad_rows not in BAD_ROW_POLICIES:
        raise ValueError(f"`on_bad_rows` must be one of {BAD_ROW_POLICIES}, got {on_bad_rows!r}")


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
    check_unique_columns(path, header)
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
        chunk = Chunk(report, numbers, on_bad_rows)
        counts = np.fromiter(map(len, batch), dtype=np.int64, count=len(batch))
        wrong = counts != width
        if wrong.any():
            for got in np.unique(counts[wrong]):
                chunk.flag(counts == got, f"expected {width} columns, got {got}")
            batch = [r if len(r) == width else [""] * width for r in batch]
        transposed = list(zip(*batch))
        cells = {c: np.asarray(transposed[i], dtype=object) for c, i in index.items()}
        columns = convert_cells(spec, cells, chunk, with_label)
        for c in extra:
            columns[c] = cells[c]  # the cell text, verbatim
        out = finish_chunk(columns, chunk)
        if out is not None:
            yield out


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
        path: a text, Parquet or TFRecord file (see `rq_keras.data`).
        spec: the feature spec; its columns are found by name.
        on_bad_rows: `"fail"` or `"skip"` (see `rq_keras.data`).
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
    check_policy(on_bad_rows)
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
        yield from read_parquet(*args, extra)
    else:
        yield from read_tfrecord(*args, extra)


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
        check_unique_columns(path, schema.names)
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
        check_unique_columns(path, [h.strip() for h in next(rows, [])])
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
