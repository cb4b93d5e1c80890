"""RQRegTask: the RQ-Reg head and objective as a TensorFlow Recommenders task."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow_recommenders as tfrs
import tf_keras as keras

from rq_keras.layers.code_encoder import ResidualCodeEncoder
from rq_keras.layers.decoder import RQDecoder
from rq_keras.layers.encoder import MLPEncoder
from rq_keras.losses import RQRegLoss, global_batch_mean
from rq_keras.model import regression_targets

__all__ = ["RQRegTask"]


@keras.utils.register_keras_serializable(package="rq_keras")
class RQRegTask(keras.layers.Layer, tfrs.tasks.Task):
    """The RQ-Reg head (f_enc + RQ decoder) and its loss, for a `tfrs.Model`.

    Put it on top of an existing tower: the tower's output is `x` of Eq. 7.
    In `compute_loss`, `task(labels=raw_labels, predictions=tower_output)`
    encodes the labels into codes in the graph, runs the decoder (scheduled
    sampling) and returns Eq. 16, scaled by the global batch
    (`global_batch_mean`), so it is right under `MirroredStrategy`
    too. `task.predict(tower_output)` is the inference path (the prediction and
    the per-level outputs). Lower the sampling probability with the
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
        units, code_embedding_dim, cell, predictor_units, regressor_units,
            use_regressor, residual_regressor, sampling_probability: the
            `RQDecoder`'s.
        encoder_units, num_cross_layers: the `MLPEncoder`'s.
        gen_weight, reg_weight, rnc_weight, temperature, delta,
            cumulative_huber: the `RQRegLoss`'s (Eq. 16).
        seed: seeds the initializers and sampling coins.

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
        units: int = 512,
        code_embedding_dim: int = 512,
        cell: str = "lstm",
        encoder_units: int = 512,
        num_cross_layers: int = 0,
        predictor_units: int = 512,
        regressor_units: int = 128,
        use_regressor: bool = True,
        gen_weight: float = 1.0,
        reg_weight: float = 1.0,
        rnc_weight: float = 0.1,
        temperature: float = 2.0,
        delta: float = 2.0,
        cumulative_huber: bool = False,
        residual_regressor: bool = False,
        sampling_probability: float = 1.0,
        seed: int | None = None,
        regressor_input: str = "logits",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.label_encoder = ResidualCodeEncoder(
            centroids,
            clip_min=clip_min,
            clip_max=clip_max,
            zero_threshold=zero_threshold,
            name="label_encoder",
        )
        self.decoder = RQDecoder(
            self.label_encoder.codebook_sizes,
            units=units,
            embedding_dim=code_embedding_dim,
            cell=cell,
            predictor_units=predictor_units,
            regressor_units=regressor_units,
            use_regressor=use_regressor,
            centroids=None if use_regressor else self.label_encoder.centroids,
            sampling_probability=sampling_probability,
            residual_regressor=residual_regressor,
            seed=None if seed is None else seed + 1000,
            zero_token=self.label_encoder.zero_token,
            regressor_input=regressor_input,
            name="decoder",
        )
        self.encoder = MLPEncoder(
            self.decoder.state_size,
            hidden_units=encoder_units,
            num_cross_layers=num_cross_layers,
            seed=None if seed is None else seed + 2000,
            name="encoder",
        )
        self.rq_loss = RQRegLoss(
            gen_weight=gen_weight,
            reg_weight=reg_weight,
            rnc_weight=rnc_weight,
            temperature=temperature,
            delta=delta,
            reduction="none",
            cumulative_huber=cumulative_huber,
        )
        self.mae = keras.metrics.MeanAbsoluteError(name="mae")
        self._config = {
            "centroids": [list(map(float, c)) for c in self.label_encoder.centroids],
            "clip_min": clip_min,
            "clip_max": clip_max,
            "zero_threshold": zero_threshold,
            "units": units,
            "code_embedding_dim": code_embedding_dim,
            "cell": cell,
            "encoder_units": encoder_units,
            "num_cross_layers": num_cross_layers,
            "predictor_units": predictor_units,
            "regressor_units": regressor_units,
            "use_regressor": use_regressor,
            "gen_weight": gen_weight,
            "reg_weight": reg_weight,
            "rnc_weight": rnc_weight,
            "temperature": temperature,
            "delta": delta,
            "cumulative_huber": cumulative_huber,
            "residual_regressor": residual_regressor,
            "sampling_probability": sampling_probability,
            "seed": seed,
            "regressor_input": regressor_input,
        }

    @classmethod
    def from_quantizer(cls, quantizer, **kwargs) -> RQRegTask:
        """A task over a fitted `ResidualQuantizer`'s codebook."""
        centroids = [c.tolist() for c in quantizer._require_fitted()]
        return cls(
            centroids,
            clip_min=quantizer.clip_min,
            clip_max=quantizer.clip_max,
            zero_threshold=quantizer.zero_threshold,
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
        config.update(self._config)
        return config
