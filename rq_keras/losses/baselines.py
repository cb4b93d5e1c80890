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
  Its `quantiles` output (`ziln_quantiles`) holds the mixture's quantiles at
  the loss's `quantiles` levels (the code tree's output of that name), so its
  predictive distribution is scored as RQ-Reg's is.

Used through `keras.losses.Loss.__call__` they reduce as Keras losses do
(sample weights included); the baseline task calls them with
`reduction="none"` and averages over the global batch itself.
"""

from __future__ import annotations

# ruff: noqa: E402 (the Keras check comes before TensorFlow loads)
from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.losses.baselines")  # a Keras 2 module: before TensorFlow loads

import tf_keras as keras

from rq_keras.losses.baseline_math import (
    BASELINE_HEADS,
    BaselineMath,
    HuberMath,
    LogMSEMath,
    MSEMath,
    OptDistMath,
    ZILNMath,
    make_baseline_loss,
)

__all__ = [
    "BASELINE_LOSSES",
    "BaselineLoss",
    "HuberLoss",
    "LogMSELoss",
    "MSELoss",
    "OptDistLoss",
    "ZILNLoss",
    "baseline_loss",
]


class BaselineLoss(BaselineMath, keras.losses.Loss):
    """A baseline head's loss (`rq_keras.losses.baseline_math.BaselineMath`)
    as a Keras 2 loss.

    Args:
        label_name: the label's name, for error messages.
        reduction, name: as `keras.losses.Loss`.
    """


@keras.utils.register_keras_serializable(package="rq_keras")
class MSELoss(MSEMath, BaselineLoss):
    """Squared error on the label."""


@keras.utils.register_keras_serializable(package="rq_keras")
class LogMSELoss(LogMSEMath, BaselineLoss):
    """Squared error on `sign(y) log1p(|y|)`; served through `sign(z) expm1(|z|)`."""


@keras.utils.register_keras_serializable(package="rq_keras")
class HuberLoss(HuberMath, BaselineLoss):
    """The Huber loss with threshold `delta` (> 0) on the label."""


@keras.utils.register_keras_serializable(package="rq_keras")
class ZILNLoss(ZILNMath, BaselineLoss):
    """The zero-inflated lognormal loss (module docstring; `ZILNMath`)."""


@keras.utils.register_keras_serializable(package="rq_keras")
class OptDistLoss(OptDistMath, ZILNLoss):
    """OptDist's loss (`rq_keras.losses.baseline_math.OptDistMath`, read its
    documentation) as a Keras 2 loss."""


BASELINE_LOSSES: dict[str, type[BaselineLoss]] = {
    "mse": MSELoss,
    "log_mse": LogMSELoss,
    "huber": HuberLoss,
    "ziln": ZILNLoss,
    "optdist": OptDistLoss,
}
assert tuple(BASELINE_LOSSES) == BASELINE_HEADS


def baseline_loss(head: str, *args, **kwargs) -> BaselineLoss:
    """The Keras 2 loss of head `head` (`make_baseline_loss`'s arguments:
    `delta`, `label_name`, `quantiles`, `components`, `selection_temperature`,
    `alignment_weight`).

    Raises:
        ValueError: `head` is not one of `BASELINE_HEADS`, or `delta` is not > 0.
    """
    return make_baseline_loss(BASELINE_LOSSES, head, *args, **kwargs)
