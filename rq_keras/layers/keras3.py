"""The RQ-Reg head's layers for Keras 3 models (keras-rs, plain Keras 3).

Keras 3 twins of `rq_keras.layers`' Keras 2 layers, each a thin skin over the
math the Keras 2 layer uses (`rq_keras.layers.decoding` for the decoder), so
the same weights give the same outputs in both (`tests/test_keras3.py`, 1e-5).
They run on Keras 3's TensorFlow backend (the math is TensorFlow ops), save
and load in `.keras` files, and import in a process whose `tf.keras` is
Keras 3 (TensorFlow's default since 2.16); this module never imports
`tf_keras`.

* `RQDecoder`: the RQ decoder with scheduled sampling and the code tree, the
  `lstm`, `gru` and `rnn` cells (the `transformer` cell is Keras 2 only).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from rq_keras.layers.decoding import DecoderMath, split_settings

__all__ = ["RQDecoder"]


def _require_tensorflow_backend(layer: str) -> None:
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"rq_keras.layers.keras3.{layer} runs on Keras 3's TensorFlow backend, but this "
            f"process uses {backend!r}: set KERAS_BACKEND=tensorflow before Keras loads"
        )


@keras.saving.register_keras_serializable(package="rq_keras")
class RQDecoder(DecoderMath, keras.layers.Layer):
    """The Keras 3 RQ decoder: the arguments, inputs, outputs and math of
    `rq_keras.layers.decoder.RQDecoder` (read its documentation), as a Keras 3
    layer.

    Differences: `cell="transformer"` is not available (ValueError); the
    `sampling_probability` and `sampling_step` variables are Keras 3
    variables (set p with `layer.sampling_probability.assign(p)`).
    """

    _keras = keras
    _first_replica = {"aggregation": "only_first_replica"}

    def __init__(self, codebook_sizes: Sequence[int], **kwargs):
        _require_tensorflow_backend("RQDecoder")
        settings, layer_kwargs = split_settings(kwargs)
        if settings.get("cell") == "transformer":
            raise ValueError(
                "the Keras 3 RQDecoder has the 'lstm', 'gru' and 'rnn' cells; 'transformer' "
                "is in the Keras 2 decoder (rq_keras.layers.RQDecoder) only"
            )
        super().__init__(**layer_kwargs)
        self._configure(codebook_sizes, **settings)
        self._make_state_weights()

    def build(self, input_shape=None):
        self._build_parts()
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(self._settings())
        return config
