"""In-graph residual-quantization encoder: raw labels -> RQ codes."""

from __future__ import annotations

# ruff: noqa: E402 (the Keras check comes before TensorFlow loads)
from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.layers")  # a Keras 2 module: before TensorFlow loads


import tf_keras as keras

from rq_keras.layers.encoding import CodeEncoderMath

__all__ = ["ResidualCodeEncoder"]


@keras.utils.register_keras_serializable(package="rq_keras")
class ResidualCodeEncoder(CodeEncoderMath, keras.layers.Layer):
    """Encodes raw labels into RQ codes inside the graph (Eq. 2-4).

    Applies the decision rule of `rq_keras.quantizer.residual`: at each level the
    code is the number of decision boundaries strictly below the residual
    (nearest centroid, the lower one on an exact midpoint), computed in float64
    from the same boundaries, so the codes are bit-identical to
    `ResidualQuantizer.encode`. Build it with `ResidualCodeEncoder.from_quantizer(q)`.

    Args:
        centroids: per level the sorted centroids (a list of L lists; the
            levels may differ in size).
        clip_min: labels below are clipped to it first (the quantizer's).
        clip_max: labels above are clipped to it first (the quantizer's).
        check_finite: if True, a NaN or infinite label fails the step with an
            `InvalidArgumentError` naming this layer instead of yielding codes.
        zero_threshold: the quantizer's zero code threshold (None: no zero
            code): a residual with absolute value below it gets code -1,
            value 0 and the token `<zero>` at its level and every later one.

    Call args:
        labels: `(batch,)` or `(batch, 1)` numeric tensor of raw labels.

    Returns:
        dict with `codes` int32 `(batch, L)` (per-level code, -1 for the zero
        code), `tokens` int32 `(batch, L)` (global vocabulary ids, 0 is
        `<start>`, 1 is `<zero>` when there is a zero code) and `level_values`
        float32 `(batch, L)` (the quantized value q_l of each level).
    """

    _keras = keras

    def build(self, input_shape):
        self._build_tables()
        super().build(input_shape)
