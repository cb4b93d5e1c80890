"""The math of the feature layers, written once for both Keras.

`ListPooling` and `SignedLog` (Keras 2, `rq_keras.layers`) and their Keras 3
twins (`rq_keras.layers.keras3`) call these functions, so a feature tower
built from a spec computes the same vector in either Keras
(`FeaturePreprocessor.build_model` / `build_keras3_model`). TensorFlow ops
(imported by the functions that use them) and numpy; no Keras, so the
statistics pass (`signed_log`) runs in a process of either Keras.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "POOLING_MODES",
    "check_pooling_mode",
    "pool_list",
    "signed_log",
    "signed_log_tensor",
]

POOLING_MODES = ("mean", "sum")


def check_pooling_mode(mode: str) -> str:
    if mode not in POOLING_MODES:
        raise ValueError(f"`mode` must be one of {POOLING_MODES}, got {mode!r}")
    return mode


def pool_list(embeddings, ids, mode: str):
    """Mean or sum over a list's embeddings `(batch, length, dim)`, ignoring
    id 0 (the pad); a row without ids pools to zeros."""
    import tensorflow as tf

    mask = tf.cast(tf.not_equal(ids, 0), embeddings.dtype)[..., tf.newaxis]
    total = tf.reduce_sum(embeddings * mask, axis=1)
    if mode == "sum":
        return total
    return tf.math.divide_no_nan(total, tf.reduce_sum(mask, axis=1))


def signed_log_tensor(inputs):
    """`sign(x) * log(1 + |x|)`, float32."""
    import tensorflow as tf

    x = tf.cast(inputs, tf.float32)
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def signed_log(x):
    """numpy `signed_log_tensor`, in float64 (the statistics pass uses it)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x))
