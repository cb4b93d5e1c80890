"""The MLP encoder: feature vector -> the decoder's initial state (Eq. 7)."""

from __future__ import annotations

# ruff: noqa: E402 (the Keras check comes before TensorFlow loads)
from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.layers")  # a Keras 2 module: before TensorFlow loads

import tf_keras as keras

from rq_keras.config.seeds import sub_seed


@keras.utils.register_keras_serializable(package="rq_keras")
class MLPEncoder(keras.layers.Layer):
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

    def __init__(
        self,
        state_size: int,
        hidden_units: int = 512,
        num_cross_layers: int = 0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value, minimum in (
            ("state_size", state_size, 1),
            ("hidden_units", hidden_units, 1),
            ("num_cross_layers", num_cross_layers, 0),
        ):
            if int(value) < minimum:
                raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
        self.state_size = int(state_size)
        self.hidden_units = int(hidden_units)
        self.num_cross_layers = int(num_cross_layers)
        self.seed = seed

    def _init(self, k: int):
        return keras.initializers.GlorotUniform(seed=sub_seed(self.seed, index=k))

    def build(self, input_shape):
        import tensorflow_recommenders as tfrs

        self.crosses = [
            tfrs.layers.dcn.Cross(kernel_initializer=self._init(10 + i), name=f"cross_{i}")
            for i in range(self.num_cross_layers)
        ]
        self.hidden = keras.layers.Dense(
            self.hidden_units, activation="relu", kernel_initializer=self._init(0), name="hidden"
        )
        self.output_layer = keras.layers.Dense(
            self.state_size, kernel_initializer=self._init(1), name="state"
        )
        super().build(input_shape)

    def call(self, inputs, training=None):
        x0 = x = inputs
        for cross in self.crosses:
            x = cross(x0, x)
        return self.output_layer(self.hidden(x))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.state_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "state_size": self.state_size,
                "hidden_units": self.hidden_units,
                "num_cross_layers": self.num_cross_layers,
                "seed": self.seed,
            }
        )
        return config
