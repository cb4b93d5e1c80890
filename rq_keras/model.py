"""RQRegModel: features -> RQRegTask (encoder, RQ decoder, the RQ-Reg objective).

`build_model(spec, preprocessor, quantizer, config)` assembles the model from
an adapted `FeaturePreprocessor` (raw feature values in), a fitted
`ResidualQuantizer` (its codebook becomes the in-graph label encoder) and a
`ModelConfig`. The head is an `RQRegTask` (rq_keras.task, the one place that
builds it) and the model a `tfrs.Model` around it (`RankingModel`, shared with
the baseline heads of rq_keras.heads): `compute_loss` is the TFRS contract,
and the train step runs the task's `loss_terms`, the code a user's own
`tfrs.Model` runs through `task(labels, tower_output)`. Labels are passed raw:
the model encodes them into codes in the graph, so `fit` takes the
`(features, label)` batches of `rq_keras.data.make_dataset` as they are.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

import rq_keras.layers  # noqa: F401  (registers every layer for `from_config`)
from rq_keras.config import ModelConfig
from rq_keras.losses import global_batch_mean
from rq_keras.task import RQRegTask, build_decoder, loss_config, regression_targets

__all__ = [
    "ModelConfig",
    "RQRegModel",
    "RankingModel",
    "build_decoder",
    "build_model",
    "loss_config",
    "regression_targets",
]


class RankingModel(tfrs.Model):
    """A features tower and a head task: the trainable model of every head.

    Args:
        features: Keras model, raw feature dict -> `(batch, F)` (from
            `FeaturePreprocessor.build_model`).
        task: the head: an `RQRegTask` or a `rq_keras.heads.BaselineTask`
            (`predict`, `loss_terms`, `TERMS`, and `task(labels, tower)` for
            the TFRS loss).
        label_name: the label's name in the input dict; it is dropped before
            the features model and never read at inference.

    Call args:
        inputs: dict of raw features; in training it may also hold the raw
            label under `label_name` (the decoder's teacher inputs).
        training: Keras' flag.

    Returns:
        the task's `predict` outputs (`prediction` and the head's others).

    Each train/test step reports the running means of the task's loss terms
    (`loss`, and for RQ-Reg `gen`, `reg`, `rnc`) and `mae` against the
    clipped label; the loss is scaled by the global batch once
    (`global_batch_mean`), so it is right under a distribution strategy.
    """

    def __init__(self, features, task, label_name: str = "label", **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.task = task
        self.label_name = label_name
        self.trackers = {k: keras.metrics.Mean(name=k) for k in task.TERMS}
        self.mae = keras.metrics.MeanAbsoluteError(name="mae")

    @property
    def metrics(self):
        return [*self.trackers.values(), self.mae]

    def _features(self, inputs):
        return {k: v for k, v in inputs.items() if k != self.label_name}

    def call(self, inputs, training=None):
        labels = inputs.get(self.label_name) if training else None
        tower = self.features(self._features(inputs), training=training)
        return self.task.predict(tower, labels=labels, training=training)

    def compute_loss(self, inputs, training=False):
        """The TFRS loss of a `(features, labels[, sample_weight])` batch:
        `task(labels, features(x))`, as in a user's own `tfrs.Model`."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(inputs)
        tower = self.features(self._features(x), training=training)
        return self.task(y, tower, sample_weight=sample_weight, training=training)

    def _step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            tower = self.features(self._features(x), training=training)
            terms, outputs, targets = self.task.loss_terms(y, tower, sample_weight, training)
            # Scaled by the global batch exactly once (per-replica shares add up).
            loss = global_batch_mean(terms["loss"])
            if self.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
        if training:
            self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        # The terms are already weighted per example, so their plain mean is
        # the loss; a weight here would count twice.
        for key, tracker in self.trackers.items():
            tracker.update_state(terms[key])
        # (batch, 1): MeanAbsoluteError averages over the last axis, so a
        # (batch,) pair would count each batch's mean once, whatever its size.
        self.mae.update_state(
            targets["label"][:, None], outputs["prediction"][:, None], sample_weight
        )
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        return self._step(data, training=True)

    def test_step(self, data):
        return self._step(data, training=False)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(self._features(x), training=False)

    def get_config(self):
        return {
            "name": self.name,
            "features": keras.layers.serialize(self.features),
            "task": keras.layers.serialize(self.task),
            "label_name": self.label_name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if "task" not in config:
            raise ValueError(
                f"this {cls.__name__} was saved by rq_keras 0.1, whose model held the head's "
                "layers itself; rq_keras 0.2 keeps them in a task. Its SavedModel exports still "
                "serve; to load the .keras file, retrain, or load it with rq_keras 0.1"
            )
        config = dict(config)
        for key in ("features", "task"):
            config[key] = keras.layers.deserialize(config[key], custom_objects=custom_objects)
        return cls(**config)


@keras.utils.register_keras_serializable(package="rq_keras")
class RQRegModel(RankingModel):
    """The RQ-Reg model: feature embedding, then an `RQRegTask` (f_enc, the
    RQ decoder, Eq. 16). See `RankingModel`; `call` returns the decoder's
    dict (`prediction`, `regressor`, `level_values`, `logits`,
    `expected_embeddings`, `codes`; at inference the code tree's `mean`,
    `median`, `quantiles`, `exceedance`, `positive_mean`)."""

    @property
    def label_encoder(self):
        return self.task.label_encoder

    @property
    def encoder(self):
        return self.task.encoder

    @property
    def decoder(self):
        return self.task.decoder


def build_model(spec, preprocessor, quantizer, config: ModelConfig | None = None) -> RQRegModel:
    """Assembles an `RQRegModel` and builds its weights.

    Args:
        spec: the `FeatureSpec`.
        preprocessor: an adapted `FeaturePreprocessor` of `spec`.
        quantizer: a fitted `ResidualQuantizer` of the training labels.
        config: a `ModelConfig` (the paper's defaults if None).

    Returns:
        the model, built (call `compile(optimizer=...)` before `fit`).
    """
    config = config or ModelConfig()
    model = RQRegModel(
        features=preprocessor.build_model(seed=config.seed),
        task=RQRegTask.from_quantizer(quantizer, config=config, name="task"),
        label_name=spec.label.name,
        name="rq_reg",
    )
    model(
        {k: tf.zeros([1, *v.shape[1:]], v.dtype) for k, v in spec.input_signature().items()},
        training=False,
    )
    # The label encoder's weights too, so every built model has the same weights.
    model.label_encoder(tf.zeros([1], tf.float64))
    return model
