"""The `log` transform of numeric features: sign(x) * log(1 + |x|)."""

from __future__ import annotations

# ruff: noqa: E402 (the Keras check comes before TensorFlow loads)
from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.layers")  # a Keras 2 module: before TensorFlow loads

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="rq_keras")
class SignedLog(keras.layers.Layer):
    """`sign(x) * log(1 + |x|)`, elementwise.

    Defined for every real input (negative refunds, zero counts), monotone,
    and the identity's slope near zero; long tails are compressed before
    normalization or bucketing.

    Call args:
        inputs: a float tensor of any shape.

    Returns:
        a tensor of the same shape, float32.
    """

    def call(self, inputs, training=None):
        x = tf.cast(inputs, tf.float32)
        return tf.sign(x) * tf.math.log1p(tf.abs(x))


def signed_log(x):
    """numpy version of `SignedLog` (the statistics pass uses it)."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x))
