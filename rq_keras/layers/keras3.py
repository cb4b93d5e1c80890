"""The RQ-Reg head's layers for Keras 3 models (keras-rs, plain Keras 3).

Keras 3 twins of `rq_keras.layers`' Keras 2 layers, each a thin skin over the
math the Keras 2 layer uses (`rq_keras.layers.decoding` for the decoder), so
the same weights give the same outputs in both (`tests/test_keras3.py`, 1e-5).
They run on Keras 3's TensorFlow backend (the math is TensorFlow ops), save
and load in `.keras` files, and work in a process whose `tf.keras` is
Keras 3 (TensorFlow's default since 2.16) and leave it so (`tf_keras` is
imported, by `rq_keras.losses.rq_reg` to register `RQRegLoss` for Keras 2
files, but `tf.keras` is not touched).

* `ResidualCodeEncoder`: raw labels -> RQ codes in the graph (float64, the
  quantizer's decision rule);
* `MLPEncoder`: f_enc, the feature vector -> the decoder's initial state,
  with optional DCN-v2 crosses (`Cross`, full rank);
* `RQDecoder`: the RQ decoder with scheduled sampling and the code tree,
  every cell (`lstm`, `gru`, `rnn`, and `transformer`: `CausalTransformerCell`);
* `RQRegHead`: the whole head on a tower's output (label encoder, f_enc, the
  decoder, Eq. 16), the twin of `rq_keras.models.rq_reg.RQRegTask`
  (`rq_keras.layers.assembly.RQRegHeadMath`);
* `RQRegRanker`: a Keras 3 model of your tower and a head (`RQRegHead` or
  `BaselineHead`), trained by
  `fit` on `(features, labels)` (TensorFlow backend, any `tf.distribute`
  strategy: the loss is scaled by the global batch);
* `BaselineHead`: a baseline head (MSE, log-MSE, Huber, ZILN, OptDist) on a
  tower's output, the twin of `rq_keras.models.baselines.BaselineTask`
  (`rq_keras.layers.baseline_head.BaselineHeadMath`), with its Keras 3 losses
  (`MSELoss`, `LogMSELoss`, `HuberLoss`, `ZILNLoss`, `OptDistLoss`, over
  `rq_keras.losses.baseline_math`) and `OptDistTowers`; K-means with one
  level is `RQRegHead` over a one-level codebook;
* `ListPooling`, `SignedLog`: the feature layers a spec's Keras 3 tower
  uses (`rq_keras.features.preprocessing.FeaturePreprocessor.build_keras3_model`);
* `ScheduledSampling`: the callback that lowers the decoders' sampling
  probability per epoch (Eq. 17), as `rq_keras.training.callbacks.ScheduledSampling`
  does for Keras 2.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from rq_keras.layers.assembly import RQRegHeadMath
from rq_keras.layers.baseline_head import BaselineHeadMath, OptDistTowersMath
from rq_keras.layers.decoding import DecoderMath, SamplingSchedule
from rq_keras.layers.encoding import CodeEncoderMath, MLPEncoderMath
from rq_keras.layers.feature_math import check_pooling_mode, pool_list, signed_log_tensor
from rq_keras.layers.transformer_math import CausalTransformerCellMath, TransformerBlockMath
from rq_keras.losses.baseline_math import (
    BASELINE_HEADS,
    BaselineMath,
    HuberMath,
    LogMSEMath,
    MSEMath,
    OptDistMath,
    ZILNMath,
)
from rq_keras.losses.terms import global_batch_mean

__all__ = [
    "BASELINE_LOSSES",
    "BaselineHead",
    "BaselineLoss",
    "CausalTransformerCell",
    "Cross",
    "HuberLoss",
    "LogMSELoss",
    "MSELoss",
    "OptDistLoss",
    "OptDistTowers",
    "ZILNLoss",
    "ListPooling",
    "MLPEncoder",
    "RQDecoder",
    "RQRegHead",
    "RQRegRanker",
    "ResidualCodeEncoder",
    "ScheduledSampling",
    "SignedLog",
]

if not keras.__version__.startswith("3."):
    raise ImportError(
        f"rq_keras.layers.keras3 is written for Keras 3, but the `keras` package here is "
        f"{keras.__version__}: install keras>=3.8 (rq_keras's tested range), or use the "
        "Keras 2 layers of rq_keras.layers"
    )


def _require_tensorflow_backend(layer: str) -> None:
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"rq_keras.layers.keras3.{layer} runs on Keras 3's TensorFlow backend, but this "
            f"process uses {backend!r}: set KERAS_BACKEND=tensorflow before Keras loads"
        )


class _TransformerBlock(TransformerBlockMath, keras.layers.Layer):
    """One pre-LN block of the Keras 3 `CausalTransformerCell`."""

    _keras = keras


@keras.saving.register_keras_serializable(package="rq_keras")
class CausalTransformerCell(CausalTransformerCellMath, keras.layers.Layer):
    """The Keras 3 twin of `rq_keras.layers.CausalTransformerCell` (read
    `rq_keras.layers.transformer_math.CausalTransformerCellMath`): the causal
    Transformer that `RQDecoder(cell="transformer")` steps per level."""

    _keras = keras
    _block = _TransformerBlock


@keras.saving.register_keras_serializable(package="rq_keras")
class RQDecoder(DecoderMath, keras.layers.Layer):
    """The Keras 3 RQ decoder: the arguments, inputs, outputs and math of
    `rq_keras.layers.decoder.RQDecoder` (read its documentation), as a Keras 3
    layer.

    Differences: the `sampling_probability` and `sampling_step` variables
    are Keras 3 variables (set p with `layer.sampling_probability.assign(p)`).
    """

    _keras = keras
    _transformer_cell = CausalTransformerCell
    _first_replica = {"aggregation": "only_first_replica"}

    def _check_skin(self, settings) -> None:
        _require_tensorflow_backend("RQDecoder")

    def build(self, input_shape=None):
        self._build_parts()
        self.built = True


@keras.saving.register_keras_serializable(package="rq_keras")
class ResidualCodeEncoder(CodeEncoderMath, keras.layers.Layer):
    """The Keras 3 label encoder: the arguments, inputs and outputs of
    `rq_keras.layers.code_encoder.ResidualCodeEncoder` (read its
    documentation), bit-identical codes."""

    _keras = keras

    def _check_skin(self, settings) -> None:
        _require_tensorflow_backend("ResidualCodeEncoder")

    def build(self, input_shape=None):
        self._build_tables()
        self.built = True


@keras.saving.register_keras_serializable(package="rq_keras")
class Cross(keras.layers.Layer):
    """A DCN-v2 cross layer, full rank: `x0 * (W x + b) + x` (what
    `tfrs.layers.dcn.Cross` computes without a projection)."""

    def __init__(self, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.dense = keras.layers.Dense(
            input_shape[-1], kernel_initializer=self.kernel_initializer, name="dense"
        )
        self.dense.build(input_shape)
        self.built = True

    def call(self, x0, x=None):
        x = x0 if x is None else x
        return x0 * self.dense(x) + x

    def get_config(self):
        config = super().get_config()
        config["kernel_initializer"] = keras.initializers.serialize(self.kernel_initializer)
        return config


@keras.saving.register_keras_serializable(package="rq_keras")
class MLPEncoder(MLPEncoderMath, keras.layers.Layer):
    """The Keras 3 f_enc: the arguments, inputs and outputs of
    `rq_keras.layers.encoder.MLPEncoder` (read its documentation); the crosses
    are `Cross` layers."""

    _keras = keras

    def _check_skin(self, settings) -> None:
        _require_tensorflow_backend("MLPEncoder")

    def _make_cross(self, i: int):
        return Cross(kernel_initializer=self._init(10 + i), name=f"cross_{i}")

    def build(self, input_shape):
        self._build_parts()
        for cross in self.crosses:
            cross.build(input_shape)
        self.hidden.build(input_shape)
        self.output_layer.build((*input_shape[:-1], self.hidden_units))
        self.built = True


@keras.saving.register_keras_serializable(package="rq_keras")
class ListPooling(keras.layers.Layer):
    """Mean or sum of a list feature's embeddings over the ids a row has: the
    Keras 3 twin of `rq_keras.layers.ListPooling` (`[embeddings, ids]` in,
    `(batch, dim)` out; id 0 is the pad)."""

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_pooling_mode(mode)

    def call(self, inputs):
        embeddings, ids = inputs
        return pool_list(embeddings, ids, self.mode)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="rq_keras")
class SignedLog(keras.layers.Layer):
    """`sign(x) * log(1 + |x|)`, float32: the Keras 3 twin of
    `rq_keras.layers.SignedLog`."""

    def call(self, inputs):
        return signed_log_tensor(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="rq_keras")
class RQRegHead(RQRegHeadMath, keras.layers.Layer):
    """The RQ-Reg head for a Keras 3 model: the arguments and the math of
    `rq_keras.models.rq_reg.RQRegTask` (read its documentation), as a Keras 3
    layer. Build it with `RQRegHead.from_quantizer(quantizer, config=...)`.

    Call args:
        tower_output: the tower's output `(batch, features)`.
        labels: raw labels `(batch,)`; read in training only (the decoder
            is fed their codes, with scheduled sampling).
        training: Keras' flag.

    Returns:
        the decoder's outputs (`prediction`, `level_values`, `logits`, ...;
        at inference the code tree's `mean`, `median`, `quantiles`, ...).
        `loss_terms(labels, tower_output, ...)` gives Eq. 16's terms.
    """

    def _check_skin(self) -> None:
        _require_tensorflow_backend("RQRegHead")

    def _layer_classes(self):
        return ResidualCodeEncoder, MLPEncoder, RQDecoder

    def _see_tower(self, predictions) -> None:
        pass  # Keras 3 records the input shape it was built with

    def build(self, input_shape):
        # A train step (`loss_terms`) may have built the parts already.
        for part, shape in (
            (self.label_encoder, None),
            (self.encoder, input_shape),
            (self.decoder, None),
        ):
            if not part.built:
                part.build(shape)
        self.built = True

    def call(self, tower_output, labels=None, training=None):
        return self.predict(tower_output, labels, training=bool(training))


class BaselineLoss(BaselineMath, keras.losses.Loss):
    """A baseline head's loss (`rq_keras.losses.baseline_math.BaselineMath`)
    as a Keras 3 loss (`label_name`, `reduction`, `name`)."""


@keras.saving.register_keras_serializable(package="rq_keras")
class MSELoss(MSEMath, BaselineLoss):
    """Squared error on the label (Keras 3)."""


@keras.saving.register_keras_serializable(package="rq_keras")
class LogMSELoss(LogMSEMath, BaselineLoss):
    """Squared error on `sign(y) log1p(|y|)` (Keras 3)."""


@keras.saving.register_keras_serializable(package="rq_keras")
class HuberLoss(HuberMath, BaselineLoss):
    """The Huber loss with threshold `delta` on the label (Keras 3)."""


@keras.saving.register_keras_serializable(package="rq_keras")
class ZILNLoss(ZILNMath, BaselineLoss):
    """The zero-inflated lognormal loss (Keras 3; `ZILNMath`)."""


@keras.saving.register_keras_serializable(package="rq_keras")
class OptDistLoss(OptDistMath, ZILNLoss):
    """OptDist's loss (Keras 3; `OptDistMath`)."""


BASELINE_LOSSES = dict(zip(BASELINE_HEADS, (MSELoss, LogMSELoss, HuberLoss, ZILNLoss, OptDistLoss)))


@keras.saving.register_keras_serializable(package="rq_keras")
class OptDistTowers(OptDistTowersMath, keras.layers.Layer):
    """OptDist's towers (`rq_keras.layers.baseline_head.OptDistTowersMath`) as a
    Keras 3 layer."""

    _keras = keras


@keras.saving.register_keras_serializable(package="rq_keras")
class BaselineHead(BaselineHeadMath, keras.layers.Layer):
    """A baseline head for a Keras 3 model: the arguments and the math of
    `rq_keras.models.baselines.BaselineTask` (read its documentation), as a
    Keras 3 layer: `BaselineHead("ziln", config=..., prediction_max=...)`.

    Call args: `tower_output` `(batch, features)`, `training`. Returns the
    served outputs (`prediction`; ZILN and OptDist also `positive_mean`,
    `positive_probability`, `quantiles`). `loss_terms(labels, tower_output,
    ...)` gives the per-example loss.
    """

    _keras = keras

    def _check_skin(self) -> None:
        _require_tensorflow_backend("BaselineHead")

    def _parts(self):
        return MLPEncoder, OptDistTowers, BASELINE_LOSSES

    def _see_tower(self, predictions) -> None:
        pass  # Keras 3 records the input shape it was built with

    def build(self, input_shape):
        if not self.encoder.built:
            self.encoder.build(input_shape)
        self.built = True

    def call(self, tower_output, training=None):
        return self.predict(tower_output, training=bool(training))


@keras.saving.register_keras_serializable(package="rq_keras")
class RQRegRanker(keras.Model):
    """A Keras 3 ranking model: `tower` (any Keras 3 layer or model, features
    -> a vector) and a head: an `RQRegHead`, or a `BaselineHead` to compare
    with on the same tower.

    `fit` takes `(features, labels)` or `(features, labels, sample_weight)`;
    a train step runs the head's `loss_terms` (teacher forcing with scheduled
    sampling) and minimizes Eq. 16, scaled by the global batch
    (`global_batch_mean`, right under `tf.distribute` strategies); it
    reports the running mean of each term (`loss`, `gen`, `reg`, `rnc`) and
    `mae` on the clipped label, as the Keras 2 model does. `call` is the
    inference path (the head's outputs, the code tree's included).
    """

    def __init__(self, tower, head, **kwargs):
        super().__init__(**kwargs)
        self.tower = tower
        self.head = head
        self.trackers = {term: keras.metrics.Mean(name=term) for term in head.TERMS}
        self.mae = keras.metrics.MeanAbsoluteError(name="mae")

    @property
    def metrics(self):
        return [*self.trackers.values(), self.mae]

    @property
    def _default_save_signature(self):
        # Keras' default SavedModel signature for a subclassed model feeds
        # `call` float32 for every input (string features included) and fails
        # to trace; the export (`rq_keras.serving.export.export_model`) writes
        # the spec's two signatures instead.
        return None

    @property
    def decoder(self):
        """The head's RQ decoder (its quantile levels and thresholds name the
        export's `quantiles` and `exceedance` columns); None for a baseline head."""
        return getattr(self.head, "decoder", None)

    def call(self, features, training=False):
        return self.head(self.tower(features, training=training), training=training)

    def _terms(self, data, training: bool):
        features, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if labels is None:
            raise ValueError("RQRegRanker trains on (features, labels) pairs; got no labels")
        terms, outputs, targets = self.head.loss_terms(
            labels, self.tower(features, training=training), sample_weight, training=training
        )
        return terms, outputs, targets, sample_weight

    def _report(self, terms, outputs, targets, sample_weight):
        for key, tracker in self.trackers.items():
            tracker.update_state(terms[key])
        self.mae.update_state(
            targets["label"][:, None], outputs["prediction"][:, None], sample_weight
        )
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            terms, outputs, targets, sample_weight = self._terms(data, training=True)
            loss = global_batch_mean(terms["loss"])
        variables = self.trainable_variables
        gradients = tape.gradient(loss, [v.value for v in variables])
        self.optimizer.apply(gradients, variables)
        return self._report(terms, outputs, targets, sample_weight)

    def test_step(self, data):
        # The served prediction's path: the decoder reads its own codes.
        terms, outputs, targets, sample_weight = self._terms(data, training=False)
        return self._report(terms, outputs, targets, sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "tower": keras.saving.serialize_keras_object(self.tower),
            "head": keras.saving.serialize_keras_object(self.head),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        tower = keras.saving.deserialize_keras_object(config.pop("tower"))
        head = keras.saving.deserialize_keras_object(config.pop("head"))
        return cls(tower, head, **config)


class ScheduledSampling(SamplingSchedule, keras.callbacks.Callback):
    """Sets every RQ decoder's `sampling_probability` at each epoch's start
    (Eq. 17): the arguments and the schedule of
    `rq_keras.training.callbacks.ScheduledSampling` (read its documentation),
    as a Keras 3 callback; `logs["sampling_probability"]` at each epoch's end."""
