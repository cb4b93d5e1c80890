"""The checked Parquet reader: pyarrow record batches -> numpy chunks (no TF).

`read_chunks`, and so `make_dataset`, read Parquet files through
`read_parquet` here, which checks every value. `make_dataset`'s optional
tensorflow-io reader refuses files whose statistics show nulls in the needed
columns (`parquet_has_nulls`): tensorflow-io returns stale values for them.
"""

from __future__ import annotations

import numpy as np

from rq_keras.data.columns import (
    Chunk,
    check_unique_columns,
    finish_chunk,
    float32_column,
    label_column,
    list_column,
    scalar_column,
)
from rq_keras.features.spec import Feature


def parquet_file(path):
    """The file as a `pyarrow.parquet.ParquetFile`; ValueError naming it when unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: not a readable Parquet file ({e})") from e


def check_parquet_schema(path, schema, spec, with_label, extra=()) -> None:
    """Refuses a schema without a needed column, or with one of the wrong type."""
    import pyarrow as pa

    check_unique_columns(path, schema.names)
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


def read_parquet(path, spec, on_bad_rows, chunk_rows, with_label, report, extra=()):
    """`read_chunks` of a Parquet file: record batches, every value checked."""
    pf = parquet_file(path)
    schema = pf.schema_arrow
    check_parquet_schema(path, schema, spec, with_label, extra)
    needed = [*(spec.columns if with_label else spec.feature_names), *extra]
    start = 1
    for batch in pf.iter_batches(batch_size=chunk_rows, columns=needed):
        n = batch.num_rows
        chunk = Chunk(report, np.arange(start, start + n), on_bad_rows)
        start += n
        columns = {}
        for f in spec.features:
            col = batch.column(f.name)
            if f.is_list or f.dtype == "string":
                raw = np.asarray(col.cast("string").to_pylist(), dtype=object)
                fn = list_column if f.is_list else scalar_column
                columns[f.name] = fn(f, raw, chunk)
                continue
            nulls = np.asarray(col.is_null())
            if f.dtype == "int64":
                columns[f.name] = _parquet_ids(f, col, nulls, chunk)
                continue
            # a null is missing, a NaN or infinite value not finite: both the default
            values = col.to_numpy(zero_copy_only=False).astype(np.float64)
            values[nulls] = f.default
            columns[f.name] = float32_column(f, values, chunk)
        if with_label:
            col = batch.column(spec.label.name)
            y = col.to_numpy(zero_copy_only=False).astype(np.float64)
            y[np.asarray(col.is_null())] = np.nan
            columns[spec.label.name] = label_column(spec, y, chunk)
        for c in extra:
            columns[c] = _parquet_extra(batch.column(c))
        out = finish_chunk(columns, chunk)
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


def _parquet_ids(feature: Feature, col, nulls: np.ndarray, chunk: Chunk) -> np.ndarray:
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


def parquet_has_nulls(pf, needed: set[str]) -> bool:
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
