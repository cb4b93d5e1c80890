"""`make_dataset`: the `tf.data` pipeline of `(features, label)` batches from files.

Each file is read by a reader that keeps the checked readers' policy (see
`rq_keras.data`): TFRecord records are parsed in the graph; text and Parquet
files go through `read_chunks` (pyarrow record batches for Parquet,
streamed, never the whole file in memory). `parquet_reader="tensorflow-io"`
reads null-free Parquet files with tensorflow-io's `from_parquet` instead
(an optional dependency, built for TensorFlow 2.16 only; slower, measured in
benchmarks/results/input_pipeline.md). TensorFlow is imported inside the
functions, never when the module loads.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

from rq_keras.config.keras_version import import_tensorflow, prefer_keras2
from rq_keras.data.parquet import check_parquet_schema, parquet_file, parquet_has_nulls
from rq_keras.data.readers import (
    DEFAULT_CHUNK_ROWS,
    check_policy,
    file_format,
    input_paths,
    read_chunks,
)
from rq_keras.data.tfrecord import default_non_finite, tfrecord_compression, to_model_inputs
from rq_keras.features.spec import FeatureSpec

__all__ = ["PARQUET_READERS", "make_dataset", "pass_seed", "tfio_columns"]

PARQUET_READERS = ("pyarrow", "tensorflow-io")

# The passes of a repeated pipeline (a number no training reaches).
_FOREVER = 2**62
# The graph seed the passes' shuffles combine their pass seed with.
_PASS_GRAPH_SEED = 20_240_817


def pass_seed(seed, index):
    """The shuffle seed of pass `index` of a pipeline seeded `seed`: a function
    of the two alone (ints, or int64 tensors inside a pipeline), and apart
    from the passes of neighbouring seeds (seed 1's first pass is not seed
    0's second)."""
    return (seed * 1_000_003 + index) % (2**31 - 1)


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
    parquet_reader: str = "pyarrow",
    start_pass: int = 0,
    skip_batches: int = 0,
):
    """A `tf.data` pipeline of `(features, label)` batches from files.

    Args:
        files: one path or a list; the formats may be mixed.
        spec: the feature spec.
        batch_size: rows per batch.
        shuffle: shuffle rows (and how the files' rows interleave), each
            pass over the files in its own order.
        shuffle_buffer: rows held by the shuffle buffer.
        seed: shuffle seed (None: a fresh order each run). Pass `p` over the
            files is shuffled with `pass_seed(seed, p)`, so its order depends
            on the seed and the pass number only, not on the passes read
            before it in this process: a resumed run reads what the
            interrupted one would have.
        repeat: pass after pass, forever (for `steps_per_epoch` training).
        start_pass: with `repeat`, the first pass read (resuming a run).
        skip_batches: batches of the first pass not yielded (resuming a run
            mid-pass: they are read and dropped, so the rest keep the order
            of an uninterrupted pass).
        drop_remainder: drop a last partial batch (fixed shapes for TPUs).
        deterministic: keep element order fixed across runs (with a seed);
            False lets parallel stages run out of order, slightly faster.
        on_bad_rows: `"fail"` or `"skip"` (see `rq_keras.data`). In the
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
        chunk_rows: rows per read chunk of the checked readers (text and
            Parquet).
        parquet_reader: `"pyarrow"` (record batches through `read_chunks`)
            or `"tensorflow-io"` (`IODataset.from_parquet`; needs the
            `rq_keras[tfio]` extra and null-free files of the types it reads,
            a ValueError names what it refuses). Same batches, same checks.

    Returns:
        `tf.data.Dataset` of `(features, label)` with features a dict of
        feature name -> tensor in the model's input form and the label
        float64 `(batch,)`; features only when `with_label` is False.
    """
    tf = import_tensorflow()

    check_policy(on_bad_rows)
    if parquet_reader not in PARQUET_READERS:
        raise ValueError(
            f"`parquet_reader` must be one of {', '.join(PARQUET_READERS)}, got {parquet_reader!r}"
        )
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
    for name, value in (("start_pass", start_pass), ("skip_batches", skip_batches)):
        if int(value) != value or value < 0:
            raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}")
    if start_pass and not repeat:
        raise ValueError("`start_pass` needs `repeat=True` (one pass has no later passes)")

    label = spec.label.name
    read_batch = min(chunk_rows, max(batch_size, 1024))
    parse_spec = spec.parse_spec(with_label=with_label)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, parse_spec)
        out = default_non_finite(to_model_inputs(parsed, spec), spec)
        if with_label:
            out[label] = tf.cast(parsed[label], tf.float64)
        return out

    def parse_one(serialized):
        return parse(tf.expand_dims(serialized, 0))

    @tf.autograph.experimental.do_not_convert
    def one_pass(seed):
        """One pass over the files, shuffled by `seed` (int, tensor or None)."""
        if tf.is_tensor(seed):
            # Traced for a pass of a repeated pipeline: the pass seed alone
            # orders the pass. (TensorFlow cannot combine a tensor op seed
            # with a global seed of 0; this graph is the pass function's.)
            tf.compat.v1.get_default_graph().seed = _PASS_GRAPH_SEED
        # The readers' datasets of the text and Parquet files, in file order (None for TFRecord).
        readers = []
        for path in paths:
            fmt = file_format(path)
            readers.append(
                None
                if fmt == "tfrecord"
                else _file_dataset(
                    path, spec, fmt, on_bad_rows, with_label, read_batch, chunk_rows, parquet_reader
                )
            )

        # Serialized records are shuffled and batched before parsing (cheapest);
        # rows from the other readers are shuffled and batched as rows; in file
        # order, the readers' batches are only cut to size (no per-row work).
        serialized, rows, batches = [], [], []
        for path, reader in zip(paths, readers):
            if reader is None:
                ds = tf.data.TFRecordDataset(path, compression_type=tfrecord_compression(path))
                if row_sharding:
                    ds = ds.shard(num_shards, shard_index)
                if on_bad_rows != "skip":
                    serialized.append(ds)
                    continue
                # Record by record, so one bad record drops only itself.
                ds = ds.map(parse_one, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
                ds = ds.unbatch()
                rows.append(ds.filter(_LabelCheck(spec, "skip", with_label).mask))
            elif shuffle or row_sharding:
                ds = reader.unbatch()
                if row_sharding:
                    ds = ds.shard(num_shards, shard_index)
                rows.append(ds)
            else:
                batches.append(reader)

        pipelines = []
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
                ds = ds.map(_LabelCheck(spec, on_bad_rows, with_label))
            pipelines.append(ds)
        ds = pipelines[0]
        for other in pipelines[1:]:
            ds = ds.concatenate(other)
        if with_label:
            ds = ds.map(lambda b: ({k: v for k, v in b.items() if k != label}, b[label]))
        return ds

    if repeat:
        passes = tf.data.Dataset.range(start_pass, _FOREVER)
        if seed is None:
            ds = passes.flat_map(lambda _: one_pass(None))
        else:
            ds = passes.map(lambda p: pass_seed(seed, p)).flat_map(one_pass)
    else:
        ds = one_pass(seed)
    if skip_batches:
        ds = ds.skip(skip_batches)
    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is not None or num_shards > 1:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _mix(group, shuffle: bool, seed):
    """One dataset from several: in file order, or rows drawn at random (seeded)."""
    tf = import_tensorflow()

    if len(group) == 1:
        return group[0]
    if shuffle:
        return tf.data.Dataset.sample_from_datasets(group, seed=seed, stop_on_empty_dataset=False)
    out = group[0]
    for other in group[1:]:
        out = out.concatenate(other)
    return out


def _element_signature(spec: FeatureSpec, with_label: bool):
    tf = import_tensorflow()

    sig = {
        f.name: tf.TensorSpec((None, *f.shape), tf.as_dtype(f.tf_dtype_name)) for f in spec.features
    }
    if with_label:
        sig[spec.label.name] = tf.TensorSpec((None,), tf.float64)
    return sig


class _LabelCheck:
    """Graph-side label policy for tf.Example and tensorflow-io batches (the
    checked readers'): a missing, NaN or infinite label is a bad row. Under
    `"fail"` the step fails naming the label (and `source`, the file, when
    known); under `"skip"` the rows are dropped. (Non-finite feature values
    take their default before this, `default_non_finite`.)
    """

    def __init__(self, spec: FeatureSpec, on_bad_rows: str, with_label: bool, source=None):
        self.on_bad_rows = on_bad_rows
        self.where = f"{source}: " if source else ""
        self.label = spec.label.name if with_label else None

    def mask(self, batch):
        """True where the label is finite: `(batch,)`, or a scalar for one row."""
        tf = import_tensorflow()

        if self.label is None:
            return tf.constant(True)
        return tf.math.is_finite(batch[self.label])

    def __call__(self, batch):
        tf = import_tensorflow()

        if self.label is None:
            return batch
        if self.on_bad_rows == "fail":
            message = (
                f"{self.where}label {self.label!r} is missing, NaN or infinite in some row; "
                "rq_keras.data.check_files names the file and row"
            )
            return {**batch, self.label: tf.debugging.check_numerics(batch[self.label], message)}
        keep = self.mask(batch)
        return {k: tf.boolean_mask(v, keep) for k, v in batch.items()}


@functools.lru_cache(maxsize=1)
def tfio_available() -> bool:
    """Whether tensorflow-io can be imported (it is an optional dependency:
    its last release is built for TensorFlow 2.16 only, and on a newer
    TensorFlow its import fails with undefined symbols: then it counts as
    absent, so the default reader still works)."""
    prefer_keras2()  # tensorflow-io loads TensorFlow
    try:
        import tensorflow_io  # noqa: F401
    except Exception:  # ImportError, or a broken build for another TensorFlow
        return False
    return True


def require_tfio(where: str) -> None:
    """Raises a ValueError, prefixed by `where`, when `parquet_reader="tensorflow-io"`
    cannot run because tensorflow-io is not importable (`tfio_available`)."""
    if not tfio_available():
        raise ValueError(
            f"{where}: parquet_reader='tensorflow-io' cannot run (tensorflow-io is not "
            "installed: pip install 'rq_keras[tfio]', TensorFlow 2.16 only); use 'pyarrow'"
        )


def tfio_columns(path: str, spec: FeatureSpec, with_label: bool):
    """tensorflow-io column specs for a Parquet file.

    Raises:
        ValueError: tensorflow-io cannot read this file as the checked reader
            does: it is not installed, a needed column may hold nulls
            (tensorflow-io returns stale values for them), an id column is
            float, or a column's type is one tensorflow-io does not read.
    """
    import pyarrow as pa

    tf = import_tensorflow()

    pf = parquet_file(path)
    schema = pf.schema_arrow
    check_parquet_schema(path, schema, spec, with_label)
    require_tfio(path)
    refused = f"{path}: parquet_reader='tensorflow-io' cannot read this file ({{}}); use 'pyarrow'"
    names = spec.columns if with_label else spec.feature_names
    if parquet_has_nulls(pf, set(names)):
        raise ValueError(refused.format("a column holds nulls"))
    for f in spec.features:
        if f.dtype == "int64" and not f.is_list and pa.types.is_floating(schema.field(f.name).type):
            raise ValueError(refused.format(f"id column {f.name!r} is float"))
    types = {
        pa.int32(): tf.int32,
        pa.int64(): tf.int64,
        pa.float32(): tf.float32,
        pa.float64(): tf.float64,
        pa.string(): tf.string,
    }
    columns = {}
    for name in names:
        dtype = types.get(schema.field(name).type)
        if dtype is None:
            raise ValueError(refused.format(f"column {name!r} is {schema.field(name).type}"))
        columns[name] = tf.TensorSpec([], dtype)
    return columns


def _file_dataset(path, spec, fmt, on_bad_rows, with_label, batch_size, chunk_rows, parquet_reader):
    """Batches of one file in the model's input form (label included)."""
    tf = import_tensorflow()

    if fmt == "parquet" and parquet_reader != "tensorflow-io":
        # the schema is checked now (missing or duplicate columns fail when the
        # pipeline is built, not at the first batch)
        check_parquet_schema(path, parquet_file(path).schema_arrow, spec, with_label)
    if fmt == "parquet" and parquet_reader == "tensorflow-io":
        columns = tfio_columns(path, spec, with_label)
        import tensorflow_io as tfio

        ds = tfio.IODataset.from_parquet(path, columns=columns).batch(batch_size)

        def convert(batch):
            batch = dict(batch)
            for f in spec.features:
                v = batch[f.name]
                if f.dtype == "string" and not f.is_list and v.dtype != tf.string:
                    batch[f.name] = tf.strings.as_string(v)
            out = default_non_finite(to_model_inputs(batch, spec), spec)
            if with_label:
                out[spec.label.name] = tf.cast(batch[spec.label.name], tf.float64)
            return out

        ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.map(_LabelCheck(spec, on_bad_rows, with_label, source=path))
    signature = _element_signature(spec, with_label)

    def generate():
        yield from read_chunks(
            path, spec, on_bad_rows=on_bad_rows, chunk_rows=chunk_rows, with_label=with_label
        )

    return tf.data.Dataset.from_generator(generate, output_signature=signature)
