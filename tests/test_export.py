"""SavedModel export: layout, signatures, warm-up, checks, bad input at serving time."""

import json
import logging
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml

from conftest import REPO, SERVING_SPEC_DICT, TINY_MODEL, serving_frame
from rq_keras import ResidualQuantizer
from rq_keras.cli.export import export_main
from rq_keras.config import PREDICTIONS
from rq_keras.data import write_table
from rq_keras.features import FeatureSpec
from rq_keras.features.preprocessing import FeaturePreprocessor
from rq_keras.models.rq_reg import build_model
from rq_keras.serving import export as export_module
from rq_keras.serving import export_checks
from rq_keras.serving.errors import ExportCheckError, ExportError
from rq_keras.serving.export import export_model, export_run, next_version
from rq_keras.serving.export_checks import read_rows
from rq_keras.serving.signatures import OUTPUTS, feature_tensors, serialize_examples

# The serving toy set without its string list: the hand-written inputs below name
# four features.
SPEC = FeatureSpec.from_dict({**SERVING_SPEC_DICT, "features": SERVING_SPEC_DICT["features"][:4]})


def _frame(n, seed):
    return serving_frame(n, seed).drop(columns="words")


# Trains, exports or serves: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory as `train.py` leaves it (model, spec, config), untrained
    weights: the export must reproduce whatever the model computes."""
    root = tmp_path_factory.mktemp("run")
    train, test = root / "train.parquet", root / "test.parquet"
    write_table(_frame(2000, 0), SPEC, train)
    write_table(_frame(300, 1), SPEC, test)
    pre = FeaturePreprocessor(SPEC).adapt(train)
    y = _frame(2000, 0)["y"].to_numpy()
    quantizer = ResidualQuantizer(3, 8, clip_min=0, zero_threshold=5e-3).fit(y)
    model = build_model(SPEC, pre, quantizer, TINY_MODEL)
    model.save(root / "model.keras")
    SPEC.save(root / "feature_spec.yaml")
    (root / "config.yaml").write_text(yaml.safe_dump({"test_files": [str(test)]}))
    return root, model


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    root, _ = run
    base = tmp_path_factory.mktemp("serving")
    result = export_run(root, base, check_rows=200)
    return base, result


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[1].export_dir)


def _rows(run, n=40):
    root, _ = run
    return read_rows([str(root / "test.parquet")], SPEC, n)


def test_layout_version_warmup_and_checks(exported):
    base, result = exported
    assert result.version == 1 and result.export_dir == str(base / "1")
    assert sorted(os.listdir(base)) == ["1"]  # no temporary directory left
    assert (base / "1" / "saved_model.pb").is_file() and result.size_bytes > 10_000
    assert next_version(base) == 2
    checks = result.checks
    assert checks["rows"] == 200
    assert set(checks["signatures"]) == {"serving_default", "examples"}
    for signature in ("serving_default", "examples"):
        assert checks[f"{signature}/codes_mismatched"] == 0
        assert checks[f"{signature}/prediction_max_abs_diff"] <= 1e-5
        assert checks[f"{signature}/level_values_max_abs_diff"] <= 1e-5

    from tensorflow_serving.apis import prediction_log_pb2

    warmup = base / "1" / "assets.extra" / "tf_serving_warmup_requests"
    logs = []
    for record in tf.data.TFRecordDataset(str(warmup)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log.predict_log.request)
    assert checks["warmup_records"] == len(logs) == 4
    assert sorted(r.model_spec.signature_name for r in logs) == [
        "examples", "examples", "serving_default", "serving_default",
    ]  # fmt: skip
    sizes = sorted(
        r.inputs["examples"].tensor_shape.dim[0].size
        for r in logs
        if r.model_spec.signature_name == "examples"
    )
    assert sizes == [1, 64]
    default = [r for r in logs if r.model_spec.signature_name == "serving_default"][0]
    assert set(default.inputs) == {"group", "store", "x", "tags"}


def test_no_python_ops_and_signature_shapes(exported, loaded):
    assert export_checks.python_ops(exported[0] / "1") == []
    inputs = loaded.signatures["serving_default"].structured_input_signature[1]
    assert {k: (v.dtype, tuple(v.shape)) for k, v in inputs.items()} == {
        "group": (tf.string, (None,)),
        "store": (tf.int64, (None,)),
        "x": (tf.float32, (None,)),
        "tags": (tf.int64, (None, 3)),
    }
    outputs = loaded.signatures["examples"].structured_outputs
    assert {k: (v.dtype, tuple(v.shape)) for k, v in outputs.items()} == {
        "prediction": (tf.float32, (None,)),
        "regressor": (tf.float32, (None,)),
        "mean": (tf.float32, (None,)),
        "median": (tf.float32, (None,)),
        "positive_mean": (tf.float32, (None,)),
        "quantiles": (tf.float32, (None, 3)),  # ModelConfig.quantiles
        "exceedance": (tf.float32, (None, 1)),  # ModelConfig.thresholds
        "level_values": (tf.float32, (None, 3)),
        "codes": (tf.int32, (None, 3)),
    }


def test_both_signatures_reproduce_the_model(run, loaded):
    _, model = run
    rows = _rows(run)
    want = model(feature_tensors(SPEC, rows), training=False)
    by_features = loaded.signatures["serving_default"](**feature_tensors(SPEC, rows))
    by_examples = loaded.signatures["examples"](
        examples=tf.constant(serialize_examples(SPEC, rows))
    )
    for out in (by_features, by_examples):
        assert set(out) == set(OUTPUTS)
        for key in set(OUTPUTS) - {"codes"}:
            np.testing.assert_allclose(out[key].numpy(), want[key].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out["codes"].numpy(), want["codes"].numpy())


def test_unknown_values_missing_features_and_empty_batch(loaded):
    serve = loaded.signatures["serving_default"]
    examples = loaded.signatures["examples"]
    unseen = serve(
        group=tf.constant(["never-seen", "g1"]),
        store=tf.constant([999_999, 100], tf.int64),
        x=tf.constant([0.1, 0.1]),
        tags=tf.constant([[77, -1, -1], [1, 2, -1]], tf.int64),
    )
    assert np.all(np.isfinite(unseen["prediction"].numpy()))
    # An example with no features takes the spec defaults: OOV ids, x = 0.5,
    # an empty list; the same as passing those values by name.
    empty_example = tf.train.Example().SerializeToString()
    by_default = examples(examples=tf.constant([empty_example]))
    by_name = serve(
        group=tf.constant([""]),
        store=tf.constant([-1], tf.int64),
        x=tf.constant([0.5]),
        tags=tf.constant([[-1, -1, -1]], tf.int64),
    )
    np.testing.assert_allclose(
        by_default["prediction"].numpy(), by_name["prediction"].numpy(), rtol=1e-6
    )
    none = examples(examples=tf.constant([], tf.string))
    assert none["prediction"].shape == (0,) and none["codes"].shape == (0, 3)
    none = serve(
        group=tf.constant([], tf.string),
        store=tf.constant([], tf.int64),
        x=tf.constant([], tf.float32),
        tags=tf.zeros([0, 3], tf.int64),
    )
    assert none["level_values"].shape == (0, 3)


def test_bad_input_gives_clear_errors(loaded):
    serve = loaded.signatures["serving_default"]
    good = {
        "group": tf.constant(["g1"]),
        "store": tf.constant([100], tf.int64),
        "x": tf.constant([0.1]),
        "tags": tf.constant([[1, -1, -1]], tf.int64),
    }
    # A wrong dtype is refused at the signature's boundary; the message counts
    # the inputs in name order (group, store, tags, x: x is #3).
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"input #3\(zero-based\) was expected to be a float tensor but is a int64",
    ):
        serve(**{**good, "x": tf.constant([1], tf.int64)})
    # Shapes are checked in the graph, so a C++ or TF Serving client gets the
    # same message: the feature, the expected and the fed shape.
    wrong_shapes = [
        (
            "tags",
            tf.constant([[1, 2]], tf.int64),
            # The fed tensor's name is the graph's (_arg_serving_default_tags_...).
            r"tags\S* \[1,2\] is not compatible with expected shape \[\?,3\]",
        ),
        (
            "x",
            tf.constant([[0.1]]),
            r"tensor x \[1,1\] is not compatible with expected shape \[\?\]",
        ),
        ("store", tf.constant([100, 101], tf.int64), r"store: batch size differs from group"),
    ]
    for name, value, message in wrong_shapes:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            serve(**{**good, name: value})
    with pytest.raises(tf.errors.InvalidArgumentError, match="parse"):
        loaded.signatures["examples"](examples=tf.constant([b"not a tf.Example"]))


# NaN, +inf, -inf and a finite value in the numeric feature `x` (spec default 0.5).
NON_FINITE_X = np.array([np.nan, np.inf, -np.inf, 0.1], np.float32)
DEFAULT_X = np.array([0.5, 0.5, 0.5, 0.1], np.float32)


def _rows_with_x(x):
    n = len(x)
    return {
        "group": np.array([b"g1"] * n, dtype=object),
        "store": np.full(n, 100, np.int64),
        "x": np.asarray(x, np.float32),
        "tags": np.tile(np.array([1, 2, -1], np.int64), (n, 1)),
    }


def test_non_finite_numeric_inputs_take_the_spec_default(loaded):
    """NaN and +-inf in a numeric feature serve as its spec default (as a missing
    value does in training) in both signatures, so the prediction stays finite."""
    want = loaded.signatures["serving_default"](**feature_tensors(SPEC, _rows_with_x(DEFAULT_X)))
    bad = _rows_with_x(NON_FINITE_X)
    by_features = loaded.signatures["serving_default"](**feature_tensors(SPEC, bad))
    by_examples = loaded.signatures["examples"](examples=tf.constant(serialize_examples(SPEC, bad)))
    for got in (by_features, by_examples):
        assert np.isfinite(got["prediction"].numpy()).all()
        for key in ("prediction", "level_values"):
            np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(got["codes"].numpy(), want["codes"].numpy())


def test_version_clash_and_failed_checks_leave_nothing(run, exported, tmp_path, monkeypatch):
    _, model = run
    base = exported[0]
    with pytest.raises(ExportError, match="exists"):
        export_model(model, SPEC, base, version=1, check_rows=_rows(run, 4))
    with pytest.raises(ExportError, match="integer >= 1"):
        export_model(model, SPEC, tmp_path / "b", version=0, check_rows=_rows(run, 4))
    with pytest.raises(ExportError, match="held-out rows"):
        export_model(model, SPEC, tmp_path / "b")
    broken = "import sys; raise SystemExit('broken on purpose; work dir ' + sys.argv[2])"
    monkeypatch.setattr(export_checks, "_CHECK_SCRIPT", broken)
    with pytest.raises(ExportCheckError, match="broken on purpose") as err:
        export_model(model, SPEC, tmp_path / "c", check_rows=_rows(run, 4))
    assert os.listdir(tmp_path / "c") == []
    # The check's files live inside the version's temporary directory, which the
    # next export removes if this process dies, not in the system temp directory.
    work = pathlib.Path(str(err.value).rsplit("work dir ", 1)[1].strip())
    assert work.parent.parent == (tmp_path / "c").resolve()
    assert work.parent.name.startswith(f".tmp-1-{os.getpid()}-")


def _dead_pid():
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _alive(pid):
    """True while `pid` runs (a zombie that nobody reaps counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def test_export_start_removes_stale_temporary_directories(run, tmp_path, monkeypatch, caplog):
    _, model = run
    base = tmp_path / "serving"
    dead = _dead_pid()
    stale = base / f".tmp-3-{dead}"
    (stale / "variables").mkdir(parents=True)
    (stale / "saved_model.pb").write_bytes(b"half written")
    host = re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname())
    stale_new = base / f".tmp-6-{dead}-0123abcd-{host}"  # this host's, its process gone
    stale_new.mkdir(parents=True)
    kept = [
        f".tmp-4-{os.getpid()}",  # its process (this one) is running
        f".tmp-7-{dead}-0123abcd-another.host",  # another host's: cannot be checked here
        "notes",
        f".tmp-3-{dead}.old",  # not the exact pattern
        f".tmp-x-{dead}",
        f".tmp-03-{dead}",
        f"tmp-3-{dead}",
    ]
    for name in kept:
        (base / name).mkdir()
    (base / f".tmp-5-{dead}").write_text("a file, not an export directory")
    kept.append(f".tmp-5-{dead}")

    def stop(*args, **kwargs):
        raise RuntimeError("stopped after the start-up clean-up")

    monkeypatch.setattr(export_module, "build_serving_module", stop)
    with caplog.at_level(logging.INFO, logger="rq_keras.serving.export"):
        with pytest.raises(RuntimeError, match="stopped after"):
            export_model(model, SPEC, base, check=False)
    assert sorted(os.listdir(base)) == sorted(kept)
    assert f"removed {stale}" in caplog.text and f"process {dead}" in caplog.text
    assert f"removed {stale_new}" in caplog.text
    assert "an export on host another.host, whose process cannot be checked" in caplog.text


@pytest.mark.parametrize("pdeathsig", [True, False], ids=["prctl", "poll"])
def test_check_process_dies_with_its_parent(tmp_path, pdeathsig):
    """The fresh-process check's runner: killing the exporting process ends the
    child (through PR_SET_PDEATHSIG on Linux, else the child's watch of its
    parent), instead of leaving it to finish on its own."""
    pid_file = tmp_path / "child.pid"
    child = (
        "import os, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    parent_code = (
        "from rq_keras.serving.export_checks import _run_tied_to_parent\n"
        f"_run_tied_to_parent({child!r}, [], pdeathsig={pdeathsig})\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=tmp_path)
    child_pid = None
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.is_file() and pid_file.read_text()):
            assert parent.poll() is None, "the parent ended before starting the child"
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child_pid), f"child {child_pid} outlived its parent"
    finally:
        parent.kill()
        parent.wait()
        if child_pid is not None and _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def test_fresh_process_cannot_import_rq_keras(exported, tmp_path):
    script = (
        "import sys; sys.modules['rq_keras'] = None\n"
        "import tensorflow as tf\n"
        f"m = tf.saved_model.load({str(exported[1].export_dir)!r})\n"
        "out = m.signatures['examples'](examples=tf.constant([b'']))\n"
        "print(float(out['prediction'][0]))\n"
        "import rq_keras\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert "import of rq_keras halted" in proc.stderr or "ModuleNotFoundError" in proc.stderr
    assert np.isfinite(float(proc.stdout.strip().splitlines()[-1]))


def test_keras3_model_serves_the_export_as_a_layer(run, exported, loaded, tmp_path):
    """A Keras 3 stack (no `TF_USE_LEGACY_KERAS`, `tf.keras` is Keras 3) uses an
    export as a frozen layer, `keras.layers.TFSMLayer` on the `examples`
    signature, inside a Keras 3 model: the same outputs as the export in this
    (Keras 2) process, to float32 round-off (1e-5), `codes` exactly."""
    rows = _rows(run, n=32)
    examples = serialize_examples(SPEC, rows)
    with tf.io.TFRecordWriter(str(tmp_path / "rows.tfrecord")) as writer:
        for example in examples:
            writer.write(example)
    script = (
        "import sys; sys.modules['rq_keras'] = None\n"
        "import numpy as np, tensorflow as tf, keras\n"
        "assert keras.__version__.startswith('3.') and tf.keras.version().startswith('3.')\n"
        f"export = {str(exported[1].export_dir)!r}\n"
        "layer = keras.layers.TFSMLayer(export, call_endpoint='examples')\n"
        "inputs = keras.Input(shape=(), dtype='string', name='examples')\n"
        "model = keras.Model(inputs, layer(inputs))\n"
        "rows = tf.data.TFRecordDataset('rows.tfrecord').batch(8)\n"
        "out = model.predict(rows, verbose=0)\n"
        "np.savez('out.npz', **{k: np.asarray(v) for k, v in out.items()})\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    want = loaded.signatures["examples"](examples=tf.constant(examples))
    assert set(got.files) == set(OUTPUTS)
    for key in set(OUTPUTS) - {"codes"}:
        np.testing.assert_allclose(got[key], want[key].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got["codes"], want["codes"].numpy())


def test_export_command(run, tmp_path, capsys):
    root, _ = run
    command = [sys.executable, str(REPO / "export.py"), "--model-dir", str(root)]
    base = tmp_path / "models"
    stale = base / f".tmp-2-{_dead_pid()}"  # left by a killed export
    stale.mkdir(parents=True)
    proc = subprocess.run(  # a relative --export-base, as `make demo` passes
        [*command, "--export-base", "models", "--version", "7", "--check-rows", "16"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["version"] == 7 and summary["check_rows"] == 16
    assert (base / "7" / "saved_model.pb").is_file()
    assert not stale.exists() and f"removed models/{stale.name}" in proc.stderr
    # The refusals, through the same entry point in this process.
    capsys.readouterr()
    assert (
        export_main(["--model-dir", str(root), "--export-base", str(base), "--version", "7"]) == 2
    )
    assert "exists" in capsys.readouterr().err
    nope = ["--model-dir", str(tmp_path / "nope"), "--export-base", str(base)]
    assert export_main(nope) == 2
    assert "model.keras is missing" in capsys.readouterr().err
    # A damaged run is named, not a traceback.
    damaged = tmp_path / "damaged"
    shutil.copytree(root, damaged)
    (damaged / "config.yaml").write_text("test_files: [unclosed\n")
    assert export_main(["--model-dir", str(damaged), "--export-base", str(base)]) == 2
    assert f"{damaged / 'config.yaml'} cannot be read" in capsys.readouterr().err
    model_bytes = (damaged / "model.keras").read_bytes()
    (damaged / "model.keras").write_bytes(model_bytes[: len(model_bytes) // 2])
    assert export_main(["--model-dir", str(damaged), "--export-base", str(base)]) == 2
    assert f"{damaged / 'model.keras'} cannot be loaded as a model" in capsys.readouterr().err
    assert sorted(os.listdir(base)) == ["7"]


# ------------------------------------------------ the C++ loader (TF Serving's)
@pytest.fixture(scope="module")
def binary():
    from rq_keras.serving import cpp_check as serving_check

    return serving_check.build()


def test_cpp_loader_serves_both_signatures_like_python(run, exported, loaded, binary):
    from rq_keras.serving import cpp_check as serving_check

    export_dir = exported[1].export_dir
    rows = _rows(run, 64)
    examples = np.array(serialize_examples(SPEC, rows), dtype=object)
    want = loaded.signatures["examples"](examples=tf.constant(list(examples)))
    by_examples = serving_check.run(export_dir, "examples", {"examples": examples}, binary=binary)
    by_features = serving_check.run(
        export_dir, "serving_default", feature_tensors(SPEC, rows), binary=binary
    )
    for got in (by_examples.outputs, by_features.outputs):
        floats = ("prediction", *PREDICTIONS, "quantiles", "exceedance")
        assert set(got) == {*floats, "level_values", "codes"}
        for key in (*floats, "level_values"):
            np.testing.assert_allclose(got[key], want[key].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got["codes"], want["codes"].numpy())
        assert got["codes"].dtype == np.int32


def test_cpp_loader_bad_input(exported, loaded, binary):
    from rq_keras.serving import cpp_check as serving_check

    export_dir = exported[1].export_dir

    def serve(signature, inputs):
        return serving_check.run(export_dir, signature, inputs, binary=binary, feed_as_is=True)

    # Unknown values and an example without features: finite, as in Python.
    unseen = {
        "group": tf.constant(["never-seen"]),
        "store": tf.constant([999_999], tf.int64),
        "x": tf.constant([0.1]),
        "tags": tf.constant([[77, -1, -1]], tf.int64),
    }
    got = serve("serving_default", unseen).outputs["prediction"]
    np.testing.assert_allclose(
        got, loaded.signatures["serving_default"](**unseen)["prediction"].numpy(), rtol=1e-5
    )
    empty_example = tf.train.Example().SerializeToString()
    got = serve("examples", {"examples": np.array([empty_example], dtype=object)}).outputs
    assert np.isfinite(got["prediction"]).all()
    # An empty batch gives empty outputs.
    got = serve("examples", {"examples": np.array([], dtype=object)}).outputs
    assert got["prediction"].shape == (0,) and got["codes"].shape == (0, 3)
    # Not a tf.Example, a wrong shape, a wrong dtype: TensorFlow's error, no crash.
    failures = [
        ("examples", {"examples": np.array([b"not a tf.Example"], dtype=object)}, "parse"),
        (
            "serving_default",
            {**unseen, "tags": tf.constant([[1, 2]], tf.int64)},
            # The fed tensor's name is the graph's (_arg_serving_default_tags_...).
            r"tags\S* \[1,2\] is not compatible with expected shape \[\?,3\]",
        ),
        (
            "serving_default",
            {**unseen, "store": tf.constant([1, 2], tf.int64)},
            "store: batch size differs from group",
        ),
        ("serving_default", {**unseen, "x": tf.constant([1], tf.int64)}, "float but int64"),
    ]
    for signature, inputs, message in failures:
        with pytest.raises(serving_check.ServingCheckError, match=message) as err:
            serve(signature, inputs)
        assert err.value.returncode == 1


def test_cpp_loader_non_finite_numeric_input(exported, loaded, binary):
    from rq_keras.serving import cpp_check as serving_check

    export_dir = exported[1].export_dir
    bad = _rows_with_x(NON_FINITE_X)
    want = loaded.signatures["serving_default"](**feature_tensors(SPEC, _rows_with_x(DEFAULT_X)))
    cases = [
        ("serving_default", feature_tensors(SPEC, bad)),
        ("examples", {"examples": np.array(serialize_examples(SPEC, bad), dtype=object)}),
    ]
    for signature, inputs in cases:
        got = serving_check.run(export_dir, signature, inputs, binary=binary, feed_as_is=True)
        assert np.isfinite(got.outputs["prediction"]).all(), signature
        np.testing.assert_allclose(
            got.outputs["prediction"], want["prediction"].numpy(), rtol=1e-5, atol=1e-6
        )


def test_serve_rows_command(run, exported):
    root, _ = run
    proc = subprocess.run(
        [sys.executable, "-m", "rq_keras.cli.serving_check", "--export-base", str(exported[0]),
         "--rows-from", str(root / "test.parquet"), "--rows", "3"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 3 and summary["export_dir"].endswith("/1")
    assert summary["labels"] == pytest.approx(_frame(300, 1)["y"].to_numpy()[:3])
    loaded = tf.saved_model.load(summary["export_dir"])
    rows = read_rows([str(root / "test.parquet")], SPEC, 3)
    want = loaded.signatures["serving_default"](**feature_tensors(SPEC, rows))["prediction"]
    np.testing.assert_allclose(summary["predictions"], want.numpy(), rtol=1e-5)
    assert "served by the C++ SavedModel loader" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "rq_keras.cli.serving_check", "--export-base", str(root),
         "--rows-from", str(root / "test.parquet")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "no exported version" in bad.stderr
