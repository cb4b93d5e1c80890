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

import tensorflow as tf
import tf_keras as keras

from rq_keras.config.configs import ModelConfig
from rq_keras.layers.baseline_head import BaselineHeadMath, OptDistTowersMath
from rq_keras.layers.encoder import MLPEncoder
from rq_keras.losses.baselines import BASELINE_LOSSES, baseline_loss
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
class OptDistTowers(OptDistTowersMath, keras.layers.Layer):
    """OptDist's towers (`rq_keras.layers.baseline_head.OptDistTowersMath`, read
    its documentation) as a Keras 2 layer."""

    _keras = keras


@keras.utils.register_keras_serializable(package="rq_keras")
class BaselineTask(BaselineHeadMath, HeadTask):
    """A baseline head (f_enc, ReLU, one Dense layer) and its loss, for a `tfrs.Model`.

    The arguments and the math are `rq_keras.layers.baseline_head.BaselineHeadMath`'s
    (read its documentation): `BaselineTask(head, config=..., clip_min=...,
    clip_max=..., prediction_max=..., label_name=...)`.

    Call args (the TFRS loss): as `RQRegTask`.
    """

    _keras = keras

    def _parts(self):
        return MLPEncoder, OptDistTowers, BASELINE_LOSSES


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
