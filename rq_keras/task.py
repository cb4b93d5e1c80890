"""RQRegTask: the RQ-Reg head and objective as a TensorFlow Recommenders task."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow_recommenders as tfrs
import tf_keras as keras

from rq_keras.config import ModelConfig
from rq_keras.layers.code_encoder import ResidualCodeEncoder
from rq_keras.layers.encoder import MLPEncoder
from rq_keras.losses import RQRegLoss, global_batch_mean
from rq_keras.model import build_decoder, loss_config, regression_targets

__all__ = ["RQRegTask"]


@keras.utils.register_keras_serializable(package="rq_keras")
class RQRegTask(keras.layers.Layer, tfrs.tasks.Task):
    """The RQ-Reg head (f_enc + RQ decoder) and its loss, for a `tfrs.Model`.

    Put it on top of an existing tower: the tower's output is `x` of Eq. 7.
    In `compute_loss`, `task(labels=raw_labels, predictions=tower_output)`
    encodes the labels into codes in the graph, runs the decoder (scheduled
    sampling) and returns Eq. 16, scaled by the global batch
    (`global_batch_mean`), so it is right under `MirroredStrategy`
    too. `task.predict(tower_output)` is the inference path (the prediction,
    the per-level outputs and the code tree's distribution). Lower the sampling probability with the
    `ScheduledSampling` callback (it finds the task's decoder).

    ```python
    class Model(tfrs.Model):
        def __init__(self, quantizer):
            super().__init__()
            self.tower = keras.Sequential([...])
            self.task = RQRegTask.from_quantizer(quantizer, units=256)

        def compute_loss(self, inputs, training=False):
            features, labels = inputs
            return self.task(labels, self.tower(features), training=training)
    ```

    Args:
        centroids: per level the codebook's sorted centroids (see
            `from_quantizer`).
        clip_min, clip_max: the codebook's label clipping.
        zero_threshold: the codebook's zero code threshold (None: none).
        label_std: the training labels' std (the codebook's `label_std`),
            needed by `label_scale="std"` only.
        config: the head's `ModelConfig` (or its fields as a dict); default
            `ModelConfig` with an unseeded (random) initialisation.
        **kwargs: `ModelConfig` fields (`units=256`, `prediction="median"`)
            override `config`'s; the rest go to `keras.layers.Layer`.

    Call args:
        labels: raw labels `(batch,)` or `(batch, 1)`.
        predictions: the tower's output `(batch, features)`.
        sample_weight: optional `(batch,)`.
        training: Keras' flag (scheduled sampling when True).
        compute_metrics: update the task's MAE metric.

    Returns:
        the scalar loss.
    """

    def __init__(
        self,
        centroids: Sequence[Sequence[float]],
        clip_min: float | None = None,
        clip_max: float | None = None,
        zero_threshold: float | None = None,
        config: ModelConfig | Mapping[str, Any] | None = None,
        label_std: float | None = None,
        **kwargs,
    ):
        if isinstance(config, Mapping):
            config = ModelConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
            )
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        config = dataclasses.replace(config or ModelConfig(seed=None), **overrides)
        super().__init__(**kwargs)
        self.label_encoder = ResidualCodeEncoder(
            centroids,
            clip_min=clip_min,
            clip_max=clip_max,
            zero_threshold=zero_threshold,
            name="label_encoder",
        )
        self.model_config = config
        self.decoder = build_decoder(
            config,
            self.label_encoder.centroids,
            zero_token=self.label_encoder.zero_token,
            value_range=(clip_min, clip_max),
        )
        self.encoder = MLPEncoder(
            self.decoder.state_size,
            hidden_units=config.encoder_units,
            num_cross_layers=config.num_cross_layers,
            seed=None if config.seed is None else config.seed + 2000,
            name="encoder",
        )
        self.rq_loss = RQRegLoss(**loss_config(config, label_std), reduction="none")
        self.mae = keras.metrics.MeanAbsoluteError(name="mae")
        self._codebook = {
            "centroids": [list(map(float, c)) for c in self.label_encoder.centroids],
            "clip_min": clip_min,
            "clip_max": clip_max,
            "zero_threshold": zero_threshold,
            "label_std": None if label_std is None else float(label_std),
        }

    @classmethod
    def from_quantizer(cls, quantizer, **kwargs) -> RQRegTask:
        """A task over a fitted `ResidualQuantizer`'s codebook."""
        centroids = [c.tolist() for c in quantizer.require_fitted()]
        return cls(
            centroids,
            clip_min=quantizer.clip_min,
            clip_max=quantizer.clip_max,
            zero_threshold=quantizer.zero_threshold,
            # A codebook saved before label_std existed has none.
            label_std=quantizer.label_std if "label_std" in quantizer.fit_info else None,
            **kwargs,
        )

    def predict(self, predictions):
        """Inference: the decoder's outputs for a tower output (no labels)."""
        return self.decoder({"state": self.encoder(predictions)}, training=False)

    def call(self, labels, predictions, sample_weight=None, training=False, compute_metrics=True):
        targets = regression_targets(self.label_encoder, labels, self.decoder.residual_regressor)
        state = self.encoder(predictions, training=training)
        outputs = self.decoder({"state": state, "tokens": targets["tokens"]}, training=training)
        terms = self.rq_loss(
            outputs, targets, sample_weight, code_embeddings=self.decoder.code_embeddings
        )
        if compute_metrics:
            # (batch, 1): the metric averages over the last axis (see RQRegModel).
            self.mae.update_state(
                targets["label"][:, None], outputs["prediction"][:, None], sample_weight
            )
        return global_batch_mean(terms["loss"])

    def get_config(self):
        config = super().get_config()
        config.update(self._codebook)
        config["config"] = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self.model_config).items()
        }
        return config
