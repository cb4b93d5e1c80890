"""Shared test set-up: quiet TensorFlow, paths to the real data."""

import os
import pathlib

# TensorFlow logs spurious CUDA plugin errors on CPU-only machines at level 2.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import pytest  # noqa: E402

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
