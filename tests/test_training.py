import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras as keras
import yaml

from conftest import REPO, TINY, toy_files
from conftest import TOY_SPEC as SPEC
from conftest import cli_args as _cli_args
from conftest import toy_frame as _frame
from conftest import train_config as _config
from rq_keras.cli.train import train_main
from rq_keras.config import PREDICTIONS, QuantizerConfig, TrainConfig, config_from_dict, load_config
from rq_keras.config.configs import ModelConfig
from rq_keras.features.preprocessing import FeaturePreprocessor
from rq_keras.layers.decoding import sampling_probability
from rq_keras.models.rq_reg import build_model
from rq_keras.quantizer.residual import ResidualQuantizer
from rq_keras.training import RunExistsError, make_strategy, train
from rq_keras.training import console as training_console
from rq_keras.training.callbacks import (
    EarlyStoppingCheckpoint,
    EpochEstimate,
    EpochHistory,
    EpochTimer,
    NonFiniteLossError,
    StopOnNonFiniteLoss,
    read_history,
)

# Trains, exports or serves: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_files(tmp_path_factory.mktemp("toy"))


# ------------------------------------------------------------------ config
def test_config_defaults_are_the_papers():
    config = TrainConfig(dataset="cdnow")
    assert (config.epochs, config.learning_rate) == (50, 5e-4)
    assert (config.sampling_k, config.sampling_t0) == (0.1, 10.0)
    assert (config.quantizer.num_levels, config.quantizer.codebook_size) == (3, 48)
    assert config.model == ModelConfig()


@pytest.mark.parametrize(
    "rows, batch",
    [(16_499, 256), (3_000, 32), (100, 32), (65_535, 512), (65_536, 1024), (10**7, 1024)],
)
def test_auto_batch_size_gives_64_steps_an_epoch_up_to_the_papers_batch(rows, batch):
    assert TrainConfig(dataset="cdnow").resolved_batch_size(rows) == batch
    assert TrainConfig(dataset="cdnow", batch_size=100).resolved_batch_size(rows) == 100
    for bad in (0, "large"):
        with pytest.raises(ValueError, match="`batch_size` must be an int >= 1 or 'auto'"):
            TrainConfig(dataset="cdnow", batch_size=bad)


def test_auto_zero_threshold_and_monitor():
    quantizer = QuantizerConfig()
    assert quantizer.resolved_zero_threshold(np.array([0.0] * 5 + [0.004, 3.0] * 50)) == 0.002
    assert quantizer.resolved_zero_threshold(np.array([0.0] + [3.0] * 200)) is None  # < 1% zeros
    assert quantizer.resolved_zero_threshold(np.zeros(10)) is None  # nothing but zeros
    assert quantizer.resolved_zero_threshold(np.array([0.0, 9.0])) == 5e-3
    assert QuantizerConfig(zero_threshold=None).resolved_zero_threshold(np.zeros(3)) is None
    with pytest.raises(ValueError, match="`zero_threshold` must be a number, 'auto' or null"):
        QuantizerConfig(zero_threshold="on")
    assert TrainConfig(dataset="cdnow").resolved_monitor == "val_gen"
    no_gen = TrainConfig(dataset="cdnow", model=ModelConfig(gen_weight=0.0))
    assert no_gen.resolved_monitor == "val_mae"
    assert TrainConfig(dataset="cdnow", head="mse").resolved_monitor == "val_mae"


def test_load_config_yaml_and_overrides_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "dataset: cdnow\nepochs: 7\nmodel:\n  units: 64\n  cell: gru\n"
        "quantizer:\n  codebook_size: [16, 8]\n  num_levels: 2\n"
    )
    config = load_config(
        path,
        {
            "model.units": 32,
            "learning_rate": 1e-3,
            "devices": ["/cpu:0"],
            "quantizer.zero_threshold": 0.005,
        },
    )
    assert config.epochs == 7 and config.learning_rate == 1e-3
    assert config.quantizer.zero_threshold == 0.005
    assert config.quantizer.build().zero_token
    assert config.model.units == 32 and config.model.cell == "gru"
    assert config.quantizer.codebook_size == (16, 8) and config.devices == ("/cpu:0",)
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config


@pytest.mark.parametrize(
    "values, message",
    [
        ({"dataset": "cdnow", "epoch": 3}, r"unknown key\(s\) \['epoch'\] in `the top level`"),
        ({"dataset": "cdnow", "model": {"unit": 3}}, r"unknown key\(s\) \['unit'\] in `model`"),
        ({"dataset": "cdnow", "epochs": "3"}, r"`epochs` must be int, got '3'"),
        ({"dataset": "cdnow", "epochs": True}, r"`epochs` must be int, got True"),
        ({"dataset": "cdnow", "epochs": 0}, r"`epochs` must be >= 1, got 0"),
        ({"dataset": "cdnow", "learning_rate": -1.0}, r"`learning_rate` must be a finite"),
        ({"dataset": "cdnow", "monitor": "val_auc"}, r"`monitor` must be one of"),
        ({"dataset": "cdnow", "strategy": "tpu"}, r"`strategy` must be one of"),
        ({"dataset": "cdnow", "model": {"cell": "lstmx"}}, r"`model`: `cell` must be one of"),
        # Every ModelConfig field is checked before any data is read.
        ({"dataset": "cdnow", "model": {"units": 0}}, r"`model`: `units` must be >= 1, got 0"),
        ({"dataset": "cdnow", "model": {"regressor_units": 0}}, r"`regressor_units` must be >= 1"),
        ({"dataset": "cdnow", "model": {"num_cross_layers": -1}}, r"`num_cross_layers` must be"),
        ({"dataset": "cdnow", "model": {"rnc_weight": -0.1}}, r"`rnc_weight` must be a finite"),
        ({"dataset": "cdnow", "model": {"delta": 0.0}}, r"`delta` must be a finite number > 0"),
        ({"dataset": "cdnow", "model": {"temperature": float("inf")}}, r"`temperature` must be"),
        (
            {"dataset": "cdnow", "model": {"sampling_probability": 1.5}},
            r"`sampling_probability` must be in \[0, 1\]",
        ),
        ({"dataset": "cdnow", "train_files": "a.csv"}, r"`train_files` must be a list"),
        ({"dataset": "cdnow", "model": 3}, r"`model` must be a mapping"),
        ({}, r"give `dataset`, or `train_files` and `feature_spec`"),
        ({"train_files": ["a.csv"]}, r"`train_files` need a `feature_spec`"),
        ({"dataset": "cdnow", "feature_spec": "s.yaml"}, r"not both"),
        (
            {"dataset": "cdnow", "quantizer": {"zero_threshold": 0.0}},
            r"config: quantizer: `zero_threshold` must be a finite number > 0",
        ),
        (
            {"dataset": "cdnow", "quantizer": {"method": "kmodes"}},
            r"config: quantizer: `method` must be one of",
        ),
    ],
)
def test_bad_config_is_named(values, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(values)


def test_exponent_numbers_that_yaml_reads_as_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: cdnow\nlearning_rate: 1e-3\nsampling_t0: -1.0e9\n")
    config = load_config(path, {"model.delta": "2e1"})
    assert config.learning_rate == 1e-3 and config.sampling_t0 == -1e9
    assert config.model.delta == 20.0
    with pytest.raises(ValueError, match=r"`learning_rate` must be float, got 'fast'"):
        load_config(path, {"learning_rate": "fast"})


def test_load_config_bad_yaml(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("epochs: [1\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_make_strategy_choices(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert make_strategy("auto") is tf.distribute.get_strategy()
    assert make_strategy("one_device") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        make_strategy("auto")
    with pytest.raises(ValueError, match="`strategy` must be one of"):
        make_strategy("tpu")


def test_devices_are_checked_and_the_cpu_can_be_split(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    # This process has two logical CPUs (conftest): a third would hang a run.
    for devices in (["/cpu:0", "/cpu:2"], ["/gpu:0"], ["not a device"]):
        with pytest.raises(ValueError, match=r"device .* does not exist on this host .*CPU:1"):
            make_strategy("mirrored", devices)
    assert make_strategy("one_device", ["/cpu:1"]).num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="TensorFlow has already started with 2 CPU"):
        make_strategy("auto", cpu_devices=3)
    with pytest.raises(ValueError, match="`cpu_devices` must be >= 1 or null"):
        config_from_dict({"dataset": "cdnow", "cpu_devices": 0})
    # A fresh process splits its CPU before TensorFlow starts and mirrors over it.
    code = (
        "from rq_keras.training import make_strategy; "
        "s = make_strategy('auto', cpu_devices=3); "
        "print(type(s).__name__, s.num_replicas_in_sync)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.stdout.split() == ["MirroredStrategy", "3"], proc.stderr[-2000:]


def test_help_does_not_start_tensorflow():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['train.py', '--help']\n"
        "try:\n"
        "    runpy.run_path('train.py', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        "print('tensorflow' in sys.modules, 'tf_keras' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--cpu-devices" in proc.stdout and "--output-dir" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "False False"


# --------------------------------------------------------------- callbacks
class _Holder(keras.Model):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(1.0)


def test_stop_on_non_finite_loss_names_epoch_and_step():
    callback = StopOnNonFiniteLoss(keep="Weights kept in X.")
    callback.on_epoch_begin(2)
    callback.on_train_batch_end(4, {"loss": 1.5})
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 3, step 6.*kept in X"):
        callback.on_train_batch_end(5, {"loss": float("nan")})
    with pytest.raises(NonFiniteLossError, match="became inf"):
        callback.on_train_batch_end(0, {"loss": np.float32("inf")})


def test_early_stopping_checkpoint_keeps_best_and_resumes(tmp_path):
    model = _Holder()
    weights, state = str(tmp_path / "best"), str(tmp_path / "state.json")
    callback = EarlyStoppingCheckpoint(weights, state, monitor="val_mae", patience=2)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, (w, value) in enumerate([(1.0, 5.0), (2.0, 3.0), (3.0, 4.0)]):
        model.w.assign(w)
        callback.on_epoch_end(epoch, {"val_mae": value})
    assert callback.state == {"best": 3.0, "best_epoch": 2, "wait": 1, "stopped_epoch": None}
    # A new callback (a resumed process) continues the count from the file.
    resumed = EarlyStoppingCheckpoint(weights, state, monitor="val_mae", patience=2)
    resumed.set_model(model)
    resumed.on_train_begin()
    model.w.assign(9.0)
    resumed.on_epoch_end(3, {"val_mae": 3.5})
    assert model.stop_training and resumed.state["stopped_epoch"] == 4
    resumed.on_train_end()
    assert model.w.numpy() == 2.0  # the best epoch's weights
    with pytest.raises(ValueError, match="`val_loss` is not in the epoch's logs"):
        EarlyStoppingCheckpoint(weights, state, monitor="val_loss").on_epoch_end(0, {"loss": 1})
    with pytest.raises(ValueError, match="`patience` must be >= 1"):
        EarlyStoppingCheckpoint(weights, state, patience=0)


def test_epoch_estimate_after_the_first_two_epochs():
    said, timer = [], EpochTimer()
    callback = EpochEstimate(10, said.append, timer)
    for epoch, seconds in enumerate([9.0, 2.0, 2.5]):
        timer.seconds.append(seconds)
        callback.on_epoch_begin(epoch)
        # The epoch began 3 s ago: 2 s of training, the rest validation.
        callback._start -= 3.0
        callback.on_epoch_end(epoch)
    assert said == [
        "epoch 1 trained in 9.0 s (the first includes tracing)",
        "about 2.0 s of training and 1.0 s of validation an epoch: at most 24 s for the 8 "
        "epochs left (early stopping may end sooner)",
    ]
    quiet = EpochEstimate(1, said.append, timer)
    quiet.on_epoch_end(0)  # nothing left to estimate
    assert len(said) == 2
    for epochs, seconds, text in ((50, 60.0, "at most 48.0 min"), (200, 60.0, "at most 3.3 h")):
        long_timer = EpochTimer()
        long = EpochEstimate(epochs, said.append, long_timer)
        for epoch in range(2):
            long_timer.seconds.append(seconds)
            long.on_epoch_end(epoch)
        assert text in said[-1]


def test_epoch_history_replaces_a_rerun_epoch(tmp_path):
    path = str(tmp_path / "history.csv")
    first = EpochHistory(path)
    first.on_train_begin()
    first.on_epoch_end(0, {"loss": 3.0, "val_mae": 2.0})
    first.on_epoch_end(1, {"loss": 2.0, "val_mae": 1.5})
    second = EpochHistory(path)
    second.on_train_begin()
    second.on_epoch_end(1, {"loss": 1.9, "val_mae": 1.4, "rnc": 0.5})
    rows = read_history(path)
    assert sorted(rows) == [1, 2] and rows[2]["loss"] == 1.9
    history = second.history()
    assert history["loss"] == [3.0, 1.9]
    assert np.isnan(history["rnc"][0]) and history["rnc"][1] == 0.5


# ---------------------------------------------------------- training runs
FINISHED = {"epochs": 6, "patience": None}


@pytest.fixture(scope="module")
def finished(toy, tmp_path_factory):
    """A finished run under the default strategy (6 epochs, no early stop): the
    complete-run checks read it, the overwrite test works on a copy."""
    out = tmp_path_factory.mktemp("finished") / "run"
    return out, train(_config(toy, **FINISHED), out, verbose=0)


@pytest.mark.parametrize("strategy_name", ["default", "mirrored"])
def test_train_writes_a_complete_run(toy, tmp_path, strategy_name, request):
    if strategy_name == "mirrored":
        out, overrides = tmp_path / "run", {}
        result = train(_config(toy), out, strategy=request.getfixturevalue("mirrored"), verbose=0)
    else:
        (out, result), overrides = request.getfixturevalue("finished"), FINISHED
    epochs = overrides.get("epochs", 2)
    for name in (
        "config.yaml",
        "feature_spec.yaml",
        "preprocessing.json",
        "codebook.json",
        "data_report.json",
        "history.csv",
        "model.keras",
        "predictions.parquet",
        "metrics.json",
        "checkpoints/best.index",
    ):
        assert (out / name).exists(), name
    assert not (out / "backup").exists()  # removed once every output is written
    assert (out / "rq_keras_run.json").is_file()
    trained = json.loads((out / "trained.json").read_text())
    assert trained["weights_digest"] == result.weights_digest and trained["epochs_run"] == epochs
    assert any((out / "logs" / "train").iterdir())
    assert sorted(result.plots) == [
        "calibration", "distribution", "embedding", "gain", "loss_curves", "reliability",
    ]  # fmt: skip
    assert all(pathlib.Path(p).stat().st_size > 1000 for p in result.plots.values())

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["rows"] == 800 and metrics["train_rows"] == 3000
    assert metrics["replicas"] == (2 if strategy_name == "mirrored" else 1)
    assert len(metrics["test"]["decile_calibration"]) == 10
    assert metrics["epochs_run"] == epochs and 1 <= result.best_epoch <= epochs
    history = read_history(str(out / "history.csv"))
    assert sorted(history) == list(range(1, epochs + 1))
    assert {"loss", "gen", "reg", "rnc", "mae", "val_mae", "sampling_probability"} <= set(
        history[1]
    )
    assert history[1]["sampling_probability"] == pytest.approx(1 / (1 + np.exp(-1.0)))
    config = config_from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    assert config == _config(toy, **overrides)

    # The saved model, predictions and metrics agree with each other.
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert list(predictions.columns) == [
        "label", "prediction", "regressor", "mean", "median", "positive_mean",
        "quantile_0.1", "quantile_0.5", "quantile_0.9", "p_above_0",
        "code_1", "code_2", "code_3",
    ]  # fmt: skip
    # The default prediction is the code tree's mean; each type is scored.
    np.testing.assert_array_equal(predictions["prediction"], predictions["mean"])
    assert metrics["test"]["prediction_type"] == "mean"
    for kind in PREDICTIONS:
        kind_mae = np.mean(np.abs(predictions["label"] - predictions[kind]))
        assert metrics["test"]["by_prediction"][kind]["mae"] == pytest.approx(kind_mae, rel=1e-9)
    np.testing.assert_array_equal(predictions["median"], predictions["quantile_0.5"])
    assert (predictions["quantile_0.1"] <= predictions["quantile_0.9"]).all()
    distribution = metrics["test"]["distribution"]
    coverage = np.mean(predictions["label"] <= predictions["quantile_0.9"])
    assert distribution["quantile_coverage"]["0.9"] == pytest.approx(coverage)
    assert distribution["exceedance"]["0"]["mean_predicted"] == pytest.approx(
        predictions["p_above_0"].mean()
    )
    np.testing.assert_allclose(
        predictions["label"].to_numpy(), _frame(800, 2)["y"].to_numpy(), rtol=1e-12
    )
    mae = np.mean(np.abs(predictions["label"] - predictions["prediction"]))
    assert metrics["test"]["mae"] == pytest.approx(mae, rel=1e-9)
    loaded = keras.models.load_model(out / "model.keras")
    batch = {
        "group": tf.constant([["g1"], ["g3"]]),
        "x": tf.constant([[0.5], [-1.0]]),
        "tags": tf.constant([[1, 3, 0], [2, 0, 0]], tf.int64),
    }
    np.testing.assert_allclose(
        loaded(batch, training=False)["prediction"].numpy(),
        result.model(batch, training=False)["prediction"].numpy(),
        rtol=1e-6,
    )
    codebook = ResidualQuantizer.load(out / "codebook.json")
    assert codebook.fitted_codebook_sizes == [8, 8, 8]

    # Total value and the code report agree with the predictions file.
    labels, served = predictions["label"].to_numpy(), predictions["prediction"].to_numpy()
    assert metrics["test"]["mean_ratio"] == pytest.approx(served.mean() / labels.mean())
    assert set(metrics["test"]["trivial"]) == {"train_mean", "train_median"}
    true_codes = codebook.encode(labels)
    report = metrics["test"]["codes"]
    assert [level["level"] for level in report] == [1, 2, 3]
    for level in report:
        column = predictions[f"code_{level['level']}"].to_numpy()
        accuracy = np.mean(column == true_codes[:, level["level"] - 1])
        assert level["accuracy"] == pytest.approx(accuracy)
        assert level["nll"] > 0 and level["marginal_nll"] > 0
        assert 0 <= level["other_level_mass"] <= 1


def test_finished_run_needs_overwrite_and_the_model_beats_the_mean(toy, tmp_path, finished):
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    config, first = _config(toy, **FINISHED), finished[1]
    (out / "user_notes.txt").write_text("keep me")
    with pytest.raises(RunExistsError, match="holds a finished run"):
        train(config, out, verbose=0)
    # The mean of the training labels as a constant prediction.
    y_train = _frame(3000, 0)["y"].to_numpy()
    y_test = _frame(800, 2)["y"].to_numpy()
    assert first.metrics["test"]["mae"] < np.mean(np.abs(y_test - y_train.mean()))
    assert first.metrics["test"]["spearman"] > 0.5
    # --overwrite replaces the finished run (with any config: one epoch here).
    # A bad input is found before anything of the finished run is removed.
    missing = _config(toy, epochs=1, validation_files=[str(tmp_path / "typo.parquet")])
    with pytest.raises(FileNotFoundError, match="typo.parquet"):
        train(missing, out, overwrite=True, verbose=0)
    assert json.loads((out / "metrics.json").read_text()) == first.metrics
    assert (out / "model.keras").is_file() and (out / "checkpoints" / "best.index").is_file()
    second = train(_config(toy, epochs=1), out, overwrite=True, verbose=0)
    assert (out / "user_notes.txt").read_text() == "keep me"  # only run artifacts go
    assert second.epochs_run == 1 and not second.resumed
    assert sorted(read_history(str(out / "history.csv"))) == [1]


def test_no_validation_trains_all_epochs_with_per_batch_sampling(toy, tmp_path):
    config = _config(toy, validation_files=[], test_files=[], epochs=1, sampling_per_batch=True)
    result = train(config, tmp_path / "run", verbose=0)
    assert result.best_epoch is None and result.epochs_run == 1
    assert "test" not in result.metrics and result.plots == {}
    # p follows the fractional epoch: at the last of ceil(3000 / 256) = 12 steps, t = 11/12.
    p = result.history["sampling_probability"][0]
    assert p == pytest.approx(sampling_probability(11 / 12))


def test_empty_validation_split_fails_before_training(toy, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("group,x,tags,y\n")
    with pytest.raises(ValueError, match=r"the validation files .* hold no usable rows"):
        train(_config(toy, validation_files=[str(empty)]), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "history.csv").exists()


def test_mirrored_step_equals_one_device(toy, mirrored):
    """One SGD step on the same global batch: same loss terms and same update."""
    pre = FeaturePreprocessor(SPEC).adapt(toy["train"])
    quantizer = ResidualQuantizer(num_levels=3, codebook_size=8, clip_min=0)
    quantizer.fit(_frame(3000, 0)["y"].to_numpy())
    frame = _frame(3000, 0).iloc[:64]
    features = {
        "group": tf.constant(frame["group"].to_numpy()[:, None]),
        "x": tf.constant(frame["x"].to_numpy(np.float32)[:, None]),
        "tags": tf.constant(
            [[int(t) for t in s.split("|")] + [0] for s in frame["tags"]], tf.int64
        ),
    }
    batch = tf.data.Dataset.from_tensors((features, tf.constant(frame["y"].to_numpy())))
    config = ModelConfig(**TINY, seed=3)
    results = {}
    for name, strategy in (("one", tf.distribute.get_strategy()), ("mirrored", mirrored)):
        with strategy.scope():
            model = build_model(SPEC, pre, quantizer, config)
            model.compile(optimizer=keras.optimizers.SGD(0.5))
        before = [w.numpy().copy() for w in model.trainable_weights]
        logs = model.fit(batch, epochs=1, verbose=0).history
        after = [w.numpy() for w in model.trainable_weights]
        results[name] = ({k: v[0] for k, v in logs.items()}, before, after)
    (one_logs, one_before, one_after), (m_logs, m_before, m_after) = results.values()
    for key in ("loss", "gen", "reg", "rnc", "mae"):
        assert m_logs[key] == pytest.approx(one_logs[key], rel=1e-5), key
    for b1, b2 in zip(one_before, m_before):
        np.testing.assert_array_equal(b1, b2)
    moved = 0
    for b, a1, a2 in zip(one_before, one_after, m_after):
        np.testing.assert_allclose(a2 - b, a1 - b, rtol=1e-3, atol=1e-6)
        moved += int(np.abs(a1 - b).max() > 1e-6)
    assert moved >= len(one_before) - 2  # the step changed (almost) every weight


# ------------------------------------------------------------- command line
def test_cli_malformed_input_fails_before_training(toy, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    frame = _frame(50, 5)
    frame.to_csv(bad, index=False)
    lines = bad.read_text().splitlines()
    lines[8] = lines[8].split(",", 1)[0] + ",not-a-number," + lines[8].split(",", 2)[2]
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = _cli_args(toy, out)
    args[args.index("--test") + 1] = str(bad)
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "row 8" in err and "pass --on-bad-rows skip" in err
    assert not (out / "history.csv").exists()
    missing = _cli_args(toy, tmp_path / "run2")
    missing[missing.index("--validation") + 1] = str(tmp_path / "nope.parquet")
    assert train_main(missing) == 2
    assert "nope.parquet" in capsys.readouterr().err
    # A file no row policy can read: no hint that skipping rows would help.
    twice = tmp_path / "twice.csv"
    frame.assign(x2=frame["x"]).rename(columns={"x2": "x"}).to_csv(twice, index=False)
    duplicate = _cli_args(toy, tmp_path / "run3")
    duplicate[duplicate.index("--test") + 1] = str(twice)
    assert train_main(duplicate) == 2
    err = capsys.readouterr().err
    assert "duplicate column name(s) ['x']" in err and "--on-bad-rows" not in err


def test_cli_nan_loss_stops_with_epoch_and_step(toy, tmp_path, capsys):
    out = tmp_path / "run"
    code = train_main(_cli_args(toy, out, "--learning-rate", "1e30", "--epochs", "3"))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "the training loss became nan at epoch 1, step" in err
    assert not (out / "metrics.json").exists() and not (out / "model.keras").exists()


def test_baseline_head_run_and_its_export(toy, tmp_path):
    from rq_keras.serving.export import export_run

    out = tmp_path / "ziln"
    result = train(_config(toy, head="ziln", epochs=3), out, verbose=0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["head"] == "ziln" and metrics["test"]["rows"] == 800
    history = read_history(str(out / "history.csv"))
    assert {"loss", "mae", "val_loss", "val_mae"} <= set(history[1])
    assert "sampling_probability" not in history[1]  # no decoder, no scheduled sampling
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert list(predictions.columns) == [
        "label",
        "prediction",
        "positive_mean",
        "positive_probability",
        "quantile_0.1",
        "quantile_0.5",
        "quantile_0.9",
    ]
    quantiles = predictions[["quantile_0.1", "quantile_0.5", "quantile_0.9"]].to_numpy()
    assert (np.diff(quantiles, axis=1) >= 0).all() and (quantiles >= 0).all()
    assert (predictions["prediction"] >= 0).all()  # p * exp(mu + sigma^2 / 2)
    # ZILN's E[y | y > 0] is scored beside its mean (the prediction).
    assert predictions["positive_mean"].ge(predictions["prediction"]).all()
    assert metrics["test"]["prediction_type"] == "mean"
    positive_mae = np.mean(np.abs(predictions["label"] - predictions["positive_mean"]))
    by_prediction = metrics["test"]["by_prediction"]
    assert list(by_prediction) == ["positive_mean"]
    assert by_prediction["positive_mean"]["mae"] == pytest.approx(positive_mae, rel=1e-9)
    # The mean of the training labels as a constant prediction.
    train_mean = _frame(3000, 0)["y"].mean()
    assert metrics["test"]["mae"] < np.mean(np.abs(predictions["label"] - train_mean))
    assert result.model is not None
    exported = export_run(out, tmp_path / "serving", check_rows=32)
    assert exported.checks["examples/prediction_max_abs_diff"] <= 1e-5
    assert "examples/codes_mismatched" not in exported.checks


@pytest.mark.parametrize(
    "values, message",
    [
        ({"head": "mae"}, r"`head` must be one of"),
        (
            {"head": "kmeans", "quantizer": {"num_levels": 3}},
            r"`quantizer.num_levels` must be 1 for head 'kmeans'",
        ),
        ({"head": "mse", "monitor": "val_rnc"}, r"`monitor` must be one of .* for head 'mse'"),
    ],
)
def test_bad_head_config_is_named(values, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({"dataset": "cdnow", **values})


def test_kmeans_head_defaults_to_one_level_from_python():
    """The head's rule lives in the config, not in the command line."""
    assert TrainConfig(dataset="cdnow", head="kmeans").quantizer.num_levels == 1
    assert TrainConfig(dataset="cdnow").quantizer.num_levels == 3
    assert config_from_dict({"dataset": "cdnow", "head": "kmeans"}).quantizer.num_levels == 1
    # The resolved number is what the run's config.yaml holds, and it loads back.
    kmeans = TrainConfig(dataset="cdnow", head="kmeans")
    assert config_from_dict(kmeans.to_dict()) == kmeans


def test_cli_head_kmeans_is_one_level(toy, tmp_path, capsys, monkeypatch):
    out = tmp_path / "kmeans"
    # A progress line for every chunk (a long pass prints one every 10 s).
    monkeypatch.setattr(training_console, "PROGRESS_SECONDS", 1e-9)
    code = train_main(_cli_args(toy, out, "--head", "kmeans", "--epochs", "1"))
    assert code == 0, capsys.readouterr().err[-3000:]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["head"] == "kmeans" and config["quantizer"]["num_levels"] == 1
    assert ResidualQuantizer.load(out / "codebook.json").num_levels == 1
    assert list(pd.read_parquet(out / "predictions.parquet").columns) == [
        "label", "prediction", "regressor", "mean", "median", "positive_mean",
        "quantile_0.1", "quantile_0.5", "quantile_0.9", "p_above_0", "code_1",
    ]  # fmt: skip
    table = capsys.readouterr().out
    # What the run did before epoch 1, in order, each with its seconds.
    lines = [line for line in table.splitlines() if not line.startswith(("Epoch", " ", "{"))]
    expected = [
        f"{out}: a new run",
        "checked 3,000 training rows and adapted 3 features in ",
        "checked 500 validation rows in ",
        "checked 800 test rows in ",
        "codebook: L=1, K=8, zero code below 0.005, reconstruction MAE ",
        "model: head kmeans (LSTM 16, code embeddings 8, f_enc 16, f_pred 16, f_reg 8), ",
    ]
    assert len(lines) > len(expected), lines
    for want, line in zip(expected, lines):
        assert line.startswith(want), (want, line)
    progress = [line for line in table.splitlines() if line.startswith("  checking ")]
    assert progress[0].startswith("  checking training rows: 3,000 so far (")
    assert any(line.startswith("  checking test rows: 800 so far (") for line in progress)
    assert "training done; evaluating on the test split" in table
    assert "total value       mean prediction" in table and "code level 1" in table
    assert "constant train median" in table and "counts as wrong" in table
    # Every prediction type, the interval's coverage and P(y > 0) beside the base rate.
    assert "prediction        mean (every type, same rows:)" in table
    for kind in PREDICTIONS:
        assert f"    {kind:<15} MAE " in table
    assert "interval          [q0.1, q0.9] holds " in table and "(nominal 80%)" in table
    assert "P(y > 0)          mean " in table and "(base rate " in table


def test_parquet_reader_choice_trains_the_same_run(toy, tmp_path):
    """`parquet_reader` reaches training and evaluation. Where tensorflow-io is
    installed (the TF 2.16 stack) a CDNOW run (its Parquet splits) read
    through it equals the default pyarrow run to the weight (the same
    batches); without it the run fails before training, naming the extra."""
    from rq_keras.data import pipeline

    with pytest.raises(ValueError, match="`parquet_reader` must be 'pyarrow' or 'tensorflow-io'"):
        _config(toy, parquet_reader="arrow")
    if not pipeline.tfio_available():
        config = _config(toy, epochs=1, parquet_reader="tensorflow-io")
        with pytest.raises(ValueError, match=r"rq_keras\[tfio\]"):
            train(config, tmp_path / "tfio", verbose=0)
        return
    base = {"dataset": "cdnow", "epochs": 1, "batch_size": 1024, "model": dict(TINY)}
    tfio_config = config_from_dict({**base, "parquet_reader": "tensorflow-io"})
    tfio = train(tfio_config, tmp_path / "t", verbose=0)
    arrow = train(config_from_dict(base), tmp_path / "a", verbose=0)
    assert tfio.weights_digest == arrow.weights_digest
    assert tfio.metrics["test"]["mae"] == arrow.metrics["test"]["mae"]


def test_one_seed_sets_the_run_model_and_codebook(toy):
    """`train.py --seed N` and `TrainConfig.seeded(N)` are one rule."""
    from rq_keras.config import SEEDED_KEYS, apply_overrides

    base = _config(toy)
    seeded = base.seeded(7)
    assert (seeded.seed, seeded.model.seed, seeded.quantizer.seed) == (7, 7, 7)
    assert seeded.model.units == base.model.units  # nothing else changes
    from_flags = config_from_dict(apply_overrides(base.to_dict(), dict.fromkeys(SEEDED_KEYS, 7)))
    assert from_flags == seeded


def test_non_finite_features_train_and_evaluate_as_their_default(tmp_path):
    """The one non-finite policy through a whole run: NaN and +-inf in a
    numeric feature of the training and test files take the spec default
    (counted per split in data_report.json); the run trains and evaluates to
    finite figures."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    toy = toy_files(tmp_path / "toy")
    for split, every in (("train", 7), ("test", 5)):
        frame = pd.read_parquet(toy[split])
        x = frame["x"].to_numpy().copy()
        x[::every] = np.nan
        x[1::every] = np.inf
        x[2::every] = -np.inf
        columns = {c: pa.array(frame[c].to_numpy(), from_pandas=False) for c in frame.columns}
        columns["x"] = pa.array(x, from_pandas=False)  # NaN values, not nulls
        pq.write_table(pa.table(columns), toy[split])
    out = tmp_path / "run"
    result = train(_config(toy, epochs=1), out, verbose=0)
    report = json.loads((out / "data_report.json").read_text())
    assert report["train"]["non_finite"] == {"x": 3 * -(-3000 // 7)}  # 3 of every 7 rows
    assert report["test"]["non_finite"] == {"x": 3 * (800 // 5)}
    assert report["train"]["rows_dropped"] == report["test"]["rows_dropped"] == 0
    test = result.metrics["test"]
    assert np.isfinite([test["mae"], test["spearman"]]).all()
    assert np.isfinite(pd.read_parquet(out / "predictions.parquet")["prediction"]).all()
