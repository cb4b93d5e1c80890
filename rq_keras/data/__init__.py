"""Readers, writers and `tf.data` pipelines driven by a feature spec.

Formats, picked by file suffix:

* text tables: `.csv`, `.tsv`, whitespace-separated `.txt`/`.dat`, with a
  header line; columns are found by name, never by position;
* Parquet (`.parquet`): pyarrow record batches, streamed, every value checked
  (`make_dataset(..., parquet_reader="tensorflow-io")` reads null-free files
  with tensorflow-io's `IODataset.from_parquet` instead, where installed);
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
integer id does not parse (or is outside int64), or its label is missing, NaN
or infinite; a `tf.Example` record that does not parse with the spec is bad
too (the reason names a numeric feature or label held as an int64 or bytes
list: they are float lists). Empty cells, nulls and the tokens `nan`, `na`,
`n/a`, `null`, `none` (lower, upper or capitalized) in a feature are missing
values and take the spec default; an absent `tf.Example` feature is missing
too. Non-finite values: a numeric feature value that is NaN, infinite or
beyond the float32 range (`1e39`; the model reads float32) takes the spec
default, the one policy of every path (training, evaluation, `predict.py`,
both serving signatures, the C++ check; `default_non_finite` in the graph),
and the readers count it per feature with the first rows
(`FileReport.non_finite`, in `data_report.json`). `on_bad_rows` says
what happens to bad rows: `"fail"` raises `MalformedDataError` naming the
file, the row (1-based, the header not counted) and the reason; `"skip"` drops
them and counts them, with the first row numbers, in a `DataReport`. Nothing
is dropped silently: `check_files` (and `read_chunks`) give the exact report
per file, and the `tf.data` pipeline applies the same policy.

The modules, by idea (none imports TensorFlow when it loads):

* `reports`: `MalformedDataError`, `FileReport`, `DataReport`;
* `columns`: cells -> typed columns, the bad-row bookkeeping of a chunk;
* `readers`: file formats, text tables, `read_chunks`, `iter_files`,
  `check_files`, `read_column`; `parquet` and `tfrecord` read those formats;
* `pipeline`: `make_dataset`, the `tf.data` pipeline;
* `writers`: `write_table`, `write_tfrecord`;
* `examples`: `make_example`, the one `tf.Example` encoder, and the check of
  a caller's row (the client side uses them without the readers);
* `progress`: progress lines of long passes over input rows.

The names of `__all__` are imported from `rq_keras.data`.
"""

from rq_keras.data.pipeline import make_dataset
from rq_keras.data.readers import (
    BAD_ROW_POLICIES,
    DEFAULT_CHUNK_ROWS,
    check_files,
    chunk_length,
    delimiter_for,
    file_format,
    input_paths,
    iter_files,
    read_chunks,
    read_column,
)
from rq_keras.data.reports import DataReport, FileReport, MalformedDataError
from rq_keras.data.tfrecord import default_non_finite, to_model_inputs
from rq_keras.data.writers import write_table, write_tfrecord

__all__ = [
    "BAD_ROW_POLICIES",
    "DEFAULT_CHUNK_ROWS",
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
    "read_chunks",
    "read_column",
    "default_non_finite",
    "to_model_inputs",
    "write_table",
    "write_tfrecord",
]


def __getattr__(name):
    """A name this package had in rq_keras 0.2 (it warns), or AttributeError."""
    from rq_keras._deprecated import module_getattr

    return module_getattr(__name__, stacklevel=3)(name)
