"""serving_check: SavedModels served from TensorFlow's C++ loader match Python."""

import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from rq_keras.serving import cpp_check as serving_check

# Trains, exports or serves: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow

CATEGORIES = ["a", "b", "c"]


class ToyRanker(tf.Module):
    """Two signatures over one computation: raw tensors and tf.Examples.

    The hash table makes the model depend on an initializer that only runs when
    the loader restores it, and the variable on a restored checkpoint, so a
    passing check means the C++ loader restored both.
    """

    def __init__(self):
        super().__init__()
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(CATEGORIES), tf.constant([1, 2, 3], tf.int64)
            ),
            default_value=0,
        )
        self.weights = tf.Variable([0.5, -1.25], dtype=tf.float32)

    def _score(self, x, cat):
        ids = self.table.lookup(cat)
        prediction = tf.reduce_sum(
            2.0 * x + self.weights[0] * tf.cast(ids, tf.float32) + self.weights[1] * tf.sin(x),
            axis=1,
        )
        codes = tf.concat([tf.cast(ids, tf.int32), tf.cast(tf.floor(3.0 * x), tf.int32)], axis=1)
        return {"prediction": prediction, "codes": codes}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 1], tf.float32, name="x"),
            tf.TensorSpec([None, 1], tf.string, name="cat"),
        ]
    )
    def serve(self, x, cat):
        return self._score(x, cat)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        features = tf.io.parse_example(
            examples,
            {
                "x": tf.io.FixedLenFeature([1], tf.float32),
                "cat": tf.io.FixedLenFeature([1], tf.string, default_value=""),
            },
        )
        return self._score(features["x"], features["cat"])


class Encodings(tf.Module):
    """Outputs of every JSON encoding the binary uses, including NaN and raw bytes."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {
            "ratio": x / tf.zeros_like(x),  # inf, -inf and nan for x = 1, -1, 0
            "wide": tf.cast(x, tf.float64) / 3.0,
            "count": tf.cast(x, tf.int64) * 3_000_000_000,
            "positive": x > 0,
            "label": tf.strings.join([tf.strings.as_string(x, precision=1), b'"\\\xff\x00\n']),
        }


@pytest.fixture(scope="module")
def binary():
    """Build once per module; the duration is printed for `pytest -s` runs."""
    start = time.perf_counter()
    path = serving_check.build()
    print(f"\nserving_check build: {time.perf_counter() - start:.1f}s -> {path}")
    return path


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    module = ToyRanker()
    path = tmp_path_factory.mktemp("toy") / "saved_model"
    tf.saved_model.save(
        module,
        str(path),
        signatures={"serving_default": module.serve, "examples": module.serve_examples},
    )
    return path


@pytest.fixture(scope="module")
def loaded(toy_model):
    return tf.saved_model.load(str(toy_model))


def raw_inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, size=(batch, 1)).astype(np.float32)
    # "zz" is not in the table, so the default id 0 is exercised too.
    cat = rng.choice(np.array(CATEGORIES + ["zz"], dtype=object), size=(batch, 1))
    return {"x": x, "cat": cat.astype(bytes)}


def serialized_examples(batch, seed=0):
    """tf.Examples for raw_inputs(batch, seed); every third one lacks `cat`."""
    inputs = raw_inputs(batch, seed)
    examples = []
    for i in range(batch):
        feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=inputs["x"][i]))}
        if i % 3:
            feature["cat"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=inputs["cat"][i]))
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        examples.append(example.SerializeToString())
    return np.array(examples, dtype=object)


def python_outputs(loaded, signature, inputs):
    outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {key: value.numpy() for key, value in outputs.items()}


def assert_same_outputs(cpp, python):
    assert sorted(cpp) == sorted(python) == ["codes", "prediction"]
    assert cpp["prediction"].dtype == np.float32
    assert cpp["codes"].dtype == np.int32
    assert cpp["prediction"].shape == python["prediction"].shape
    np.testing.assert_allclose(cpp["prediction"], python["prediction"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(cpp["codes"], python["codes"])


@pytest.mark.parametrize("batch", [1, 64])
def test_serving_default_matches_python(binary, toy_model, loaded, batch):
    inputs = raw_inputs(batch)
    result = serving_check.run(toy_model, "serving_default", inputs, binary=binary)
    assert result.returncode == 0
    assert result.outputs["codes"].shape == (batch, 2)
    assert_same_outputs(result.outputs, python_outputs(loaded, "serving_default", inputs))


@pytest.mark.parametrize("batch", [1, 64])
def test_examples_matches_python(binary, toy_model, loaded, batch):
    inputs = {"examples": serialized_examples(batch)}
    result = serving_check.run(toy_model, "examples", inputs, binary=binary)
    assert_same_outputs(result.outputs, python_outputs(loaded, "examples", inputs))


def test_examples_agree_with_raw_tensors(binary, toy_model):
    """Missing `cat` features parse to "" and look up the default id, as "zz" does."""
    raw = raw_inputs(64)
    raw["cat"][::3] = b""
    from_raw = serving_check.run(toy_model, "serving_default", raw, binary=binary)
    from_examples = serving_check.run(
        toy_model, "examples", {"examples": serialized_examples(64)}, binary=binary
    )
    assert_same_outputs(from_examples.outputs, from_raw.outputs)


def test_empty_batch_gives_empty_outputs_in_both(binary, toy_model, loaded):
    cases = {
        "serving_default": {
            "x": np.zeros((0, 1), np.float32),
            "cat": np.zeros((0, 1), dtype="S1"),
        },
        "examples": {"examples": np.zeros((0,), dtype="S1")},
    }
    for signature, inputs in cases.items():
        cpp = serving_check.run(toy_model, signature, inputs, binary=binary).outputs
        python = python_outputs(loaded, signature, inputs)
        assert cpp["prediction"].shape == python["prediction"].shape == (0,)
        assert cpp["codes"].shape == python["codes"].shape == (0, 2)
        assert cpp["codes"].dtype == np.int32


def test_string_that_is_not_an_example_fails_with_parse_error(binary, toy_model, loaded):
    inputs = {
        "examples": np.array(
            [serialized_examples(1)[0], b"definitely not a tf.Example"], dtype=object
        )
    }
    with pytest.raises(serving_check.ServingCheckError) as error:
        serving_check.run(toy_model, "examples", inputs, binary=binary)
    assert error.value.returncode == 1
    assert "Could not parse example input" in error.value.stderr
    # the binary's own line; TensorFlow 2.21's loader logs through absl before it
    assert any(line.startswith("error: ") for line in error.value.stderr.splitlines())
    with pytest.raises(tf.errors.InvalidArgumentError, match="Could not parse example input"):
        python_outputs(loaded, "examples", inputs)


def test_wrong_input_dtype_names_the_input(binary, toy_model):
    inputs = raw_inputs(4)
    inputs["x"] = inputs["x"].astype(np.int64)
    with pytest.raises(serving_check.ServingCheckError) as error:
        serving_check.run(toy_model, "serving_default", inputs, binary=binary)
    assert error.value.returncode == 2
    assert "input 'x' has dtype int64" in error.value.stderr
    assert "expects float32" in error.value.stderr


def test_wrong_input_rank_names_the_input(binary, toy_model):
    inputs = raw_inputs(4)
    inputs["x"] = inputs["x"].ravel()
    with pytest.raises(serving_check.ServingCheckError) as error:
        serving_check.run(toy_model, "serving_default", inputs, binary=binary)
    assert error.value.returncode == 2
    assert "input 'x' has shape [4]" in error.value.stderr


def test_missing_and_extra_inputs_are_named(binary, toy_model):
    inputs = raw_inputs(2)
    with pytest.raises(serving_check.ServingCheckError) as missing:
        serving_check.run(toy_model, "serving_default", {"x": inputs["x"]}, binary=binary)
    assert missing.value.returncode == 2
    assert "'cat'" in missing.value.stderr

    with pytest.raises(serving_check.ServingCheckError) as extra:
        serving_check.run(
            toy_model, "serving_default", {**inputs, "user_id": np.arange(2)}, binary=binary
        )
    assert extra.value.returncode == 2
    assert "'user_id'" in extra.value.stderr


def test_unknown_signature_lists_available_ones(binary, toy_model):
    with pytest.raises(serving_check.ServingCheckError) as error:
        serving_check.run(toy_model, "predict", raw_inputs(1), binary=binary)
    assert error.value.returncode == 2
    assert "no signature 'predict'" in error.value.stderr
    assert "available signatures: 'examples', 'serving_default'" in error.value.stderr
    assert "status 2" in str(error.value)


def test_missing_model_dir_is_a_tensorflow_error(binary, tmp_path):
    with pytest.raises(serving_check.ServingCheckError) as error:
        serving_check.run(tmp_path / "absent", "serving_default", raw_inputs(1), binary=binary)
    assert error.value.returncode == 1
    assert "Could not find SavedModel" in error.value.stderr


def test_repeat_reports_latency(binary, toy_model):
    result = serving_check.run(
        toy_model, "serving_default", raw_inputs(8), repeat=20, warmup=2, binary=binary
    )
    latency = result.latency_ms
    assert latency["runs"] == 20
    assert latency["warmup"] == 2
    assert 0 <= latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]
    assert latency["min"] <= latency["mean"] <= latency["max"]


def test_output_encodings_round_trip(binary, tmp_path):
    module = Encodings()
    path = tmp_path / "encodings"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    inputs = {"x": np.array([1.0, -1.0, 0.0, 2.5], np.float32)}

    cpp = serving_check.run(path, "serving_default", inputs, binary=binary).outputs
    python = python_outputs(tf.saved_model.load(str(path)), "serving_default", inputs)

    assert sorted(cpp) == sorted(python)
    for key, expected in python.items():
        assert cpp[key].dtype == expected.dtype, key
        assert cpp[key].shape == expected.shape, key
    np.testing.assert_array_equal(cpp["ratio"], python["ratio"])  # equal_nan by default
    assert np.isnan(cpp["ratio"][2]) and cpp["ratio"][0] == np.inf
    # %.17g round-trips float64 exactly, not just to a tolerance.
    assert cpp["wide"].tolist() == python["wide"].tolist()
    assert cpp["count"].tolist() == python["count"].tolist()
    assert cpp["positive"].tolist() == [True, False, False, True]
    assert cpp["label"].tolist() == python["label"].tolist()
    # Quote, backslash, a non-UTF-8 byte, NUL and newline all survive the JSON.
    assert cpp["label"][0] == b'1.0"\\\xff\x00\n'


def test_build_is_skipped_when_up_to_date(binary):
    before = binary.stat().st_mtime_ns
    assert serving_check.build() == binary
    assert binary.stat().st_mtime_ns == before


def test_binary_records_its_resolved_library_directory(binary):
    libdir = pathlib.Path(f"{binary}.libdir").read_text().strip()
    assert libdir == os.path.realpath(tf.sysconfig.get_lib())
    assert (pathlib.Path(libdir) / "libtensorflow_framework.so.2").is_file()


def test_a_binary_whose_library_directory_is_gone_is_rebuilt(tmp_path):
    """A binary built through a symlinked environment that was removed later
    (a git worktree's .venv) is not taken as up to date: the script goes on to
    build (here with an interpreter that has no TensorFlow, so it fails there)."""
    stale = tmp_path / "serving_check"
    stale.write_text("#!/bin/sh\nexit 0\n")
    stale.chmod(0o755)
    pathlib.Path(f"{stale}.libdir").write_text(str(tmp_path / "gone"))
    env = dict(os.environ, PYTHON="/bin/false")
    proc = subprocess.run(
        ["bash", str(serving_check.BUILD_SCRIPT), str(tmp_path)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "could not read TensorFlow build flags" in proc.stderr
    # With the recorded directory present, the same binary is fresh.
    pathlib.Path(f"{stale}.libdir").write_text(os.path.realpath(tf.sysconfig.get_lib()))
    proc = subprocess.run(
        ["bash", str(serving_check.BUILD_SCRIPT), str(tmp_path)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == str(stale)


def test_each_tensorflow_install_gets_its_own_binary(tmp_path, monkeypatch):
    """The binary links to one wheel's libraries: the build directory is keyed by
    the TensorFlow version and the environment, and lies outside the package
    (an installed wheel has no repository around it)."""
    monkeypatch.setenv("RQ_KERAS_BUILD_DIR", str(tmp_path))
    here = serving_check.build_dir()
    assert here.parent == tmp_path / "serving_check"
    assert here.name.startswith(f"tf{tf.__version__}-")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "other-venv"))
    other = serving_check.build_dir()
    assert other.parent == here.parent and other != here
    monkeypatch.delenv("RQ_KERAS_BUILD_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert serving_check.build_dir().parent == tmp_path / "cache" / "rq_keras" / "serving_check"
    assert serving_check.BUILD_SCRIPT.is_file()  # shipped inside the package


def _fake_binary(tmp_path, stdout: bytes, stderr: bytes, status: int):
    """A stand-in for the C++ program that prints the given bytes and exits."""
    fake = tmp_path / "fake_serving_check"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.stdout.buffer.write({stdout!r})\n"
        f"sys.stderr.buffer.write({stderr!r})\n"
        f"sys.exit({status})\n"
    )
    fake.chmod(0o755)
    return fake


REPORT = b'{"outputs": {"prediction": {"dtype": "float32", "shape": [1], "values": [0.5]}}, '
REPORT += b'"latency_ms": {"runs": 1}}'


def test_non_utf8_output_of_the_binary_is_decoded_with_replacement(tmp_path):
    inputs = {"x": np.zeros(1, np.float32)}
    # A failure whose diagnostics are not UTF-8: the error keeps them, replaced.
    fake = _fake_binary(tmp_path, b"", b"error: bad bytes \xff\xfe in a path\n", 1)
    with pytest.raises(serving_check.ServingCheckError) as error:
        serving_check.run(tmp_path, "serving_default", inputs, binary=fake)
    assert error.value.returncode == 1
    assert "error: bad bytes \ufffd\ufffd in a path" in error.value.stderr
    # Success with a non-UTF-8 loader log: the outputs are read, the log replaced.
    fake = _fake_binary(tmp_path, REPORT, b"loader log \x80\n", 0)
    result = serving_check.run(tmp_path, "serving_default", inputs, binary=fake)
    assert result.outputs["prediction"].tolist() == [0.5]
    assert result.stderr == "loader log \ufffd\n"
    # Status 0 but stdout is not the JSON report: a ServingCheckError that says so.
    fake = _fake_binary(tmp_path, b"\xff\xfe not json", b"", 0)
    with pytest.raises(serving_check.ServingCheckError, match="not the JSON report") as error:
        serving_check.run(tmp_path, "serving_default", inputs, binary=fake)
    assert error.value.returncode == 0
    assert "\ufffd\ufffd not json" in str(error.value)
