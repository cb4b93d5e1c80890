import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from rq_keras.layers.decoder import RQDecoder
from rq_keras.layers.decoding import sampling_probability
from rq_keras.training.callbacks import ScheduledSampling


def test_inverse_sigmoid_decay_eq17():
    assert sampling_probability(10) == 0.5
    assert sampling_probability(0) == pytest.approx(1 / (1 + math.exp(-1)))
    assert sampling_probability(50) == pytest.approx(1 / (1 + math.exp(4)))
    assert sampling_probability(0, k=1.0, t0=2) == pytest.approx(1 / (1 + math.exp(-2)))


def test_callback_sets_the_decoder_variable_each_epoch():
    state = keras.Input((4,))
    dec = RQDecoder([2, 2], units=2, embedding_dim=2, predictor_units=2, regressor_units=2)
    model = keras.Model(state, dec({"state": state})["prediction"])
    model.compile(optimizer="sgd", loss="mse")
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(float(dec.sampling_probability.numpy()))

    x, y = np.ones((8, 4), np.float32), np.ones(8, np.float32)
    cb = ScheduledSampling(k=1.0, t0=1.0)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[cb, Spy()])
    expected = [sampling_probability(e, 1.0, 1.0) for e in range(3)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    np.testing.assert_allclose(history.history["sampling_probability"], expected)
    assert cb.get_config() == {"k": 1.0, "t0": 1.0, "per_batch": False}
    with pytest.raises(ValueError, match="`k` must be > 0"):
        ScheduledSampling(k=0)


def test_callback_needs_a_decoder():
    inp = keras.Input((2,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="has no RQDecoder"):
        model.fit(tf.ones((2, 2)), tf.ones((2,)), verbose=0, callbacks=[ScheduledSampling()])


def test_per_batch_follows_the_fractional_epoch():
    state = keras.Input((4,))
    dec = RQDecoder([2], units=2, embedding_dim=2, predictor_units=2, regressor_units=2)
    model = keras.Model(state, dec({"state": state})["prediction"])
    model.compile(optimizer="sgd", loss="mse")
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(dec.sampling_probability.numpy()))

    cb = ScheduledSampling(k=1.0, t0=1.0, per_batch=True)
    x, y = np.ones((8, 4), np.float32), np.ones(8, np.float32)
    model.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[cb, Spy()])
    expected = [sampling_probability(e + b / 4, 1.0, 1.0) for e in range(2) for b in range(4)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
