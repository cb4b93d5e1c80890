"""The causal Transformer cell of `RQDecoder(cell="transformer")`, for both Keras.

`CausalTransformerCellMath` and `TransformerBlockMath` hold the cell's math
(read `rq_keras.layers.transformer_cell` for what it computes and why); the
Keras 2 `CausalTransformerCell` (`rq_keras.layers.transformer_cell`) and its
Keras 3 twin (`rq_keras.layers.keras3`) are skins that give their Keras
module. No Keras import here.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from rq_keras.config.seeds import sub_seed

__all__ = ["CausalTransformerCellMath", "TransformerBlockMath"]


class TransformerBlockMath:
    """One pre-LN block: `x + MHA(LN(x))` with a causal mask, then
    `x + FFN(LN(x))`. Made by `CausalTransformerCell.build` (its config
    rebuilds it), so it needs no config of its own. A skin gives `_keras`."""

    _keras: Any = None

    def __init__(self, units: int, num_heads: int, seed: int | None, **kwargs):
        super().__init__(**kwargs)
        keras = self._keras
        self.units, self.num_heads = units, num_heads

        def dense(width, offset, name, activation=None):
            init = keras.initializers.GlorotUniform(seed=sub_seed(seed, index=offset))
            return keras.layers.Dense(
                width, activation=activation, kernel_initializer=init, name=name
            )

        self.norm_attention = keras.layers.LayerNormalization(name="norm_attention")
        self.query = dense(units, 0, "query")
        self.key = dense(units, 1, "key")
        self.value = dense(units, 2, "value")
        self.attention_output = dense(units, 3, "attention_output")
        self.norm_ffn = keras.layers.LayerNormalization(name="norm_ffn")
        self.ffn_in = dense(4 * units, 4, "ffn_in", "relu")
        self.ffn_out = dense(units, 5, "ffn_out")

    def build(self, input_shape):
        shape = (None, None, self.units)
        for layer in (
            self.norm_attention,
            self.query,
            self.key,
            self.value,
            self.attention_output,
            self.norm_ffn,
            self.ffn_in,
        ):
            layer.build(shape)
        self.ffn_out.build((None, None, 4 * self.units))
        super().build(input_shape)

    def _attention(self, x):
        """Causal multi-head self-attention of `x` `(batch, T, units)`."""
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        depth = self.units // self.num_heads

        def heads(t):
            t = tf.reshape(t, [batch, length, self.num_heads, depth])
            return tf.transpose(t, [0, 2, 1, 3])  # (batch, heads, T, depth)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = tf.matmul(q, k, transpose_b=True) / tf.cast(depth, x.dtype) ** 0.5
        # Position i sees positions <= i only.
        visible = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
        scores = tf.where(visible, tf.cast(scores, tf.float32), tf.float32.min)
        weights = tf.cast(tf.nn.softmax(scores, axis=-1), x.dtype)
        out = tf.transpose(tf.matmul(weights, v), [0, 2, 1, 3])
        return self.attention_output(tf.reshape(out, [batch, length, self.units]))

    def call(self, x):
        x = x + self._attention(self.norm_attention(x))
        return x + self.ffn_out(self.ffn_in(self.norm_ffn(x)))


class CausalTransformerCellMath:
    """Causal Transformer over `[prefix, x_0, ..., x_l]`, stepped per level.

    Args:
        units: the model width (the prefix's width and the output's).
        num_layers: Transformer blocks, >= 1.
        num_heads: attention heads, >= 1, dividing `units`.
        max_positions: the longest sequence (prefix + inputs), >= 2.
        seed: seeds the initializers (None: random).

    Call args:
        inputs: the step's input `(batch, input_dim)`.
        states: `[prefix (batch, units), x_0, ..., x_{l-1}]` (the earlier
            steps' inputs).

    Returns:
        `(h, states + [inputs])`: `h` `(batch, units)` is the output at the
        input's position.

    A skin gives `_keras` and `_block` (its `TransformerBlockMath` layer).
    """

    _keras: Any = None
    _block: Any = None

    def __init__(
        self,
        units: int,
        num_layers: int = 2,
        num_heads: int = 4,
        max_positions: int = 4,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        units, num_layers, num_heads = int(units), int(num_layers), int(num_heads)
        if units < 1 or num_layers < 1 or num_heads < 1:
            raise ValueError(
                f"`units`, `num_layers` and `num_heads` must be >= 1, got {units}, "
                f"{num_layers}, {num_heads}"
            )
        if units % num_heads:
            raise ValueError(f"`num_heads` ({num_heads}) must divide `units` ({units})")
        if int(max_positions) < 2:
            raise ValueError(f"`max_positions` must be >= 2, got {max_positions}")
        self.units = units
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.max_positions = int(max_positions)
        self.seed = seed

    def _init(self, offset: int):
        return self._keras.initializers.GlorotUniform(seed=sub_seed(self.seed, index=offset))

    def build(self, input_shape):
        keras = self._keras
        units = self.units
        self.input_projection = keras.layers.Dense(
            units, kernel_initializer=self._init(0), name="input_projection"
        )
        self.input_projection.build(input_shape)
        self.positions = self.add_weight(
            name="positions",
            shape=(self.max_positions, units),
            initializer=keras.initializers.RandomNormal(
                stddev=0.02, seed=sub_seed(self.seed, "positions")
            ),
        )
        self.blocks = [
            self._block(
                units,
                self.num_heads,
                sub_seed(self.seed, "transformer_block", 10 * i),
                name=f"block{i}",
            )
            for i in range(self.num_layers)
        ]
        for block in self.blocks:
            block.build((None, None, units))
        self.final_norm = keras.layers.LayerNormalization(name="final_norm")
        self.final_norm.build((None, None, units))
        super().build(input_shape)

    def sequence(self, prefix, inputs):
        """The outputs at every position of `[prefix, *inputs]`, one causal
        pass: `(batch, 1 + len(inputs), units)`."""
        tokens = [tf.cast(prefix, self.compute_dtype)]
        tokens += [self.input_projection(tf.cast(x, self.compute_dtype)) for x in inputs]
        x = tf.stack(tokens, axis=1)
        length = len(tokens)
        if length > self.max_positions:
            raise ValueError(f"{self.name}: {length} positions, at most {self.max_positions}")
        x += tf.cast(self.positions[:length], x.dtype)[tf.newaxis]
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)

    def call(self, inputs, states, training=None):
        states = list(states)
        if states[0].shape[-1] is not None and states[0].shape[-1] != self.units:
            raise ValueError(
                f"{self.name}: the prefix must have {self.units} columns, got {states[0].shape[-1]}"
            )
        out = self.sequence(states[0], [*states[1:], inputs])
        return out[:, -1], [*states, inputs]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "max_positions": self.max_positions,
                "seed": self.seed,
            }
        )
        return config
