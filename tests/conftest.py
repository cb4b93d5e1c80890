"""Shared test set-up: quiet TensorFlow, paths to the real data."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
