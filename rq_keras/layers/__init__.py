"""Keras layers of rq_keras (Keras 2 API through `tf_keras`)."""

from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.layers")  # before TensorFlow loads

from rq_keras.layers.code_encoder import ResidualCodeEncoder  # noqa: E402
from rq_keras.layers.decoder import RQDecoder  # noqa: E402
from rq_keras.layers.encoder import MLPEncoder  # noqa: E402
from rq_keras.layers.list_pooling import ListPooling  # noqa: E402
from rq_keras.layers.signed_log import SignedLog  # noqa: E402
from rq_keras.layers.transformer_cell import CausalTransformerCell  # noqa: E402

__all__ = [
    "CausalTransformerCell",
    "ListPooling",
    "MLPEncoder",
    "RQDecoder",
    "ResidualCodeEncoder",
    "SignedLog",
]
