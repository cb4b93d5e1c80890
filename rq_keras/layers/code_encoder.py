"""In-graph residual-quantization encoder: raw labels -> RQ codes."""

from __future__ import annotations

# ruff: noqa: E402 (the Keras check comes before TensorFlow loads)
from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.layers")  # a Keras 2 module: before TensorFlow loads

import math
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras as keras

from rq_keras.quantizer.tokens import (
    ZERO_CODE,
    ZERO_TOKEN,
    decision_boundaries,
    special_tokens,
    token_offsets_for,
)


def _validated_centroids(centroids: Any) -> list[list[float]]:
    if not isinstance(centroids, (list, tuple)) or not centroids:
        raise ValueError(f"`centroids` must be a non-empty list of levels, got {centroids!r}")
    out = []
    for level, values in enumerate(centroids):
        values = [float(v) for v in values]
        if not values:
            raise ValueError(f"`centroids` level {level} is empty")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"`centroids` level {level} has a non-finite value")
        if any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"`centroids` level {level} must be strictly increasing")
        out.append(values)
    return out


@keras.utils.register_keras_serializable(package="rq_keras")
class ResidualCodeEncoder(keras.layers.Layer):
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

    def __init__(
        self,
        centroids: Sequence[Sequence[float]],
        clip_min: float | None = None,
        clip_max: float | None = None,
        check_finite: bool = True,
        zero_threshold: float | None = None,
        **kwargs,
    ):
        # Labels are compared in float64 whatever the global policy: under
        # mixed precision the boundaries must not be cast to (b)float16.
        kwargs.setdefault("autocast", False)
        kwargs.setdefault("dtype", "float64")
        super().__init__(**kwargs)
        self.centroids = _validated_centroids(centroids)
        if clip_min is not None and clip_max is not None and clip_min > clip_max:
            raise ValueError(f"`clip_min` ({clip_min}) must be <= `clip_max` ({clip_max})")
        self.clip_min = None if clip_min is None else float(clip_min)
        self.clip_max = None if clip_max is None else float(clip_max)
        self.check_finite = bool(check_finite)
        if zero_threshold is not None and not (
            math.isfinite(float(zero_threshold)) and float(zero_threshold) > 0
        ):
            raise ValueError(
                f"`zero_threshold` must be a finite number > 0 or None, got {zero_threshold!r}"
            )
        self.zero_threshold = None if zero_threshold is None else float(zero_threshold)
        self.zero_token = self.zero_threshold is not None
        self.num_levels = len(self.centroids)
        self.codebook_sizes = [len(c) for c in self.centroids]
        self.vocabulary_size = special_tokens(self.zero_token) + sum(self.codebook_sizes)
        self.token_offsets = token_offsets_for(self.codebook_sizes, self.zero_token).tolist()

    @classmethod
    def from_quantizer(cls, quantizer, **kwargs) -> ResidualCodeEncoder:
        """The in-graph encoder of a fitted `ResidualQuantizer` (its
        centroids, clipping and zero code); `kwargs` go to the constructor
        (`name=...`, `check_finite=...`).

        Raises:
            RuntimeError: the quantizer is not fitted.
        """
        return cls(
            centroids=[c.tolist() for c in quantizer.require_fitted()],
            clip_min=quantizer.clip_min,
            clip_max=quantizer.clip_max,
            zero_threshold=quantizer.zero_threshold,
            **kwargs,
        )

    def build(self, input_shape):
        width = max(self.codebook_sizes)
        padded_c = [c + [0.0] * (width - len(c)) for c in self.centroids]
        # Boundaries padded with +inf (never below a finite residual); at least
        # one column so a level with one centroid still has a search table.
        padded_b = []
        for c in self.centroids:
            b = decision_boundaries(c).tolist()
            padded_b.append(b + [math.inf] * (max(width - 1, 1) - len(b)))
        self.level_centroids = self.add_weight(
            name="centroids",
            shape=(self.num_levels, width),
            dtype=tf.float64,
            initializer=keras.initializers.Constant(padded_c),
            trainable=False,
        )
        self.level_boundaries = self.add_weight(
            name="boundaries",
            shape=(self.num_levels, max(width - 1, 1)),
            dtype=tf.float64,
            initializer=keras.initializers.Constant(padded_b),
            trainable=False,
        )
        super().build(input_shape)

    def call(self, labels, training=None):
        r = tf.cast(tf.reshape(labels, [-1]), tf.float64)
        if self.check_finite:
            r = tf.debugging.assert_all_finite(
                r, f"{self.name}: labels must be finite (found NaN or Inf)"
            )
        if self.clip_min is not None:
            r = tf.maximum(r, tf.constant(self.clip_min, tf.float64))
        if self.clip_max is not None:
            r = tf.minimum(r, tf.constant(self.clip_max, tf.float64))
        codes, values = [], []
        for level in range(self.num_levels):
            code = tf.searchsorted(
                self.level_boundaries[level][tf.newaxis, :],
                r[tf.newaxis, :],
                side="left",
                out_type=tf.int32,
            )[0]
            value = tf.gather(self.level_centroids[level], code)
            if self.zero_token:
                zero = tf.abs(r) < tf.constant(self.zero_threshold, tf.float64)
                code = tf.where(zero, tf.constant(ZERO_CODE, tf.int32), code)
                value = tf.where(zero, tf.zeros_like(value), value)
            r = r - value
            codes.append(code)
            values.append(value)
        codes = tf.stack(codes, axis=1)
        tokens = codes + tf.constant([self.token_offsets], dtype=tf.int32)
        if self.zero_token:
            tokens = tf.where(codes == ZERO_CODE, tf.constant(ZERO_TOKEN, tf.int32), tokens)
        return {
            "codes": codes,
            "tokens": tokens,
            "level_values": tf.cast(tf.stack(values, axis=1), tf.float32),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "centroids": [list(c) for c in self.centroids],
                "clip_min": self.clip_min,
                "clip_max": self.clip_max,
                "check_finite": self.check_finite,
                "zero_threshold": self.zero_threshold,
            }
        )
        return config
