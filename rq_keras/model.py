"""RQRegModel: features -> encoder -> RQ decoder, with the RQ-Reg objective.

`build_model(spec, preprocessor, quantizer, config)` assembles the model from
an adapted `FeaturePreprocessor` (raw feature values in), a fitted
`ResidualQuantizer` (its codebook becomes the in-graph label encoder) and a
`ModelConfig`. Labels are passed raw: the model encodes them into codes in the
graph, so `fit` takes the `(features, label)` batches of
`rq_keras.data.make_dataset` as they are.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf
import tf_keras as keras

import rq_keras.layers  # noqa: F401  (registers every layer for `from_config`)
from rq_keras.config import ModelConfig
from rq_keras.layers.code_encoder import ResidualCodeEncoder
from rq_keras.layers.decoder import RQDecoder
from rq_keras.layers.encoder import MLPEncoder
from rq_keras.losses import RQRegLoss, global_batch_mean

__all__ = [
    "ModelConfig",
    "RQRegModel",
    "build_decoder",
    "build_model",
    "loss_config",
    "regression_targets",
]

LOSS_TERMS = ("loss", "gen", "reg", "rnc")


@keras.utils.register_keras_serializable(package="rq_keras")
class RQRegModel(keras.Model):
    """The RQ-Reg model: feature embedding, `f_enc`, RQ decoder, Eq. 16.

    Args:
        features: Keras model, raw feature dict -> `(batch, F)` (from
            `FeaturePreprocessor.build_model`).
        label_encoder: `ResidualCodeEncoder` of the fitted codebook.
        encoder: `MLPEncoder` with the decoder's `state_size`.
        decoder: `RQDecoder` over the codebook's sizes.
        label_name: the label's name in the input dict during training.
        loss_config: `RQRegLoss` config (weights, temperature, delta).

    Call args:
        inputs: dict of raw features; in training it may also hold the raw
            label under `label_name` (the decoder's teacher inputs). The
            label is never read at inference.
        training: Keras' flag.

    Returns:
        the decoder's dict (`prediction`, `regressor`, `level_values`,
        `logits`, `expected_embeddings`, `codes`; at inference the code
        tree's `mean`, `median`, `quantiles`, `exceedance`).
    """

    def __init__(
        self,
        features,
        label_encoder,
        encoder,
        decoder,
        label_name: str = "label",
        loss_config: dict[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.features = features
        self.label_encoder = label_encoder
        self.encoder = encoder
        self.decoder = decoder
        self.label_name = label_name
        self.loss_config = dict(loss_config or {})
        self.rq_loss = RQRegLoss(**{**self.loss_config, "reduction": "none"})
        self.trackers = {k: keras.metrics.Mean(name=k) for k in LOSS_TERMS}
        self.mae = keras.metrics.MeanAbsoluteError(name="mae")

    @property
    def metrics(self):
        return [*self.trackers.values(), self.mae]

    def _features(self, inputs):
        return {k: v for k, v in inputs.items() if k != self.label_name}

    def call(self, inputs, training=None):
        tokens = None
        if training and self.label_name in inputs:
            tokens = self.label_encoder(inputs[self.label_name])["tokens"]
        return self._forward(inputs, tokens, training)

    def _forward(self, inputs, tokens, training, distribution=None):
        x = self.features(self._features(inputs), training=training)
        decoder_inputs = {"state": self.encoder(x, training=training)}
        if tokens is not None:
            decoder_inputs["tokens"] = tokens
        return self.decoder(decoder_inputs, training=training, distribution=distribution)

    def _step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        targets = regression_targets(self.label_encoder, y, self.decoder.residual_regressor)
        tokens = targets["tokens"] if training else None
        # Validation computes the code tree only when it is what is served.
        distribution = not training and self.decoder.prediction != "regressor"
        with tf.GradientTape() as tape:
            outputs = self._forward(x, tokens, training, distribution)
            terms = self.rq_loss(
                outputs, targets, sample_weight, code_embeddings=self.decoder.code_embeddings
            )
            # Scaled by the global batch exactly once (per-replica shares add up).
            loss = global_batch_mean(terms["loss"])
            if self.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
        if training:
            self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        # The terms are already weighted per example (RQRegLoss), so their plain
        # mean is the loss; a weight here would count twice.
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
            "label_encoder": keras.layers.serialize(self.label_encoder),
            "encoder": keras.layers.serialize(self.encoder),
            "decoder": keras.layers.serialize(self.decoder),
            "label_name": self.label_name,
            "loss_config": self.loss_config,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("features", "label_encoder", "encoder", "decoder"):
            config[key] = keras.layers.deserialize(config[key], custom_objects=custom_objects)
        return cls(**config)


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
    label = tf.cast(tf.reshape(labels, [-1]), tf.float32)
    low, high = label_encoder.clip_min, label_encoder.clip_max
    if low is not None or high is not None:
        label = tf.clip_by_value(
            label,
            -float("inf") if low is None else low,
            float("inf") if high is None else high,
        )
    targets = {"label": label, "tokens": coded["tokens"], "level_values": coded["level_values"]}
    if residual:
        targets["residual"] = label - tf.reduce_sum(coded["level_values"], axis=1)
    return targets


def build_decoder(config: ModelConfig, centroids, zero_token: bool, value_range) -> RQDecoder:
    """The `RQDecoder` of `config` over a codebook (its `centroids` per level).

    The one place where `ModelConfig` becomes a decoder (`build_model` and
    `RQRegTask` call it).
    """
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
        seed=None if config.seed is None else config.seed + 1000,
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
    seed = config.seed
    decoder = build_decoder(
        config,
        [c.tolist() for c in quantizer.centroids],
        zero_token=quantizer.zero_token,
        value_range=(quantizer.clip_min, quantizer.clip_max),
    )
    model = RQRegModel(
        features=preprocessor.build_model(seed=seed),
        label_encoder=ResidualCodeEncoder.from_quantizer(quantizer, name="label_encoder"),
        encoder=MLPEncoder(
            decoder.state_size,
            hidden_units=config.encoder_units,
            num_cross_layers=config.num_cross_layers,
            seed=seed + 2000,
            name="encoder",
        ),
        decoder=decoder,
        label_name=spec.label.name,
        loss_config=loss_config(
            config, quantizer.label_std if config.label_scale == "std" else None
        ),
        name="rq_reg",
    )
    model(
        {k: tf.zeros([1, *v.shape[1:]], v.dtype) for k, v in spec.input_signature().items()},
        training=False,
    )
    # The label encoder's weights too, so every built model has the same weights.
    model.label_encoder(tf.zeros([1], tf.float64))
    return model
