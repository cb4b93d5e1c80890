"""Baseline regression heads on RQ-Reg's feature embedding and encoder.

`build_baseline_model(spec, preprocessor, head, config)` assembles a `BaselineModel`:
the same `features` model as `rq_keras.models.rq_reg.build_model`, then a
`BaselineTask`: the same two-layer `MLPEncoder` (`encoder_units` wide), ReLU
and one Dense output layer in place of the RQ decoder, so that a comparison
with RQ-Reg changes the head and its objective only. The heads' losses are
the registered Keras losses of `rq_keras.losses.baselines` (`BASELINE_HEADS`: `mse`,
`log_mse`, `huber`, `ziln`; their definitions are there).

Labels are clipped to the spec's `[clip_min, clip_max]` before every loss and
metric, as the RQ-Reg codebook clips them. The per-example losses (times the
sample weights, if any) are averaged over the global batch with
`global_batch_mean`, so training under a distribution strategy minimises the
single-device loss. For ZILN this is the ZILN paper's scaling: the lognormal
term is averaged over all rows, zero rows contributing 0, not over the
positive rows only.

`BaselineTask` has `RQRegTask`'s interface (a TFRS task: `task(labels,
tower_output)`, `predict`, `loss_terms`), and `BaselineModel` is the same
`RankingModel` as `RQRegModel`: every model reports `loss` and `mae` (on the
clipped label), so a training loop monitoring `val_mae` works for every head,
and the export (`rq_keras.serving.export.export_model`) serves its `prediction`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
import tf_keras as keras

from rq_keras.config.configs import ModelConfig
from rq_keras.config.seeds import sub_seed
from rq_keras.layers.assembly import clip_labels, config_dict, model_config
from rq_keras.layers.encoder import MLPEncoder
from rq_keras.losses.baselines import BaselineLoss, baseline_loss
from rq_keras.models.head import HeadTask
from rq_keras.models.ranking_model import RankingModel

__all__ = [
    "BaselineTask",
    "BaselineModel",
    "OptDistTowers",
    "build_baseline_model",
    "baseline_per_example_loss",
    "baseline_predictions",
]


def baseline_predictions(
    head: str, outputs, prediction_max: float | None = None
) -> dict[str, tf.Tensor]:
    """The predictions of a head's output layer values (`BaselineLoss.predictions`).

    Args:
        head: one of `BASELINE_HEADS`.
        outputs: the output layer's values, float `(batch, 1)`, or
            `(batch, 3)` (`p` logit, `mu`, `sigma_raw`) for `ziln`.
        prediction_max: ZILN's prediction is at most this (None: unbounded).

    Returns:
        dict: `prediction` float32 `(batch,)`; for `ziln` also
        `positive_probability` and `positive_mean`, float32 `(batch,)`.
    """
    return baseline_loss(head).predictions(outputs, prediction_max)


def baseline_per_example_loss(
    head: str, label, outputs, delta: float = 2.0, label_name: str = "label"
) -> tf.Tensor:
    """A head's unweighted loss of each example, float32 `(batch,)`
    (`baseline_loss(head, delta, label_name)` on clipped labels and output values).

    Raises:
        tf.errors.InvalidArgumentError: `ziln` with a label < 0.
    """
    return baseline_loss(head, delta, label_name)(label, outputs)


@keras.utils.register_keras_serializable(package="rq_keras")
class OptDistTowers(keras.layers.Layer):
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

    def __init__(self, components: int, hidden_units: int, seed: int | None = None, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
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


@keras.utils.register_keras_serializable(package="rq_keras")
class BaselineTask(HeadTask):
    """A baseline head (f_enc, ReLU, one Dense layer) and its loss, for a `tfrs.Model`.

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
        config = model_config(config, kwargs)
        super().__init__(**kwargs)
        self.loss_fn: BaselineLoss = baseline_loss(
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
        self.encoder = MLPEncoder(
            config.encoder_units,
            hidden_units=config.encoder_units,
            num_cross_layers=config.num_cross_layers,
            seed=sub_seed(seed, "encoder"),
            name="encoder",
        )
        self.activation = keras.layers.ReLU(name="encoder_relu")
        if head == "optdist":
            self.output_layer = OptDistTowers(
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


@keras.utils.register_keras_serializable(package="rq_keras")
class BaselineModel(RankingModel):
    """A baseline head on RQ-Reg's feature embedding: `features`, then a
    `BaselineTask` (see `RankingModel`). `call` returns the task's outputs:
    `prediction` float32 `(batch,)`, and for `ziln` `positive_probability`
    and `positive_mean`."""

    head = property(lambda self: self.task.head)
    delta = property(lambda self: self.task.delta)
    clip_min = property(lambda self: self.task.clip_min)
    clip_max = property(lambda self: self.task.clip_max)
    prediction_max = property(lambda self: self.task.prediction_max)
    encoder = property(lambda self: self.task.encoder)
    output_layer = property(lambda self: self.task.output_layer)


# A model.keras of rq_keras 0.2 names the class `rq_keras>HeadModel`: it loads.
keras.utils.get_custom_objects().setdefault("rq_keras>HeadModel", BaselineModel)


def build_baseline_model(
    spec,
    preprocessor,
    head: str,
    config: ModelConfig | None = None,
    prediction_max: float | None = None,
) -> BaselineModel:
    """Assembles a `BaselineModel` and builds its weights.

    The features model and the encoder are built as `rq_keras.models.rq_reg.build_model`
    builds them (same seeds, `encoder_units`, `num_cross_layers`), the
    encoder's output `encoder_units` wide.

    Args:
        spec: the `FeatureSpec` (its label's name and clipping are used).
        preprocessor: an adapted `FeaturePreprocessor` of `spec`.
        head: one of `BASELINE_HEADS`.
        config: a `ModelConfig`; `encoder_units`, `num_cross_layers`, `delta`
            and `seed` are used (the paper's defaults if None).
        prediction_max: bound of the `ziln` prediction (see `BaselineModel`).

    Returns:
        the model, built (call `compile(optimizer=...)` before `fit`).

    Raises:
        ValueError: `head` is not one of `BASELINE_HEADS`.
    """
    config = config or ModelConfig()
    task = BaselineTask(
        head,
        config=config,
        clip_min=spec.label.clip_min,
        clip_max=spec.label.clip_max,
        prediction_max=prediction_max,
        label_name=spec.label.name,
        name="task",
    )
    model = BaselineModel(
        features=preprocessor.build_model(seed=config.seed),
        task=task,
        label_name=spec.label.name,
        name=f"{head}_head",
    )
    model(
        {k: tf.zeros([1, *v.shape[1:]], v.dtype) for k, v in spec.input_signature().items()},
        training=False,
    )
    return model
