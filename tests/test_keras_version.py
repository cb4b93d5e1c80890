"""`import rq_keras` leaves the process alone; the Keras 2 parts select Keras 2
before TensorFlow loads, and name the fix where `tf.keras` is Keras 3.

Every case runs in a fresh interpreter with a clean environment (no
`TF_USE_LEGACY_KERAS`, which conftest sets for the test process itself)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

ENV = "TF_USE_LEGACY_KERAS"


def run_fresh(code: str, **env) -> str:
    """stdout of `code` in a fresh interpreter; fails the test on a non-zero exit."""
    base = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=base, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_import_rq_keras_sets_no_environment_variable():
    code = (
        "import json, os, sys\n"
        "before = dict(os.environ)\n"
        "import rq_keras\n"
        "rq_keras.ResidualQuantizer, rq_keras.TrainConfig, rq_keras.FeatureSpec\n"
        "import rq_keras.datasets, rq_keras.evaluation, rq_keras.features\n"
        "after = dict(os.environ)\n"
        "print(json.dumps([before == after, sorted(set(after) ^ set(before)),\n"
        "                  'tensorflow' in sys.modules, 'keras' in sys.modules]))\n"
    )
    same, changed, tf_loaded, keras_loaded = json.loads(run_fresh(code))
    assert changed == [] and same
    assert not tf_loaded and not keras_loaded


@pytest.mark.slow
def test_head_before_tensorflow_selects_keras2_and_tfrs_works():
    code = (
        "import os\n"
        "import rq_keras\n"
        "assert 'TF_USE_LEGACY_KERAS' not in os.environ\n"
        "task = rq_keras.RQRegTask\n"
        "import tensorflow as tf, tf_keras, tensorflow_recommenders as tfrs\n"
        "assert tf.keras.__name__.startswith('tf_keras'), tf.keras.__name__\n"
        "assert tf_keras.__version__.split('.')[:2] == tf.__version__.split('.')[:2]\n"
        "assert isinstance(tfrs.layers.dcn.Cross(), tf_keras.layers.Layer)\n"
        "print(os.environ['TF_USE_LEGACY_KERAS'])\n"
    )
    assert run_fresh(code) == "1"


@pytest.mark.slow
def test_head_in_a_keras3_process_names_the_fix_and_changes_nothing():
    code = (
        "import json, os\n"
        "import tensorflow as tf\n"
        "tf.keras.layers.Dense(1)\n"
        "import rq_keras\n"
        "errors = []\n"
        "for name in ('RQRegTask', 'train', 'ResidualCodeEncoder'):\n"
        "    try:\n"
        "        getattr(rq_keras, name)\n"
        "    except rq_keras.KerasVersionError as e:\n"
        "        errors.append(str(e))\n"
        "# the parts that need no Keras still work\n"
        "from rq_keras.data import make_dataset\n"
        "from rq_keras.serving.scorers import load_saved_model_scorer\n"
        "is_import_error = issubclass(rq_keras.KerasVersionError, ImportError)\n"
        "print(json.dumps([errors, os.environ.get('TF_USE_LEGACY_KERAS'),\n"
        "                  tf.keras.version(), is_import_error]))\n"
    )
    errors, env_value, keras_version, is_import_error = json.loads(run_fresh(code))
    assert len(errors) == 3, errors
    for message in errors:
        assert f"{ENV}=1" in message and "Keras 3" in message, message
    assert "rq_keras.models" in errors[0] and "rq_keras.training" in errors[1]
    assert env_value is None  # nothing set behind the user's back
    assert keras_version.startswith("3.")
    assert is_import_error


@pytest.mark.slow
def test_user_selected_keras2_before_tensorflow_is_kept():
    code = (
        "import os\n"
        "import tensorflow as tf\n"
        "import rq_keras\n"
        "rq_keras.build_model\n"
        "print(tf.keras.__name__.split('.')[0], os.environ['TF_USE_LEGACY_KERAS'])\n"
    )
    assert run_fresh(code, **{ENV: "true"}) == "tf_keras true"


@pytest.mark.slow
def test_tensorflow_loaded_but_tf_keras_unused_still_gets_keras2():
    """A Keras 2 program that imports tf_keras (which loads TensorFlow) before
    the head: `tf.keras` is not resolved yet, so the head selects Keras 2."""
    code = (
        "import os\n"
        "import tf_keras\n"
        "import tensorflow as tf\n"
        "import rq_keras\n"
        "rq_keras.RQRegTask\n"
        "import tensorflow_recommenders as tfrs\n"
        "assert isinstance(tfrs.layers.dcn.Cross(), tf_keras.layers.Layer)\n"
        "print(tf.keras.__name__.split('.')[0], os.environ['TF_USE_LEGACY_KERAS'])\n"
    )
    assert run_fresh(code) == "tf_keras 1"


def test_keras3_chosen_in_the_environment_fails_before_tensorflow_loads():
    code = (
        "import sys\n"
        "import rq_keras\n"
        "try:\n"
        "    rq_keras.RQRegModel\n"
        "except rq_keras.KerasVersionError as e:\n"
        "    print(repr(['tensorflow' in sys.modules, str(e)]))\n"
    )
    out = run_fresh(code, **{ENV: "0"})
    assert out.startswith("[False,"), out
    assert f"{ENV}='0'" in out and "rq_keras.models" in out


def test_data_readers_select_keras2_only_when_they_load_tensorflow():
    """`rq_keras.data` imports without TensorFlow and sets nothing; building
    a pipeline loads TensorFlow, and before that selects Keras 2."""
    code = (
        "import os, sys\n"
        "from rq_keras.data import make_dataset\n"
        "from rq_keras.features import FeatureSpec\n"
        "first = ('tensorflow' in sys.modules, os.environ.get('TF_USE_LEGACY_KERAS'))\n"
        "from rq_keras.config.keras_version import import_tensorflow\n"
        "tf = import_tensorflow()\n"
        "print(repr([first, os.environ.get('TF_USE_LEGACY_KERAS'), tf.keras.__name__]))\n"
    )
    out = run_fresh(code)
    assert out.startswith("[(False, None), '1', 'tf_keras"), out


@pytest.mark.slow
def test_keras3_layers_and_the_shared_math_work_where_tf_keras_is_keras3():
    """A Keras 3 program: the Keras 3 decoder and RQ-Reg's loss import and run,
    nothing is set, `tf.keras` stays Keras 3; a Keras 2 layer still raises."""
    code = (
        "import json, os\n"
        "import tensorflow as tf\n"
        "import keras\n"
        "tf.keras.layers.Dense(1)\n"
        "import rq_keras\n"
        "from rq_keras.layers.keras3 import RQDecoder\n"
        "from rq_keras.losses import RQRegLoss, code_nll, rank_n_contrast\n"
        "decoder = RQDecoder([3, 2], units=4, embedding_dim=4, predictor_units=4,\n"
        "                    regressor_units=4, centroids=[[1.0, 2.0, 3.0], [0.0, 1.0]], seed=0)\n"
        "state = keras.Input(shape=(decoder.state_size,))\n"
        "model = keras.Model(state, decoder({'state': state})['mean'])\n"
        "mean = model.predict(tf.zeros([2, 8]), verbose=0)\n"
        "try:\n"
        "    from rq_keras.layers import RQDecoder as Keras2Decoder\n"
        "    error = None\n"
        "except rq_keras.KerasVersionError as e:\n"
        "    error = str(e)\n"
        "print(json.dumps([list(mean.shape), bool(mean.min() > 0), error,\n"
        "                  os.environ.get('TF_USE_LEGACY_KERAS'), tf.keras.version()]))\n"
    )
    shape, positive, error, env_value, keras_version = json.loads(run_fresh(code))
    assert shape == [2] and positive
    assert error is not None and "rq_keras.layers" in error and f"{ENV}=1" in error
    assert env_value is None and keras_version.startswith("3.")


def test_keras3_layers_name_a_keras2_keras_package(tmp_path):
    """The reverse case: where the `keras` package is Keras 2 (a stack older
    than TF 2.16), `rq_keras.layers.keras3` fails on import with an error
    that names the Keras found and the range to install."""
    fake = tmp_path / "keras"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '2.15.0'\n")
    code = (
        "import json\n"
        "try:\n"
        "    import rq_keras.layers.keras3\n"
        "    error = None\n"
        "except ImportError as e:\n"
        "    error = str(e)\n"
        "print(json.dumps(error))\n"
    )
    error = json.loads(run_fresh(code, PYTHONPATH=f"{tmp_path}:{REPO}"))
    assert error is not None and "2.15.0" in error and "keras>=3.8" in error
