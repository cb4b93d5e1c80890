"""The output table of `predict_files`: its writers.

`ParquetTable` and `TextTable` append scored chunks (named by
`rq_keras.evaluation.output_columns`) to the output's temporary file, a Parquet
row group or text lines at a time (`OUTPUT_SUFFIXES`: the formats by suffix).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rq_keras.serving.errors import PredictError

__all__ = ["OUTPUT_SUFFIXES", "ParquetTable", "TextTable"]

# Output table formats by suffix; text ones with their delimiter (" " for
# whitespace-separated tables, as `rq_keras.data.write_table` writes them).
OUTPUT_SUFFIXES = {".parquet": None, ".csv": ",", ".tsv": "\t", ".txt": " ", ".dat": " "}


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
