import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from rq_keras.layers.encoder import MLPEncoder


def test_shape_and_golden_values():
    enc = MLPEncoder(state_size=3, hidden_units=2)
    x = tf.constant([[1.0, -2.0]])
    enc(x)
    for w in enc.weights:
        w.assign(tf.fill(w.shape, 0.5))
    # hidden: relu(0.5 * (1 - 2) + 0.5) = 0 for both units -> state = bias
    np.testing.assert_allclose(enc(x).numpy(), [[0.5, 0.5, 0.5]])
    x = tf.constant([[1.0, 2.0]])  # hidden = relu(1.5 + 0.5) = 2 -> 0.5 * 4 + 0.5
    np.testing.assert_allclose(enc(x).numpy(), [[2.5, 2.5, 2.5]])
    assert enc.compute_output_shape((None, 2)) == (None, 3)


def test_cross_layers_are_tfrs_dcn():
    import tensorflow_recommenders as tfrs

    enc = MLPEncoder(state_size=4, num_cross_layers=2, hidden_units=8, seed=0)
    out = enc(tf.random.stateless_normal((6, 5), seed=(1, 2)))
    assert out.shape == (6, 4)
    assert [type(c) for c in enc.crosses] == [tfrs.layers.dcn.Cross] * 2
    assert len(enc.trainable_weights) == 2 * 2 + 4


def test_seeded_and_config_round_trip(tmp_path):
    x = tf.random.stateless_normal((3, 5), seed=(0, 1))
    a, b = MLPEncoder(4, seed=7), MLPEncoder(4, seed=7)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    again = MLPEncoder.from_config(a.get_config())
    assert again.get_config() == a.get_config()
    inp = keras.Input((5,))
    model = keras.Model(inp, MLPEncoder(4, num_cross_layers=1, seed=1)(inp))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="`state_size` must be >= 1, got 0"):
        MLPEncoder(0)
    with pytest.raises(ValueError, match="`num_cross_layers` must be >= 0"):
        MLPEncoder(2, num_cross_layers=-1)
