"""Cells -> typed columns, and the bad-row bookkeeping of one chunk (numpy only).

The readers (`rq_keras.data.readers`, `.parquet`, `.tfrecord`) read a chunk of
rows as raw column values; the functions here turn them into the model's
input form and flag the bad rows on the chunk's `Chunk`, which applies the
`on_bad_rows` policy (see `rq_keras.data`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rq_keras.data.reports import FileReport, MalformedDataError
from rq_keras.features.spec import Feature, FeatureSpec

_MISSING_TOKENS = ("", "nan", "na", "null", "none")
_MISSING_CELLS = frozenset(
    v for t in _MISSING_TOKENS for v in (t, t.upper(), t.capitalize(), "NaN", "N/A", "n/a")
)


class Chunk:
    """Raw column values of one chunk plus the bookkeeping of its bad rows."""

    def __init__(self, report: FileReport, row_numbers: np.ndarray, on_bad_rows: str):
        self.report = report
        self.rows = row_numbers
        self.bad = np.zeros(row_numbers.size, dtype=bool)
        self.on_bad_rows = on_bad_rows
        self.first_failure: tuple[int, str] | None = None
        # feature -> rows whose value was not finite and took the default
        self.non_finite: dict[str, np.ndarray] = {}

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

    def default_non_finite(self, mask: np.ndarray, feature: str) -> None:
        """Records the rows where `feature`'s value was not finite (it took
        the default); counted for the rows kept."""
        if mask.any():
            self.non_finite[feature] = self.non_finite.get(feature, False) | mask

    def raise_first_failure(self) -> None:
        """Under "fail": raises for the earliest bad row of the chunk."""
        if self.first_failure is not None:
            row, reason = self.first_failure
            raise MalformedDataError(f"{self.report.path}: row {row}: {reason}", row=row)


def _show(value: Any) -> str:
    """A cell or value for an error message: text quoted, numbers plain."""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.integer):
        return repr(int(value))
    return repr(value)


def check_unique_columns(path: str, names: Sequence[str]) -> None:
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


def scalar_column(feature: Feature, raw: np.ndarray, chunk: Chunk) -> np.ndarray:
    """Text or object cells -> the feature's dtype; missing -> default."""
    missing = _is_missing(raw)
    if feature.dtype == "string":
        return np.where(missing, feature.default, raw).astype(object)
    if feature.dtype == "int64":
        reason = f"column {feature.name!r}: not an integer id"
        return _parse_present(feature, raw, ~missing, np.int64, _parse_ints, chunk, reason)
    reason = f"column {feature.name!r}: not a number"
    out = _parse_present(feature, raw, ~missing, np.float64, _parse_floats, chunk, reason)
    return float32_column(feature, out, chunk)


def _parse_present(feature, raw, present, dtype, parse, chunk: Chunk, reason: str) -> np.ndarray:
    """The `present` cells parsed by `parse`, the others the default; flags what does not parse."""
    out = np.full(raw.size, feature.default, dtype=dtype)
    parsed, bad = parse(raw[present])
    out[present] = parsed
    where = np.zeros(raw.size, bool)
    where[present] = bad
    chunk.flag(where, reason, raw)
    return out


def float32_column(feature: Feature, values: np.ndarray, chunk: Chunk) -> np.ndarray:
    """Numeric values (missing ones already the default) -> float32.

    A value that is NaN or infinite, or finite in float64 but beyond the
    float32 range, takes the feature's default, as in serving (one policy on
    every path, `rq_keras.data`); the chunk counts it.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(values).astype(np.float32)
    finite = np.isfinite(out)
    chunk.default_non_finite(~finite, feature.name)
    out[~finite] = feature.default
    return out


def list_column(feature: Feature, raw: np.ndarray, chunk: Chunk) -> np.ndarray:
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


def label_column(spec: FeatureSpec, raw: np.ndarray, chunk: Chunk) -> np.ndarray:
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


def finish_chunk(columns: dict[str, np.ndarray], chunk: Chunk) -> dict[str, np.ndarray] | None:
    """Applies the policy to a converted chunk and counts its rows in the report.

    Raises for the first bad row under `"fail"`; returns the kept rows, or None
    when none is left.
    """
    chunk.raise_first_failure()
    keep = ~chunk.bad
    chunk.report.rows_read += int(chunk.rows.size)
    chunk.report.rows_kept += int(keep.sum())
    for feature, mask in chunk.non_finite.items():
        chunk.report.add_non_finite(feature, chunk.rows[mask & keep])
    if not keep.any():
        return None
    if keep.all():
        return columns
    return {k: v[keep] for k, v in columns.items()}


def convert_cells(
    spec: FeatureSpec, cells, chunk: Chunk, with_label: bool
) -> dict[str, np.ndarray]:
    """A chunk's text cells (column name -> object array) -> the spec's columns."""
    columns = {}
    for f in spec.features:
        fn = list_column if f.is_list else scalar_column
        columns[f.name] = fn(f, cells[f.name], chunk)
    if with_label:
        columns[spec.label.name] = label_column(spec, cells[spec.label.name], chunk)
    return columns
