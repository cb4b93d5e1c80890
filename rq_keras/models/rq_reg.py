"""The RQ-Reg head as a TensorFlow Recommenders task, and the model around it.

`RQRegTask` is the one place where a `ModelConfig` and a codebook become the
head: the in-graph label encoder, f_enc (`MLPEncoder`), the RQ decoder and the
loss (Eq. 16). `RQRegModel` (what `train.py` trains) is a `RankingModel`
around it, built by `build_model(spec, preprocessor, quantizer, config)` from
an adapted `FeaturePreprocessor` (raw feature values in), a fitted
`ResidualQuantizer` (its codebook becomes the in-graph label encoder) and a
`ModelConfig`; a user's own `tfrs.Model` with an `RQRegTask` runs the same
code.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from rq_keras.config.configs import ModelConfig
from rq_keras.layers.assembly import (
    RQRegHeadMath,
    decoder_settings,
)
from rq_keras.layers.code_encoder import ResidualCodeEncoder
from rq_keras.layers.decoder import RQDecoder
from rq_keras.layers.encoder import MLPEncoder
from rq_keras.models.head import HeadTask
from rq_keras.models.ranking_model import RankingModel

__all__ = ["RQRegModel", "RQRegTask", "build_decoder", "build_model"]


def build_decoder(config: ModelConfig, centroids, zero_token: bool, value_range) -> RQDecoder:
    """The `RQDecoder` of `config` over a codebook (its `centroids` per level)."""
    settings = decoder_settings(config, centroids, zero_token, value_range)
    return RQDecoder(settings.pop("codebook_sizes"), **settings)


@keras.utils.register_keras_serializable(package="rq_keras")
class RQRegTask(RQRegHeadMath, HeadTask):
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

    def _layer_classes(self):
        return ResidualCodeEncoder, MLPEncoder, RQDecoder

    def build_from_config(self, config):
        super().build_from_config(config)
        self.label_encoder(tf.zeros([1], tf.float64))


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
