import gzip

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from conftest import CDNOW
from rq_keras.data import (
    MalformedDataError,
    check_files,
    delimiter_for,
    file_format,
    make_dataset,
    read_chunks,
    read_column,
    write_table,
)
from rq_keras.features import FeatureSpec

SPEC = FeatureSpec.from_dict(
    {
        "name": "t",
        "label": "y",
        "features": [
            {"name": "s", "kind": "categorical", "dtype": "string", "default": "?"},
            {"name": "i", "kind": "categorical", "dtype": "int64", "default": 7},
            {"name": "l", "kind": "list", "dtype": "int64", "max_length": 3},
            {"name": "ls", "kind": "list", "dtype": "string", "max_length": 2},
            {"name": "x", "kind": "numeric", "default": -1.0},
        ],
    }
)


def _frame(n=10):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "s": [f"s{k % 4}" for k in range(n)],
            "i": np.arange(n, dtype=np.int64) * 3,
            "l": ["|".join(str(v) for v in range(k % 5)) for k in range(n)],
            "ls": ["|".join(f"t{v}" for v in range(k % 4)) for k in range(n)],
            "x": rng.normal(size=n).astype(np.float32),
            "y": rng.lognormal(size=n),
        }
    )


def _rows(ds):
    """All batches of a dataset, concatenated, as numpy."""
    out = {}
    for x, y in ds:
        for k, v in {**x, "y": y}.items():
            out.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.parquet", "t.tfrecord", "t.tfrecord.gz"])
def test_every_format_round_trips(tmp_path, name):
    frame = _frame()
    path = tmp_path / name
    assert write_table(frame, SPEC, path) == 10
    if name.endswith(".gz"):
        assert gzip.open(path).read(1)  # really GZIP
    got = _rows(make_dataset(path, SPEC, batch_size=4))
    assert [s.decode() for s in got["s"]] == frame["s"].tolist()
    np.testing.assert_array_equal(got["i"], frame["i"])
    np.testing.assert_allclose(got["x"], frame["x"], rtol=1e-6)
    np.testing.assert_allclose(got["y"], frame["y"], rtol=1e-6 if "tfrecord" in name else 0)
    assert got["l"][4].tolist() == [0, 1, 2]  # 4 ids cut to max_length 3
    assert got["l"][0].tolist() == [-1, -1, -1]  # the empty list is all padding
    assert got["ls"][2].tolist() == [b"t0", b"t1"] and got["ls"][1].tolist() == [b"t0", b""]
    chunks = list(read_chunks(path, SPEC, chunk_rows=3))
    assert [len(c["y"]) for c in chunks] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([c["l"] for c in chunks]), got["l"])


def test_parquet_readers_read_the_same_batches(tmp_path, monkeypatch):
    """Parquet goes through the checked pyarrow reader (streamed) by default;
    tensorflow-io, where installed, gives the same values under the same
    bad-row policy; where it cannot read a file the error says why."""
    from rq_keras.data import pipeline

    frame = _frame(50)
    frame.loc[7, "y"] = np.inf  # a bad row either path must drop under "skip" (NaN is a null)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    arrow = _rows(make_dataset(path, SPEC, batch_size=8, on_bad_rows="skip"))
    kept = frame.drop(index=7)
    assert len(arrow["y"]) == 49 and [s.decode() for s in arrow["s"]] == kept["s"].tolist()
    np.testing.assert_array_equal(arrow["y"], kept["y"])
    np.testing.assert_array_equal(arrow["x"], kept["x"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="label 'y'"):
        _rows(make_dataset(path, SPEC, batch_size=8))  # "fail": the bad row stops it
    with pytest.raises(ValueError, match="parquet_reader"):
        make_dataset(path, SPEC, parquet_reader="arrow")
    if pipeline.tfio_available():  # the stacks that have tensorflow-io: the same batches
        skip = {"on_bad_rows": "skip", "batch_size": 8}
        tfio = _rows(make_dataset(path, SPEC, parquet_reader="tensorflow-io", **skip))
        assert sorted(arrow) == sorted(tfio)
        for key, value in tfio.items():
            np.testing.assert_array_equal(arrow[key], value, err_msg=key)
        with pytest.raises(tf.errors.InvalidArgumentError, match="label 'y'"):
            _rows(make_dataset(path, SPEC, batch_size=8, parquet_reader="tensorflow-io"))
    monkeypatch.setattr(pipeline, "tfio_available", lambda: False)
    with pytest.raises(ValueError, match=r"tensorflow-io is not installed.*rq_keras\[tfio\]"):
        make_dataset(path, SPEC, parquet_reader="tensorflow-io")
    monkeypatch.undo()
    if pipeline.tfio_available():  # a null is refused by name, not read as a stale value
        frame.loc[3, "x"] = np.nan
        frame.to_parquet(path)
        with pytest.raises(ValueError, match="holds nulls"):
            make_dataset(path, SPEC, parquet_reader="tensorflow-io")


def test_cdnow_whitespace_table_is_read_by_name():
    spec = FeatureSpec.from_dict(
        {
            "name": "cdnow",
            "label": "dollar_value",
            "features": [
                {"name": "number_of_cds", "kind": "numeric"},
                {"name": "customer_id", "kind": "categorical", "dtype": "string"},
            ],
        }
    )
    report = check_files(CDNOW, spec)
    assert report.rows_read == report.rows_kept == 69_659
    first = next(read_chunks(CDNOW, spec, chunk_rows=4))
    assert first["customer_id"].tolist() == ["00001", "00002", "00002", "00003"]
    assert first["dollar_value"].tolist() == [11.77, 12.0, 77.0, 20.76]
    assert first["number_of_cds"].tolist() == [1.0, 1.0, 5.0, 2.0]


BAD_CSV = (
    "s,i,l,ls,x,y\n"
    "a,1,1|2,p,0.5,1\n"  # 1 good
    "b,one,1,p,0.5,1\n"  # 2 not an integer id
    "c,1,1,p,0.5\n"  # 3 too few columns
    "d,1,1,p,0.5,,\n"  # 4 too many columns
    "e,1,1,p,zero,2\n"  # 5 not a number
    "f,1,1,p,inf,2\n"  # 6 infinite feature: the default, counted
    "g,1,1,p,0.5,\n"  # 7 missing label
    "h,1,1,p,0.5,nan\n"  # 8 NaN label
    "i,1,1,p,0.5,-inf\n"  # 9 infinite label
    "j,1,1,p,0.5,ten\n"  # 10 label not a number
    "k,1,1|x,p,0.5,3\n"  # 11 list id not an integer
    ",,,,,4\n"  # 12 every feature missing: defaults
    "m,NA,,,null,5\n"  # 13 missing tokens: defaults
)


def test_bad_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    report = check_files(path, SPEC, on_bad_rows="skip")
    f = report.files[0]
    assert (f.rows_read, f.rows_kept, f.rows_dropped) == (13, 4, 9)
    assert f.first_bad_rows == {
        "column 'i': not an integer id": [2],
        "expected 6 columns, got 5": [3],
        "expected 6 columns, got 7": [4],
        "column 'x': not a number": [5],
        "label 'y': missing or NaN": [7, 8],
        "label 'y': infinite": [9],
        "label 'y': not a number": [10],
        "column 'l': a list id is not an integer": [11],
    }
    assert f.first_non_finite_rows == {"x": [6]}
    assert report.to_dict()["rows_dropped"] == 9
    assert "9 row(s)" not in report.summary() and "2 row(s) dropped" in report.summary()
    got = _rows(make_dataset(path, SPEC, on_bad_rows="skip"))
    assert got["y"].tolist() == [1.0, 2.0, 4.0, 5.0]
    assert got["s"].tolist() == [b"a", b"f", b"?", b"m"]  # missing -> the spec default
    assert got["i"].tolist() == [1, 1, 7, 7] and got["x"].tolist() == [0.5, -1.0, -1.0, -1.0]
    assert got["l"][2].tolist() == [-1, -1, -1]


def test_fail_names_file_and_earliest_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    with pytest.raises(MalformedDataError, match=rf"{path}: row 2: column 'i': not an integer id"):
        check_files(path, SPEC)
    # inside tf.data the reader's error arrives as an op error with its message
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad.csv: row 2: column 'i'"):
        list(make_dataset(path, SPEC))
    # the row number counts across chunks
    with pytest.raises(MalformedDataError, match="row 2"):
        check_files(path, SPEC, chunk_rows=1)


def test_parquet_nulls_take_defaults_and_null_labels_are_bad(tmp_path):
    path = tmp_path / "n.parquet"
    pd.DataFrame(
        {
            "s": ["a", None, "c", "d"],
            "i": pd.array([1, None, 3, 4], dtype="Int64"),
            "l": ["1|2", None, "", "3"],
            "ls": [None, "p", "q", "r"],
            "x": [0.5, None, np.nan, 1.0],
            "y": [1.0, 2.0, None, np.nan],
        }
    ).to_parquet(path)
    report = check_files(path, SPEC, on_bad_rows="skip")
    assert report.files[0].first_bad_rows == {"label 'y': missing or NaN": [3, 4]}
    got = _rows(make_dataset(path, SPEC, on_bad_rows="skip"))
    # the pyarrow reader gives the spec default for a null (tensorflow-io,
    # which would return a stale value, refuses the file).
    assert got["s"].tolist() == [b"a", b"?"] and got["i"].tolist() == [1, 7]
    assert got["x"].tolist() == [0.5, -1.0] and got["l"][1].tolist() == [-1, -1, -1]
    with pytest.raises(MalformedDataError, match="row 3: label 'y': missing or NaN"):
        check_files(path, SPEC)


def test_parquet_and_tfrecord_label_policy_in_graph(tmp_path):
    frame = _frame(6)
    frame.loc[2, "y"] = np.nan
    # the checked Parquet reader names the exact row; TFRecord labels are
    # checked in the graph.
    for name, message in (
        ("p.parquet", "p.parquet: row 3: label 'y'"),
        ("p.tfrecord", "check_files"),
    ):
        path = tmp_path / name
        write_table(frame, SPEC, path)
        got = _rows(make_dataset(path, SPEC, on_bad_rows="skip", batch_size=4))
        assert len(got["y"]) == 5 and np.isfinite(got["y"]).all()
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            _rows(make_dataset(path, SPEC, batch_size=4))
        assert check_files(path, SPEC, on_bad_rows="skip").files[0].first_bad_rows == {
            "label 'y': missing or NaN": [3]
        }


def test_tfrecord_records_that_do_not_parse(tmp_path):
    path = tmp_path / "r.tfrecord"
    good = _frame(3)
    write_table(good, SPEC, path)
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    wrong_type = tf.train.Example(
        features=tf.train.Features(
            feature={"i": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}
        )
    ).SerializeToString()
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in (records[0], b"not a proto", records[1], wrong_type, records[2]):
            w.write(r)
    report = check_files(path, SPEC, on_bad_rows="skip")
    assert report.files[0].first_bad_rows == {"not a tf.Example matching the feature spec": [2, 4]}
    got = _rows(make_dataset(path, SPEC, on_bad_rows="skip"))
    np.testing.assert_allclose(got["y"], good["y"], rtol=1e-6)
    with pytest.raises(MalformedDataError, match="row 2: not a tf.Example"):
        check_files(path, SPEC)


@pytest.mark.slow
def test_shuffle_is_seeded_and_sharding_partitions_rows(tmp_path):
    frame = _frame(40)
    paths = []
    for k in range(4):
        part = frame.iloc[k * 10 : (k + 1) * 10]
        paths.append(tmp_path / f"part{k}.csv")
        write_table(part, SPEC, paths[-1])

    def order(**kw):
        return _rows(make_dataset(paths, SPEC, batch_size=7, **kw))["i"].tolist()

    assert order() == frame["i"].tolist()
    a, b = order(shuffle=True, seed=1), order(shuffle=True, seed=1)
    assert a == b and a != frame["i"].tolist() and sorted(a) == sorted(frame["i"])
    assert order(shuffle=True, seed=2) != a
    for shards in (2, 8):  # whole files (2 shards) or rows of every file (8 > 4 files)
        parts = [order(num_shards=shards, shard_index=k) for k in range(shards)]
        assert sorted(sum(parts, [])) == sorted(frame["i"]) and all(parts)
    ctx = tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2
    )
    batches = list(make_dataset(paths, SPEC, batch_size=8, input_context=ctx))
    assert max(len(y) for _, y in batches) == 4  # the per-replica batch
    assert sum(len(y) for _, y in batches) == 20


@pytest.mark.parametrize("global_seed", [0, 9])
def test_repeated_passes_are_ordered_by_seed_and_pass_alone(tmp_path, global_seed):
    """What resuming a run needs: a pipeline started at pass p, batch b yields
    the batches an uninterrupted one yields from there, whatever was read
    before in the process and whatever the global seed."""
    frame = _frame(40).assign(i=np.arange(40))
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"part{k}.csv")
        write_table(frame.iloc[20 * k : 20 * (k + 1)], SPEC, paths[-1])

    def labels(**kw):
        ds = make_dataset(paths, SPEC, batch_size=6, shuffle=True, seed=3, repeat=True, **kw)
        return [y.numpy().tolist() for _, y in ds.take(12)]

    tf.random.set_seed(global_seed)
    whole = labels()  # 40 rows: 7 batches a pass, the last of 4 rows
    assert [len(b) for b in whole[:8]] == [6] * 6 + [4, 6]
    passes = [sorted(sum(whole[:7], [])), sorted(sum(whole[7:14], []))]
    assert passes[0] == sorted(frame["y"].tolist())  # every row once a pass
    assert whole[:7] != whole[7:14]  # each pass in its own order
    assert labels(start_pass=1, skip_batches=2)[:3] == whole[9:12]
    assert labels(skip_batches=5)[:7] == whole[5:12]
    tf.random.set_seed(global_seed + 1)
    assert labels() == whole
    with pytest.raises(ValueError, match="`start_pass` needs `repeat=True`"):
        make_dataset(paths, SPEC, start_pass=1)
    with pytest.raises(ValueError, match="`skip_batches` must be an integer >= 0"):
        make_dataset(paths, SPEC, repeat=True, skip_batches=-1)


def test_features_only_and_drop_remainder(tmp_path):
    path = tmp_path / "t.csv"
    write_table(_frame(10), SPEC, path)
    batches = list(make_dataset(path, SPEC, batch_size=4, with_label=False, drop_remainder=True))
    assert len(batches) == 2 and set(batches[0]) == set(SPEC.feature_names)
    assert list(make_dataset(path, SPEC, batch_size=4, repeat=True).take(5))


def test_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        make_dataset(tmp_path / "none.csv", SPEC)
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(ValueError, match="unknown data format"):
        make_dataset(tmp_path / "t.json", SPEC)
    (tmp_path / "t.csv").write_text("s,i\na,1\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['l', 'ls', 'x', 'y'\]"):
        check_files(tmp_path / "t.csv", SPEC)
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match="empty file"):
        check_files(tmp_path / "e.csv", SPEC)
    pd.DataFrame({c: [1.5] for c in SPEC.columns}).to_parquet(tmp_path / "w.parquet")
    with pytest.raises(ValueError, match="column 's' is double, feature 's' needs string"):
        check_files(tmp_path / "w.parquet", SPEC)
    (tmp_path / "b.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        check_files(tmp_path / "b.parquet", SPEC)
    with pytest.raises(ValueError, match="on_bad_rows"):
        check_files(tmp_path / "t.csv", SPEC, on_bad_rows="drop")
    with pytest.raises(ValueError, match="shard_index"):
        make_dataset(tmp_path / "t.csv", SPEC, num_shards=2, shard_index=2)
    assert file_format("a.TFRecords.gz") == "tfrecord" and file_format("a.dat") == "text"


# read_column (the quantizer's command line reads one column)
def test_read_column_formats(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.5, -3.0], "b": ["x", "y", "z"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "t.parquet")
    np.save(tmp_path / "t.npy", frame["a"].to_numpy()[:, None])
    for name in ("t.csv", "t.tsv", "t.parquet", "t.npy"):
        np.testing.assert_array_equal(read_column(tmp_path / name, "a"), [1.0, 2.5, -3.0])
    values = read_column(CDNOW, "dollar_value")
    assert values.dtype == np.float64 and values.shape == (69_659,)


def test_read_column_errors(tmp_path):
    (tmp_path / "t.csv").write_text("a\n1\nx\n")
    assert read_column(tmp_path / "t.csv", "a").tolist() == ["1", "x"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_column(tmp_path / "none.csv", "a")
    (tmp_path / "t.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        read_column(tmp_path / "t.parquet", "a")
    np.save(tmp_path / "t.npy", np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"expected a 1-D array, got shape \(3, 2\)"):
        read_column(tmp_path / "t.npy", None)
    with pytest.raises(ValueError, match=r"a column name is needed"):
        read_column(tmp_path / "t.csv", None)
    assert delimiter_for("x.CSV") == "," and delimiter_for("x.tsv") == "\t"
    with pytest.raises(ValueError, match="unknown table format"):
        delimiter_for("x.json")


# int64 ids stay int64 end to end (issue 3)
BIG_IDS = [2**53 + 1, 2**60 + 1, 2**60 + 2, 2**63 - 2]
ID_SPEC = FeatureSpec.from_dict(
    {
        "name": "ids",
        "label": "y",
        "features": [
            {"name": "u", "kind": "categorical", "dtype": "int64"},
            {"name": "l", "kind": "list", "dtype": "int64", "max_length": 2},
            {"name": "x", "kind": "numeric"},
        ],
    }
)


def _id_frame():
    return pd.DataFrame(
        {
            "u": np.array(BIG_IDS, dtype=np.int64),
            "l": [f"{a}|{b}" for a, b in zip(BIG_IDS, BIG_IDS[::-1])],
            "x": [0.5, 1.5, 2.5, 3.5],
            "y": [1.0, 2.0, 3.0, 4.0],
        }
    )


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.parquet", "nulls.parquet", "t.tfrecord"])
def test_large_int64_ids_are_exact(tmp_path, name):
    frame = _id_frame()
    expected_u = list(BIG_IDS)
    if name == "nulls.parquet":
        # A null id: the file goes through the checked pyarrow reader, and the
        # null takes the spec default without turning the column into floats.
        frame = pd.concat([frame, frame.iloc[:1]], ignore_index=True)
        frame["u"] = pd.array([*BIG_IDS, None], dtype="Int64")
        expected_u.append(-1)
    path = tmp_path / name
    write_table(frame, ID_SPEC, path)
    expected_l = [[a, b] for a, b in zip(BIG_IDS, BIG_IDS[::-1])]
    expected_l = expected_l + expected_l[:1] if name == "nulls.parquet" else expected_l
    chunk = next(read_chunks(path, ID_SPEC))
    assert chunk["u"].dtype == np.int64 and chunk["l"].dtype == np.int64
    assert chunk["u"].tolist() == expected_u
    assert chunk["l"].tolist() == expected_l
    got = _rows(make_dataset(path, ID_SPEC, batch_size=3))
    assert got["u"].dtype == np.int64 and got["u"].tolist() == expected_u
    assert got["l"].tolist() == expected_l


def test_parquet_float_ids_must_be_integers_in_int64_range(tmp_path):
    path = tmp_path / "f.parquet"
    frame = _id_frame()
    frame["u"] = [1.0, 2.5, float(2**63), -float(2**63)]
    frame.to_parquet(path)
    report = check_files(path, ID_SPEC, on_bad_rows="skip")
    assert report.files[0].first_bad_rows == {"column 'u': not an integer id": [2, 3]}
    got = _rows(make_dataset(path, ID_SPEC, on_bad_rows="skip"))
    assert got["u"].tolist() == [1, -(2**63)]
    with pytest.raises(MalformedDataError, match=r"f\.parquet: row 2: column 'u': .*2\.5") as err:
        check_files(path, ID_SPEC)
    assert err.value.row == 2


# duplicate column names (issue 4)
def test_duplicate_header_names_are_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("s,i,l,ls,x,y,x,s\na,1,1,p,0.5,1,0.7,b\n")
    message = rf"{path}: duplicate column name\(s\) \['s', 'x'\]"
    with pytest.raises(MalformedDataError, match=message) as err:
        check_files(path, SPEC)
    assert err.value.row is None  # the file is at fault, not a row: skipping cannot help
    with pytest.raises(tf.errors.InvalidArgumentError, match="duplicate column name"):
        list(make_dataset(path, SPEC))
    with pytest.raises(MalformedDataError, match=message):
        read_column(path, "y")
    whitespace = tmp_path / "d.txt"
    whitespace.write_text("a b a\n1 2 3\n")
    with pytest.raises(MalformedDataError, match=r"d\.txt: duplicate column name\(s\) \['a'\]"):
        read_column(whitespace, "b")


def test_duplicate_parquet_column_names_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    frame = _frame(3)
    arrays = [pa.array(frame[c]) for c in SPEC.columns] + [pa.array(frame["x"])]
    pq.write_table(pa.Table.from_arrays(arrays, names=[*SPEC.columns, "x"]), path)
    with pytest.raises(MalformedDataError, match=rf"{path}: duplicate column name\(s\) \['x'\]"):
        check_files(path, SPEC)
    with pytest.raises(MalformedDataError, match="duplicate column name"):
        make_dataset(path, SPEC)


# Non-finite numeric features take the spec default on every path, counted
# per feature (the policy of serving too: tests/test_export.py).
NON_FINITE_LINE = (
    "column 'x': {n} NaN, infinite or beyond-float32 value(s) took the spec default "
    "(rows {rows}, ...)"
)


def test_text_values_not_finite_in_float32_take_the_default_and_are_counted(tmp_path):
    path = tmp_path / "o.csv"
    frame = _frame(5)
    write_table(frame, SPEC, path)
    lines = path.read_text().splitlines()
    for row, cell in ((2, "1e39"), (4, "-nan"), (5, "inf")):
        # 1e39 is finite in float64, inf in float32; -nan is not a missing-value
        # token, so it counts as a non-finite value
        cells = lines[row].split(",")
        cells[4] = cell
        lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    report = check_files(path, SPEC)  # under "fail": nothing fails
    assert report.rows_kept == 5 and report.rows_dropped == 0
    assert report.files[0].non_finite == {"x": 3} and report.non_finite == {"x": 3}
    assert report.files[0].first_non_finite_rows == {"x": [2, 4, 5]}
    assert report.to_dict()["non_finite"] == {"x": 3}
    assert f"o.csv: {NON_FINITE_LINE.format(n=3, rows='2, 4, 5')}" in report.summary()
    want = frame["x"].to_numpy().copy()
    want[[1, 3, 4]] = -1.0
    for policy in ("fail", "skip"):
        got = _rows(make_dataset(path, SPEC, on_bad_rows=policy))
        np.testing.assert_array_equal(got["x"], want)


def _write_parquet_with_x(path, xs, ys=None):
    """Parquet through pyarrow: NaN stays a NaN value, not a null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = _frame(len(xs))
    columns = {c: pa.array(frame[c]) for c in SPEC.columns}
    columns["x"] = pa.array(np.asarray(xs, dtype=np.float64), from_pandas=False)
    if ys is not None:
        columns["y"] = pa.array(np.asarray(ys, dtype=np.float64), from_pandas=False)
    pq.write_table(pa.table(columns), path)
    return frame


@pytest.mark.parametrize("reader", ["pyarrow", "tensorflow-io"])
def test_parquet_non_finite_features_take_the_default(tmp_path, reader):
    from rq_keras.data import pipeline

    if reader == "tensorflow-io" and not pipeline.tfio_available():
        pytest.skip("tensorflow-io is not installed on this stack")
    path = tmp_path / "p.parquet"
    frame = _write_parquet_with_x(path, [0.5, 1e39, 1.0, np.nan, -np.inf, 2.0])
    report = check_files(path, SPEC)
    assert report.rows_kept == 6 and report.files[0].first_non_finite_rows == {"x": [2, 4, 5]}
    for with_label in (True, False):
        for policy in ("fail", "skip"):
            got = _rows_any(
                make_dataset(
                    path, SPEC, on_bad_rows=policy, with_label=with_label, parquet_reader=reader
                )
            )
            assert got["x"].tolist() == pytest.approx([0.5, -1.0, 1.0, -1.0, -1.0, 2.0])
            assert got["i"].tolist() == frame["i"].tolist()


def _rows_any(ds):
    """All elements of a dataset with or without labels, concatenated."""
    out = {}
    for element in ds:
        if isinstance(element, tuple):
            element = {**element[0], "y": element[1]}
        for k, v in element.items():
            out.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def test_parquet_label_infinite_in_graph(tmp_path):
    path = tmp_path / "l.parquet"
    _write_parquet_with_x(path, [0.5, 1.0, 2.0], ys=[1.0, np.inf, 3.0])
    got = _rows(make_dataset(path, SPEC, on_bad_rows="skip"))
    assert got["y"].tolist() == [1.0, 3.0]
    with pytest.raises(tf.errors.InvalidArgumentError, match="label 'y'"):
        list(make_dataset(path, SPEC))


def _example(values):
    """A tf.Example of the SPEC's columns with the given float `x` and `y`."""
    feature = {
        "s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a"])),
        "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
    }
    for key, v in values.items():
        feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.mark.parametrize("name", ["n.tfrecord", "n.tfrecord.gz"])
def test_tfrecord_non_finite_features_take_the_default_and_labels_are_checked(tmp_path, name):
    path = tmp_path / name
    records = [
        _example({"x": 0.5, "y": 1.0}),
        _example({"x": float("nan"), "y": 2.0}),
        _example({"x": 1.5, "y": 3.0}),
        _example({"x": float("inf"), "y": 4.0}),
        _example({"y": 5.0}),  # x missing: the default, not counted
        _example({"x": 2.5, "y": float("nan")}),  # a NaN label: a bad row
    ]
    options = tf.io.TFRecordOptions(compression_type="GZIP" if name.endswith(".gz") else "")
    with tf.io.TFRecordWriter(str(path), options) as w:
        for r in records:
            w.write(r)
    with pytest.raises(MalformedDataError, match=rf"{name}: row 6: label 'y': missing or NaN"):
        check_files(path, SPEC)
    report = check_files(path, SPEC, on_bad_rows="skip")
    assert report.files[0].first_bad_rows == {"label 'y': missing or NaN": [6]}
    assert report.files[0].first_non_finite_rows == {"x": [2, 4]}
    features_only = check_files(path, SPEC, with_label=False)
    assert features_only.rows_kept == 6 and features_only.non_finite == {"x": 2}
    got = _rows(make_dataset(path, SPEC, on_bad_rows="skip", batch_size=2))
    assert got["x"].tolist() == [0.5, -1.0, 1.5, -1.0, -1.0]
    assert got["y"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    for policy in ("fail", "skip"):
        features = _rows_any(make_dataset(path, SPEC, on_bad_rows=policy, with_label=False))
        assert features["x"].tolist() == [0.5, -1.0, 1.5, -1.0, -1.0, 2.5]
    with pytest.raises(tf.errors.InvalidArgumentError, match="label 'y'"):
        list(make_dataset(path, SPEC, batch_size=2))


def test_tfrecord_int64_in_a_float_feature_names_the_feature(tmp_path):
    path = tmp_path / "w.tfrecord"
    good = _frame(3)
    write_table(good, SPEC, path)
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]

    def holding(record, name, feature):
        example = tf.train.Example.FromString(record)
        example.features.feature[name].CopyFrom(feature)
        return example.SerializeToString()

    int64 = tf.train.Feature(int64_list=tf.train.Int64List(value=[2]))
    text = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"2.5"]))
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in (
            records[0],
            holding(records[1], "x", int64),
            records[2],
            holding(records[2], "y", int64),
            holding(records[0], "x", text),
        ):
            w.write(r)
    x_int64 = (
        "feature 'x' holds int64 values; numeric features are float lists (tf.train.FloatList)"
    )
    with pytest.raises(MalformedDataError) as error:
        check_files(path, SPEC)
    assert f"w.tfrecord: row 2: {x_int64}" in str(error.value)
    report = check_files(path, SPEC, on_bad_rows="skip")
    assert report.files[0].first_bad_rows == {
        x_int64: [2],
        "label 'y' holds int64 values; the label is a float list (tf.train.FloatList)": [4],
        "feature 'x' holds bytes values; numeric features are float lists "
        "(tf.train.FloatList)": [5],
    }
    (chunk,) = read_chunks(path, SPEC, on_bad_rows="skip")
    np.testing.assert_allclose(chunk["x"], good["x"][[0, 2]])
    np.testing.assert_allclose(chunk["y"], good["y"][[0, 2]], rtol=1e-6)
    # Without the label, the record with an int64 label is a good row.
    assert check_files(path, SPEC, on_bad_rows="skip", with_label=False).rows_kept == 3


def test_the_run_line_names_skipped_rows_and_defaulted_values(tmp_path):
    from rq_keras.training.console import rows_text

    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    assert rows_text(check_files(path, SPEC, on_bad_rows="skip")) == (
        "4 (9 bad rows skipped; 1 NaN or infinite feature values took the default)"
    )
    write_table(_frame(3), SPEC, path)
    assert rows_text(check_files(path, SPEC)) == "3"
