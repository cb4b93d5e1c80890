"""The training optimizer: Adam, with lazy (row-wise) updates of embedding tables.

A feature's embedding table gets a sparse gradient (`tf.IndexedSlices`): the
rows of the ids in the batch. Keras' `Adam` still decays the moments of every
row and rewrites the whole table each step, which on a recommender's id
tables (the CIKM16 item table alone has 116,883 rows) is most of the update's
memory traffic. `LazyAdam` updates only the rows a batch touches, as
recommender systems usually train id embeddings: a row's moments and value
change on the steps whose batches hold its id, with Adam's bias correction
of the global step. Dense gradients take Adam's update unchanged.

`make_optimizer(name, learning_rate)` builds the optimizer a `TrainConfig`
names (`optimizer`: `"lazy_adam"`, the default, or `"adam"`).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from rq_keras.config.configs import OPTIMIZERS

__all__ = ["LazyAdam", "make_optimizer"]


@keras.utils.register_keras_serializable(package="rq_keras")
class LazyAdam(keras.optimizers.Adam):
    """Adam whose sparse gradients update only the rows they hold.

    For a `tf.IndexedSlices` gradient (an `Embedding` table's), the slices of
    one id are summed first (an id seen twice in a batch gets one update of
    its summed gradient, as the dense gradient would), then for those rows
    alone: `m = m + (g - m)(1 - beta_1)`, `v = v + (g^2 - v)(1 - beta_2)`,
    `w -= alpha m / (sqrt(v) + epsilon)`, with Adam's `alpha` at the global
    step. Rows not in the batch keep their value and moments exactly. Dense
    gradients get `keras.optimizers.Adam`'s update, so a model without
    embedding tables trains exactly as with Adam.

    Every op has CPU and GPU kernels (`unique`, `unsorted_segment_sum`,
    `gather`, `scatter_update`); under a distribution strategy the update
    runs per replica on the all-reduced gradient, as Adam's does.

    Args: those of `keras.optimizers.Adam`, except `amsgrad` (not supported
    for sparse rows; a `ValueError` names it).
    """

    def __init__(self, learning_rate=0.001, amsgrad: bool = False, name="LazyAdam", **kwargs):
        if amsgrad:
            raise ValueError("LazyAdam: amsgrad=True is not supported; use keras Adam for it")
        super().__init__(learning_rate=learning_rate, amsgrad=False, name=name, **kwargs)

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        beta_1_power = tf.pow(beta_1, local_step)
        beta_2_power = tf.pow(beta_2, local_step)
        alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        epsilon = tf.cast(self.epsilon, dtype)
        if self.adaptive_epsilon:
            epsilon = epsilon * tf.sqrt(1 - beta_2_power)

        key = self._var_key(variable)
        m = self._momentums[self._index_dict[key]]
        v = self._velocities[self._index_dict[key]]
        rows, position = tf.unique(gradient.indices)
        g = tf.math.unsorted_segment_sum(
            tf.cast(gradient.values, dtype), position, tf.shape(rows)[0]
        )
        m_rows = tf.gather(m, rows)
        v_rows = tf.gather(v, rows)
        m_rows = m_rows + (g - m_rows) * (1 - beta_1)
        v_rows = v_rows + (tf.square(g) - v_rows) * (1 - beta_2)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))


def make_optimizer(name: str, learning_rate: float):
    """The optimizer `TrainConfig.optimizer` names, at `learning_rate`."""
    if name == "lazy_adam":
        return LazyAdam(learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
