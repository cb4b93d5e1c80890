"""The per-example terms of the RQ-Reg objective and the global-batch mean.

`code_nll` (L_gen, Eq. 11), `huber` and `huber_terms` (L_reg, Eq. 12-13),
`atom_crps` (the CRPS of a distribution over fixed atoms, level 1's term),
`global_batch_mean` (the distribution-aware batch mean every head uses), and
the argument checks the losses share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

__all__ = [
    "atom_crps",
    "check_positive",
    "check_weight",
    "clip_labels",
    "code_nll",
    "flat",
    "global_batch_mean",
    "huber",
    "huber_terms",
]


def clip_labels(labels, clip_min: float | None, clip_max: float | None) -> tf.Tensor:
    """Raw labels `(batch,)` or `(batch, 1)` -> float32 `(batch,)` clipped to
    `[clip_min, clip_max]` (None: no bound), as the codebook clips them."""
    label = tf.cast(tf.reshape(labels, [-1]), tf.float32)
    if clip_min is None and clip_max is None:
        return label
    return tf.clip_by_value(
        label,
        -float("inf") if clip_min is None else clip_min,
        float("inf") if clip_max is None else clip_max,
    )


def check_positive(name: str, value: Any) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value}")
    return value


def check_weight(name: str, value: Any) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value}")
    return value


def flat(x) -> tf.Tensor:
    """`(batch,)` or `(batch, 1)` -> float32 `(batch,)`."""
    return tf.reshape(tf.cast(x, tf.float32), [-1])


@keras.utils.register_keras_serializable(package="rq_keras")
def code_nll(tokens, logits) -> tf.Tensor:
    """Per-example negative log-likelihood of the true RQ codes (Eq. 11).

    The softmax runs over the whole shared vocabulary (`<start>` and the codes
    of every level), as in Eq. 9. The paper's L_gen is the mean of this over
    the examples: per example the NLL is summed over the levels, not averaged.

    Args:
        tokens: int `(batch, levels)`, the global vocabulary id of each level's
            true code (`ResidualCodeEncoder` output `tokens`).
        logits: float `(batch, levels, vocabulary)`, z_l of each step.

    Returns:
        float32 `(batch,)`: `-sum_l log softmax(z_l)[tokens_l]`.
    """
    logits = tf.cast(logits, tf.float32)
    tokens = tf.cast(tokens, tf.int32)
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tokens, logits=logits)
    return tf.reduce_sum(nll, axis=-1)


def huber(error: tf.Tensor, delta: float) -> tf.Tensor:
    """The Huber loss of `error` elementwise (Eq. 12): `error^2 / 2` within
    `delta`, `delta * |error| - delta^2 / 2` beyond."""
    abs_error = tf.abs(error)
    quadratic = tf.minimum(abs_error, delta)
    return 0.5 * tf.square(quadratic) + delta * (abs_error - quadratic)


def huber_terms(
    y, y_hat, level_values, level_predictions, delta: float = 2.0, cumulative: bool = False
) -> tf.Tensor:
    """Per-example regression loss of Eq. 13 with the Huber loss of Eq. 12.

    `huber(y, y_hat) + sum_l huber(q_l, y_hat_l)`, where
    `huber(u, v) = (u - v)^2 / 2` if `|u - v| <= delta`, else
    `delta * |u - v| - delta^2 / 2`.

    With `cumulative=True` (the authors' released code) the level terms
    compare running sums instead, each level correcting what the earlier ones
    left, whose predictions are held fixed (no gradient):
    `sum_l huber(q_1 + ... + q_l, stop_gradient(y_hat_1 + ... + y_hat_{l-1}) + y_hat_l)`.

    Args:
        y: `(batch,)` or `(batch, 1)` labels.
        y_hat: `(batch,)` or `(batch, 1)` predictions, `sum_l y_hat_l`.
        level_values: `(batch, levels)`, the quantized value q_l of each level
            (`ResidualCodeEncoder` output `level_values`).
        level_predictions: `(batch, levels)`, the per-level predictions y_hat_l.
        delta: the Huber threshold, > 0.
        cumulative: compare running sums (see above) instead of levels.

    Returns:
        float32 `(batch,)`.
    """
    delta = check_positive("delta", delta)
    total = huber(flat(y) - flat(y_hat), delta)
    q = tf.cast(level_values, tf.float32)
    pred = tf.cast(level_predictions, tf.float32)
    if cumulative:
        earlier = tf.stop_gradient(tf.math.cumsum(pred, axis=-1, exclusive=True))
        level_error = tf.math.cumsum(q, axis=-1) - (earlier + pred)
    else:
        level_error = q - pred
    return total + tf.reduce_sum(huber(level_error, delta), axis=-1)


def atom_crps(logits, values, y) -> tf.Tensor:
    """Per-example CRPS of a distribution over fixed atoms, exactly.

    `CRPS(F, y) = integral (F(t) - 1{t >= y})^2 dt`, F the step CDF of the
    atoms `values` with probabilities `softmax(logits)`. Between atoms k and
    k + 1 (sorted) F is the cumulative mass F_k, so the integral is
    `sum_k a_k F_k^2 + (d_k - a_k) (1 - F_k)^2` (d_k the gap, a_k its part
    below y) plus the distance from y to the atoms' range when y is outside
    it (no gradient). Unlike the NLL of the code it sees the atoms' order and
    distances: mass one code away costs less than mass far away. The discrete
    ranked probability score weighted by the gaps.

    Args:
        logits: float `(batch, atoms)`, in the order of `values`.
        values: the atoms' values, `(atoms,)` (any order; a constant).
        y: `(batch,)` or `(batch, 1)` labels, in the unit of `values`.

    Returns:
        float32 `(batch,)`, in the unit of the labels.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size < 1 or not np.all(np.isfinite(values)):
        raise ValueError(f"`values` must be a non-empty list of finite numbers, got {values}")
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    logits = tf.gather(tf.cast(logits, tf.float32), order.astype(np.int32), axis=-1)
    cdf = tf.math.cumsum(tf.nn.softmax(logits, axis=-1), axis=-1)[:, :-1]
    y = flat(y)[:, tf.newaxis]
    low = tf.constant(sorted_values[:-1], tf.float32)
    gap = tf.constant(np.diff(sorted_values), tf.float32)
    below = tf.clip_by_value(y - low, 0.0, gap)  # the part of each gap below y
    inside = tf.reduce_sum(below * tf.square(cdf) + (gap - below) * tf.square(1.0 - cdf), axis=-1)
    first, last = float(sorted_values[0]), float(sorted_values[-1])
    outside = tf.nn.relu(first - y[:, 0]) + tf.nn.relu(y[:, 0] - last)
    return inside + outside


def global_batch_mean(per_example):
    """This replica's share of the global-batch mean of `per_example` `(batch,)`.

    Outside a multi-replica strategy: the mean (0 for an empty batch). Under
    one: this replica's sum over the global batch size (all-reduced from the
    local sizes); summed over replicas, the mean over the global batch.
    """
    per_example = tf.convert_to_tensor(per_example)
    count = tf.cast(tf.size(per_example), per_example.dtype)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.math.divide_no_nan(tf.reduce_sum(per_example), count)
