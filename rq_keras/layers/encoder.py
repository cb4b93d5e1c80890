"""The MLP encoder: feature vector -> the decoder's initial state (Eq. 7)."""

from __future__ import annotations

# ruff: noqa: E402 (the Keras check comes before TensorFlow loads)
from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.layers")  # a Keras 2 module: before TensorFlow loads

import tf_keras as keras

from rq_keras.layers.encoding import MLPEncoderMath

__all__ = ["MLPEncoder"]


@keras.utils.register_keras_serializable(package="rq_keras")
class MLPEncoder(MLPEncoderMath, keras.layers.Layer):
    """Two-layer MLP `f_enc` giving `[h0; c0]`, optionally after DCN-v2 crosses.

    Args:
        state_size: output width: the decoder's `state_size` (`2 * units`
            for an LSTM decoder: `[h0; c0]`; `units` for GRU/SimpleRNN).
        hidden_units: width of the hidden ReLU layer.
        num_cross_layers: DCN-v2 cross layers (`tfrs.layers.dcn.Cross`) applied
            to the feature vector first; 0 for the paper's plain MLP.
        seed: seeds the initializers (each layer its own seed; None: random).

    Call args:
        inputs: the concatenated feature vector `(batch, features)`.

    Returns:
        `(batch, state_size)`.
    """

    _keras = keras

    def _make_cross(self, i: int):
        import tensorflow_recommenders as tfrs

        return tfrs.layers.dcn.Cross(kernel_initializer=self._init(10 + i), name=f"cross_{i}")

    def build(self, input_shape):
        self._build_parts()
        super().build(input_shape)
