"""predict.py: scoring files with a trained run or its export, ids carried along."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from conftest import REPO, toy_files, train_config
from conftest import TOY_SPEC as SPEC
from conftest import toy_frame as _frame
from rq_keras.cli.predict import predict_main
from rq_keras.config import PREDICTIONS, ModelConfig
from rq_keras.data import MalformedDataError, read_chunks
from rq_keras.evaluation.output_columns import output_columns, output_levels
from rq_keras.serving.errors import PredictError
from rq_keras.serving.export import OUTPUTS_FILE, export_model
from rq_keras.serving.predict import predict_files
from rq_keras.serving.signatures import OUTPUTS, feature_tensors
from rq_keras.training import train
from rq_keras.training.evaluate import write_predictions

# Trains, exports or serves: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow

ROWS = 300
FIRST_ID = 2**62  # above 2**53: an id that passes through float64 comes out wrong


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run (1 epoch, the TINY model) and its in-memory model."""
    root = tmp_path_factory.mktemp("predict")
    toy = toy_files(root)
    config = train_config(toy, epochs=1, validation_files=[], test_files=[], seed=0)
    result = train(config, root / "run", verbose=0)
    return root / "run", result.model


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    _, model = run
    base = tmp_path_factory.mktemp("serving")
    return export_model(model, SPEC, base, check=False).export_dir


def _scoring_frame(n=ROWS, seed=5):
    """Toy rows without the label, with two id columns first."""
    frame = _frame(n, seed).drop(columns=["y"])
    frame.insert(0, "item", [f"i{k:04d}" for k in range(n)])
    frame.insert(0, "user_id", np.arange(FIRST_ID, FIRST_ID + n, dtype=np.int64))
    return frame


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    frame = _scoring_frame()
    files = {"parquet": root / "rows.parquet", "csv": root / "rows.csv"}
    frame.to_parquet(files["parquet"], index=False)
    frame.to_csv(files["csv"], index=False)
    return frame, files


def _expected(model, path):
    """The in-memory model's output columns on the rows of `path`."""
    rows = {}
    for chunk in read_chunks(path, SPEC, with_label=False):
        for k, v in chunk.items():
            rows.setdefault(k, []).append(v)
    rows = {k: np.concatenate(v) for k, v in rows.items()}
    out = model(feature_tensors(SPEC, rows), training=False)
    outputs = {k: np.asarray(out[k]).reshape(len(rows["x"]), -1) for k in OUTPUTS if k in out}
    for k in ("prediction", *PREDICTIONS):
        outputs[k] = outputs[k][:, 0]
    levels = output_levels(model)
    return output_columns(outputs, quantiles=levels["quantiles"], thresholds=levels["thresholds"])


def _assert_outputs_equal(frame, expected):
    assert list(frame.columns[-len(expected) :]) == list(expected)
    for name, want in expected.items():
        if name.startswith("code_"):
            np.testing.assert_array_equal(frame[name].to_numpy(), want, err_msg=name)
        else:
            np.testing.assert_allclose(frame[name].to_numpy(), want, rtol=1e-6, atol=1e-7)


def _read(path):
    return pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)


# ------------------------------------------------------------------ scoring
@pytest.mark.parametrize("fmt, out_name", [("parquet", "p.parquet"), ("csv", "p.csv")])
def test_predictions_equal_the_model_without_a_label_column(run, inputs, tmp_path, fmt, out_name):
    run_dir, model = run
    frame, files = inputs
    out = tmp_path / out_name
    result = predict_files(
        [files[fmt]], out, model_dir=run_dir, id_columns=["user_id", "item"], batch_size=64
    )
    assert (result.rows_written, result.rows_skipped) == (ROWS, 0)
    got = _read(out)
    expected = _expected(model, files[fmt])
    assert result.columns == ["user_id", "item", *expected]
    assert list(got.columns) == result.columns
    assert "y" not in frame.columns
    np.testing.assert_array_equal(got["user_id"].to_numpy(), frame["user_id"].to_numpy())
    assert got["item"].tolist() == frame["item"].tolist()
    _assert_outputs_equal(got, expected)
    assert [c for c in got.columns if c.startswith(("quantile_", "p_above_"))] == [
        "quantile_0.1",
        "quantile_0.5",
        "quantile_0.9",
        "p_above_0",
    ]
    assert os.listdir(tmp_path) == [out_name]  # no temporary file left


def test_saved_model_gives_the_same_numbers_and_names(run, exported, inputs, tmp_path):
    run_dir, _ = run
    _, files = inputs
    predict_files([files["parquet"]], tmp_path / "dir.parquet", model_dir=run_dir)
    assert predict_main(
        ["--saved-model", exported, "--input", str(files["parquet"])]
        + ["--output", str(tmp_path / "saved.parquet"), "--verbose", "0"]
    ) == 0  # fmt: skip
    by_dir, by_saved = (
        pd.read_parquet(tmp_path / "dir.parquet"),
        pd.read_parquet(tmp_path / "saved.parquet"),
    )
    assert list(by_saved.columns) == list(by_dir.columns)
    for name in by_dir.columns:
        np.testing.assert_allclose(by_saved[name], by_dir[name], rtol=1e-6, atol=1e-7)

    # An export without outputs.json: the level columns are numbered.
    old = tmp_path / "old"
    shutil.copytree(exported, old)
    os.remove(old / "assets.extra" / OUTPUTS_FILE)
    result = predict_files([files["parquet"]], tmp_path / "old.parquet", saved_model=old)
    assert [c for c in result.columns if c.startswith(("quantile", "exceedance", "p_above"))] == [
        "quantile_1",
        "quantile_2",
        "quantile_3",
        "exceedance_1",
    ]
    np.testing.assert_allclose(
        pd.read_parquet(tmp_path / "old.parquet")["quantile_2"], by_dir["quantile_0.5"]
    )


def test_skipped_bad_row_keeps_ids_aligned(run, tmp_path):
    run_dir, model = run
    frame = _scoring_frame(20, seed=7)
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")  # data row 3
    cells[frame.columns.get_loc("x")] = "not-a-number"
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    good = frame.drop(index=2).reset_index(drop=True)
    good_path = tmp_path / "good.csv"
    good.to_csv(good_path, index=False)

    out = tmp_path / "out.parquet"
    result = predict_files(
        [path], out, model_dir=run_dir, id_columns=["item", "user_id", "group"], on_bad_rows="skip"
    )
    assert (result.rows_written, result.rows_skipped) == (19, 1)
    assert result.report.files[0].first_bad_rows == {"column 'x': not a number": [3]}
    got = pd.read_parquet(out)
    assert list(got.columns[:3]) == ["item", "user_id", "group"]
    assert got["item"].tolist() == good["item"].tolist()
    assert got["group"].tolist() == good["group"].tolist()  # a feature, as the model reads it
    # Text ids are copied verbatim, as strings: nothing is parsed or rounded.
    assert got["user_id"].tolist() == [str(v) for v in good["user_id"]]
    _assert_outputs_equal(got, _expected(model, good_path))


def test_non_finite_features_score_as_their_default_and_are_counted(run, exported, tmp_path):
    """The one non-finite policy (rq_keras.data): NaN, +-inf and 1e39 in a
    numeric feature score as its spec default (0.0 for `x`), through the run's
    model and through the SavedModel, and the report counts them."""
    run_dir, model = run
    frame = _scoring_frame(8, seed=9)
    bad = frame.copy()
    bad["x"] = [np.nan, np.inf, -np.inf, 1e39, 0.25, np.nan, 1.5, -0.5]
    path = tmp_path / "bad.parquet"
    # pyarrow from numpy keeps NaN a NaN value (pandas would make it a null)
    columns = {c: pa.array(bad[c].to_numpy(), from_pandas=False) for c in bad.columns}
    pq.write_table(pa.table(columns), path)
    good = frame.copy()
    good["x"] = [0.0, 0.0, 0.0, 0.0, 0.25, 0.0, 1.5, -0.5]
    good_path = tmp_path / "good.parquet"
    good.to_parquet(good_path, index=False)
    want = _expected(model, good_path)
    for source in ({"model_dir": run_dir}, {"saved_model": exported}):
        out = tmp_path / f"out_{len(source)}_{next(iter(source))}.parquet"
        result = predict_files([path], out, **source)
        assert result.rows_skipped == 0 and result.report.non_finite == {"x": 5}
        assert result.report.files[0].first_non_finite_rows == {"x": [1, 2, 3, 4, 6]}
        got = pd.read_parquet(out)
        assert np.isfinite(got["prediction"]).all()
        _assert_outputs_equal(got, want)


def test_bad_row_under_fail_names_the_row_and_the_skip_flag(run, tmp_path, capsys):
    run_dir, _ = run
    path = tmp_path / "bad.csv"
    _scoring_frame(10).to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines[4] = lines[4] + ",extra"  # data row 4: one column too many
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    code = predict_main(["--model-dir", str(run_dir), "--input", str(path), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert f"{path}: row 4: expected 5 columns, got 6" in err[-2]
    assert "--on-bad-rows skip" in err[-1]
    assert os.listdir(tmp_path) == ["bad.csv"]
    with pytest.raises(MalformedDataError, match="row 4"):
        predict_files([path], out, model_dir=run_dir)


def test_existing_output_needs_overwrite(run, inputs, tmp_path, capsys):
    run_dir, _ = run
    _, files = inputs
    out = tmp_path / "out.csv"
    out.write_text("keep me\n")
    argv = ["--model-dir", str(run_dir), "--input", str(files["csv"]), "--output", str(out)]
    assert predict_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--overwrite" in err[0]
    assert out.read_text() == "keep me\n"
    assert predict_main([*argv, "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert f"wrote {ROWS} rows to {out} (0 skipped)" in captured.err
    assert '"rows_written": 300' in captured.out
    assert len(pd.read_csv(out)) == ROWS


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--id-columns": "user_id,nope"}, "no column(s) ['nope']"),
        ({"--output": "OUT/p.json"}, "unknown output format '.json'"),
        ({"--input": "missing.csv"}, "missing.csv: no such file"),
        ({"--input": "no_x.parquet"}, "no column(s) ['x']"),
        ({"--id-columns": "tags"}, "'tags' is a list feature"),
        (
            {"--input": "with_prediction.csv", "--id-columns": "prediction"},
            "['prediction'] are output columns",
        ),
        ({"--batch-size": "0"}, "--batch-size must be an integer >= 1"),
    ],
)
def test_bad_requests_exit_2_with_one_line(run, inputs, tmp_path, capsys, change, message):
    run_dir, _ = run
    frame, files = inputs
    frame.drop(columns=["x"]).to_parquet(tmp_path / "no_x.parquet")
    frame.assign(prediction=1.0).to_csv(tmp_path / "with_prediction.csv", index=False)
    args = {"--input": str(files["csv"]), "--output": str(tmp_path / "out.csv")}
    for flag, value in change.items():
        args[flag] = str(tmp_path / value) if flag in ("--input", "--output") else value
    argv = ["--model-dir", str(run_dir), "--verbose", "0"]
    for key, val in args.items():
        argv += [key, val]
    assert predict_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("predict.py: error: ") and message in err[0], err[0]
    assert not (tmp_path / "out.csv").exists()


def test_not_a_model_exits_2(inputs, tmp_path, capsys):
    _, files = inputs
    for flag in ("--model-dir", "--saved-model"):
        out = str(tmp_path / "x.csv")
        argv = [flag, str(tmp_path), "--input", str(files["csv"]), "--output", out]
        assert predict_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(tmp_path) in err[0]


def test_empty_input_writes_the_header(run, tmp_path):
    run_dir, _ = run
    path = tmp_path / "empty.csv"
    path.write_text("user_id,group,x,tags\n")
    out = tmp_path / "out.parquet"
    result = predict_files([path], out, model_dir=run_dir, id_columns=["user_id"])
    got = pd.read_parquet(out)
    assert result.rows_written == 0 and len(got) == 0
    assert list(got.columns) == result.columns and result.columns[:2] == ["user_id", "prediction"]


def _examples(frame, ids):
    """tf.Example records of the toy rows plus an int64 `user_id`; None leaves it out."""
    train = tf.train
    records = []
    for row, uid in zip(frame.itertuples(), ids, strict=True):
        feature = {
            "group": train.Feature(bytes_list=train.BytesList(value=[row.group.encode()])),
            "x": train.Feature(float_list=train.FloatList(value=[row.x])),
            "tags": train.Feature(
                int64_list=train.Int64List(value=[int(t) for t in row.tags.split("|")])
            ),
        }
        if uid is not None:
            feature["user_id"] = train.Feature(int64_list=train.Int64List(value=[uid]))
        records.append(train.Example(features=train.Features(feature=feature)))
    return [r.SerializeToString() for r in records]


def test_tfrecord_ids_come_from_the_examples(run, tmp_path):
    run_dir, model = run
    frame = _scoring_frame(12, seed=3)
    ids = [int(v) for v in frame["user_id"]]
    ids[5] = None  # record 6 has no id: a bad row
    path = tmp_path / "rows.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in _examples(frame, ids):
            writer.write(record)
    with pytest.raises(MalformedDataError, match="row 6: column 'user_id': not exactly one"):
        list(read_chunks(path, SPEC, with_label=False, extra_columns=["user_id"]))
    with pytest.raises(ValueError, match="no feature 'nope' in the first 12 record"):
        list(read_chunks(path, SPEC, with_label=False, extra_columns=["nope"]))

    out = tmp_path / "out.csv"
    result = predict_files(
        [path], out, model_dir=run_dir, id_columns=["user_id"], on_bad_rows="skip"
    )
    assert (result.rows_written, result.rows_skipped) == (11, 1)
    got = pd.read_csv(out)
    good = frame.drop(index=5).reset_index(drop=True)
    assert got["user_id"].tolist() == good["user_id"].tolist()
    good.to_csv(tmp_path / "good.csv", index=False)
    _assert_outputs_equal(got, _expected(model, tmp_path / "good.csv"))


# ----------------------------------------------------------- reader columns
def test_read_chunks_extra_columns_text_and_parquet(tmp_path):
    frame = _scoring_frame(6)
    frame["y"] = 1.0
    csv_path, pq_path = tmp_path / "t.csv", tmp_path / "t.parquet"
    frame.to_csv(csv_path, index=False)
    # Nulls in an integer id column stay exact ints (not float64) and None.
    user = pa.array([FIRST_ID + 1, None, FIRST_ID + 3, 4, 5, 6], type=pa.int64())
    table = pa.Table.from_pandas(frame.drop(columns=["user_id"]), preserve_index=False)
    pq.write_table(table.append_column("user_id", user), pq_path)

    default = next(read_chunks(csv_path, SPEC))
    assert list(default) == ["group", "x", "tags", "y"]  # unchanged without extra columns

    (chunk,) = read_chunks(csv_path, SPEC, extra_columns=["item", "user_id"])
    assert list(chunk) == ["group", "x", "tags", "y", "item", "user_id"]
    assert chunk["user_id"].tolist() == [str(v) for v in frame["user_id"]]
    (chunk,) = read_chunks(pq_path, SPEC, with_label=False, extra_columns=["user_id", "y"])
    assert chunk["user_id"].tolist() == [FIRST_ID + 1, None, FIRST_ID + 3, 4, 5, 6]
    assert chunk["y"].dtype == np.float64 and "y" in chunk

    for path in (csv_path, pq_path):
        with pytest.raises(ValueError, match=r"no column\(s\) \['nope'\]"):
            next(read_chunks(path, SPEC, extra_columns=["nope"]))
    with pytest.raises(ValueError, match="read already"):
        next(read_chunks(csv_path, SPEC, extra_columns=["x"]))
    with pytest.raises(ValueError, match="read already"):
        next(read_chunks(csv_path, SPEC, extra_columns=["y"]))


def test_output_column_names_are_one_function(tmp_path):
    outputs = {
        "prediction": np.zeros(2),
        "quantiles": np.zeros((2, 2)),
        "exceedance": np.zeros((2, 1)),
        "level_values": np.zeros((2, 3)),
        "codes": np.zeros((2, 3), np.int32),
    }
    named = output_columns(outputs, quantiles=[0.25, 0.75], thresholds=[1e-5])
    assert list(named) == [
        "prediction",
        "quantile_0.25",
        "quantile_0.75",
        "p_above_1e-05",
        "level_value_1",
        "level_value_2",
        "level_value_3",
        "code_1",
        "code_2",
        "code_3",
    ]
    assert list(output_columns({"quantiles": np.zeros((2, 2))})) == ["quantile_1", "quantile_2"]
    with pytest.raises(ValueError, match="has 2 columns but 3 quantiles"):
        output_columns({"quantiles": np.zeros((2, 2))}, quantiles=[0.1, 0.5, 0.9])
    # training's predictions.parquet uses the same names
    config = ModelConfig(quantiles=(0.25, 0.75), thresholds=(1e-5,))
    training_outputs = {k: v for k, v in outputs.items() if k != "level_values"}
    write_predictions(tmp_path / "p.parquet", np.zeros(2), training_outputs, config)
    assert list(pd.read_parquet(tmp_path / "p.parquet").columns) == ["label"] + [
        n for n in named if not n.startswith("level_value")
    ]


def test_api_refuses_bad_arguments(run, inputs, tmp_path):
    run_dir, _ = run
    _, files = inputs
    with pytest.raises(PredictError, match="give one of"):
        predict_files([files["csv"]], tmp_path / "o.csv")
    with pytest.raises(PredictError, match="more than once"):
        predict_files([files["csv"]], tmp_path / "o.csv", model_dir=run_dir, id_columns=["a", "a"])


def test_help_does_not_start_tensorflow():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['predict.py', '--help']\n"
        "try:\n"
        "    runpy.run_path('predict.py', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        "print('tensorflow' in sys.modules, 'tf_keras' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--saved-model" in proc.stdout and "--id-columns" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "False False"
