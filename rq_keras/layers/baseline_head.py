"""A baseline head assembled from a `ModelConfig`, for both Keras.

`BaselineHeadMath` is what `rq_keras.models.baselines.BaselineTask` (Keras
2, a TFRS task) and `rq_keras.layers.keras3.BaselineHead` (Keras 3) do: f_enc
(`MLPEncoder`), a ReLU and the output layer (one Dense layer, or OptDist's
towers, `OptDistTowersMath`), and the head's loss
(`rq_keras.losses.baseline_math`) with its served outputs. A skin gives its
Keras module (`_keras`) and `_parts()`: its `MLPEncoder`, `OptDistTowers` and
loss classes. No Keras import here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from rq_keras.config.configs import ModelConfig, config_dict, model_config
from rq_keras.config.seeds import sub_seed
from rq_keras.losses.baseline_math import make_baseline_loss
from rq_keras.losses.terms import clip_labels

__all__ = ["BaselineHeadMath", "OptDistTowersMath"]


class OptDistTowersMath:
    """OptDist's towers on the encoder's output: `components` sub-distribution
    networks (each a ReLU layer of `hidden_units` and 3 ZILN outputs) and a
    selection network (a ReLU layer and `components` logits), returned in
    `OptDistLoss`'s layout: float32 `(batch, 4 * components)` (every SDN's
    `p` logit, then the `mu`s, the `sigma_raw`s and the selection logits).

    Args:
        components: the number of SDNs (>= 2).
        hidden_units: each tower's hidden width.
        seed: seeds the initializers (None: unseeded).
    """

    _keras: Any = None

    def __init__(self, components: int, hidden_units: int, seed: int | None = None, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        keras = self._keras
        self.components = int(components)
        self.hidden_units = int(hidden_units)
        self.seed = seed

        def dense(units, name, part, index, activation=None):
            return keras.layers.Dense(
                units,
                activation=activation,
                kernel_initializer=keras.initializers.GlorotUniform(
                    seed=sub_seed(seed, part, index)
                ),
                dtype="float32",
                name=name,
            )

        self.sdn_hidden = [
            dense(self.hidden_units, f"sdn_{i}_hidden", "sdn", 2 * i, "relu")
            for i in range(self.components)
        ]
        self.sdn_out = [dense(3, f"sdn_{i}_ziln", "sdn", 2 * i + 1) for i in range(self.components)]
        self.dsm_hidden = dense(self.hidden_units, "dsm_hidden", "selection", 0, "relu")
        self.dsm_out = dense(self.components, "dsm_logits", "selection", 1)

    def build(self, input_shape):
        for hidden, out in zip(self.sdn_hidden, self.sdn_out):
            hidden.build(input_shape)
            out.build((None, self.hidden_units))
        self.dsm_hidden.build(input_shape)
        self.dsm_out.build((None, self.hidden_units))
        super().build(input_shape)

    def call(self, inputs):
        inputs = tf.cast(inputs, tf.float32)
        # (batch, components, 3): one ZILN per SDN.
        ziln = tf.stack(
            [out(hidden(inputs)) for hidden, out in zip(self.sdn_hidden, self.sdn_out)], axis=1
        )
        selection = self.dsm_out(self.dsm_hidden(inputs))
        return tf.concat([ziln[:, :, 0], ziln[:, :, 1], ziln[:, :, 2], selection], axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "components": self.components,
            "hidden_units": self.hidden_units,
            "seed": self.seed,
        }


class BaselineHeadMath:
    """A baseline head (f_enc, ReLU, one Dense layer) and its loss, without its Keras.

    Args:
        head: one of `BASELINE_HEADS`.
        config: a `ModelConfig` (or its fields as a dict); `encoder_units`,
            `num_cross_layers`, `delta` (the Huber threshold, > 0) and `seed`
            are used. Default: `ModelConfig` unseeded.
        clip_min: labels below are clipped to it before the loss and the
            metrics (None: no lower clip).
        clip_max: labels above are clipped to it (None: no upper clip).
        prediction_max: the `ziln` prediction's upper bound (None: unbounded).
        label_name: the label's name, for error messages.
        **kwargs: `ModelConfig` fields override `config`'s; the rest go to
            `keras.layers.Layer`.

    Call args (the TFRS loss): as `RQRegTask`.
    """

    # The per-example loss terms `loss_terms` returns.
    TERMS = ("loss",)

    def __init__(
        self,
        head: str,
        config: ModelConfig | Mapping[str, Any] | None = None,
        clip_min: float | None = None,
        clip_max: float | None = None,
        prediction_max: float | None = None,
        label_name: str = "label",
        **kwargs,
    ):
        self._check_skin()
        config = model_config(config, kwargs)
        super().__init__(**kwargs)
        keras = self._keras
        mlp_encoder, optdist_towers, losses = self._parts()
        self.loss_fn = make_baseline_loss(
            losses,
            head,
            config.delta,
            label_name,
            quantiles=config.quantiles,
            components=config.components,
            selection_temperature=config.selection_temperature,
            alignment_weight=config.alignment_weight,
        )
        if prediction_max is not None and not math.isfinite(prediction_max):
            raise ValueError(f"`prediction_max` must be finite or None, got {prediction_max}")
        if clip_min is not None and clip_max is not None and clip_min > clip_max:
            raise ValueError(f"`clip_min` ({clip_min}) must be <= `clip_max` ({clip_max})")
        self.head = head
        self.model_config = config
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.prediction_max = None if prediction_max is None else float(prediction_max)
        self.label_name = label_name
        seed = config.seed
        self.encoder = mlp_encoder(
            config.encoder_units,
            hidden_units=config.encoder_units,
            num_cross_layers=config.num_cross_layers,
            seed=sub_seed(seed, "encoder"),
            name="encoder",
        )
        self.activation = keras.layers.ReLU(name="encoder_relu")
        if head == "optdist":
            self.output_layer = optdist_towers(
                config.components,
                hidden_units=max(16, config.encoder_units // 4),
                seed=sub_seed(seed, "head_output"),
                name="head",
            )
        else:
            # float32 under mixed precision too: ZILN exponentiates its outputs.
            self.output_layer = keras.layers.Dense(
                self.loss_fn.output_units,
                kernel_initializer=keras.initializers.GlorotUniform(
                    seed=sub_seed(seed, "head_output")
                ),
                dtype="float32",
                name="head",
            )
        self.output_layer.build((None, config.encoder_units))

    def _check_skin(self) -> None:
        """Raises where this skin cannot run the head (none by default)."""

    def _parts(self):
        """`(MLPEncoder, OptDistTowers, {head: loss class})` of the skin's Keras."""
        raise NotImplementedError

    @property
    def delta(self) -> float:
        return self.model_config.delta

    def outputs(self, predictions, training=False):
        """The output layer's values, `(batch, output_units)`."""
        self._see_tower(predictions)
        state = self.encoder(predictions, training=training)
        return self.output_layer(self.activation(state))

    def predict(self, predictions, labels=None, training=False):
        """The served outputs (`BaselineLoss.predictions`) for a tower output."""
        return self.loss_fn.predictions(self.outputs(predictions, training), self.prediction_max)

    def loss_terms(self, labels, predictions, sample_weight=None, training=False):
        """`({"loss": (batch,)}, outputs, {"label": clipped label})` of one
        batch, the loss weighted by `sample_weight` when given."""
        label = clip_labels(labels, self.clip_min, self.clip_max)
        raw = self.outputs(predictions, training)
        per_example = self.loss_fn.per_example(label, raw, training=training)
        if sample_weight is not None:
            per_example *= tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
        outputs = self.loss_fn.predictions(raw, self.prediction_max)
        return {"loss": per_example}, outputs, {"label": label}

    def get_config(self):
        return {
            **super().get_config(),
            "head": self.head,
            "config": config_dict(self.model_config),
            "clip_min": self.clip_min,
            "clip_max": self.clip_max,
            "prediction_max": self.prediction_max,
            "label_name": self.label_name,
        }
