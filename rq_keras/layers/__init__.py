"""Keras layers of rq_keras (Keras 2 API through `tf_keras`)."""

import rq_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from rq_keras.layers.code_encoder import ResidualCodeEncoder
from rq_keras.layers.decoder import RQDecoder
from rq_keras.layers.encoder import MLPEncoder
from rq_keras.layers.list_pooling import ListPooling
from rq_keras.layers.signed_log import SignedLog
from rq_keras.layers.transformer_cell import CausalTransformerCell

__all__ = [
    "CausalTransformerCell",
    "ListPooling",
    "MLPEncoder",
    "RQDecoder",
    "ResidualCodeEncoder",
    "SignedLog",
]
