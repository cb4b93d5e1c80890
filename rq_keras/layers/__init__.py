"""Keras layers of rq_keras (Keras 2 API through `tf_keras`)."""

import rq_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from rq_keras.layers.code_encoder import ResidualCodeEncoder

__all__ = ["ResidualCodeEncoder"]
