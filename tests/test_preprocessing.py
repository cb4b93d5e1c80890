import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras as keras

from rq_keras.data import make_dataset, write_table
from rq_keras.features import FeatureSpec
from rq_keras.features.preprocessing import FeaturePreprocessor
from rq_keras.layers.feature_math import signed_log

SPEC = FeatureSpec.from_dict(
    {
        "name": "p",
        "label": "y",
        "embedding_dim": 4,
        "features": [
            {"name": "c", "kind": "categorical", "dtype": "string", "min_count": 2},
            {
                "name": "u",
                "kind": "categorical",
                "dtype": "int64",
                "max_size": 2,
                "num_oov_buckets": 2,
            },
            {"name": "h", "kind": "hashed", "dtype": "string", "num_bins": 8},
            {"name": "l", "kind": "list", "dtype": "int64", "max_length": 3, "pooling": "sum"},
            {"name": "x", "kind": "numeric", "transform": "log"},
            {"name": "b", "kind": "numeric", "encoding": "bucketize", "num_buckets": 4},
            {"name": "r", "kind": "numeric", "encoding": "raw"},
        ],
    }
)


def _frame():
    rng = np.random.default_rng(0)
    n = 200
    return pd.DataFrame(
        {
            # a x100, b x60, c x39, d x1 (below min_count 2)
            "c": ["a"] * 100 + ["b"] * 60 + ["c"] * 39 + ["d"],
            # 5 x80, 3 x80 (tie: smaller value first), 9 x40; max_size 2 keeps 3 and 5
            "u": [5] * 80 + [3] * 80 + [9] * 40,
            "h": [f"h{k}" for k in range(n)],
            "l": ["|".join(str(v) for v in range(k % 4)) for k in range(n)],
            "x": rng.lognormal(2.0, 1.0, n) * np.where(np.arange(n) % 10 == 0, -1, 1),
            "b": np.where(np.arange(n) < 120, 0.0, rng.exponential(5.0, n)),
            "r": rng.normal(size=n),
            "y": rng.lognormal(size=n),
        }
    )


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / "train.parquet"
    frame = _frame()
    write_table(frame, SPEC, path)
    return frame, path, FeaturePreprocessor(SPEC).adapt(path)


def test_vocabularies(adapted):
    _, _, pre = adapted
    assert pre.vocabulary("c") == ["a", "b", "c"]  # most frequent first, "d" < min_count
    assert pre.vocabulary("u") == [3, 5]  # ties by value, cut at max_size
    assert pre.vocabulary("l") == [0, 1, 2]  # padding is not counted
    assert pre.vocabulary("h") is None and pre.vocabulary("x") is None
    assert pre.statistics["features"]["c"]["distinct_values"] == 4
    assert pre.id_count("c") == 3 + 1 and pre.id_count("u") == 2 + 2
    assert pre.id_count("l") == 3 + 1 + 1 and pre.id_count("h") == 8  # pad id for lists


def test_numeric_statistics_match_numpy(adapted):
    frame, _, pre = adapted
    x = signed_log(frame["x"].to_numpy(np.float32))
    stats = pre.statistics["features"]["x"]
    assert stats["count"] == 200
    np.testing.assert_allclose(stats["mean"], x.mean(), rtol=1e-12)
    np.testing.assert_allclose(stats["variance"], x.var(), rtol=1e-12)
    # 60% zeros: the 0.25 and 0.5 quantiles collapse into one boundary at 0
    b = frame["b"].to_numpy(np.float32).astype(np.float64)
    expected = np.unique(np.quantile(b, [0.25, 0.5, 0.75]))
    assert pre.boundaries("b") == pytest.approx(expected.tolist())
    assert len(pre.boundaries("b")) == 2


def test_chunked_statistics_equal_one_pass(adapted):
    frame, path, pre = adapted
    chunked = FeaturePreprocessor(SPEC).adapt(path, chunk_rows=7)
    for name in ("c", "u", "l", "b"):
        assert chunked.statistics["features"][name] == pre.statistics["features"][name]
    for key in ("mean", "variance"):
        np.testing.assert_allclose(
            chunked.statistics["features"]["x"][key],
            pre.statistics["features"]["x"][key],
            rtol=1e-12,
        )


def test_model_output_and_oov(adapted):
    frame, path, pre = adapted
    model = pre.build_model(seed=3)
    assert pre.output_dim == 4 * 5 + 1 + 1 == model.output_shape[-1]
    x, _ = next(iter(make_dataset(path, SPEC, batch_size=16)))
    out = model(x).numpy()
    assert out.shape == (16, 22) and np.isfinite(out).all()
    lookup = model.get_layer("c_lookup")
    ids = lookup(tf.constant(["a", "b", "c", "d", "never seen"])).numpy()
    assert ids.tolist() == [1, 2, 3, 0, 0]  # OOV (incl. below min_count) -> the OOV id
    ulookup = model.get_layer("u_lookup")
    assert set(ulookup(tf.constant([9, 12345])).numpy().tolist()) <= {0, 1}
    lids = model.get_layer("l_lookup")(tf.constant([[0, 2, -1], [77, -1, -1]])).numpy()
    assert lids.tolist() == [[2, 4, 0], [1, 0, 0]]  # pad -> 0, OOV -> 1
    # sum pooling of an all-padding list is zero
    empty = {k: v[:1] for k, v in x.items()}
    empty["l"] = tf.constant([[-1, -1, -1]], tf.int64)
    slices = np.cumsum([0, *pre.output_dims().values()])
    l_slice = slice(slices[3], slices[4])
    assert np.all(model(empty).numpy()[0, l_slice] == 0)


def test_normalized_column_is_standardized(adapted):
    frame, path, pre = adapted
    model = pre.build_model()
    xs = []
    for x, _ in make_dataset(path, SPEC, batch_size=64):
        xs.append(model(x).numpy())
    start = int(np.cumsum([0, *pre.output_dims().values()])[4])  # after c, u, h, l
    col = np.concatenate(xs)[:, start]
    assert abs(col.mean()) < 1e-5 and abs(col.std() - 1) < 1e-4


def test_statistics_save_load(adapted, tmp_path):
    _, _, pre = adapted
    pre.save(tmp_path / "f.json")
    again = FeaturePreprocessor.load(SPEC, tmp_path / "f.json")
    assert again.statistics == json.loads(json.dumps(pre.statistics))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not readable feature statistics"):
        FeaturePreprocessor.load(SPEC, tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "x"}')
    with pytest.raises(ValueError, match="not rq_keras feature statistics"):
        FeaturePreprocessor.load(SPEC, tmp_path / "other.json")
    partial = dict(pre.statistics, features={})
    with pytest.raises(ValueError, match="lack feature 'c'"):
        FeaturePreprocessor(SPEC, partial)
    with pytest.raises(RuntimeError, match="not adapted"):
        FeaturePreprocessor(SPEC).build_model()


def test_saved_model_carries_vocabularies(adapted, tmp_path):
    _, path, pre = adapted
    model = pre.build_model()
    x, _ = next(iter(make_dataset(path, SPEC, batch_size=8)))
    expected = model(x).numpy()
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(again(x).numpy(), expected)
    tf.saved_model.save(model, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    out = loaded.signatures["serving_default"](**x)
    np.testing.assert_allclose(next(iter(out.values())).numpy(), expected, rtol=1e-6, atol=1e-7)


def test_minus_one_is_an_id_and_empty_vocabularies_are_oov(tmp_path):
    spec = FeatureSpec.from_dict(
        {
            "name": "m",
            "label": "y",
            "features": [
                {"name": "a", "kind": "categorical", "dtype": "int64"},
                {
                    "name": "r",
                    "kind": "categorical",
                    "dtype": "string",
                    "min_count": 99,
                    "num_oov_buckets": 2,
                },
                {"name": "l", "kind": "list", "dtype": "int64", "max_length": 2, "min_count": 99},
            ],
        }
    )
    path = tmp_path / "t.csv"
    # `a` is missing everywhere: its vocabulary is exactly [-1], the default
    write_table(
        pd.DataFrame(
            {"a": [None] * 3, "r": ["x", "y", "x"], "l": ["1|2", "3", ""], "y": [1.0, 2.0, 3.0]}
        ),
        spec,
        path,
    )
    pre = FeaturePreprocessor(spec).adapt(path)
    assert pre.vocabulary("a") == [-1] and pre.vocabulary("r") == [] == pre.vocabulary("l")
    model = pre.build_model()
    ids = model.get_layer("a_lookup")(tf.constant([-1, 5])).numpy()
    assert ids.tolist() == [1, 0]  # -1 is the known id, 5 is OOV
    assert set(model.get_layer("r_hashing")(tf.constant(["x", "q"])).numpy()) <= {0, 1}
    lids = model.get_layer("l_hashing")(tf.constant([[1, -1]])).numpy()
    assert lids.tolist() == [[1, 0]]  # pad 0, every id the one OOV id
    x, _ = next(iter(make_dataset(path, spec)))
    assert model(x).shape == (3, 64 * 3)


def test_vocabulary_file_and_empty_training_data(tmp_path):
    (tmp_path / "v.txt").write_text("a\nb\n\n")
    raw = SPEC.to_dict()
    raw["features"][0] = {
        "name": "c",
        "kind": "categorical",
        "dtype": "string",
        "vocabulary_file": "v.txt",
    }
    spec = FeatureSpec.from_dict(raw, source=str(tmp_path / "spec.yaml"))
    assert FeaturePreprocessor(spec).vocabulary("c") == ["a", "b"]
    (tmp_path / "v.txt").write_text("a\na\n")
    with pytest.raises(ValueError, match="repeats a value"):
        FeaturePreprocessor(spec).vocabulary("c")
    path = tmp_path / "empty.csv"
    write_table(_frame().iloc[:0], SPEC, path)
    with pytest.raises(ValueError, match="no training rows"):
        FeaturePreprocessor(SPEC).adapt(path)


BIG_IDS = [2**53 + 1, 2**60 + 1, 2**60 + 2, 2**63 - 2]


@pytest.mark.parametrize("name", ["ids.csv", "ids.parquet", "ids.tfrecord"])
def test_adapted_vocabulary_holds_exact_large_ids(tmp_path, name):
    spec = FeatureSpec.from_dict(
        {
            "name": "ids",
            "label": "y",
            "features": [
                {"name": "u", "kind": "categorical", "dtype": "int64"},
                {"name": "l", "kind": "list", "dtype": "int64", "max_length": 2},
            ],
        }
    )
    frame = pd.DataFrame(
        {
            "u": np.array(BIG_IDS * 2, dtype=np.int64),
            "l": [f"{a}|{b}" for a, b in zip(BIG_IDS * 2, BIG_IDS[::-1] * 2)],
            "y": np.arange(8, dtype=np.float64),
        }
    )
    path = tmp_path / name
    write_table(frame, spec, path)
    pre = FeaturePreprocessor(spec).adapt(path)
    assert pre.vocabulary("u") == BIG_IDS and pre.vocabulary("l") == BIG_IDS
    pre.save(tmp_path / "f.json")
    model = FeaturePreprocessor.load(spec, tmp_path / "f.json").build_model()
    ids = model.get_layer("u_lookup")(tf.constant([*BIG_IDS, 2**60], tf.int64)).numpy()
    assert ids.tolist() == [1, 2, 3, 4, 0]  # each id its own; 2**60 (unseen) is OOV
    lids = model.get_layer("l_lookup")(tf.constant([[2**60 + 2, 2**63 - 2]], tf.int64))
    assert lids.numpy().tolist() == [[4, 5]]  # pad 0, OOV 1, then the vocabulary
    x, _ = next(iter(make_dataset(path, spec, batch_size=8)))
    assert (model.get_layer("u_lookup")(x["u"]).numpy() > 0).all()  # nothing is OOV


@pytest.mark.parametrize("encoding", ["normalize", "bucketize"])
def test_adapted_statistics_must_be_finite(encoding):
    feature = {"name": "x", "kind": "numeric", "encoding": encoding}
    if encoding == "bucketize":
        feature["num_buckets"] = 4
    spec = FeatureSpec.from_dict({"name": "f", "label": "y", "features": [feature]})
    chunks = [{"x": np.array([1.0, 2.0], np.float32)}, {"x": np.array([np.inf, 3.0], np.float32)}]
    with pytest.raises(ValueError, match=r"feature 'x': the adapted \w+ is not finite"):
        FeaturePreprocessor(spec).adapt(chunks)
    good = FeaturePreprocessor(spec).adapt(chunks[:1]).statistics
    bad = json.loads(json.dumps(good))
    key = "mean" if encoding == "normalize" else "boundaries"
    bad["features"]["x"][key] = float("nan") if key == "mean" else [1.0, float("nan")]
    with pytest.raises(ValueError, match=rf"feature 'x': the adapted {key} is not finite"):
        FeaturePreprocessor(spec, bad)


def test_keras3_tower_gives_the_keras2_vector_and_saves(adapted, tmp_path):
    """`build_keras3_model` builds the same tower in Keras 3: with the Keras 2
    tower's embedding tables it gives the same vector on every feature kind
    (lookups, OOV, hashing, list pooling, log, buckets, raw), and it round-trips
    a `.keras` file."""
    import keras as keras3

    _, path, pre = adapted
    k2, k3 = pre.build_model(seed=3), pre.build_keras3_model(seed=3)
    tables2 = {w.name.split("/")[0]: w for w in k2.weights if "embedding" in w.name}
    tables3 = {w.path.split("/")[0]: w for w in k3.weights if "embedding" in w.path}
    assert sorted(tables2) == sorted(tables3) and len(tables2) == 5  # c, u, h, l, b
    for name, table in tables2.items():
        tables3[name].assign(table.numpy())
    x, _ = next(iter(make_dataset(path, SPEC, batch_size=64)))
    x = dict(x)
    x["c"] = tf.concat([x["c"][:-1], tf.constant(["never seen"])], 0)
    out2, out3 = k2(x).numpy(), k3(x).numpy()
    assert out3.shape == (64, pre.output_dim)
    np.testing.assert_allclose(out3, out2, rtol=1e-6, atol=1e-7)
    k3.save(tmp_path / "tower.keras")
    again = keras3.saving.load_model(tmp_path / "tower.keras")
    np.testing.assert_array_equal(again(x).numpy(), out3)
