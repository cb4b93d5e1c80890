"""The examples in `examples/` run as a user runs them (a process of their own)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_keras_rs_example_trains_mirrored_exports_and_serves(tmp_path):
    """`examples/keras_rs_cdnow.py`, a Keras 3 program (no TF_USE_LEGACY_KERAS
    from this Keras 2 test process): a keras-rs DCN tower under the RQ-Reg
    head on CDNOW, trained under MirroredStrategy over two logical CPU
    devices for one epoch, exported with Keras 3's export and served by the
    C++ loader with Python's predictions."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    script = REPO / "examples" / "keras_rs_cdnow.py"
    args = ["--output-dir", tmp_path, "--epochs", "1", "--verbose", "0"]
    proc = subprocess.run(
        [sys.executable, script, *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["keras"].startswith("3.") and summary["replicas"] == 2
    assert summary["tower"] == "dcn" and summary["epochs_run"] == 1
    serving = summary["serving"]
    assert serving["served_rows"] == 64 and serving["cpp_max_relative_gap"] <= 1e-5
    assert (tmp_path / "serving" / "1" / "saved_model.pb").is_file()
    test = summary["test"]
    # One epoch learns: the ranking is far from random (Norm-Gini 0) and the
    # first code level's NLL is below its training marginal's.
    assert test["prediction"]["normalized_gini"] > 0.4
    first = test["codes"][0]
    assert first["level"] == 1 and first["nll"] < first["marginal_nll"] - 0.02
    assert 0.5 < test["mean_prediction"] / test["mean_label"] < 2.0
