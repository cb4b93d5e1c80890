"""The label encoder's and the feature encoder's math, written once for their
Keras 2 and Keras 3 layers.

`CodeEncoderMath` (raw labels -> RQ codes, the quantizer's decision rule in
float64) and `MLPEncoderMath` (f_enc, with optional DCN-v2 crosses) hold
everything of `ResidualCodeEncoder` and `MLPEncoder` but the Keras objects;
`rq_keras.layers.code_encoder`, `rq_keras.layers.encoder` (Keras 2) and
`rq_keras.layers.keras3` (Keras 3) are thin skins over them, as
`rq_keras.layers.decoding` is for the decoder. No Keras import here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from rq_keras.config.seeds import sub_seed
from rq_keras.layers.layer_math import LayerMath
from rq_keras.quantizer.tokens import (
    ZERO_CODE,
    ZERO_TOKEN,
    decision_boundaries,
    special_tokens,
    token_offsets_for,
)

__all__ = ["CodeEncoderMath", "MLPEncoderMath"]


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


class CodeEncoderMath(LayerMath):
    """`ResidualCodeEncoder` without its Keras (see its documentation).

    A skin sets `_keras` and calls `_build_tables()` in `build`; labels are
    compared in float64 whatever the global policy (under mixed precision the
    boundaries must not be cast to (b)float16), so the Keras `Layer` gets
    `autocast=False, dtype="float64"` unless told otherwise.
    """

    _layer_defaults = {"autocast": False, "dtype": "float64"}

    def _configure(
        self,
        centroids: Sequence[Sequence[float]],
        clip_min: float | None = None,
        clip_max: float | None = None,
        check_finite: bool = True,
        zero_threshold: float | None = None,
    ) -> None:
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
    def from_quantizer(cls, quantizer, **kwargs) -> CodeEncoderMath:
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

    def _build_tables(self) -> None:
        keras = self._keras
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
            dtype="float64",
            initializer=keras.initializers.Constant(padded_c),
            trainable=False,
        )
        self.level_boundaries = self.add_weight(
            name="boundaries",
            shape=(self.num_levels, max(width - 1, 1)),
            dtype="float64",
            initializer=keras.initializers.Constant(padded_b),
            trainable=False,
        )

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

    def _settings(self) -> dict[str, Any]:
        return {
            "centroids": [list(c) for c in self.centroids],
            "clip_min": self.clip_min,
            "clip_max": self.clip_max,
            "check_finite": self.check_finite,
            "zero_threshold": self.zero_threshold,
        }


class MLPEncoderMath(LayerMath):
    """`MLPEncoder` without its Keras (see its documentation).

    A skin sets `_keras`, calls `_build_parts()` in `build`, and gives
    `_make_cross(i)`: DCN-v2 cross layer i (full rank, `x0 * (W x + b) +
    x`), called as `cross(x0, x)`.
    """

    def _configure(
        self,
        state_size: int,
        hidden_units: int = 512,
        num_cross_layers: int = 0,
        seed: int | None = None,
    ) -> None:
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
        return self._keras.initializers.GlorotUniform(seed=sub_seed(self.seed, index=k))

    def _build_parts(self) -> None:
        keras = self._keras
        self.crosses = [self._make_cross(i) for i in range(self.num_cross_layers)]
        self.hidden = keras.layers.Dense(
            self.hidden_units, activation="relu", kernel_initializer=self._init(0), name="hidden"
        )
        self.output_layer = keras.layers.Dense(
            self.state_size, kernel_initializer=self._init(1), name="state"
        )

    def call(self, inputs, training=None):
        x0 = x = inputs
        for cross in self.crosses:
            x = cross(x0, x)
        return self.output_layer(self.hidden(x))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.state_size)

    def _settings(self) -> dict[str, Any]:
        return {
            "state_size": self.state_size,
            "hidden_units": self.hidden_units,
            "num_cross_layers": self.num_cross_layers,
            "seed": self.seed,
        }
