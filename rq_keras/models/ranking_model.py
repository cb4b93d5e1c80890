"""RankingModel: a features tower and a head, trained as a `tfrs.Model`.

The trainable model of every head (`rq_keras.models.rq_reg.RQRegModel`,
`rq_keras.models.baselines.BaselineModel`): raw features -> the features model
(`FeaturePreprocessor.build_model`) -> the head (a `HeadTask`). Labels are
passed raw, so `fit` takes the `(features, label)` batches of
`rq_keras.data.make_dataset` as they are.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

__all__ = ["RankingModel"]


class RankingModel(tfrs.Model):
    """A features tower and a head task: the trainable model of every head.

    Args:
        features: Keras model, raw feature dict -> `(batch, F)` (from
            `FeaturePreprocessor.build_model`).
        task: the head, a `HeadTask`: an `RQRegTask` or a
            `rq_keras.models.baselines.BaselineTask`.
        label_name: the label's name in the input dict; it is dropped before
            the features model and never read at inference.

    Call args:
        inputs: dict of raw features; in training it may also hold the raw
            label under `label_name` (the decoder's teacher inputs).
        training: Keras' flag.

    Returns:
        the task's `predict` outputs (`prediction` and the head's others).

    The train and test steps compute the loss as a user's own `tfrs.Model`
    does, `compute_loss` -> `task(labels, tower_output)`, and report the
    task's metrics (`HeadTask.task_metrics`: the running means of its loss
    terms, `loss` and for RQ-Reg `gen`, `reg`, `rnc`, and `mae` against the
    clipped label). The task scales the loss by the global batch once, so it
    is right under a distribution strategy; the train step adds the layers'
    regularization losses, scaled the same way.
    """

    def __init__(self, features, task, label_name: str = "label", **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.task = task
        self.label_name = label_name

    @property
    def metrics(self):
        # The task's own: Keras would add a compiled loss tracker of its own.
        return self.task.task_metrics

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
        with tf.GradientTape() as tape:
            loss = self.compute_loss(data, training=training)
            if self.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
        if training:
            self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
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
