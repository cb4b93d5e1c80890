"""The baseline heads' losses, written once for both Keras.

The math of `rq_keras.losses.baselines` (Keras 2 `Loss` classes, read its
documentation for each loss) and of the Keras 3 losses of
`rq_keras.layers.keras3`: each is a skin `class X(XMath, <Keras>.losses.Loss)`
over the classes here, so a fix lands in both and the same outputs give the
same loss and predictions in both (`tests/test_keras3.py`). TensorFlow ops,
no Keras: the sigma floor is `sqrt(1e-7)`, Keras' default `epsilon()`.
"""

from __future__ import annotations

import math

import tensorflow as tf

from rq_keras.config.choices import check_distribution_options
from rq_keras.losses.terms import huber

__all__ = [
    "BASELINE_HEADS",
    "BaselineMath",
    "HuberMath",
    "LogMSEMath",
    "MSEMath",
    "OptDistMath",
    "ZILNMath",
    "check_delta",
    "check_quantile_levels",
    "make_baseline_loss",
    "ziln_nll",
    "ziln_predictions",
    "ziln_quantiles",
]

BASELINE_HEADS = ("mse", "log_mse", "huber", "ziln", "optdist")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# ZILN's sigma floor: sqrt of Keras' default epsilon() (both Keras: 1e-7).
_SIGMA_FLOOR = math.sqrt(1e-7)


def _signed_log1p(x):
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def _signed_expm1(z):
    return tf.sign(z) * tf.math.expm1(tf.abs(z))


class BaselineMath:
    """A baseline head's loss: one output value per example, served as is.

    A skin adds its Keras' `Loss` after this class; the constructor takes
    `label_name` (for error messages) and passes the rest (`reduction`,
    `name`) on to it. `_settings()` is what `get_config` adds.
    """

    output_units = 1

    def __init__(self, label_name: str = "label", reduction="none", name=None):
        super().__init__(reduction=reduction, name=name)
        self.label_name = label_name

    def _value(self, y_pred):
        return tf.reshape(tf.cast(y_pred, tf.float32), [-1])

    def per_example(self, y_true, y_pred, training=False):
        """The loss of each example; `training` matters to heads with noise
        in training (OptDist's selection), the others return `call`'s."""
        return self.call(y_true, y_pred)

    def predictions(self, outputs, prediction_max: float | None = None) -> dict[str, tf.Tensor]:
        """The served outputs of output layer values: `prediction` float32
        `(batch,)` (`prediction_max` bounds ZILN's only)."""
        return {"prediction": self._value(outputs)}

    def _settings(self) -> dict:
        return {"label_name": self.label_name}

    def get_config(self):
        return {**super().get_config(), **self._settings()}


class MSEMath(BaselineMath):
    """Squared error on the label."""

    def call(self, y_true, y_pred):
        y = tf.reshape(tf.cast(y_true, tf.float32), [-1])
        return tf.square(y - self._value(y_pred))


class LogMSEMath(BaselineMath):
    """Squared error on `sign(y) log1p(|y|)`; served through `sign(z) expm1(|z|)`."""

    def call(self, y_true, y_pred):
        y = tf.reshape(tf.cast(y_true, tf.float32), [-1])
        return tf.square(_signed_log1p(y) - self._value(y_pred))

    def predictions(self, outputs, prediction_max=None):
        return {"prediction": _signed_expm1(self._value(outputs))}


class HuberMath(BaselineMath):
    """The Huber loss with threshold `delta` (> 0) on the label."""

    def __init__(self, delta: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.delta = check_delta(delta)

    def call(self, y_true, y_pred):
        y = tf.reshape(tf.cast(y_true, tf.float32), [-1])
        return huber(y - self._value(y_pred), self.delta)

    def _settings(self):
        return {**super()._settings(), "delta": self.delta}


class ZILNMath(BaselineMath):
    """The zero-inflated lognormal loss (`rq_keras.losses.baselines`); outputs
    `(p, mu, sigma_raw)`.

    Args:
        quantiles: the levels of the `quantiles` prediction, each in (0, 1).
        **kwargs: as `BaselineMath`.

    Raises (in the graph):
        tf.errors.InvalidArgumentError: a label < 0.
    """

    output_units = 3
    name_in_errors = "ZILN"

    def __init__(self, quantiles=(0.1, 0.5, 0.9), **kwargs):
        super().__init__(**kwargs)
        self.quantiles = check_quantile_levels(quantiles)

    def _settings(self):
        return {**super()._settings(), "quantiles": list(self.quantiles)}

    @staticmethod
    def parameters(outputs):
        """`(p logit, mu, sigma)` of ZILN outputs `(batch, 3)`, each `(batch,)`."""
        logit, mu, sigma_raw = tf.unstack(tf.cast(outputs, tf.float32), num=3, axis=-1)
        return logit, mu, _sigma(sigma_raw)

    def checked_labels(self, y_true):
        """The labels `(batch,)` float32, behind a check that none is < 0."""
        y = tf.reshape(tf.cast(y_true, tf.float32), [-1])
        check = tf.debugging.assert_non_negative(
            y,
            message=f"the {self.name_in_errors} head needs non-negative labels: label "
            f"{self.label_name!r} has a value < 0 (set the spec's label clip_min to 0 or pick "
            "another head)",
        )
        with tf.control_dependencies([check]):
            return tf.identity(y)

    def call(self, y_true, y_pred):
        return ziln_nll(self.checked_labels(y_true), *self.parameters(y_pred))

    def predictions(self, outputs, prediction_max=None):
        """`prediction` (the mixture's mean), `positive_mean` (the lognormal's
        mean, E[y | x, y > 0]) and `positive_probability` (`sigmoid(p)`),
        float32 `(batch,)`; the two means at most `prediction_max`; and
        `quantiles` `(batch, Q)` (`ziln_quantiles`)."""
        logit, mu, sigma = self.parameters(outputs)
        return ziln_predictions(tf.sigmoid(logit), mu, sigma, self.quantiles, prediction_max)


def _sigma(sigma_raw):
    """ZILN's sigma: softplus, floored at sqrt(epsilon) (the ZILN paper's floor:
    keeps log(sigma) and 1 / sigma^2 finite)."""
    return tf.maximum(tf.math.softplus(sigma_raw), _SIGMA_FLOOR)


def ziln_nll(y, logit, mu, sigma):
    """The ZILN loss of each example (module docstring): labels `y` `(batch,)`
    (>= 0, not checked here) against parameters broadcastable to them (a
    trailing axis of components too: `y[:, None]` against `(batch, L)`)."""
    positive = tf.cast(y > 0, tf.float32)
    classification = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.broadcast_to(positive, tf.broadcast_dynamic_shape(tf.shape(y), tf.shape(logit))),
        logits=logit,
    )
    # log(0) would be -inf, and 0 * inf is NaN in the forward and backward
    # pass; zero rows take y = 1 and are then masked out.
    log_y = tf.math.log(tf.where(y > 0, y, tf.ones_like(y)))
    nll = (
        log_y + tf.math.log(sigma) + _HALF_LOG_2PI + tf.square(log_y - mu) / (2 * tf.square(sigma))
    )
    return classification + positive * nll


def ziln_quantiles(probability, mu, sigma, levels, prediction_max=None):
    """Quantiles of the zero-inflated lognormal `P(y > 0) = probability`,
    `log y | y > 0 ~ N(mu, sigma^2)`: float32 `(batch, len(levels))`.

    The tau-quantile is 0 while tau <= 1 - probability (the atom), else the
    lognormal's quantile at level `(tau - (1 - probability)) / probability`,
    that level kept below 1 - 1e-6 (a finite quantile when probability is
    tiny) and the value at most `prediction_max`.
    """
    tau = tf.constant([float(t) for t in levels], tf.float32)[None, :]
    p = tf.cast(probability, tf.float32)[:, None]
    inner = (tau - (1.0 - p)) / tf.maximum(p, 1e-12)
    inner = tf.clip_by_value(inner, 1e-6, 1.0 - 1e-6)
    value = tf.exp(mu[:, None] + sigma[:, None] * tf.math.ndtri(inner))
    if prediction_max is not None:
        value = tf.minimum(value, float(prediction_max))
    return tf.where(tau <= 1.0 - p, tf.zeros_like(value), value)


def ziln_predictions(probability, mu, sigma, levels, prediction_max=None):
    """A zero-inflated lognormal's served outputs: `prediction` (its mean),
    `positive_mean`, `positive_probability` `(batch,)` and `quantiles`
    `(batch, Q)`; the means and quantiles at most `prediction_max`."""
    positive_mean = tf.exp(mu + 0.5 * tf.square(sigma))
    mean = probability * positive_mean
    if prediction_max is not None:
        mean = tf.minimum(mean, float(prediction_max))
        positive_mean = tf.minimum(positive_mean, float(prediction_max))
    return {
        "prediction": mean,
        "positive_mean": positive_mean,
        "positive_probability": probability,
        "quantiles": ziln_quantiles(probability, mu, sigma, levels, prediction_max),
    }


class OptDistMath(ZILNMath):
    """OptDist (Weng et al., CIKM 2024, "OptDist: Learning Optimal Distribution
    for Customer Lifetime Value Prediction"): `components` sub-distribution
    networks (SDNs), each a ZILN, and a selection network (DSM) that picks
    one of them per example.

    The outputs are `4 * components` values per example: the SDNs' `p`
    logits, `mu`s and `sigma_raw`s, then the DSM's selection logits `a`.
    Per example, with `L_i` the ZILN loss of SDN i::

        pi     = straight-through one-hot of argmax(a + g) (training: g Gumbel
                 noise, the soft part softmax((a + g) / temperature); else g = 0)
        L_DLM  = sum_i pi_i L_i                    # the selected SDN learns
        w      = softmax(a)
        L_DSM  = focal(w, onehot(argmin_i L_i), gamma = 2)
                 + alignment_weight * KL(softmax(-L) || w)   # L held constant
        loss   = L_DLM + L_DSM

    So the SDNs specialise on the examples routed to them, and the DSM
    learns to route each example to the SDN that fits it best (the hard
    pseudo-label through the focal loss, the soft one through KL). The
    paper states the structure; its temperature, focal gamma and the KL's
    direction are not given in what rq_keras could read, and these are the
    choices made here (docs/training.md, the paragraph on heads).

    Served (`predictions`): the ZILN of the SDN with the largest `a` (no
    noise): its mean, `positive_mean`, `positive_probability` and
    `quantiles`, bounded by `prediction_max` as ZILN's are.

    Args:
        components: the number of SDNs (>= 2).
        temperature: the Gumbel-softmax temperature (> 0).
        alignment_weight: the KL term's weight (>= 0).
        **kwargs: as `ZILNMath`.
    """

    focal_gamma = 2.0

    def __init__(self, components=4, temperature=1.0, alignment_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(components, bool) or int(components) != components or components < 2:
            raise ValueError(f"`components` must be an int >= 2, got {components!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"`temperature` must be a finite number > 0, got {temperature!r}")
        if not (math.isfinite(alignment_weight) and alignment_weight >= 0):
            raise ValueError(
                f"`alignment_weight` must be a finite number >= 0, got {alignment_weight!r}"
            )
        self.components = int(components)
        self.temperature = float(temperature)
        self.alignment_weight = float(alignment_weight)

    @property
    def output_units(self) -> int:
        return 4 * self.components

    def split(self, outputs):
        """`(p logits, mu, sigma, selection logits)`, each `(batch, components)`."""
        logit, mu, sigma_raw, selection = tf.split(tf.cast(outputs, tf.float32), 4, axis=-1)
        return logit, mu, _sigma(sigma_raw), selection

    name_in_errors = "OptDist"

    def component_losses(self, y_true, y_pred):
        """The ZILN loss of every SDN on every example, `(batch, components)`."""
        return self._component_losses(y_true, *self.split(y_pred)[:3])

    def _component_losses(self, y_true, logit, mu, sigma):
        return ziln_nll(self.checked_labels(y_true)[:, None], logit, mu, sigma)

    def per_example(self, y_true, y_pred, training=False):
        logit, mu, sigma, selection = self.split(y_pred)
        losses = self._component_losses(y_true, logit, mu, sigma)
        if training:
            uniform = tf.random.uniform(tf.shape(selection), 1e-6, 1.0 - 1e-6)
            noisy = selection - tf.math.log(-tf.math.log(uniform))
        else:
            noisy = selection
        soft = tf.nn.softmax(noisy / self.temperature, axis=-1)
        hard = tf.one_hot(tf.argmax(noisy, axis=-1), self.components)
        chosen = hard + soft - tf.stop_gradient(soft)
        dlm = tf.reduce_sum(chosen * losses, axis=-1)
        fixed = tf.stop_gradient(losses)
        target = tf.one_hot(tf.argmin(fixed, axis=-1), self.components)
        log_w = tf.nn.log_softmax(selection, axis=-1)
        w = tf.exp(log_w)
        focal = -tf.reduce_sum(target * tf.pow(1.0 - w, self.focal_gamma) * log_w, axis=-1)
        log_soft_target = tf.nn.log_softmax(-fixed, axis=-1)
        kl = tf.reduce_sum(tf.exp(log_soft_target) * (log_soft_target - log_w), axis=-1)
        return dlm + focal + self.alignment_weight * kl

    def call(self, y_true, y_pred):
        return self.per_example(y_true, y_pred, training=False)

    def predictions(self, outputs, prediction_max=None):
        """The selected SDN's ZILN outputs (see `ZILNLoss.predictions`) and
        `component` int32 `(batch,)`, the SDN selected."""
        logit, mu, sigma, selection = self.split(outputs)
        chosen = tf.argmax(selection, axis=-1, output_type=tf.int32)

        def pick(values):
            return tf.gather(values, chosen, axis=1, batch_dims=1)

        out = ziln_predictions(
            tf.sigmoid(pick(logit)), pick(mu), pick(sigma), self.quantiles, prediction_max
        )
        return {**out, "component": chosen}

    def _settings(self):
        return {
            **super()._settings(),
            "components": self.components,
            "temperature": self.temperature,
            "alignment_weight": self.alignment_weight,
        }


def check_quantile_levels(levels) -> tuple[float, ...]:
    """`levels` as floats; each must be in (0, 1), all distinct, at least one."""
    if not list(levels):
        raise ValueError("`quantiles` must be distinct numbers in (0, 1), got []")
    check_distribution_options(levels, (), 0)
    return tuple(float(t) for t in levels)


def check_delta(delta) -> float:
    delta = float(delta)
    if not math.isfinite(delta) or delta <= 0:
        raise ValueError(f"`delta` must be a finite number > 0, got {delta}")
    return delta


def make_baseline_loss(
    classes,
    head: str,
    delta: float = 2.0,
    label_name: str = "label",
    quantiles=(0.1, 0.5, 0.9),
    components: int = 4,
    selection_temperature: float = 1.0,
    alignment_weight: float = 1.0,
):
    """The loss of head `head` from `classes` (head -> one Keras' loss class):
    `delta` is the Huber head's threshold, `quantiles` the levels of ZILN's
    and OptDist's `quantiles` output, the last three OptDist's arguments.

    Raises:
        ValueError: `head` is not one of `BASELINE_HEADS`, or `delta` is not > 0.
    """
    if head not in BASELINE_HEADS:
        raise ValueError(f"`head` must be one of {BASELINE_HEADS}, got {head!r}")
    delta = check_delta(delta)
    loss = classes[head]
    if head == "huber":
        return loss(delta=delta, label_name=label_name, name=head)
    if head == "ziln":
        return loss(quantiles=quantiles, label_name=label_name, name=head)
    if head == "optdist":
        return loss(
            components=components,
            temperature=selection_temperature,
            alignment_weight=alignment_weight,
            quantiles=quantiles,
            label_name=label_name,
            name=head,
        )
    return loss(label_name=label_name, name=head)
