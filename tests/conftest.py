"""Shared test set-up: quiet TensorFlow, paths to the real data."""

import os
import pathlib

# TensorFlow logs spurious CUDA plugin errors on CPU-only machines at level 2.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CDNOW = REPO / "data" / "cdnow" / "CDNOW_master.txt"


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
