"""The import paths of rq_keras 0.2 resolve for one release, each with a
DeprecationWarning naming the new path (rq_keras._deprecated)."""

import importlib
import subprocess
import sys

import pytest

from conftest import REPO
from rq_keras._deprecated import GONE, MOVED

CASES = [(module, name) for module, names in MOVED.items() for name in names]


@pytest.mark.parametrize(("module", "name"), CASES, ids=[f"{m}.{n}" for m, n in CASES])
def test_an_old_name_warns_and_is_the_new_object(module, name):
    new_module, new_name = MOVED[module][name].split(":")
    old = importlib.import_module(module)
    with pytest.warns(
        DeprecationWarning, match=rf"{module}\.{name} .* use {new_module}\.{new_name}$"
    ):
        value = getattr(old, name)
    assert value is getattr(importlib.import_module(new_module), new_name)


def test_every_gone_module_has_a_stub_and_names_its_moves():
    for module in GONE:
        assert importlib.import_module(module).__file__.startswith(
            str(REPO / "rq_keras" / "_deprecated")
        ), module
        assert MOVED[module], module
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = importlib.import_module("rq_keras.quantization").nothing
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        import rq_keras

        _ = rq_keras.nothing


def test_a_stubbed_module_warns_at_the_users_line():
    code = (
        "import warnings; warnings.simplefilter('default')\nfrom rq_keras.tokens import ZERO_CODE\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<string>:2: DeprecationWarning: rq_keras.tokens.ZERO_CODE" in proc.stderr
    assert "use rq_keras.quantizer.tokens.ZERO_CODE" in proc.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("rq_keras.quantize", "rq_keras.cli.quantize"),
        ("rq_keras.serving_check", "rq_keras.cli.serving_check"),
        ("rq_keras.datasets", "rq_keras.cli.datasets"),
    ],
)
def test_an_old_command_runs_and_names_the_new_one(old, new):
    proc = subprocess.run(
        [sys.executable, "-m", old, "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"usage: python -m {new}" in proc.stdout
    assert f"`python -m {old}` is deprecated" in proc.stderr
    assert f"use `python -m {new}`" in proc.stderr


def test_a_baseline_model_file_of_0_2_loads_as_baseline_model():
    import tf_keras as keras

    from rq_keras.models.baselines import BaselineModel

    assert keras.utils.get_registered_object("rq_keras>HeadModel") is BaselineModel


def test_a_model_file_of_0_2_loads_and_predicts_as_it_did():
    """tests/fixtures/rq_keras_0.2/: a tiny RQRegModel saved by rq_keras 0.2
    (whose model, not its task, tracked the loss terms) and its predictions
    on five rows, recorded by 0.2 when the fixture was made."""
    import json

    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from rq_keras.models.rq_reg import RQRegModel

    root = REPO / "tests" / "fixtures" / "rq_keras_0.2"
    want = json.loads((root / "predictions.json").read_text())
    saved_with = want["saved_with"]["tf_keras"]
    older = [int(v) for v in keras.__version__.split(".")[:2]]
    if older < [int(v) for v in saved_with.split(".")[:2]]:
        pytest.skip(
            f"the fixture was saved by tf-keras {saved_with}; an older Keras "
            f"({keras.__version__}) cannot read its layers' configs, whatever rq_keras does"
        )
    model = keras.models.load_model(root / "model.keras")
    assert isinstance(model, RQRegModel)
    rows = want["rows"]
    x = {
        "group": tf.constant(rows["group"]),
        "x": tf.constant(rows["x"], tf.float32),
        "tags": tf.constant(rows["tags"], tf.int64),
    }
    got = model(x, training=False)
    np.testing.assert_allclose(got["prediction"].numpy(), want["prediction"], rtol=1e-5)
    np.testing.assert_array_equal(got["codes"].numpy(), want["codes"])
    assert [m.name for m in model.metrics] == ["loss", "gen", "reg", "rnc", "crps", "mae"]
