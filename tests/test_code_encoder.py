import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from rq_keras.layers import ResidualCodeEncoder
from rq_keras.quantizer.residual import ResidualQuantizer


@pytest.fixture(scope="module")
def quantizer():
    rng = np.random.default_rng(0)
    y = rng.lognormal(2.0, 1.5, 50_000)
    y[rng.random(y.size) < 0.3] = 0.0
    y[rng.random(y.size) < 0.05] *= -1.0  # negative targets are valid too
    return ResidualQuantizer(num_levels=3, codebook_size=[48, 32, 16]).fit(y)


def hard_values(q, n=100_000, seed=1):
    """n labels: exact decision boundaries of every level, their neighbours,
    extremes, and random labels (long-tailed, negative, zero, uniform)."""
    rng = np.random.default_rng(seed)
    c0, c1, _ = q.centroids
    b0, b1, b2 = q.boundaries
    exact = np.concatenate(
        [
            b0,  # level-1 midpoints
            (c0[:, None] + b1[None, :]).ravel(),  # level-2 midpoints after level 1
            (c0[:, None, None] + c1[None, :, None] + b2[None, None, :]).ravel(),
            np.nextafter(b0, np.inf),
            np.nextafter(b0, -np.inf),
            [1e300, -1e300, 5e-324, -0.0],
        ]
    )
    m = max(n - exact.size, 0)
    random = np.concatenate(
        [
            rng.lognormal(2.0, 1.5, m - 3 * (m // 10)),
            -rng.lognormal(1.0, 1.0, m // 10),
            np.zeros(m // 10),
            rng.uniform(-1e4, 1e4, m // 10),
        ]
    )
    return rng.permutation(np.concatenate([exact, random]))[:n]


def in_float32_range(values):
    return values[np.abs(values) < np.finfo(np.float32).max].astype(np.float32)


def run_layer(layer, values):
    return {k: v.numpy() for k, v in layer(tf.constant(values)).items()}


def test_bit_identical_to_numpy_float64(quantizer):
    values = hard_values(quantizer)
    assert values.size == 100_000
    out = run_layer(ResidualCodeEncoder.from_quantizer(quantizer), values)
    np.testing.assert_array_equal(out["codes"], quantizer.encode(values))
    tokens = quantizer.codes_to_tokens(quantizer.encode(values))
    np.testing.assert_array_equal(out["tokens"], tokens)
    np.testing.assert_array_equal(
        out["level_values"], quantizer.quantized(values).astype(np.float32)
    )


def test_bit_identical_to_numpy_float32_labels(quantizer):
    values = in_float32_range(hard_values(quantizer, seed=2))
    out = run_layer(ResidualCodeEncoder.from_quantizer(quantizer), values)
    np.testing.assert_array_equal(out["codes"], quantizer.encode(values.astype(np.float64)))


def test_clipping_matches_numpy():
    y = np.random.default_rng(3).lognormal(1, 1, 5000)
    q = ResidualQuantizer(num_levels=2, codebook_size=8, clip_min=0.5, clip_max=20.0).fit(y)
    values = np.concatenate([y, [-5.0, 0.0, 0.5, 20.0, 1e6]])
    np.testing.assert_array_equal(
        run_layer(ResidualCodeEncoder.from_quantizer(q), values)["codes"], q.encode(values)
    )


def test_golden_values_and_shapes():
    layer = ResidualCodeEncoder(centroids=[[0.5, 10.5], [-0.5, 0.5]])
    out = layer(tf.constant([[0.0], [1.0], [10.0], [11.0], [5.5]]))  # (batch, 1) input
    np.testing.assert_array_equal(out["codes"].numpy(), [[0, 0], [0, 1], [1, 0], [1, 1], [0, 1]])
    np.testing.assert_array_equal(out["tokens"].numpy(), [[1, 3], [1, 4], [2, 3], [2, 4], [1, 4]])
    expected = [[0.5, -0.5], [0.5, 0.5], [10.5, -0.5], [10.5, 0.5], [0.5, 0.5]]
    np.testing.assert_array_equal(out["level_values"].numpy(), expected)
    assert out["codes"].dtype == tf.int32 and out["level_values"].dtype == tf.float32
    assert layer.vocabulary_size == 5


def test_levels_of_different_sizes_and_single_centroid():
    layer = ResidualCodeEncoder(centroids=[[1.0, 2.0, 3.0], [0.0]])
    out = layer(tf.constant([0.0, 2.4, 2.6, 9.0]))
    np.testing.assert_array_equal(out["codes"].numpy(), [[0, 0], [1, 0], [2, 0], [2, 0]])
    np.testing.assert_array_equal(out["tokens"].numpy()[:, 1], [4, 4, 4, 4])


def test_empty_batch():
    layer = ResidualCodeEncoder(centroids=[[0.0, 1.0], [-0.1, 0.1]])
    out = layer(tf.zeros([0], tf.float32))
    assert out["codes"].shape == (0, 2) and out["level_values"].shape == (0, 2)


def test_integer_labels():
    layer = ResidualCodeEncoder(centroids=[[0.0, 10.0]])
    np.testing.assert_array_equal(layer(tf.constant([1, 6, 9]))["codes"].numpy()[:, 0], [0, 1, 1])


def test_nan_label_fails_clearly():
    layer = ResidualCodeEncoder(centroids=[[0.0, 1.0]], name="label_codes")
    with pytest.raises(tf.errors.InvalidArgumentError, match="label_codes: labels must be finite"):
        layer(tf.constant([1.0, np.nan]))


@pytest.mark.parametrize(
    "centroids, message",
    [
        ([], "non-empty list of levels"),
        ([[]], "level 0 is empty"),
        ([[1.0, 1.0]], "level 0 must be strictly increasing"),
        ([[0.0], [1.0, float("inf")]], "level 1 has a non-finite value"),
    ],
)
def test_bad_centroids(centroids, message):
    with pytest.raises(ValueError, match=message):
        ResidualCodeEncoder(centroids=centroids)


def test_get_config_round_trip(quantizer):
    layer = ResidualCodeEncoder.from_quantizer(quantizer, name="codes")
    config = layer.get_config()
    clone = ResidualCodeEncoder.from_config(config)
    assert clone.get_config() == config
    values = hard_values(quantizer, n=2000, seed=4)
    expected = run_layer(layer, values)["codes"]
    np.testing.assert_array_equal(run_layer(clone, values)["codes"], expected)


def _model(quantizer):
    labels = keras.Input(shape=(), dtype=tf.float32, name="label")
    return keras.Model(
        labels, ResidualCodeEncoder.from_quantizer(quantizer, name="rq_codes")(labels)
    )


def test_keras_save_load(tmp_path, quantizer):
    model = _model(quantizer)
    path = str(tmp_path / "encoder.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # registered: no custom_objects needed
    values = in_float32_range(hard_values(quantizer, n=5000, seed=5))
    np.testing.assert_array_equal(loaded(values)["codes"].numpy(), model(values)["codes"].numpy())
    assert isinstance(loaded.get_layer("rq_codes"), ResidualCodeEncoder)


def test_saved_model_round_trip(tmp_path, quantizer):
    model = _model(quantizer)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def encode(labels):
        return model(labels)

    path = str(tmp_path / "saved")
    tf.saved_model.save(model, path, signatures={"encode": encode})
    restored = tf.saved_model.load(path)
    values = np.random.default_rng(6).lognormal(2, 1.5, 3000).astype(np.float32)
    out = restored.signatures["encode"](tf.constant(values))
    np.testing.assert_array_equal(out["codes"].numpy(), quantizer.encode(values.astype(np.float64)))


def test_under_mirrored_strategy(quantizer, mirrored):
    strategy = mirrored
    with strategy.scope():
        layer = ResidualCodeEncoder.from_quantizer(quantizer)
        layer.build((None,))
    values = in_float32_range(hard_values(quantizer, n=4096, seed=7))
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(values).batch(512)
    )

    @tf.function
    def step(batch):
        return strategy.run(lambda y: layer(y)["codes"], args=(batch,))

    got = []
    for batch in dataset:
        per_replica = strategy.experimental_local_results(step(batch))
        got.append(np.concatenate([t.numpy() for t in per_replica]))
    np.testing.assert_array_equal(np.concatenate(got), quantizer.encode(values.astype(np.float64)))


def test_first_call_inside_tf_function_then_eager():
    layer = ResidualCodeEncoder(centroids=[[0.5, 10.5], [-0.5, 0.5]])

    @tf.function
    def encode(y):
        return layer(y)["tokens"]

    np.testing.assert_array_equal(encode(tf.constant([0.0, 11.0])).numpy(), [[1, 3], [2, 4]])
    eager = layer(tf.constant([0.0, 11.0]))["tokens"].numpy()
    np.testing.assert_array_equal(eager, [[1, 3], [2, 4]])


def test_codes_are_exact_under_mixed_precision():
    y = np.random.default_rng(5).lognormal(2.0, 1.5, 5000)
    q = ResidualQuantizer(num_levels=3, codebook_size=16).fit(y)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = ResidualCodeEncoder.from_quantizer(q)
        out = layer(tf.constant(y))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert layer.compute_dtype == "float64"
    np.testing.assert_array_equal(out["codes"].numpy(), q.encode(y))
