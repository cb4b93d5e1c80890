"""LazyAdam: Adam on dense weights, row-wise Adam on embedding tables."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from rq_keras.config.configs import TrainConfig
from rq_keras.training.optimizers import LazyAdam, make_optimizer

LR, B1, B2, EPS = 0.01, 0.9, 0.999, 1e-7


def _lazy_reference(table, batches):
    """Row-wise Adam in NumPy: per batch `(ids, per-id gradient rows)`, the
    rows of each id summed, then Adam on those rows only."""
    w = table.astype(np.float64).copy()
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, (ids, values) in enumerate(batches, start=1):
        g = np.zeros_like(w)
        np.add.at(g, ids, values)
        rows = np.unique(ids)
        m[rows] += (g[rows] - m[rows]) * (1 - B1)
        v[rows] += (g[rows] ** 2 - v[rows]) * (1 - B2)
        alpha = LR * np.sqrt(1 - B2**t) / (1 - B1**t)
        w[rows] -= alpha * m[rows] / (np.sqrt(v[rows]) + EPS)
    return w, m, v


def _batches(rows: int, width: int, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    # Repeated ids in a batch (summed), and rows 8.. never seen.
    return [
        (rng.integers(0, min(rows, 8), 6), rng.normal(size=(6, width)).astype(np.float32))
        for _ in range(steps)
    ]


def _apply(optimizer, table, batches):
    var = tf.Variable(table)
    for ids, values in batches:
        grad = tf.IndexedSlices(tf.constant(values), tf.constant(ids), tf.constant(table.shape))
        optimizer.apply_gradients([(grad, var)])
    return var


def test_sparse_gradients_update_only_their_rows_as_row_wise_adam():
    table = np.random.default_rng(1).normal(size=(12, 3)).astype(np.float32)
    batches = _batches(12, 3, steps=4)
    opt = LazyAdam(LR)
    var = _apply(opt, table, batches)
    want, want_m, want_v = _lazy_reference(table, batches)
    np.testing.assert_allclose(var.numpy(), want, rtol=1e-5, atol=1e-6)
    m, v = (s.numpy() for s in opt.variables[1:3])
    np.testing.assert_allclose(m, want_m, rtol=1e-5, atol=1e-7)
    # float32's 1 - beta_2 is 0.0009999871 (relative 1.3e-5 from 0.001).
    np.testing.assert_allclose(v, want_v, rtol=5e-5, atol=1e-9)
    # Rows no batch held: value and moments exactly as they were.
    seen = np.unique(np.concatenate([ids for ids, _ in batches]))
    unseen = np.setdiff1d(np.arange(12), seen)
    assert len(unseen) >= 4
    np.testing.assert_array_equal(var.numpy()[unseen], table[unseen])
    assert not m[unseen].any() and not v[unseen].any()
    # Keras' Adam moves the same rows on other steps (its moments decay every
    # step): the reference tells the two apart.
    dense = _apply(keras.optimizers.Adam(LR, epsilon=EPS), table, batches).numpy()
    assert np.abs(dense[seen] - want[seen]).max() > 1e-4


def test_every_row_in_every_batch_is_keras_adam_and_dense_gradients_are_unchanged():
    rng = np.random.default_rng(2)
    table = rng.normal(size=(5, 4)).astype(np.float32)
    batches = [(np.arange(5), rng.normal(size=(5, 4)).astype(np.float32)) for _ in range(3)]
    lazy = _apply(LazyAdam(LR), table, batches).numpy()
    adam = _apply(keras.optimizers.Adam(LR), table, batches).numpy()
    np.testing.assert_allclose(lazy, adam, rtol=1e-6, atol=1e-7)

    # Dense gradients: Keras' own update, bit for bit.
    out = []
    for opt in (LazyAdam(LR), keras.optimizers.Adam(LR)):
        var = tf.Variable(table)
        for _, values in batches:
            opt.apply_gradients([(tf.constant(values), var)])
        out.append(var.numpy())
    np.testing.assert_array_equal(out[0], out[1])


def _embedding_model():
    inputs = keras.Input((3,), dtype="int32")
    x = keras.layers.Embedding(
        40, 4, embeddings_initializer=keras.initializers.RandomNormal(seed=3)
    )(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(seed=4))(x)
    return keras.Model(inputs, out)


def _train(strategy, steps: int = 3):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 10, (16 * steps, 3)).astype(np.int32)  # rows 10.. never seen
    y = rng.normal(size=(16 * steps, 1)).astype(np.float32)
    with strategy.scope():
        model = _embedding_model()
        model.compile(optimizer=LazyAdam(LR), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    return model


def test_mirrored_training_matches_one_device(mirrored):
    one = _train(tf.distribute.get_strategy())
    two = _train(mirrored)
    for a, b in zip(one.get_weights(), two.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    table = one.get_weights()[0]
    initial = _embedding_model().get_weights()[0]
    np.testing.assert_array_equal(table[10:], initial[10:])  # untouched rows
    assert np.abs(table[:10] - initial[:10]).min() > 0  # every seen row moved


def test_saved_model_file_keeps_the_optimizer(tmp_path):
    model = _train(tf.distribute.get_strategy())
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, LazyAdam)
    assert loaded.optimizer.get_config()["learning_rate"] == pytest.approx(LR)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match="amsgrad=True is not supported"):
        LazyAdam(LR, amsgrad=True)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("sgd", LR)
    with pytest.raises(ValueError, match=r"`optimizer` must be one of"):
        TrainConfig(dataset="cdnow", optimizer="sgd")
    assert TrainConfig(dataset="cdnow").optimizer == "lazy_adam"
    assert type(make_optimizer("adam", LR)) is keras.optimizers.Adam
