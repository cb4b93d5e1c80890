"""The RQ-Reg head assembled from a `ModelConfig` and a codebook, for both Keras.

`RQRegHeadMath` holds what the head does with its three layers and its loss:
it builds them through the skin's layer classes (`_layer_classes`), encodes
the labels into the loss's targets (`regression_targets`), runs f_enc and the
decoder (`predict`, with teacher forcing in training) and returns the loss
terms (`loss_terms`). `rq_keras.models.rq_reg.RQRegTask` (Keras 2, a TFRS
task) and `rq_keras.layers.keras3.RQRegHead` (Keras 3) are skins over it, so
both give the same terms for the same weights (`tests/test_keras3.py`).
`decoder_settings` and `loss_config` turn a `ModelConfig` into the decoder's
and the loss's arguments. No Keras import here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from rq_keras.config.configs import ModelConfig, config_dict, model_config
from rq_keras.config.seeds import sub_seed
from rq_keras.losses.rq_reg import RQRegLoss
from rq_keras.losses.terms import clip_labels
from rq_keras.quantizer.tokens import ZERO_TOKEN

__all__ = [
    "RQRegHeadMath",
    "decoder_settings",
    "loss_config",
    "regression_targets",
]


def regression_targets(label_encoder, labels, residual: bool = False) -> dict[str, tf.Tensor]:
    """The targets of `RQRegLoss` for raw labels, encoded in the graph.

    Args:
        label_encoder: the codebook's `ResidualCodeEncoder` (either Keras).
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


def decoder_settings(
    config: ModelConfig, centroids, zero_token: bool, value_range
) -> dict[str, Any]:
    """The RQ decoder's arguments for `config` over a codebook (its
    `centroids` per level): `RQDecoder(**decoder_settings(...))` in either
    Keras."""
    return {
        "codebook_sizes": [len(c) for c in centroids],
        "units": config.units,
        "embedding_dim": config.code_embedding_dim,
        "cell": config.cell,
        "transformer_layers": config.transformer_layers,
        "transformer_heads": config.transformer_heads,
        "predictor_units": config.predictor_units,
        "regressor_units": config.regressor_units,
        "use_regressor": config.use_regressor,
        "centroids": [[float(v) for v in c] for c in centroids],
        "sampling_probability": config.sampling_probability,
        "residual_regressor": config.residual_regressor,
        "seed": sub_seed(config.seed, "decoder"),
        "zero_token": zero_token,
        "regressor_input": config.regressor_input,
        "code_embedding_stddev": config.code_embedding_stddev,
        "prediction": config.prediction,
        "quantiles": config.quantiles,
        "thresholds": config.thresholds,
        "exact_levels": config.exact_levels,
        "teacher_forced_evaluation": config.resolved_teacher_forced_evaluation,
        "value_range": value_range,
        "name": "decoder",
    }


def loss_config(
    config: ModelConfig, label_std: float | None = None, label_encoder=None
) -> dict[str, Any]:
    """The `RQRegLoss` arguments of `config` (Eq. 16); `label_std` (the
    codebook's `label_std`) is L_reg's and L_crps's unit when
    `config.label_scale` is `"std"`; `label_encoder` (a
    `ResidualCodeEncoder`) gives L_crps its atoms (needed with
    `config.crps_weight > 0`)."""
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
        "crps_weight": config.crps_weight,
        **(level_one_atoms(label_encoder) if config.crps_weight > 0 else {}),
    }


def level_one_atoms(label_encoder) -> dict[str, list]:
    """`crps_tokens` and `crps_values` of `RQRegLoss`: level 1's vocabulary
    ids and values (`<zero>` and 0 first when the codebook has the zero
    code)."""
    if label_encoder is None:
        raise ValueError("`crps_weight > 0` needs the label encoder (level 1's atoms)")
    centroids = [float(v) for v in label_encoder.centroids[0]]
    start = int(label_encoder.token_offsets[0])
    tokens = list(range(start, start + len(centroids)))
    if label_encoder.zero_token:
        return {"crps_tokens": [ZERO_TOKEN, *tokens], "crps_values": [0.0, *centroids]}
    return {"crps_tokens": tokens, "crps_values": centroids}


class RQRegHeadMath:
    """The RQ-Reg head without its Keras: see `rq_keras.models.rq_reg.RQRegTask`.

    A skin is `class Head(RQRegHeadMath, <Keras Layer>)` and gives
    `_layer_classes()` (`(ResidualCodeEncoder, MLPEncoder, RQDecoder)` of its
    Keras) and `_see_tower(predictions)` (it may record the tower's width);
    the constructor (`RQRegTask`'s arguments; `ModelConfig` fields among the
    keyword arguments override `config`'s, the rest go to the Layer) is this
    class's.
    """

    # The per-example loss terms `loss_terms` returns (Eq. 16 and its parts).
    TERMS = ("loss", "gen", "reg", "rnc", "crps")

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
        self._check_skin()
        config = model_config(config, kwargs)
        super().__init__(**kwargs)
        self._assemble(centroids, clip_min, clip_max, zero_threshold, config, label_std)

    def _check_skin(self) -> None:
        """Raises where this skin cannot run the head (none by default)."""

    def _layer_classes(self) -> tuple[type, type, type]:
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(self._codebook)
        config["config"] = config_dict(self.model_config)
        return config

    @classmethod
    def from_quantizer(cls, quantizer, **kwargs):
        """A head over a fitted `ResidualQuantizer`'s codebook; `kwargs` are
        the constructor's (`config=...`, `ModelConfig` fields, `name=...`)."""
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

    def _assemble(
        self,
        centroids: Sequence[Sequence[float]],
        clip_min: float | None,
        clip_max: float | None,
        zero_threshold: float | None,
        config: ModelConfig,
        label_std: float | None,
    ) -> None:
        code_encoder, mlp_encoder, decoder = self._layer_classes()
        self.label_encoder = code_encoder(
            centroids,
            clip_min=clip_min,
            clip_max=clip_max,
            zero_threshold=zero_threshold,
            name="label_encoder",
        )
        self.model_config = config
        settings = decoder_settings(
            config,
            self.label_encoder.centroids,
            zero_token=self.label_encoder.zero_token,
            value_range=(clip_min, clip_max),
        )
        self.decoder = decoder(settings.pop("codebook_sizes"), **settings)
        self.encoder = mlp_encoder(
            self.decoder.state_size,
            hidden_units=config.encoder_units,
            num_cross_layers=config.num_cross_layers,
            seed=sub_seed(config.seed, "encoder"),
            name="encoder",
        )
        self.rq_loss = RQRegLoss(
            **loss_config(config, label_std, self.label_encoder), reduction="none"
        )
        self._codebook = {
            "centroids": [list(map(float, c)) for c in self.label_encoder.centroids],
            "clip_min": clip_min,
            "clip_max": clip_max,
            "zero_threshold": zero_threshold,
            "label_std": None if label_std is None else float(label_std),
        }

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
            outputs,
            targets,
            sample_weight,
            code_embeddings=tf.convert_to_tensor(self.decoder.code_embeddings),
        )
        return terms, outputs, targets
