"""Run an exported SavedModel through TensorFlow's C++ loader, without Python.

TF Serving loads models with ``tensorflow::LoadSavedModel``; a model that only
works from Python (a ``tf.py_function``, a Python-only op, state that lives in
Keras objects) fails there. ``rq_keras/serving/cpp/serving_check.cc`` (shipped in the
package) is a small program on that same C++ path; this module builds it, feeds
it inputs and parses its JSON output, so tests and benchmarks can compare C++
outputs with ``tf.saved_model.load(...).signatures[...]`` and time
``Session::Run``.

The binary is built against the C++ libraries of the tensorflow wheel of the
running interpreter, into ``build_dir()``: ``$RQ_KERAS_BUILD_DIR`` or
``~/.cache/rq_keras`` (``$XDG_CACHE_HOME``), one subdirectory per TensorFlow
install, so two environments (TensorFlow 2.16 and 2.21, say) never run each
other's binary.

TensorFlow is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from rq_keras.config.keras_version import import_tensorflow

BUILD_SCRIPT = pathlib.Path(__file__).resolve().parent / "cpp" / "build_serving_check.sh"
# TensorFlow's distribution names on PyPI, the CPU-only build second.
_TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly")

__all__ = [
    "ServingCheckError",
    "ServingCheckResult",
    "build",
    "build_dir",
    "run",
    "write_inputs",
]


class ServingCheckError(RuntimeError):
    """The serving_check binary failed, or its output is not the JSON report.

    ``returncode`` is 1 when TensorFlow failed (loading the model or running
    the signature), 2 when the request itself was wrong (unknown signature,
    missing, extra or mistyped inputs), and the binary's status (0) when its
    stdout could not be read as the report. ``stderr`` is the binary's stderr;
    bytes that are not UTF-8 in its output are replaced by U+FFFD.
    """

    def __init__(
        self, returncode: int, stderr: str, command: list[str], problem: str | None = None
    ):
        self.returncode = returncode
        self.stderr = stderr
        self.command = command
        problem = problem or f"serving_check exited with status {returncode}"
        super().__init__(f"{problem}:\n{stderr.strip()}")


@dataclasses.dataclass
class ServingCheckResult:
    """Outputs and timings of one serving_check invocation.

    Attributes:
        outputs: Output key -> array with the signature's shape and dtype, from
            the last run. String outputs are object arrays of ``bytes``, as
            ``Tensor.numpy()`` returns them.
        latency_ms: Wall-clock milliseconds per ``Session::Run``: ``runs``,
            ``warmup``, ``p50``, ``p99``, ``mean``, ``min`` and ``max``.
        returncode: The binary's exit status (0 here; failures raise).
        stderr: The binary's stderr (TensorFlow's loader log).
    """

    outputs: dict[str, np.ndarray]
    latency_ms: dict[str, float]
    returncode: int
    stderr: str


def _tensorflow_version() -> str:
    for name in _TF_DISTRIBUTIONS:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise RuntimeError(
        "no tensorflow distribution is installed for this interpreter "
        f"({sys.executable}); serving_check builds against its C++ libraries"
    )


def build_dir() -> pathlib.Path:
    """Where this interpreter's serving_check binary is built.

    ``$RQ_KERAS_BUILD_DIR`` (or ``$XDG_CACHE_HOME/rq_keras``, by default
    ``~/.cache/rq_keras``) ``/serving_check/tf<version>-<environment>``: the
    TensorFlow version and a digest of the environment's prefix, so each
    environment gets its own binary (it links to that wheel's libraries).
    Found without importing TensorFlow.
    """
    base = os.environ.get("RQ_KERAS_BUILD_DIR")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(cache, "rq_keras")
    prefix = hashlib.sha256(os.path.realpath(sys.prefix).encode()).hexdigest()[:10]
    return pathlib.Path(base) / "serving_check" / f"tf{_tensorflow_version()}-{prefix}"


def build(force: bool = False) -> pathlib.Path:
    """Build the serving_check binary if it is missing or stale.

    Compiles against the C++ libraries of the tensorflow installed for this
    interpreter (g++ and the wheel's headers; no Bazel). The first build takes
    a few seconds to a minute; later calls return at once while the binary is
    newer than its sources.

    Args:
        force: Rebuild even when the binary is up to date.

    Returns:
        Path of the binary, ``build_dir() / "serving_check"``.

    Raises:
        RuntimeError: The build failed or no tensorflow is installed; the
            message holds the compiler output.
    """
    command = ["bash", str(BUILD_SCRIPT), os.fspath(build_dir())] + (["--force"] if force else [])
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        command, capture_output=True, text=True, errors="replace", env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"building serving_check failed (status {proc.returncode}):\n{proc.stderr}"
        )
    return pathlib.Path(proc.stdout.strip().splitlines()[-1])


def write_inputs(path: str | os.PathLike, inputs: Mapping[str, Any]) -> None:
    """Write ``inputs`` as the TFRecord file serving_check reads.

    Each entry becomes one record: a serialized ``tensorflow.NamedTensorProto``
    whose ``name`` is the signature input key.

    Args:
        path: File to write (overwritten).
        inputs: Signature input key -> ``np.ndarray`` or ``tf.Tensor``. The
            dtype must match the signature's (e.g. ``float32``, not numpy's
            default ``float64``); strings may be ``bytes`` or ``str`` arrays.
    """
    tf = import_tensorflow()
    from tensorflow.core.protobuf import named_tensor_pb2

    with tf.io.TFRecordWriter(os.fspath(path)) as writer:
        for name, value in inputs.items():
            proto = named_tensor_pb2.NamedTensorProto(name=name, tensor=tf.make_tensor_proto(value))
            writer.write(proto.SerializeToString())


def run(
    model_dir: str | os.PathLike,
    signature: str,
    inputs: Mapping[str, Any],
    repeat: int = 1,
    warmup: int = 0,
    binary: str | os.PathLike | None = None,
    timeout: float = 600,
    feed_as_is: bool = False,
) -> ServingCheckResult:
    """Serve ``signature`` of the SavedModel at ``model_dir`` from C++.

    Args:
        model_dir: SavedModel directory (tag set ``serve``).
        signature: Signature key, e.g. ``"serving_default"``.
        inputs: Every signature input key -> value (see ``write_inputs``).
        repeat: Timed ``Session::Run`` calls on the same inputs.
        warmup: Untimed calls before the timed ones.
        binary: serving_check binary to use; built with ``build()`` if None.
        timeout: Seconds before the binary is killed
            (``subprocess.TimeoutExpired``).
        feed_as_is: skip the binary's dtype and shape checks against the
            SignatureDef and feed the inputs as TF Serving does, so errors
            come from the model's graph.

    Returns:
        The outputs of the last run and the latency statistics.

    Raises:
        ServingCheckError: The binary exited nonzero (see its ``returncode``),
            or its stdout is not the JSON report.
    """
    binary = pathlib.Path(binary) if binary is not None else build()
    with tempfile.TemporaryDirectory(prefix="serving_check_") as tmp:
        inputs_path = pathlib.Path(tmp) / "inputs.tfrecord"
        write_inputs(inputs_path, inputs)
        command = [
            os.fspath(binary),
            "--model-dir",
            os.fspath(model_dir),
            "--signature",
            signature,
            "--inputs",
            os.fspath(inputs_path),
            "--repeat",
            str(repeat),
            *(["--feed-as-is"] if feed_as_is else []),
            "--warmup",
            str(warmup),
        ]
        # Hide the loader's INFO lines, which would bury error messages in
        # stderr; an explicit TF_CPP_MIN_LOG_LEVEL from the caller wins.
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        # Bytes, decoded here: a path or a TensorFlow message in the output
        # may not be UTF-8, and that must not hide the result or the error.
        proc = subprocess.run(command, capture_output=True, env=env, timeout=timeout, check=False)
    stdout = proc.stdout.decode("utf-8", errors="replace")
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise ServingCheckError(proc.returncode, stderr, command)
    try:
        report = json.loads(stdout)
        outputs = {key: _to_array(output) for key, output in report["outputs"].items()}
        latency_ms = report["latency_ms"]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ServingCheckError(
            proc.returncode,
            stderr,
            command,
            problem=f"serving_check's stdout is not the JSON report ({err}): {stdout[:500]!r}",
        ) from err
    return ServingCheckResult(
        outputs=outputs,
        latency_ms=latency_ms,
        returncode=proc.returncode,
        stderr=stderr,
    )


def _to_array(output: Mapping[str, Any]) -> np.ndarray:
    """Rebuild one output from its JSON form (see serving_check.cc)."""
    shape = tuple(output["shape"])
    values = output["values"]
    if output["dtype"] == "string":
        # The binary writes byte b as code point b; latin-1 maps them back.
        array = np.array([v.encode("latin-1") for v in values], dtype=object)
    elif output["dtype"].startswith("float"):
        # float() also parses the "nan", "inf" and "-inf" strings.
        array = np.array([float(v) for v in values], dtype=output["dtype"])
    else:
        array = np.array(values, dtype=output["dtype"])
    return array.reshape(shape)
