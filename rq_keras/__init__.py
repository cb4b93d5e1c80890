"""rq_keras: RQ-Reg, residual-quantization sequence regression, for TF/Keras.

Importing the package selects the Keras 2 API (`tf_keras`) for TensorFlow by
setting `TF_USE_LEGACY_KERAS=1` before TensorFlow is first imported, so that
`tf.keras`, `tf_keras` and TensorFlow Recommenders all agree. The numpy parts
(the quantizer) import without TensorFlow; the Keras layers load on first use.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

from rq_keras.quantization import ResidualQuantizer  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ResidualQuantizer", "ResidualCodeEncoder", "__version__"]


def __getattr__(name):
    if name == "ResidualCodeEncoder":
        from rq_keras.layers.code_encoder import ResidualCodeEncoder

        return ResidualCodeEncoder
    raise AttributeError(f"module 'rq_keras' has no attribute {name!r}")
