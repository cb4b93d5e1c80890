import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import TOY_SPEC as SPEC
from conftest import TOY_SPEC_DICT as SPEC_DICT
from conftest import toy_frame as _frame
from rq_keras.config.configs import ModelConfig
from rq_keras.data import make_dataset, write_table
from rq_keras.features import FeatureSpec
from rq_keras.features.preprocessing import FeaturePreprocessor
from rq_keras.losses.baseline_math import BASELINE_HEADS
from rq_keras.losses.baselines import baseline_loss
from rq_keras.models.baselines import (
    BaselineModel,
    baseline_per_example_loss,
    baseline_predictions,
    build_baseline_model,
)
from rq_keras.serving.export import export_model
from rq_keras.serving.export_checks import read_rows

SMALL = ModelConfig(encoder_units=32, delta=1.0, seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_heads")
    paths = {}
    for split, n, seed in (("train", 4000, 0), ("test", 1000, 1)):
        paths[split] = root / f"{split}.parquet"
        write_table(_frame(n, seed), SPEC, paths[split])
    pre = FeaturePreprocessor(SPEC).adapt(paths["train"])
    return paths, pre, _frame(4000, 0)["y"].to_numpy()


def _model(data, head, spec=SPEC, config=SMALL):
    model = build_baseline_model(spec, data[1], head, config, prediction_max=1e4)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


def _batch(data, size=16):
    return next(iter(make_dataset(data[0]["test"], SPEC, batch_size=size)))


# ------------------------------------------------------------- the losses
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_point_losses_match_the_formulas():
    y = np.array([-4.0, 0.0, 0.5, 3.0, 10.0])
    out = np.array([[1.0], [-0.5], [0.5], [0.2], [4.0]], np.float32)
    o = out[:, 0].astype(np.float64)
    np.testing.assert_allclose(baseline_per_example_loss("mse", y, out), (y - o) ** 2, rtol=1e-6)
    signed_log = np.sign(y) * np.log(1.0 + np.abs(y))
    np.testing.assert_allclose(
        baseline_per_example_loss("log_mse", y, out), (signed_log - o) ** 2, rtol=1e-6
    )
    delta = 2.0
    error = np.abs(y - o)  # 5, 0.5, 0, 2.8, 6: both sides of delta
    huber = np.where(error <= delta, 0.5 * error**2, delta * error - 0.5 * delta**2)
    np.testing.assert_allclose(baseline_per_example_loss("huber", y, out, delta), huber, rtol=1e-6)


def test_ziln_loss_and_prediction_match_the_formulas():
    y = np.array([0.0, 0.0, 2.0, 1.0, 30.0])
    out = np.array(
        [
            [1.5, 0.3, 0.2],
            [-2.0, 5.0, -1.0],
            [0.4, 0.5, 0.7],
            [2.0, 1e-3, -30.0],  # softplus(-30) ~ 1e-13: sigma at its floor
            [-0.3, 2.5, 1.2],
        ],
        np.float32,
    )
    p, mu, raw = (out[:, i].astype(np.float64) for i in range(3))
    sigma = np.maximum(np.log1p(np.exp(raw)), math.sqrt(1e-7))
    positive = (y > 0).astype(np.float64)
    q = _sigmoid(p)
    bce = -(positive * np.log(q) + (1 - positive) * np.log(1 - q))
    safe_y = np.where(y > 0, y, 1.0)
    pdf = np.exp(-((np.log(safe_y) - mu) ** 2) / (2 * sigma**2)) / (
        safe_y * sigma * math.sqrt(2 * math.pi)
    )
    expected = bce + positive * -np.log(pdf)
    got = baseline_per_example_loss("ziln", y, out).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Floored, (1e-3)^2 / (2 sigma^2) is 5; with softplus(-30) ~ 1e-13 it would be ~1e20.
    assert abs(got[3]) < 10

    predictions = baseline_predictions("ziln", out)
    np.testing.assert_allclose(predictions["prediction"], q * np.exp(mu + sigma**2 / 2), rtol=1e-5)
    np.testing.assert_allclose(predictions["positive_probability"], q, rtol=1e-6)
    # E[y | y > 0]: the lognormal's mean, the prediction without the buy probability.
    np.testing.assert_allclose(predictions["positive_mean"], np.exp(mu + sigma**2 / 2), rtol=1e-5)
    # Bounded (train(): by the largest training label): the mean of a wide
    # lognormal explodes, exp(sigma^2 / 2) times its median.
    wide = np.array([[3.0, 2.0, 6.0], [0.0, 1.0, 0.5]], np.float32)  # sigma ~6, ~0.97
    bounded = baseline_predictions("ziln", wide, prediction_max=500.0)["prediction"].numpy()
    free = baseline_predictions("ziln", wide)["prediction"].numpy()
    assert free[0] > 1e6 and bounded[0] == 500.0 and bounded[1] == free[1] < 500

    # Quantiles of the mixture: 0 inside the atom (tau <= 1 - P(y > 0)), above
    # it the value whose mixture CDF 1 - q + q * Phi((log v - mu) / sigma) is tau.
    levels = (0.05, 0.3, 0.5, 0.7, 0.95)
    quantiles = baseline_loss("ziln", quantiles=levels).predictions(out)["quantiles"].numpy()
    assert quantiles.shape == (len(y), len(levels))
    for row in range(len(y)):
        for j, tau in enumerate(levels):
            value = float(quantiles[row, j])
            if tau <= 1 - q[row]:
                assert value == 0.0
            else:
                z = (math.log(value) - mu[row]) / sigma[row]
                cdf = 1 - q[row] + q[row] * 0.5 * (1 + math.erf(z / math.sqrt(2)))
                assert cdf == pytest.approx(tau, abs=1e-4), (row, tau)
    assert np.all(np.diff(quantiles, axis=1) >= 0)
    with pytest.raises(ValueError, match="distinct numbers in"):
        baseline_loss("ziln", quantiles=(0.5, 1.0))

    # y = 0 rows must not send NaN back through the masked lognormal term.
    logits = tf.Variable(out)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(baseline_per_example_loss("ziln", y, logits))
    assert np.isfinite(tape.gradient(loss, logits).numpy()).all()


def test_log_mse_prediction_inverts_the_signed_log():
    y = np.array([-1234.5, -3.0, -0.01, 0.0, 0.01, 2.0, 98765.0])
    z = (np.sign(y) * np.log1p(np.abs(y))).astype(np.float32)[:, None]
    np.testing.assert_allclose(baseline_predictions("log_mse", z)["prediction"], y, rtol=1e-5)
    assert float(baseline_per_example_loss("log_mse", y, z).numpy().max()) < 1e-10


@pytest.mark.slow
def test_ziln_rejects_negative_labels(data):
    out = np.zeros((2, 3), np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="ZILN head needs non-negative.*'y'"):
        baseline_per_example_loss("ziln", [1.0, -0.5], out, label_name="y")
    # A spec without clip_min lets negative labels reach the loss inside `fit`.
    unclipped = FeatureSpec.from_dict({**SPEC_DICT, "label": {"name": "y"}})
    model = _model(data, "ziln", spec=unclipped)
    x, y = _batch(data)
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-negative labels"):
        model.train_on_batch(x, y - 1000.0)


def test_unknown_head_is_rejected(data):
    with pytest.raises(ValueError, match=r"`head` must be one of \('mse', 'log_mse'"):
        build_baseline_model(SPEC, data[1], "mae", SMALL)
    with pytest.raises(ValueError, match="`head` must be one of"):
        baseline_per_example_loss("quantile", [1.0], [[1.0]])


# --------------------------------------------------------------- the model
def test_steps_clip_weight_and_never_read_the_label(data):
    clipped = FeatureSpec.from_dict(
        {**SPEC_DICT, "label": {"name": "y", "clip_min": 0, "clip_max": 5}}
    )
    model = _model(data, "huber", spec=clipped)
    x, y = _batch(data, 32)
    assert float(tf.reduce_max(y)) > 5
    out = model(x, training=False)
    assert set(out) == {"prediction"} and out["prediction"].shape == (32,)
    again = model({**x, "y": y * 0 + 1e6}, training=False)["prediction"]
    np.testing.assert_array_equal(again.numpy(), out["prediction"].numpy())  # same eager call
    # Graph (predict_on_batch) against eager: kernels and summation orders may
    # differ by CPU, so a float32 tolerance rather than bit equality.
    np.testing.assert_allclose(
        model.predict_on_batch(x)["prediction"], out["prediction"], rtol=1e-6, atol=1e-7
    )

    label = np.clip(y.numpy(), 0, 5)
    outputs = model.task.outputs(model.features(x, training=False))
    per_example = baseline_per_example_loss("huber", label, outputs, 1.0).numpy()
    weights = np.linspace(0.0, 2.0, 32)
    logs = model.test_on_batch(x, y, sample_weight=weights, return_dict=True)
    assert set(logs) == {"loss", "mae"}
    assert logs["loss"] == pytest.approx(np.mean(weights * per_example), rel=1e-5)
    mae = np.sum(weights * np.abs(label - out["prediction"].numpy())) / weights.sum()
    assert logs["mae"] == pytest.approx(mae, rel=1e-5)

    ziln = _model(data, "ziln")
    out = ziln(x, training=False)
    assert out["positive_probability"].shape == (32,) and out["prediction"].shape == (32,)


@pytest.mark.slow
@pytest.mark.parametrize("head", BASELINE_HEADS)
def test_each_head_beats_the_training_mean(data, head):
    paths, _, y_train = data
    model = _model(data, head)
    train = make_dataset(paths["train"], SPEC, batch_size=128, shuffle=True, seed=0)
    # Batches of 300, 300, 300 and 100: `val_mae` must be the mean over rows.
    test = make_dataset(paths["test"], SPEC, batch_size=300)
    history = model.fit(train, validation_data=test, epochs=6, verbose=0)
    assert {"loss", "mae", "val_loss", "val_mae"} <= set(history.history)
    preds, labels = [], []
    for x, y in test:
        preds.append(model(x, training=False)["prediction"].numpy())
        labels.append(y.numpy())
    labels = np.concatenate(labels)
    mae = np.abs(np.concatenate(preds) - labels).mean()
    mean_mae = np.abs(y_train.mean() - labels).mean()
    print(f"{head}: test MAE {mae:.3f}, train-mean MAE {mean_mae:.3f} ({mae / mean_mae:.2f}x)")
    # seen here (seeds 0 and 1): 0.49x (ziln) to 0.61x (log_mse) the mean's MAE
    assert mae < 0.7 * mean_mae, (mae, mean_mae)
    assert history.history["val_mae"][-1] == pytest.approx(mae, rel=1e-4)


@pytest.mark.parametrize("head", BASELINE_HEADS)
def test_save_load_and_config_round_trip(data, head, tmp_path):
    model = _model(data, head)
    x, _ = _batch(data)
    expected = model(x, training=False)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(again, BaselineModel) and again.head == head
    got = again(x, training=False)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())

    config = model.get_config()
    rebuilt = BaselineModel.from_config(config)
    assert rebuilt.get_config() == config
    assert (rebuilt.clip_min, rebuilt.clip_max, rebuilt.delta) == (0, None, 1.0)
    assert rebuilt.prediction_max == model.prediction_max
    assert rebuilt(x, training=False)["prediction"].shape == (16,)


@pytest.mark.slow
def test_export_serves_the_prediction_and_ziln_its_positive_mean(data, tmp_path):
    model = _model(data, "ziln")
    rows = read_rows([str(data[0]["test"])], SPEC, 32)
    result = export_model(model, SPEC, tmp_path / "serving", check_rows=rows)
    assert result.checks["examples/prediction_max_abs_diff"] < 1e-5
    assert result.checks["examples/positive_mean_max_abs_diff"] < 1e-5
    loaded = tf.saved_model.load(result.export_dir)
    for signature in ("examples", "serving_default"):
        outputs = loaded.signatures[signature].structured_outputs
        assert set(outputs) == {"prediction", "positive_mean", "quantiles"}
    mse = export_model(_model(data, "mse"), SPEC, tmp_path / "mse", check_rows=rows)
    outputs = tf.saved_model.load(mse.export_dir).signatures["examples"].structured_outputs
    assert set(outputs) == {"prediction"}


@pytest.mark.slow
def test_trains_under_mirrored_strategy(data, mirrored):
    with mirrored.scope():
        model = _model(data, "ziln")
    history = model.fit(make_dataset(data[0]["train"], SPEC, batch_size=256).take(4), verbose=0)
    assert np.isfinite(history.history["loss"][0]) and np.isfinite(history.history["mae"][0])


def test_model_config_fields_used(data):
    config = dataclasses.replace(SMALL, encoder_units=24, delta=3.0, seed=7)
    model = build_baseline_model(SPEC, data[1], "mse", config)
    assert model.encoder.state_size == model.encoder.hidden_units == 24
    assert model.delta == 3.0 and model.label_name == "y" and model.clip_min == 0
    assert model.output_layer.kernel.shape == (24, 1)
