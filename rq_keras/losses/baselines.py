"""The baseline heads' losses as registered `keras.losses.Loss` classes.

Each loss takes the clipped label `y_true` `(batch,)` and the head's output
layer values `y_pred` (`output_units` wide) and returns the unweighted loss
of each example; `predictions(outputs)` maps the output values to what the
head serves. `BASELINE_LOSSES` names them for `ModelConfig`/`TrainConfig.head`:

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
  same bound (the code tree's output of that name). The bound is what keeps
  ZILN usable: a row with a large sigma has a lognormal mean of
  `exp(sigma^2 / 2)` times its median, and on CDNOW single rows reached 1e9
  dollars (MAE 4e7 on the test split) without it. The labels must be >= 0.

Used through `keras.losses.Loss.__call__` they reduce as Keras losses do
(sample weights included); the baseline task calls them with
`reduction="none"` and averages over the global batch itself.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from rq_keras.losses.terms import huber

__all__ = [
    "BASELINE_HEADS",
    "BASELINE_LOSSES",
    "BaselineLoss",
    "HuberLoss",
    "LogMSELoss",
    "MSELoss",
    "ZILNLoss",
    "baseline_loss",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _signed_log1p(x):
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def _signed_expm1(z):
    return tf.sign(z) * tf.math.expm1(tf.abs(z))


class BaselineLoss(keras.losses.Loss):
    """A baseline head's loss: one output value per example, served as is.

    Args:
        label_name: the label's name, for error messages.
        reduction, name: as `keras.losses.Loss`.
    """

    output_units = 1

    def __init__(self, label_name: str = "label", reduction="none", name=None):
        super().__init__(reduction=reduction, name=name)
        self.label_name = label_name

    def _value(self, y_pred):
        return tf.reshape(tf.cast(y_pred, tf.float32), [-1])

    def predictions(self, outputs, prediction_max: float | None = None) -> dict[str, tf.Tensor]:
        """The served outputs of output layer values: `prediction` float32
        `(batch,)` (`prediction_max` bounds ZILN's only)."""
        return {"prediction": self._value(outputs)}

    def get_config(self):
        return {**super().get_config(), "label_name": self.label_name}


@keras.utils.register_keras_serializable(package="rq_keras")
class MSELoss(BaselineLoss):
    """Squared error on the label."""

    def call(self, y_true, y_pred):
        y = tf.reshape(tf.cast(y_true, tf.float32), [-1])
        return tf.square(y - self._value(y_pred))


@keras.utils.register_keras_serializable(package="rq_keras")
class LogMSELoss(BaselineLoss):
    """Squared error on `sign(y) log1p(|y|)`; served through `sign(z) expm1(|z|)`."""

    def call(self, y_true, y_pred):
        y = tf.reshape(tf.cast(y_true, tf.float32), [-1])
        return tf.square(_signed_log1p(y) - self._value(y_pred))

    def predictions(self, outputs, prediction_max=None):
        return {"prediction": _signed_expm1(self._value(outputs))}


@keras.utils.register_keras_serializable(package="rq_keras")
class HuberLoss(BaselineLoss):
    """The Huber loss with threshold `delta` (> 0) on the label."""

    def __init__(self, delta: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.delta = check_delta(delta)

    def call(self, y_true, y_pred):
        y = tf.reshape(tf.cast(y_true, tf.float32), [-1])
        return huber(y - self._value(y_pred), self.delta)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


@keras.utils.register_keras_serializable(package="rq_keras")
class ZILNLoss(BaselineLoss):
    """The zero-inflated lognormal loss (module docstring); outputs `(p, mu, sigma_raw)`.

    Raises (in the graph):
        tf.errors.InvalidArgumentError: a label < 0.
    """

    output_units = 3

    @staticmethod
    def parameters(outputs):
        """`(p logit, mu, sigma)` of ZILN outputs `(batch, 3)`, each `(batch,)`."""
        logit, mu, sigma_raw = tf.unstack(tf.cast(outputs, tf.float32), num=3, axis=-1)
        # The ZILN paper's floor: keeps log(sigma) and 1 / sigma^2 finite.
        sigma = tf.maximum(tf.math.softplus(sigma_raw), math.sqrt(keras.backend.epsilon()))
        return logit, mu, sigma

    def call(self, y_true, y_pred):
        y = tf.reshape(tf.cast(y_true, tf.float32), [-1])
        check = tf.debugging.assert_non_negative(
            y,
            message=f"the ZILN head needs non-negative labels: label {self.label_name!r} has a "
            "value < 0 (set the spec's label clip_min to 0 or pick another head)",
        )
        with tf.control_dependencies([check]):
            positive = tf.cast(y > 0, tf.float32)
        logit, mu, sigma = self.parameters(y_pred)
        classification = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=logit)
        # log(0) would be -inf, and 0 * inf is NaN in the forward and backward
        # pass; zero rows take y = 1 and are then masked out.
        log_y = tf.math.log(tf.where(y > 0, y, tf.ones_like(y)))
        nll = (
            log_y
            + tf.math.log(sigma)
            + _HALF_LOG_2PI
            + tf.square(log_y - mu) / (2 * tf.square(sigma))
        )
        return classification + positive * nll

    def predictions(self, outputs, prediction_max=None):
        """`prediction` (the mixture's mean), `positive_mean` (the lognormal's
        mean, E[y | x, y > 0]) and `positive_probability` (`sigmoid(p)`),
        float32 `(batch,)`; the two means at most `prediction_max`."""
        logit, mu, sigma = self.parameters(outputs)
        probability = tf.sigmoid(logit)
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


BASELINE_LOSSES: dict[str, type[BaselineLoss]] = {
    "mse": MSELoss,
    "log_mse": LogMSELoss,
    "huber": HuberLoss,
    "ziln": ZILNLoss,
}
BASELINE_HEADS = tuple(BASELINE_LOSSES)


def check_delta(delta) -> float:
    delta = float(delta)
    if not math.isfinite(delta) or delta <= 0:
        raise ValueError(f"`delta` must be a finite number > 0, got {delta}")
    return delta


def baseline_loss(head: str, delta: float = 2.0, label_name: str = "label") -> BaselineLoss:
    """The loss of head `head` (`delta` is the Huber head's threshold).

    Raises:
        ValueError: `head` is not one of `BASELINE_HEADS`, or `delta` is not > 0.
    """
    if head not in BASELINE_LOSSES:
        raise ValueError(f"`head` must be one of {BASELINE_HEADS}, got {head!r}")
    delta = check_delta(delta)
    if head == "huber":
        return HuberLoss(delta=delta, label_name=label_name, name=head)
    return BASELINE_LOSSES[head](label_name=label_name, name=head)
