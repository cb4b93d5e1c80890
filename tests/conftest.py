"""Shared test set-up: quiet TensorFlow, paths to the real data, the seeded toy
sets and the tiny runs the model, training, export and serving tests share."""

import json
import os
import pathlib

# TensorFlow logs spurious CUDA plugin errors on CPU-only machines at level 2.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rq_keras.config import ModelConfig, config_from_dict  # noqa: E402
from rq_keras.data import write_table  # noqa: E402
from rq_keras.features import FeatureSpec  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CDNOW = REPO / "rq_keras" / "datasets" / "data" / "cdnow" / "CDNOW_master.txt"


@pytest.fixture(scope="session")
def cdnow_values():
    """Dollar values of the 69,659 real CDNOW transactions."""
    import pandas as pd

    frame = pd.read_csv(CDNOW, sep=r"\s+")
    return frame["dollar_value"].to_numpy(dtype="float64")


def pytest_configure(config):
    """Two logical CPU devices, so MirroredStrategy tests run on one CPU."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs for the whole session.

    Strategies created one after another in a process can reuse collective
    instance keys, and a later all-gather of another shape then fails with a
    shape mismatch; the tests share this one.
    """
    import tensorflow as tf

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2
    return tf.distribute.MirroredStrategy(devices)


# The slowest test files first: `make test` gives each file to one of its two
# workers in collection order, and starting with the long files balances them.
_SLOW_FIRST = (
    "test_fault_injection.py",
    "test_run_dir.py",
    "test_training.py",
    "test_export.py",
    "test_model.py",
    "test_heads.py",
    "test_task.py",
    "test_docs.py",
    "test_transformer_cell.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept


# ------------------------------------------------------------- the toy set
# The seeded toy recommender set that the model, head and training tests train on:
# three features of every kind a spec has (a string category, a number, a list of
# ids) and a zero-inflated, long-tailed label that depends on all of them.
TOY_SPEC_DICT = {
    "name": "toy",
    "label": {"name": "y", "clip_min": 0},
    "embedding_dim": 8,
    "features": [
        {"name": "group", "kind": "categorical", "dtype": "string"},
        {"name": "x", "kind": "numeric"},
        {"name": "tags", "kind": "list", "dtype": "int64", "max_length": 3},
    ],
}
TOY_SPEC = FeatureSpec.from_dict(TOY_SPEC_DICT)


def small_rq_decoder(centroids, **kwargs):
    """A tiny built `RQDecoder` over `centroids` (per level its code values;
    seed 3), for the code tree's tests; `kwargs` are the layer's options."""
    import tensorflow as tf

    from rq_keras.layers.decoder import RQDecoder

    decoder = RQDecoder(
        [len(c) for c in centroids],
        units=8,
        embedding_dim=6,
        predictor_units=8,
        regressor_units=4,
        centroids=centroids,
        seed=3,
        **kwargs,
    )
    decoder({"state": tf.zeros([1, decoder.state_size])}, training=False)
    return decoder


def toy_frame(n: int, seed: int) -> pd.DataFrame:
    """`n` rows of the toy set; 20% of the labels are 0 whatever the features."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 4, n)
    x = rng.normal(size=n)
    tags = rng.integers(0, 5, (n, 2))
    scale = np.exp(0.8 * group + 0.5 * x + 0.3 * (tags == 3).sum(1))
    y = np.where(rng.random(n) < 0.2, 0.0, scale * rng.lognormal(0, 0.3, n))
    return pd.DataFrame(
        {
            "group": [f"g{g}" for g in group],
            "x": x,
            "tags": ["|".join(map(str, t)) for t in tags],
            "y": y,
        }
    )


# ------------------------------------------------------- the serving toy set
# The toy set's kinds plus an int64 category and a string list, every scalar with
# a default: what the export and client tests serve.
SERVING_SPEC_DICT = {
    "name": "toy",
    "label": {"name": "y", "clip_min": 0},
    "embedding_dim": 4,
    "features": [
        {"name": "group", "kind": "categorical", "dtype": "string", "default": "?"},
        {"name": "store", "kind": "categorical", "dtype": "int64", "default": 7},
        {"name": "x", "kind": "numeric", "default": 0.5},
        {"name": "tags", "kind": "list", "dtype": "int64", "max_length": 3},
        {"name": "words", "kind": "list", "dtype": "string", "max_length": 2},
    ],
}
SERVING_SPEC = FeatureSpec.from_dict(SERVING_SPEC_DICT)


def serving_frame(n: int, seed: int) -> pd.DataFrame:
    """`n` rows of the serving toy set; 30% of the labels are 0."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 4, n)
    x = rng.normal(size=n)
    y = np.where(rng.random(n) < 0.3, 0.0, np.exp(group + 0.5 * x))
    return pd.DataFrame(
        {
            "group": [f"g{g}" for g in group],
            "store": rng.integers(100, 110, n),
            "x": x,
            "tags": ["|".join(map(str, rng.integers(0, 5, rng.integers(0, 4)))) for _ in range(n)],
            "words": [
                "|".join(f"w{v}" for v in rng.integers(0, 4, rng.integers(0, 3))) for _ in range(n)
            ],
            "y": y,
        }
    )


# ------------------------------------------------------- tiny runs of the toy set
TINY = {
    "units": 16,
    "code_embedding_dim": 8,
    "encoder_units": 16,
    "predictor_units": 16,
    "regressor_units": 8,
    "delta": 1.0,
}


def toy_files(root):
    """Train/validation/test Parquet files of the toy set in `root`, and their spec."""
    files = {}
    for split, n, seed in (("train", 3000, 0), ("validation", 500, 1), ("test", 800, 2)):
        files[split] = root / f"{split}.parquet"
        write_table(toy_frame(n, seed), TOY_SPEC, files[split])
    TOY_SPEC.save(root / "spec.yaml")
    files["spec"] = root / "spec.yaml"
    return files


def train_config(toy, **overrides):
    """A `TrainConfig` on the toy files: 2 epochs, batch 256, L=3, K=8, TINY."""
    values = {
        "train_files": [str(toy["train"])],
        "validation_files": [str(toy["validation"])],
        "test_files": [str(toy["test"])],
        "feature_spec": str(toy["spec"]),
        "epochs": 2,
        "batch_size": 256,
        "learning_rate": 3e-3,
        "quantizer": {"num_levels": 3, "codebook_size": 8},
        "model": dict(TINY),
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            values[key] = {**values.get(key, {}), **value}
        else:
            values[key] = value
    return config_from_dict(values)


def cli_args(toy, out, *extra):
    """train.py arguments of the same run (batch 128), then `extra`."""
    args = [
        "--train", str(toy["train"]),
        "--validation", str(toy["validation"]),
        "--test", str(toy["test"]),
        "--feature-spec", str(toy["spec"]),
        "--output-dir", str(out),
        "--batch-size", "128",
        "--set", "quantizer.codebook_size=8",
        "--verbose", "2",
    ]  # fmt: skip
    for key, value in TINY.items():
        args += ["--set", f"model.{key}={value}"]
    return [*args, *extra]


def start_script(script, args, stderr=None):
    """`python SCRIPT ARGS` (train.py, export.py ...) started in the repository,
    TensorFlow's C++ log off, stdout discarded; stderr as asked (None: discarded,
    or `subprocess.PIPE` as text)."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, str(REPO / script), *map(str, args)],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if stderr is None else stderr,
        text=True,
    )


def summary(stdout):
    """The JSON summary train.py prints as its last line."""
    return json.loads(stdout.strip().splitlines()[-1])


# The tiny model with its seed: what the export and client tests build.
TINY_MODEL = ModelConfig(**TINY, seed=0)
