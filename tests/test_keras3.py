"""The Keras 3 layers (`rq_keras.layers.keras3`) against their Keras 2 twins.

Both are skins over one implementation (`rq_keras.layers.decoding`): given
the same weights and inputs they must give the same outputs and the same
RQ-Reg loss (relative 1e-5: the two Keras run the same TensorFlow ops, so
what differs is at most the order of a few float32 sums). This process holds
both Keras: `tf.keras` is Keras 2 here (conftest), and `keras` is Keras 3.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rq_keras.layers import keras3
from rq_keras.layers.code_encoder import ResidualCodeEncoder
from rq_keras.layers.decoder import RQDecoder as Keras2Decoder
from rq_keras.layers.encoder import MLPEncoder
from rq_keras.layers.keras3 import RQDecoder as Keras3Decoder
from rq_keras.losses.rq_reg import RQRegLoss

SIZES = [3, 2, 4]
CENTROIDS = [[1.0, 4.0, 9.0], [-0.5, 0.5], [-0.2, -0.1, 0.1, 0.2]]
SMALL = {"units": 8, "embedding_dim": 6, "predictor_units": 5, "regressor_units": 4, "seed": 3}
RTOL, ATOL = 1e-5, 1e-6


def _pair(**settings):
    settings = {**SMALL, "centroids": CENTROIDS, **settings}
    return Keras2Decoder(SIZES, **settings), Keras3Decoder(SIZES, **settings)


def _parts(decoder):
    """The decoder's variables in one order for either Keras."""
    out = [decoder.code_embeddings, *decoder.recurrent_cell.weights, *decoder.predictor.weights]
    for name in ("regressor", "residual_head"):
        if hasattr(decoder, name):
            out += getattr(decoder, name).weights
    if hasattr(decoder, "level_centroids"):
        out.append(decoder.level_centroids)
    return [*out, decoder.sampling_probability, decoder.sampling_step]


def _copy_weights(source, target):
    src, dst = _parts(source), _parts(target)
    assert [tuple(v.shape) for v in src] == [tuple(v.shape) for v in dst]
    for a, b in zip(src, dst):
        b.assign(np.asarray(a.numpy()))


def _inputs(batch=6, state=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice([0.0, 1.2, 3.9, 4.4, 8.7, 9.15], batch)
    return tf.constant(rng.normal(size=(batch, state)), tf.float32), labels


def _targets(labels, zero_threshold=None):
    encoder = ResidualCodeEncoder(centroids=CENTROIDS, zero_threshold=zero_threshold)
    codes = encoder(tf.constant(labels))
    label = tf.constant(labels, tf.float32)
    return {
        "label": label,
        "tokens": codes["tokens"],
        "level_values": codes["level_values"],
        "residual": label - tf.reduce_sum(codes["level_values"], axis=1),
    }


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.dtype.kind in "iu":
            np.testing.assert_array_equal(x, y, err_msg=key)
        else:
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL, err_msg=key)


SETTINGS = [
    {},
    {"cell": "gru"},
    {"cell": "rnn", "regressor_input": "stopped"},
    {"cell": "transformer", "transformer_layers": 2, "transformer_heads": 2},
    {"zero_token": True, "residual_regressor": True},
    {"use_regressor": False, "prediction": "mean", "exact_levels": 1},
    {"prediction": "median", "quantiles": (0.25, 0.75), "thresholds": (0.0, 2.0)},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(s) or "default")
def test_same_weights_same_outputs_and_loss(settings):
    k2, k3 = _pair(**settings)
    state_size = k2.state_size
    state, labels = _inputs(state=state_size)
    targets = _targets(labels, zero_threshold=0.05 if settings.get("zero_token") else None)
    k2({"state": state}), k3({"state": state})  # build
    _copy_weights(k2, k3)

    # Inference: the autoregressive pass and the code tree.
    _assert_same(k2({"state": state}), k3({"state": state}))

    # Training with scheduled sampling at p = 0.5: the same coins (stateless,
    # keyed on the seed and the call count, copied above).
    for decoder in (k2, k3):
        decoder.sampling_probability.assign(0.5)
    inputs = {"state": state, "tokens": targets["tokens"]}
    out2, out3 = k2(inputs, training=True), k3(inputs, training=True)
    _assert_same(out2, out3)
    assert int(k2.sampling_step.numpy()) == int(k3.sampling_step.numpy()) == 1

    loss = RQRegLoss(reduction="none")
    terms2 = loss(out2, targets, code_embeddings=k2.code_embeddings)
    terms3 = loss(out3, targets, code_embeddings=tf.convert_to_tensor(k3.code_embeddings))
    _assert_same(terms2, terms3)
    assert float(tf.reduce_mean(terms3["loss"])) > 0


def test_keras3_decoder_trains_every_weight():
    k3 = Keras3Decoder(SIZES, **SMALL, centroids=CENTROIDS, sampling_probability=0.5)
    state, labels = _inputs(state=k3.state_size)
    targets = _targets(labels)
    loss = RQRegLoss()
    with tf.GradientTape() as tape:
        out = k3({"state": state, "tokens": targets["tokens"]}, training=True)
        value = loss(out, targets, code_embeddings=tf.convert_to_tensor(k3.code_embeddings))
    grads = tape.gradient(value["loss"], [v.value for v in k3.trainable_variables])
    assert len(grads) == len(k3.trainable_variables) == 12
    for variable, grad in zip(k3.trainable_variables, grads):
        assert grad is not None and np.isfinite(np.asarray(grad)).all(), variable.path
        assert float(tf.reduce_max(tf.abs(grad))) > 0, variable.path


@pytest.mark.parametrize("cell", ["lstm", "transformer"])
def test_keras3_decoder_saves_and_loads_in_a_keras_file(cell, tmp_path):
    k3 = Keras3Decoder(SIZES, **SMALL, cell=cell, centroids=CENTROIDS, zero_token=True)
    state = keras.Input(shape=(k3.state_size,), name="state")
    outputs = k3({"state": state})
    model = keras.Model(state, {"mean": outputs["mean"], "quantiles": outputs["quantiles"]})
    rows, _ = _inputs(state=k3.state_size)
    before = model.predict(rows, verbose=0)
    path = tmp_path / "decoder.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    after = restored.predict(rows, verbose=0)
    _assert_same(before, after)
    layer = next(x for x in restored.layers if isinstance(x, Keras3Decoder))
    assert layer.get_config()["zero_token"] and layer.codebook_sizes == SIZES
    assert layer.get_config()["cell"] == cell


def test_keras3_decoder_names_a_bad_cell():
    with pytest.raises(ValueError, match="`cell` must be one of"):
        Keras3Decoder(SIZES, cell="lstm2")


@pytest.mark.parametrize("zero_threshold", [None, 0.05])
def test_keras3_code_encoder_gives_the_same_codes(zero_threshold):
    settings = {"centroids": CENTROIDS, "clip_min": 0.0, "clip_max": 9.5}
    k2 = ResidualCodeEncoder(**settings, zero_threshold=zero_threshold)
    k3 = keras3.ResidualCodeEncoder(**settings, zero_threshold=zero_threshold)
    labels = tf.constant(np.random.default_rng(5).uniform(-1.0, 11.0, 64))
    a, b = k2(labels), k3(labels)
    assert sorted(a) == sorted(b) == ["codes", "level_values", "tokens"]
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
    assert k3.get_config()["zero_threshold"] == zero_threshold
    with pytest.raises(ValueError, match="strictly increasing"):
        keras3.ResidualCodeEncoder([[2.0, 1.0]])


@pytest.mark.parametrize("crosses", [0, 2])
def test_keras3_encoder_matches_keras2_with_the_same_weights(crosses):
    k2 = MLPEncoder(16, hidden_units=12, num_cross_layers=crosses, seed=4)
    k3 = keras3.MLPEncoder(16, hidden_units=12, num_cross_layers=crosses, seed=4)
    x = tf.constant(np.random.default_rng(6).normal(size=(7, 10)), tf.float32)
    k2(x), k3(x)
    pairs = [(a._dense, b.dense) for a, b in zip(k2.crosses, k3.crosses)]
    pairs += [(k2.hidden, k3.hidden), (k2.output_layer, k3.output_layer)]
    for a, b in pairs:
        for u, v in zip(a.weights, b.weights):
            v.assign(u.numpy())
    np.testing.assert_allclose(k2(x).numpy(), np.asarray(k3(x)), rtol=RTOL, atol=ATOL)
    assert np.asarray(k3(x)).shape == (7, 16)


# ------------------------------------------------------------ the whole head


def _ltv_data(n=1024, seed=0):
    """Zero-inflated, long-tailed labels that the first feature drives."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    spend = np.exp(1.0 + x[:, 0] + 0.3 * rng.normal(size=n))
    y = np.where(rng.random(n) < 0.3 + 0.2 * (x[:, 1] > 0), 0.0, spend)
    return x, y


HEAD = {
    "units": 16,
    "code_embedding_dim": 16,
    "encoder_units": 16,
    "predictor_units": 16,
    "regressor_units": 8,
    "seed": 1,
}


@pytest.fixture(scope="module")
def quantizer():
    from rq_keras.quantizer.residual import ResidualQuantizer

    _, y = _ltv_data()
    return ResidualQuantizer(num_levels=3, codebook_size=[8, 4, 4], zero_threshold=1e-6).fit(y)


@pytest.mark.parametrize("settings", [{}, {"num_cross_layers": 1, "residual_regressor": True}])
def test_keras3_head_matches_the_keras2_task(quantizer, settings):
    from rq_keras.models.rq_reg import RQRegTask

    k2 = RQRegTask.from_quantizer(quantizer, **HEAD, **settings)
    k3 = keras3.RQRegHead.from_quantizer(quantizer, **HEAD, **settings)
    x, y = _ltv_data(n=32)
    k2.predict(tf.constant(x)), k3(tf.constant(x))  # build
    pairs = [(a._dense, b.dense) for a, b in zip(k2.encoder.crosses, k3.encoder.crosses)]
    pairs += [(k2.encoder.hidden, k3.encoder.hidden)]
    pairs += [(k2.encoder.output_layer, k3.encoder.output_layer)]
    for a, b in pairs:
        for u, v in zip(a.weights, b.weights):
            v.assign(u.numpy())
    _copy_weights(k2.decoder, k3.decoder)
    for head in (k2, k3):
        head.decoder.sampling_probability.assign(0.5)
    terms2, outputs2, targets2 = k2.loss_terms(tf.constant(y), tf.constant(x), training=True)
    terms3, outputs3, targets3 = k3.loss_terms(tf.constant(y), tf.constant(x), training=True)
    _assert_same(terms2, terms3)
    _assert_same(outputs2, outputs3)
    _assert_same(targets2, targets3)
    _assert_same(k2.predict(tf.constant(x)), k3(tf.constant(x)))


def _ranker(quantizer, **settings):
    keras.utils.set_random_seed(0)
    head = keras3.RQRegHead.from_quantizer(quantizer, **{**HEAD, **settings})
    dense = keras.layers.Dense(
        16, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=5)
    )
    model = keras3.RQRegRanker(keras.Sequential([dense]), head)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


def test_keras3_ranker_learns_the_codes_and_saves(quantizer, tmp_path):
    x, y = _ltv_data()
    model = _ranker(quantizer)
    history = model.fit(
        x[:768], y[:768], validation_data=(x[768:], y[768:]), epochs=6, batch_size=64, verbose=0
    )
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]
    # Level 1's code NLL on held-out rows against its training marginal's
    # (a head that ignores the features): the first step reads <start> only,
    # so this is the served classifier whatever the sampling schedule.
    first = quantizer.encode(y[:768])[:, 0]
    p = np.bincount(first - first.min()) / len(first)
    marginal = -float((p[p > 0] * np.log(p[p > 0])).sum())
    logits = model.predict(x[768:], verbose=0)["logits"][:, 0, :]
    tokens = np.asarray(model.head.label_encoder(tf.constant(y[768:]))["tokens"])[:, 0]
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    nll = -float(np.mean(log_p[np.arange(len(tokens)), tokens]))
    assert nll < marginal - 0.1, (nll, marginal)
    assert history.history["val_mae"][-1] < np.abs(y[768:] - y[:768].mean()).mean()
    before = model.predict(x[768:800], verbose=0)
    assert {"mean", "median", "quantiles", "positive_mean"} <= set(before)
    path = tmp_path / "ranker.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    _assert_same(before, restored.predict(x[768:800], verbose=0))


def test_keras3_ranker_under_mirrored_strategy_steps_like_one_device(quantizer, mirrored):
    x, y = _ltv_data(n=256)
    one = _ranker(quantizer, sampling_probability=1.0)
    one(x[:2])
    start = [v.numpy().copy() for v in one.weights]
    trainable_start = [v.numpy().copy() for v in one.trainable_weights]
    with mirrored.scope():
        two = _ranker(quantizer, sampling_probability=1.0)
        two(x[:2])
    for variable, value in zip(two.weights, start):
        variable.assign(value)
    for model in (one, two):
        model.fit(x, y, batch_size=256, epochs=1, shuffle=False, verbose=0)
    moved = max(
        float(np.abs(v.numpy() - w).max()) for v, w in zip(one.trainable_weights, trainable_start)
    )
    assert moved > 1e-4
    for a, b in zip(one.trainable_weights, two.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


def test_keras3_scheduled_sampling_follows_the_keras2_schedule(quantizer):
    from rq_keras.layers.decoding import sampling_probability
    from rq_keras.training.callbacks import ScheduledSampling as Keras2ScheduledSampling

    x, y = _ltv_data(n=128)
    model = _ranker(quantizer)
    callback = keras3.ScheduledSampling(k=0.5, t0=1.0)
    history = model.fit(x, y, epochs=3, batch_size=64, callbacks=[callback], verbose=0)
    want = [sampling_probability(epoch, 0.5, 1.0) for epoch in range(3)]
    np.testing.assert_allclose(callback.history, want, rtol=1e-6)
    np.testing.assert_allclose(history.history["sampling_probability"], want, rtol=1e-6)
    assert float(model.head.decoder.sampling_probability.numpy()) == pytest.approx(want[-1])
    assert Keras2ScheduledSampling(k=0.5, t0=1.0).k == callback.k
    with pytest.raises(ValueError, match="the model has no RQDecoder"):
        plain = keras.Sequential([keras.layers.Dense(1)])
        plain.compile(optimizer="sgd", loss="mse")
        plain.fit(x, y, epochs=1, callbacks=[keras3.ScheduledSampling()], verbose=0)


# ------------------------------------------------------------ baseline heads
BASELINE = {"encoder_units": 16, "num_cross_layers": 1, "seed": 2, "components": 3}


@pytest.mark.parametrize("head", ["mse", "log_mse", "huber", "ziln", "optdist"])
def test_keras3_baseline_head_matches_the_keras2_task(head):
    """Same weights, same served outputs and per-example loss as the Keras 2
    `BaselineTask` (both over `BaselineHeadMath` and `baseline_math`);
    OptDist compared without its training noise."""
    from rq_keras.models.baselines import BaselineTask

    settings = {"config": BASELINE, "clip_min": 0.0, "prediction_max": 40.0}
    k2, k3 = BaselineTask(head, **settings), keras3.BaselineHead(head, **settings)
    x, y = _ltv_data(n=32)
    x = tf.constant(x)
    k2.predict(x), k3(x)  # build
    assert len(k2.weights) == len(k3.weights)
    for a, b in zip(k2.weights, k3.weights):
        assert tuple(a.shape) == tuple(b.shape), (a.name, b.path)
        b.assign(a.numpy())
    _assert_same(k2.predict(x), k3(x))
    terms2, outputs2, targets2 = k2.loss_terms(tf.constant(y), x)
    terms3, outputs3, targets3 = k3.loss_terms(tf.constant(y), x)
    _assert_same(terms2, terms3)
    _assert_same(outputs2, outputs3)
    _assert_same(targets2, targets3)
    loss = k3.loss_fn
    again = type(loss).from_config(loss.get_config())
    assert again.get_config() == loss.get_config() and type(again).__module__ == keras3.__name__


@pytest.mark.parametrize("head", ["ziln", "optdist"])
def test_keras3_baseline_ranker_learns_and_saves(head, tmp_path):
    """A ZILN / OptDist head on a Keras 3 tower trains in `RQRegRanker`: the loss
    falls, E[y | y > 0] ranks the held-out positive rows by their label,
    P(y > 0) separates positive from zero rows better than chance, and a
    `.keras` file gives the same outputs."""
    x, y = _ltv_data(n=2048)
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(
        16, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=5)
    )
    head_layer = keras3.BaselineHead(head, config=BASELINE, clip_min=0.0, prediction_max=200.0)
    model = keras3.RQRegRanker(keras.Sequential([dense]), head_layer)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x[:1536], y[:1536], epochs=8, batch_size=128, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    out = model.predict(x[1536:], verbose=0)
    positive = y[1536:] > 0
    # E[y | y > 0] ranks the positive rows (continuous labels: no ties).
    ranks = [
        np.argsort(np.argsort(v)) for v in (out["positive_mean"][positive], y[1536:][positive])
    ]
    assert np.corrcoef(*ranks)[0, 1] > 0.7
    p = out["positive_probability"]
    # AUC of P(y > 0): the share of (positive, zero) pairs ordered right.
    auc = (p[positive][:, None] > p[~positive][None, :]).mean()
    assert auc > 0.55, auc
    path = tmp_path / f"{head}.keras"
    model.save(path)
    _assert_same(out, keras.saving.load_model(path).predict(x[1536:], verbose=0))
