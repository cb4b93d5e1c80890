"""Pools the embeddings of a list feature over the ids a row has."""

from __future__ import annotations

# ruff: noqa: E402 (the Keras check comes before TensorFlow loads)
from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.layers")  # a Keras 2 module: before TensorFlow loads

import tensorflow as tf
import tf_keras as keras

from rq_keras.layers.feature_math import check_pooling_mode, pool_list

__all__ = ["ListPooling"]


@keras.utils.register_keras_serializable(package="rq_keras")
class ListPooling(keras.layers.Layer):
    """Mean or sum of list-id embeddings, ignoring padding.

    Index 0 is padding (the lookup and hashing layers of
    `rq_keras.features.preprocessing` map the pad value there). A row with no ids pools
    to zeros.

    Args:
        mode: `"mean"` or `"sum"`.

    Call args:
        inputs: `[embeddings, ids]`: float `(batch, length, dim)` and the
            integer ids `(batch, length)` they were looked up from.

    Returns:
        `(batch, dim)`.
    """

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_pooling_mode(mode)

    def call(self, inputs, training=None):
        embeddings, ids = inputs
        return pool_list(embeddings, ids, self.mode)

    def compute_output_shape(self, input_shape):
        emb_shape = tf.TensorShape(input_shape[0])
        return tf.TensorShape([emb_shape[0], emb_shape[-1]])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
