"""Readers for tabular files (CSV and friends, Parquet, .npy)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["read_column", "delimiter_for"]

_TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None, ".dat": None}


def delimiter_for(path: str) -> str | None:
    """The delimiter a text table of this name uses; None means whitespace."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _TEXT_SUFFIXES:
        raise ValueError(
            f"{path}: unknown table format {suffix!r}; use .csv, .tsv, .txt/.dat "
            "(whitespace-separated), .parquet or .npy, or pass a delimiter"
        )
    return _TEXT_SUFFIXES[suffix]


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
