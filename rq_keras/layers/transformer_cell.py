"""A causal Transformer decoder that `RQDecoder` steps like a recurrent cell.

`RQDecoder(cell="transformer")` (Table 4's Transformer backbone) runs the
same loop as for LSTM/GRU/RNN: at step l the cell gets the step's input
(`<start>`'s embedding, then the previous code's embedding or expected
embedding, as scheduled sampling picks it) and returns the hidden state that
`f_pred` reads. Its "state" is the sequence so far: `[c, x_0, ..., x_{l-1}]`,
where `c` is the encoder output. Step l runs the Transformer over
`[c, x_0, ..., x_l]` with a causal mask and returns the last position's
output; with L <= 3 levels recomputing the short prefix costs less than a
key/value cache would save, and the step-by-step outputs equal one causal
pass over the whole sequence (tested).

The encoder output conditions the decoder as a prefix token (position 0),
not through cross-attention: it is a single vector, so cross-attention to it
would reduce to adding one projection of it to every position, while as a
token every layer's self-attention decides per position how much of it to
read, through the one attention path the code tokens use. It is the
Transformer's counterpart of the recurrent cells' initial state.

Pre-layer-norm blocks: `x + MHA(LN(x))`, then `x + FFN(LN(x))` (ReLU, 4x
width), a final LayerNorm, learned position embeddings. Attention is written
with Dense projections, matmul and softmax (no CPU-only op), so the step runs
on GPU as the recurrent cells do.
"""

from __future__ import annotations

# ruff: noqa: E402 (the Keras check comes before TensorFlow loads)
from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.layers")  # a Keras 2 module: before TensorFlow loads

import tf_keras as keras

from rq_keras.layers.transformer_math import CausalTransformerCellMath, TransformerBlockMath

__all__ = ["CausalTransformerCell"]


class _Block(TransformerBlockMath, keras.layers.Layer):
    """One pre-LN block (`TransformerBlockMath`), Keras 2."""

    _keras = keras


@keras.utils.register_keras_serializable(package="rq_keras")
class CausalTransformerCell(CausalTransformerCellMath, keras.layers.Layer):
    """Causal Transformer over `[prefix, x_0, ..., x_l]`, stepped per level: the
    Keras 2 skin over `rq_keras.layers.transformer_math.CausalTransformerCellMath`
    (read its documentation for the arguments)."""

    _keras = keras
    _block = _Block
