"""TFRecord files of `tf.Example`: the checked reader, and parsed tensors -> model inputs.

TensorFlow is imported inside the functions, never when the module loads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rq_keras.config.keras_version import import_tensorflow
from rq_keras.data.columns import Chunk, finish_chunk, float32_column, label_column
from rq_keras.features.spec import FeatureSpec


def tfrecord_compression(path: str) -> str:
    """`"GZIP"` for a `.gz` name, else `""` (no compression)."""
    return "GZIP" if path.lower().endswith(".gz") else ""


def read_tfrecord(path, spec, on_bad_rows, chunk_rows, with_label, report, extra=()):
    """`read_chunks` of a TFRecord file: records parsed with the spec, then checked."""
    tf = import_tensorflow()

    parse_spec = spec.parse_spec(with_label=with_label)
    records = tf.data.TFRecordDataset(path, compression_type=tfrecord_compression(path))
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
        chunk = Chunk(report, np.arange(start, start + n), on_bad_rows)
        start += n
        try:
            parsed = tf.io.parse_example(serialized, parse_spec)
        except tf.errors.InvalidArgumentError:
            parsed = _parse_records_one_by_one(serialized, parse_spec, spec, chunk)
        columns = {k: v.numpy() for k, v in to_model_inputs(parsed, spec).items()}
        for f in spec.features:
            if f.is_numeric:
                columns[f.name] = float32_column(f, columns[f.name], chunk)
        if with_label:
            y = parsed[spec.label.name].numpy().astype(np.float64)
            y[chunk.bad] = 0.0
            columns[spec.label.name] = label_column(spec, y, chunk)
        for f in spec.features:
            if f.dtype == "string":
                columns[f.name] = columns[f.name].astype(str).astype(object)
        if extra:
            columns.update(_example_values(path, serialized.numpy(), extra, chunk, start - n == 1))
        out = finish_chunk(columns, chunk)
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
    tf = import_tensorflow()
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
    tf = import_tensorflow()
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
    tf = import_tensorflow()

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


# --------------------------------------------------------------- graph helpers
def default_non_finite(inputs: dict[str, Any], spec: FeatureSpec) -> dict[str, Any]:
    """Graph-side: NaN, inf and -inf in a numeric feature -> its spec default.

    The one policy for non-finite feature values on every path: the checked
    readers give them the default (and count them), the `tf.data` paths and
    both serving signatures replace them here, so one bad value never makes a
    prediction NaN nor fails a batch. Lists hold ids, which cannot be
    non-finite; other entries (the label) pass through.
    """
    tf = import_tensorflow()

    out = dict(inputs)
    for f in spec.features:
        if f.is_numeric and f.name in out:
            value = out[f.name]
            out[f.name] = tf.where(
                tf.math.is_finite(value), value, tf.constant(f.default, value.dtype)
            )
    return out


def to_model_inputs(values: dict[str, Any], spec: FeatureSpec) -> dict[str, Any]:
    """Graph-side: parsed or read tensors -> the model's input form.

    Ragged or sparse lists (from `tf.Example`) and joined list cells (text
    and Parquet strings) become `(batch, max_length)` padded tensors; scalars
    pass through, cast to the spec dtype.
    """
    tf = import_tensorflow()

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
