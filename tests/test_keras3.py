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

from rq_keras.layers.code_encoder import ResidualCodeEncoder
from rq_keras.layers.decoder import RQDecoder as Keras2Decoder
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


def test_keras3_decoder_saves_and_loads_in_a_keras_file(tmp_path):
    k3 = Keras3Decoder(SIZES, **SMALL, centroids=CENTROIDS, zero_token=True)
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


def test_keras3_decoder_names_what_it_lacks():
    with pytest.raises(ValueError, match="'transformer' is in the Keras 2 decoder"):
        Keras3Decoder(SIZES, cell="transformer")
    with pytest.raises(ValueError, match="`cell` must be one of"):
        Keras3Decoder(SIZES, cell="lstm2")
