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

import math
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
import tf_keras as keras

from rq_keras.config.configs import ModelConfig
from rq_keras.config.seeds import sub_seed
from rq_keras.layers.code_encoder import ResidualCodeEncoder
from rq_keras.layers.decoder import RQDecoder
from rq_keras.layers.encoder import MLPEncoder
from rq_keras.losses.rq_reg import RQRegLoss
from rq_keras.models.head import HeadTask, clip_labels, config_dict, model_config
from rq_keras.models.ranking_model import RankingModel

__all__ = [
    "RQRegModel",
    "RQRegTask",
    "build_decoder",
    "build_model",
    "loss_config",
    "regression_targets",
]


def regression_targets(label_encoder, labels, residual: bool = False) -> dict[str, tf.Tensor]:
    """The targets of `RQRegLoss` for raw labels, encoded in the graph.

    Args:
        label_encoder: the codebook's `ResidualCodeEncoder`.
        labels: raw labels `(batch,)` or `(batch, 1)`.
        residual: also return `residual`, what the codes leave over (for a
            decoder with `residual_regressor`).

    Returns:
        dict: `label` float32 `(batch,)` clipped like the codebook, `tokens`
        and `level_values` from the encoder, and optionally `residual`.
    """
    coded = label_encoder(labels)
    label = clip_labels(labels, label_encoder.clip_min, label_encoder.clip_max)
    targets = {"label": label, "tokens": coded["tokens"], "level_values": coded["level_values"]}
    if residual:
        targets["residual"] = label - tf.reduce_sum(coded["level_values"], axis=1)
    return targets


def build_decoder(config: ModelConfig, centroids, zero_token: bool, value_range) -> RQDecoder:
    """The `RQDecoder` of `config` over a codebook (its `centroids` per level)."""
    return RQDecoder(
        [len(c) for c in centroids],
        units=config.units,
        embedding_dim=config.code_embedding_dim,
        cell=config.cell,
        transformer_layers=config.transformer_layers,
        transformer_heads=config.transformer_heads,
        predictor_units=config.predictor_units,
        regressor_units=config.regressor_units,
        use_regressor=config.use_regressor,
        centroids=[[float(v) for v in c] for c in centroids],
        sampling_probability=config.sampling_probability,
        residual_regressor=config.residual_regressor,
        seed=sub_seed(config.seed, "decoder"),
        zero_token=zero_token,
        regressor_input=config.regressor_input,
        code_embedding_stddev=config.code_embedding_stddev,
        prediction=config.prediction,
        quantiles=config.quantiles,
        thresholds=config.thresholds,
        exact_levels=config.exact_levels,
        value_range=value_range,
        name="decoder",
    )


def loss_config(config: ModelConfig, label_std: float | None = None) -> dict[str, Any]:
    """The `RQRegLoss` arguments of `config` (Eq. 16); `label_std` (the
    codebook's `label_std`) is L_reg's unit when `config.label_scale` is
    `"std"`."""
    scale = 1.0
    if config.label_scale == "std":
        if label_std is None or not (math.isfinite(label_std) and label_std > 0):
            raise ValueError(
                f"label_scale='std' (the default) needs the training labels' std, a finite "
                f"number > 0, got {label_std!r}: build from a fitted ResidualQuantizer "
                "(build_model, RQRegTask.from_quantizer), pass label_std=..., or set "
                "label_scale='none'"
            )
        scale = float(label_std)
    return {
        "gen_weight": config.gen_weight,
        "reg_weight": config.reg_weight,
        "rnc_weight": config.rnc_weight,
        "temperature": config.temperature,
        "delta": config.delta,
        "label_scale": scale,
        "cumulative_huber": config.cumulative_huber,
        "rnc_cross_replica": config.rnc_cross_replica,
    }


@keras.utils.register_keras_serializable(package="rq_keras")
class RQRegTask(HeadTask):
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
        config = model_config(config, kwargs)
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
            seed=sub_seed(config.seed, "encoder"),
            name="encoder",
        )
        self.rq_loss = RQRegLoss(**loss_config(config, label_std), reduction="none")
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

    # The per-example loss terms `loss_terms` returns (Eq. 16 and its parts).
    TERMS = ("loss", "gen", "reg", "rnc")

    def predict(self, predictions, labels=None, training=False):
        """The decoder's outputs for a tower output `(batch, features)`.

        At inference (`training` False) the decoder reads its own codes and
        adds the code tree's distribution outputs; in training, given raw
        `labels`, it is fed their codes (scheduled sampling).
        """
        self._see_tower(predictions)
        inputs = {"state": self.encoder(predictions, training=training)}
        if training and labels is not None:
            inputs["tokens"] = self.label_encoder(labels)["tokens"]
        return self.decoder(inputs, training=training)

    def loss_terms(
        self, labels, predictions, sample_weight=None, training=False, distribution=None
    ):
        """The per-example loss terms of one batch, before the batch mean.

        Args:
            labels: raw labels `(batch,)` or `(batch, 1)`.
            predictions: the tower's output `(batch, features)`.
            sample_weight: optional `(batch,)`; the terms are weighted.
            training: Keras' flag: teacher forcing with scheduled sampling
                when True; the decoder reads its own codes when False.
            distribution: compute the code tree too (None: when not
                training and the served prediction is the tree's; f_reg's
                `"regressor"` needs none).

        Returns:
            `(terms, outputs, targets)`: `TERMS` -> float32 `(batch,)`, the
            decoder's outputs, and `regression_targets` (`label` is the
            clipped label the metrics compare with).
        """
        targets = regression_targets(self.label_encoder, labels, self.decoder.residual_regressor)
        if distribution is None:
            distribution = not training and self.decoder.prediction != "regressor"
        self._see_tower(predictions)
        state = self.encoder(predictions, training=training)
        outputs = self.decoder(
            {"state": state, "tokens": targets["tokens"]},
            training=training,
            distribution=distribution,
        )
        terms = self.rq_loss(
            outputs, targets, sample_weight, code_embeddings=self.decoder.code_embeddings
        )
        return terms, outputs, targets

    def build_from_config(self, config):
        super().build_from_config(config)
        self.label_encoder(tf.zeros([1], tf.float64))

    def get_config(self):
        config = super().get_config()
        config.update(self._codebook)
        config["config"] = config_dict(self.model_config)
        return config


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
