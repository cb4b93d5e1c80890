"""The FLOP counter of benchmarks/roofline.py against a hand count."""

import sys

import tensorflow as tf
import tf_keras as keras

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from roofline import count_flops  # noqa: E402


def test_the_flop_counter_matches_a_dense_layer_by_hand():
    b, n, m = 32, 16, 8
    dense = keras.layers.Dense(m)
    dense.build((None, n))

    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(dense(x))
        return tape.gradient(loss, dense.trainable_variables)

    counts = count_flops(step, tf.TensorSpec([b, n], tf.float32))
    # forward x W and the kernel's gradient x^T g: 2 b n m each; the input's
    # gradient is not asked for, so not computed
    assert counts["MatMul"] == 2 * (2 * b * n * m)
    assert counts["BiasAdd"] == b * m  # one add per output
    assert sum(counts.values()) < 2 * (2 * b * n * m) + 4 * b * m  # the rest is small
