"""Baseline regression heads on RQ-Reg's feature embedding and encoder.

`build_head_model(spec, preprocessor, head, config)` assembles a `HeadModel`:
the same `features` model and the same two-layer `MLPEncoder` (`encoder_units`
wide) as `rq_keras.model.build_model`, then ReLU and one Dense output layer in
place of the RQ decoder, so that a comparison with RQ-Reg changes the head and
its objective only. The heads (`HEADS`):

* `mse`: squared error on the label; the prediction is the output.
* `log_mse`: squared error on `sign(y) * log1p(|y|)`, the prediction mapped
  back by `sign(z) * expm1(|z|)` (defined for negative labels too). These two
  are the usual point-regression baselines, on the raw and on the log scale.
* `huber`: the Huber loss with threshold `delta` on the label (Huber 1964,
  "Robust Estimation of a Location Parameter"; RQ-Reg's L_reg uses it, Eq. 12).
* `ziln`: the zero-inflated lognormal loss of Wang, Liu and Miao 2019, "A Deep
  Probabilistic Model for Customer Lifetime Value Prediction": three outputs
  `(p, mu, sigma_raw)`, `sigma = max(softplus(sigma_raw), sqrt(K.epsilon()))`,
  and per example::

      BCE(1[y > 0], p) + 1[y > 0] * (log y + log sigma + log(2 pi) / 2
                                     + (log y - mu)^2 / (2 sigma^2))

  with the prediction, the mean of the mixture,
  `sigmoid(p) * exp(mu + sigma^2 / 2)`, taken with the same floored sigma
  (the floor changes it by a factor of at most `exp(K.epsilon() / 2)`), and
  bounded by `prediction_max` (`train()`: the largest training label); its
  `positive_mean` output is the lognormal's mean, E[y | x, y > 0], under the
  same bound (the code tree's output of that name). The
  bound is what keeps ZILN usable: a row with a large sigma has a lognormal
  mean of `exp(sigma^2 / 2)` times its median, and on CDNOW single rows
  reached 1e9 dollars (MAE 4e7 on the test split) without it. The labels
  must be >= 0.

Labels are clipped to the spec's `[clip_min, clip_max]` before every loss and
metric, as the RQ-Reg codebook clips them. The per-example losses
(`head_per_example_loss`, multiplied by the sample weights, if any) are
averaged over the global batch with `global_batch_mean`, so training under a
distribution strategy minimises the single-device loss. For ZILN this is the
ZILN paper's scaling: the lognormal term is averaged over all rows, zero rows
contributing 0, not over the positive rows only.

Every model reports `loss` and `mae` (on the clipped label), like
`RQRegModel`, so a training loop monitoring `val_mae` works for every head,
and the export (`rq_keras.export.export_model`) serves its `prediction`.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

import rq_keras.layers  # noqa: F401  (registers every layer for `from_config`)
from rq_keras.layers.encoder import MLPEncoder
from rq_keras.losses import global_batch_mean, huber
from rq_keras.model import ModelConfig

__all__ = [
    "HEADS",
    "HeadModel",
    "build_head_model",
    "head_per_example_loss",
    "head_predictions",
]

HEADS = ("mse", "log_mse", "huber", "ziln")
# Width of the output layer per head: ZILN has (p, mu, sigma_raw).
_OUTPUT_UNITS = {"mse": 1, "log_mse": 1, "huber": 1, "ziln": 3}
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _check_head(head: str) -> str:
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {HEADS}, got {head!r}")
    return head


def _check_delta(delta) -> float:
    delta = float(delta)
    if not math.isfinite(delta) or delta <= 0:
        raise ValueError(f"`delta` must be a finite number > 0, got {delta}")
    return delta


def _signed_log1p(x):
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def _signed_expm1(z):
    return tf.sign(z) * tf.math.expm1(tf.abs(z))


def _ziln_parameters(outputs):
    """`(p logit, mu, sigma)` of ZILN outputs `(batch, 3)`, each `(batch,)`."""
    logit, mu, sigma_raw = tf.unstack(tf.cast(outputs, tf.float32), num=3, axis=-1)
    # The ZILN paper's floor: keeps log(sigma) and 1 / sigma^2 finite.
    sigma = tf.maximum(tf.math.softplus(sigma_raw), math.sqrt(keras.backend.epsilon()))
    return logit, mu, sigma


def head_predictions(
    head: str, outputs, prediction_max: float | None = None
) -> dict[str, tf.Tensor]:
    """The predictions of a head's output layer values.

    Args:
        head: one of `HEADS`.
        outputs: the output layer's values, float `(batch, 1)`, or
            `(batch, 3)` (`p` logit, `mu`, `sigma_raw`) for `ziln`.
        prediction_max: ZILN's prediction is at most this (None: unbounded).

    Returns:
        dict: `prediction` float32 `(batch,)`; for `ziln` also
        `positive_probability` float32 `(batch,)`, `sigmoid(p)`, and
        `positive_mean` float32 `(batch,)`, the lognormal's mean
        E[y | x, y > 0] (bounded by `prediction_max` too).
    """
    _check_head(head)
    if head == "ziln":
        logit, mu, sigma = _ziln_parameters(outputs)
        probability = tf.sigmoid(logit)
        # The lognormal's mean: E[y | x, y > 0].
        positive_mean = tf.exp(mu + 0.5 * tf.square(sigma))
        mean = probability * positive_mean
        if prediction_max is not None:
            mean = tf.minimum(mean, float(prediction_max))
            positive_mean = tf.minimum(positive_mean, float(prediction_max))
        return {
            "prediction": mean,
            "positive_mean": positive_mean,
            "positive_probability": probability,
        }
    value = tf.reshape(tf.cast(outputs, tf.float32), [-1])
    if head == "log_mse":
        value = _signed_expm1(value)
    return {"prediction": value}


def head_per_example_loss(
    head: str, label, outputs, delta: float = 2.0, label_name: str = "label"
) -> tf.Tensor:
    """A head's unweighted loss of each example (see the module docstring).

    Args:
        head: one of `HEADS`.
        label: `(batch,)` or `(batch, 1)` labels, already clipped.
        outputs: the output layer's values, as `head_predictions`.
        delta: the Huber threshold, > 0 (used by `huber` only).
        label_name: the label's name, for the error on a negative ZILN label.

    Returns:
        float32 `(batch,)`.

    Raises:
        tf.errors.InvalidArgumentError: `ziln` with a label < 0.
    """
    _check_head(head)
    delta = _check_delta(delta)
    y = tf.reshape(tf.cast(label, tf.float32), [-1])
    if head == "ziln":
        return _ziln_loss(y, outputs, label_name)
    value = tf.reshape(tf.cast(outputs, tf.float32), [-1])
    if head == "mse":
        return tf.square(y - value)
    if head == "log_mse":
        return tf.square(_signed_log1p(y) - value)
    return huber(y - value, delta)


def _ziln_loss(y, outputs, label_name):
    check = tf.debugging.assert_non_negative(
        y,
        message=f"the ZILN head needs non-negative labels: label {label_name!r} has a value < 0 "
        "(set the spec's label clip_min to 0 or pick another head)",
    )
    with tf.control_dependencies([check]):
        positive = tf.cast(y > 0, tf.float32)
    logit, mu, sigma = _ziln_parameters(outputs)
    classification = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=logit)
    # log(0) would be -inf, and 0 * inf is NaN in the forward and backward
    # pass; zero rows take y = 1 and are then masked out.
    log_y = tf.math.log(tf.where(y > 0, y, tf.ones_like(y)))
    nll = (
        log_y + tf.math.log(sigma) + _HALF_LOG_2PI + tf.square(log_y - mu) / (2 * tf.square(sigma))
    )
    return classification + positive * nll


@keras.utils.register_keras_serializable(package="rq_keras")
class HeadModel(keras.Model):
    """A baseline head on RQ-Reg's feature embedding and encoder.

    Args:
        features: Keras model, raw feature dict -> `(batch, F)` (from
            `FeaturePreprocessor.build_model`).
        encoder: `MLPEncoder`; its output (`state_size` wide) goes through a
            ReLU into the output layer.
        head: one of `HEADS`.
        label_name: the label's name in the input dict, dropped before the
            features model.
        delta: the Huber threshold of the `huber` head, > 0.
        clip_min: labels below are clipped to it before the loss and the
            metrics (None: no lower clip).
        clip_max: labels above are clipped to it (None: no upper clip).
        seed: seeds the output layer's initializer.
        prediction_max: the `ziln` prediction's upper bound (see the module
            docstring; None: unbounded).

    Call args:
        inputs: dict of raw features (a label under `label_name` is ignored:
            the label is never read at inference).
        training: Keras' flag.

    Returns:
        `head_predictions`' dict: `prediction` float32 `(batch,)`, and for
        `ziln` `positive_probability` and `positive_mean` float32 `(batch,)`.
    """

    def __init__(
        self,
        features,
        encoder,
        head: str,
        label_name: str = "label",
        delta: float = 2.0,
        clip_min: float | None = None,
        clip_max: float | None = None,
        seed: int | None = 0,
        prediction_max: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.head = _check_head(head)
        if prediction_max is not None and not math.isfinite(prediction_max):
            raise ValueError(f"`prediction_max` must be finite or None, got {prediction_max}")
        self.prediction_max = None if prediction_max is None else float(prediction_max)
        self.delta = _check_delta(delta)
        if clip_min is not None and clip_max is not None and clip_min > clip_max:
            raise ValueError(f"`clip_min` ({clip_min}) must be <= `clip_max` ({clip_max})")
        self.features = features
        self.encoder = encoder
        self.label_name = label_name
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.seed = seed
        self.activation = keras.layers.ReLU(name="encoder_relu")
        # float32 under mixed precision too: ZILN exponentiates its outputs.
        self.output_layer = keras.layers.Dense(
            _OUTPUT_UNITS[head],
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            dtype="float32",
            name="head",
        )
        # Built here, so a model loaded from `.keras` has the weights to fill.
        self.output_layer.build((None, encoder.state_size))
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae = keras.metrics.MeanAbsoluteError(name="mae")

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae]

    def _features(self, inputs):
        return {k: v for k, v in inputs.items() if k != self.label_name}

    def _outputs(self, inputs, training):
        """The output layer's values, `(batch, 1)` or `(batch, 3)`."""
        x = self.features(self._features(inputs), training=training)
        state = self.encoder(x, training=training)
        return self.output_layer(self.activation(state))

    def call(self, inputs, training=None):
        return head_predictions(self.head, self._outputs(inputs, training), self.prediction_max)

    def clip_label(self, labels) -> tf.Tensor:
        """Raw labels -> float32 `(batch,)` clipped to `[clip_min, clip_max]`."""
        label = tf.reshape(tf.cast(labels, tf.float32), [-1])
        if self.clip_min is None and self.clip_max is None:
            return label
        return tf.clip_by_value(
            label,
            -float("inf") if self.clip_min is None else self.clip_min,
            float("inf") if self.clip_max is None else self.clip_max,
        )

    def _step(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        label = self.clip_label(y)
        with tf.GradientTape() as tape:
            outputs = self._outputs(x, training)
            per_example = head_per_example_loss(
                self.head, label, outputs, self.delta, self.label_name
            )
            if sample_weight is not None:
                per_example *= tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            # Scaled by the global batch exactly once (per-replica shares add up).
            loss = global_batch_mean(per_example)
            if self.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
        if training:
            self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        # `per_example` is weighted already: `loss` reports the mean that is minimised.
        self.loss_tracker.update_state(per_example)
        prediction = head_predictions(self.head, outputs, self.prediction_max)["prediction"]
        # `(batch, 1)`: the metric averages over the last axis, and on `(batch,)`
        # would count each batch's mean once, whatever its size (and reject
        # per-example weights).
        self.mae.update_state(label[:, None], prediction[:, None], sample_weight)
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
            "encoder": keras.layers.serialize(self.encoder),
            "head": self.head,
            "label_name": self.label_name,
            "delta": self.delta,
            "clip_min": self.clip_min,
            "clip_max": self.clip_max,
            "seed": self.seed,
            "prediction_max": self.prediction_max,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("features", "encoder"):
            config[key] = keras.layers.deserialize(config[key], custom_objects=custom_objects)
        return cls(**config)


def build_head_model(
    spec,
    preprocessor,
    head: str,
    config: ModelConfig | None = None,
    prediction_max: float | None = None,
) -> HeadModel:
    """Assembles a `HeadModel` and builds its weights.

    The features model and the encoder are built as `rq_keras.model.build_model`
    builds them (same seeds, `encoder_units`, `num_cross_layers`), the
    encoder's output `encoder_units` wide.

    Args:
        spec: the `FeatureSpec` (its label's name and clipping are used).
        preprocessor: an adapted `FeaturePreprocessor` of `spec`.
        head: one of `HEADS`.
        config: a `ModelConfig`; `encoder_units`, `num_cross_layers`, `delta`
            and `seed` are used (the paper's defaults if None).
        prediction_max: bound of the `ziln` prediction (see `HeadModel`).

    Returns:
        the model, built (call `compile(optimizer=...)` before `fit`).

    Raises:
        ValueError: `head` is not one of `HEADS`.
    """
    _check_head(head)
    config = config or ModelConfig()
    seed = config.seed
    model = HeadModel(
        features=preprocessor.build_model(seed=seed),
        encoder=MLPEncoder(
            config.encoder_units,
            hidden_units=config.encoder_units,
            num_cross_layers=config.num_cross_layers,
            seed=seed + 2000,
            name="encoder",
        ),
        head=head,
        label_name=spec.label.name,
        delta=config.delta,
        clip_min=spec.label.clip_min,
        clip_max=spec.label.clip_max,
        seed=seed + 1000,
        prediction_max=prediction_max,
        name=f"{head}_head",
    )
    model(
        {k: tf.zeros([1, *v.shape[1:]], v.dtype) for k, v in spec.input_signature().items()},
        training=False,
    )
    return model
