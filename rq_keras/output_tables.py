"""The output table of `predict_files`: its columns and its writers.

`output_columns` names the model's outputs one column each (a 2-D output by
its quantile levels or thresholds, `output_levels`, when known), as in a
run's `predictions.parquet`; `ParquetTable` and `TextTable` append scored
chunks to the output's temporary file, a Parquet row group or text lines at
a time (`OUTPUT_SUFFIXES`: the formats by suffix).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rq_keras.predict_errors import PredictError

__all__ = [
    "OUTPUT_SUFFIXES",
    "ParquetTable",
    "TextTable",
    "output_columns",
    "output_levels",
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


# ---------------------------------------------------------------- writers
class ParquetTable:
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


class TextTable:
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
