"""Writers: a DataFrame as a text table, a Parquet file or `tf.Example` records.

Files are written to a temporary name and renamed when complete. The
`tf.Example` records are encoded by `rq_keras.serving.client.make_example`, the one
encoder of rq_keras.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from rq_keras.atomic import atomic_path
from rq_keras.config.keras_version import import_tensorflow
from rq_keras.data.examples import make_example
from rq_keras.data.readers import delimiter_for, file_format
from rq_keras.data.tfrecord import tfrecord_compression
from rq_keras.features.spec import FeatureSpec

__all__ = ["write_table", "write_tfrecord"]


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

    tf = import_tensorflow()

    path = os.fspath(path)
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    options = tf.io.TFRecordOptions(compression_type=tfrecord_compression(path))
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
