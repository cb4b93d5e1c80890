"""The `log` transform of numeric features: sign(x) * log(1 + |x|)."""

from __future__ import annotations

# ruff: noqa: E402 (the Keras check comes before TensorFlow loads)
from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.layers")  # a Keras 2 module: before TensorFlow loads

import tf_keras as keras

from rq_keras.layers.feature_math import signed_log_tensor


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
        return signed_log_tensor(inputs)
