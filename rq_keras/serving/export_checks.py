"""The checks of an export, and its warm-up requests.

Before `rq_keras.serving.export.export_model` renames a version into place, the
SavedModel must hold no op that calls back into Python (`python_ops`), and
`check_in_fresh_process` reloads it in a Python process that cannot import
rq_keras, runs both signatures on held-out rows (`read_rows`) and compares
them with the in-memory model; that process ends with the exporting one.
`write_warmup` writes TF Serving's warm-up requests from the same rows.
TensorFlow is imported by the functions that need it, not when this module
loads.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rq_keras.config.keras_version import import_tensorflow
from rq_keras.serving.errors import ExportCheckError, ExportError
from rq_keras.serving.signatures import OUTPUTS, feature_tensors

__all__ = [
    "PYTHON_OPS",
    "TOLERANCE",
    "WARMUP_FILE",
    "check_in_fresh_process",
    "python_ops",
    "read_rows",
    "write_warmup",
]

WARMUP_FILE = "tf_serving_warmup_requests"
# Ops that call back into Python: a graph with one cannot be served.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
TOLERANCE = 1e-5


def read_rows(files: Sequence[str], spec, rows: int) -> dict[str, np.ndarray]:
    """The first `rows` rows of `files` in the model's input form (no label)."""
    from rq_keras.data.readers import read_chunks

    parts: dict[str, list[np.ndarray]] = {f.name: [] for f in spec.features}
    have = 0
    for path in files:
        for chunk in read_chunks(path, spec, with_label=False, chunk_rows=rows):
            take = min(rows - have, len(chunk[spec.features[0].name]))
            for f in spec.features:
                parts[f.name].append(chunk[f.name][:take])
            have += take
            if have >= rows:
                break
        if have >= rows:
            break
    if have == 0:
        raise ExportError(f"no rows for the export checks in {list(files)}")
    return {k: np.concatenate(v) for k, v in parts.items()}


def python_ops(export_dir: pathlib.Path) -> list[str]:
    """The ops of `PYTHON_OPS` in the SavedModel's graphs and functions, sorted."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((export_dir / "saved_model.pb").read_bytes())
    found = set()
    for meta in saved.meta_graphs:
        nodes = list(meta.graph_def.node)
        for fn in meta.graph_def.library.function:
            nodes.extend(fn.node_def)
        found.update(n.op for n in nodes if n.op in PYTHON_OPS)
    return sorted(found)


def write_warmup(export_dir: pathlib.Path, spec, rows: Mapping[str, np.ndarray], examples):
    """`assets.extra/tf_serving_warmup_requests`: PredictionLogs for both signatures."""
    tf = import_tensorflow()
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    extra = export_dir / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    n = len(examples)
    records = 0
    with tf.io.TFRecordWriter(str(extra / WARMUP_FILE)) as writer:
        for size in sorted({1, min(n, 64)}):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name="examples")
            )
            request.inputs["examples"].CopyFrom(
                tf.make_tensor_proto(examples[:size], dtype=tf.string)
            )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name="serving_default")
            )
            for f in spec.features:
                value = np.asarray(rows[f.name])[:size]
                if f.dtype == "string":
                    value = value.astype(object)
                request.inputs[f.name].CopyFrom(
                    tf.make_tensor_proto(value, dtype=tf.as_dtype(f.tf_dtype_name))
                )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
            records += 2
    return records


# Prepended to a `_run_tied_to_parent` script: a thread that ends the process
# once its parent is gone (reparented), wherever PR_SET_PDEATHSIG is missing.
_WATCH_PARENT = r"""
import os as _os, threading as _threading, time as _time
def _watch_parent(parent=int(_os.environ.pop("RQ_KERAS_PARENT_PID", "0") or 0)):
    while parent and _os.getppid() == parent:
        _time.sleep(0.2)
    if parent:
        _os._exit(1)
_threading.Thread(target=_watch_parent, daemon=True).start()
del _watch_parent
"""
_PR_SET_PDEATHSIG = 1


def _parent_death_signal():
    """A `preexec_fn` that makes the child get SIGKILL when its parent dies.

    Linux only (`prctl(PR_SET_PDEATHSIG)`); None elsewhere or when libc has no
    `prctl`. `prctl` is looked up here, before the fork, so the child only
    calls it. A parent that died before `prctl` ran is caught by comparing
    `getppid` with its pid.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def preexec():
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _run_tied_to_parent(
    script: str,
    args: Sequence[str],
    *,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    pdeathsig: bool = True,
) -> subprocess.CompletedProcess:
    """`python -c script args...`, ended when this process dies.

    On Linux the kernel kills the child when its parent dies
    (`PR_SET_PDEATHSIG`); everywhere a thread in the child (`_WATCH_PARENT`)
    ends it once its parent pid changes, within 0.2 s.

    Args:
        script: the Python source to run.
        args: its `sys.argv[1:]`.
        cwd: the child's working directory.
        env: the child's environment (default: this process's).
        pdeathsig: use `PR_SET_PDEATHSIG` where available (False leaves only
            the child's watch, for tests).

    Returns:
        The finished process, stdout and stderr captured as text (undecodable
        bytes replaced).
    """
    env = dict(os.environ if env is None else env)
    env["RQ_KERAS_PARENT_PID"] = str(os.getpid())
    return subprocess.run(
        [sys.executable, "-c", _WATCH_PARENT + script, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        preexec_fn=_parent_death_signal() if pdeathsig else None,
    )


# The fresh process of the checks: rq_keras is made unimportable first.
_CHECK_SCRIPT = r"""
import sys
sys.modules["rq_keras"] = None
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf
try:
    import rq_keras  # noqa: F401
    raise SystemExit("rq_keras is importable in the check process")
except ImportError:
    pass
export_dir, work = sys.argv[1], sys.argv[2]
loaded = tf.saved_model.load(export_dir)
rows = np.load(os.path.join(work, "rows.npz"), allow_pickle=True)
with open(os.path.join(work, "dtypes.json")) as f:
    dtypes = json.load(f)
inputs = {k: tf.constant(rows[k], dtype=tf.as_dtype(dtypes[k])) for k in rows.files}
examples = tf.constant(list(np.load(os.path.join(work, "examples.npy"), allow_pickle=True)))
results = {}
for name, kwargs in (("serving_default", inputs), ("examples", {"examples": examples})):
    out = loaded.signatures[name](**kwargs)
    for key, value in out.items():
        results[f"{name}/{key}"] = value.numpy()
np.savez(os.path.join(work, "outputs.npz"), **results)
print(json.dumps({"signatures": sorted(loaded.signatures.keys())}))
"""


def check_in_fresh_process(export_dir: pathlib.Path, spec, model, rows, examples):
    """Reloads `export_dir` without rq_keras and compares with `model`.

    The rows and outputs go through a directory inside `export_dir` (removed
    before the rename; if this process is killed, the next export's start
    removes the whole temporary directory), and the process ends with this one.
    """
    expected = model(feature_tensors(spec, rows), training=False)
    expected = {k: np.asarray(expected[k]) for k in OUTPUTS if k in expected}
    with tempfile.TemporaryDirectory(prefix=".check-", dir=export_dir) as work:
        saved_rows = {
            f.name: np.asarray(rows[f.name]).astype(object)
            if f.dtype == "string"
            else np.asarray(rows[f.name])
            for f in spec.features
        }
        np.savez(os.path.join(work, "rows.npz"), **saved_rows)
        with open(os.path.join(work, "dtypes.json"), "w") as f:
            json.dump({f.name: f.tf_dtype_name for f in spec.features}, f)
        np.save(os.path.join(work, "examples.npy"), np.array(examples, dtype=object))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        proc = _run_tied_to_parent(
            _CHECK_SCRIPT,
            [str(export_dir.resolve()), str(pathlib.Path(work).resolve())],
            cwd=work,  # not the repository: nothing of rq_keras on sys.path
            env=env,
        )
        if proc.returncode != 0:
            raise ExportCheckError(
                f"the SavedModel did not run in a fresh process without rq_keras:\n"
                f"{proc.stderr.strip()[-3000:]}"
            )
        signatures = json.loads(proc.stdout.strip().splitlines()[-1])["signatures"]
        got = dict(np.load(os.path.join(work, "outputs.npz")))
    checks: dict[str, Any] = {"rows": int(len(examples)), "signatures": signatures}
    problems = []
    for signature in ("serving_default", "examples"):
        for key in expected:
            value = got.get(f"{signature}/{key}")
            if value is None:
                problems.append(f"{signature}: no output {key!r}")
                continue
            want = expected[key]
            if value.shape != want.shape:
                problems.append(f"{signature}/{key}: shape {value.shape}, expected {want.shape}")
                continue
            if key == "codes":
                mismatched = int(np.count_nonzero(value != want))
                checks[f"{signature}/codes_mismatched"] = mismatched
                if mismatched:
                    problems.append(f"{signature}/codes: {mismatched} codes differ")
            else:
                diff = float(np.max(np.abs(value - want), initial=0.0))
                checks[f"{signature}/{key}_max_abs_diff"] = diff
                if not np.allclose(value, want, rtol=TOLERANCE, atol=TOLERANCE):
                    problems.append(f"{signature}/{key}: largest difference {diff:.3g}")
    if problems:
        raise ExportCheckError(
            "the SavedModel does not reproduce the model: " + "; ".join(problems)
        )
    return checks
