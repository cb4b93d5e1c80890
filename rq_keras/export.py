"""SavedModel export for TF Serving (`python export.py`).

`export_model` writes a trained `RQRegModel` as a SavedModel under
`BASE/N/`, the layout TF Serving watches, with two signatures:

* `serving_default`: one named input per feature of the spec (the raw values,
  with the spec's dtypes and shapes: scalars `(batch,)`, lists
  `(batch, max_length)` padded with the spec's pad value);
* `examples`: `examples`, a `(batch,)` string tensor of serialized
  `tf.Example`s, parsed with the spec (a missing feature takes the spec
  default, a missing list is empty).

In both, a NaN, `inf` or `-inf` in a numeric feature is replaced in the
graph by that feature's spec default, as a missing value is in training, so a
bad value never makes a prediction NaN or fails the batch.

Both return `prediction` float32 `(batch,)`, and for RQ-Reg `regressor`
(f_reg's sum), the code tree's `mean` and `median` (all `(batch,)`),
`quantiles` `(batch, Q)` and `exceedance` `(batch, T)` (P(y > t) per
threshold of the model's config), `level_values` float32 `(batch, L)` and
`codes` int32 `(batch, L)` (-1 is the zero code when the codebook has one);
a baseline head (`rq_keras.heads`) returns `prediction` only.
Preprocessing (vocabulary lookups, normalization, hashing) and the codebook
are inside the graph; no `py_function`, so TF Serving and a
Python without rq_keras load it.

`assets.extra/` holds TF Serving's warm-up requests, the feature spec and, for
RQ-Reg, `outputs.json`: the quantile levels and thresholds of the
`quantiles` and `exceedance` columns (`python predict.py` names its columns
with them).

The version is written to a hidden temporary directory beside `BASE/N`
(TF Serving ignores names that are not integers), checked, and renamed into
place, so a watching server never sees a half-written or unchecked version.
The checks reload it in a fresh Python process that cannot import rq_keras,
run both signatures on held-out rows and compare with the in-memory model;
that process ends with the exporting one, and its files live inside the
temporary directory. An export starts by removing the temporary directories
(`BASE/.tmp-N-PID/`) of exports whose process no longer runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ExportCheckError",
    "ExportError",
    "ExportResult",
    "OUTPUTS",
    "build_serving_module",
    "export_model",
    "latest_version",
    "load_run",
    "next_version",
    "remove_stale_temporaries",
    "serialize_examples",
]

OUTPUTS = (
    "prediction",
    "regressor",
    "mean",
    "median",
    "positive_mean",
    "quantiles",
    "exceedance",
    "level_values",
    "codes",
)
# Output dtypes; a baseline head exports `prediction` only, an RQ-Reg model
# saved before the code tree has no distribution outputs.
_OUTPUT_DTYPES = {k: "float32" for k in OUTPUTS} | {"codes": "int32"}
WARMUP_FILE = "tf_serving_warmup_requests"
# The spec beside the warm-up file: clients and `python -m rq_keras.serving_check`
# read the features from it. TF Serving ignores other files in assets.extra.
SPEC_FILE = "feature_spec.yaml"
# The levels behind the 2-D outputs: {"quantiles": [...], "thresholds": [...]}.
OUTPUTS_FILE = "outputs.json"
# Ops that call back into Python: a graph with one cannot be served.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
TOLERANCE = 1e-5
# `BASE/.tmp-N-PID`: an export's temporary directory (see `export_model`).
_TEMP_NAME = re.compile(r"\.tmp-([1-9][0-9]*)-([1-9][0-9]*)")

logger = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The export cannot start: an existing version, a bad version, no rows."""


class ExportCheckError(ExportError):
    """The written SavedModel failed a check; nothing was left in place."""


@dataclasses.dataclass
class ExportResult:
    """What `export_model` wrote.

    Attributes:
        export_dir: `BASE/N`.
        version: N.
        size_bytes: the SavedModel's size on disk (all files).
        checks: the check figures (rows, largest differences per output and
            signature), empty when checks were skipped.
        seconds: wall time of the export, checks included.
        removed_stale: the temporary directories of dead exports removed at
            the start (see `remove_stale_temporaries`).
    """

    export_dir: str
    version: int
    size_bytes: int
    checks: dict[str, Any]
    seconds: float
    removed_stale: list[str] = dataclasses.field(default_factory=list)


# ------------------------------------------------------------ the graph
def build_serving_module(model, spec):
    """A `tf.Module` holding `model` with the two serving functions.

    Args:
        model: an `RQRegModel`, a `rq_keras.heads.HeadModel`, or any Keras
            model taking the spec's feature dict and returning a dict with
            `prediction` (and optionally `level_values` and `codes`).
        spec: its `FeatureSpec`.

    Returns:
        `(module, signatures)`: pass both to `tf.saved_model.save`.
    """
    import tensorflow as tf

    from rq_keras.data import to_model_inputs

    features = spec.features
    input_signature = spec.input_signature()

    def outputs_of(inputs):
        out = model(inputs, training=False)
        if "prediction" not in out:
            raise ExportError("the model's outputs have no `prediction`")
        result = {"prediction": tf.cast(tf.reshape(out["prediction"], [-1]), tf.float32)}
        for key in OUTPUTS[1:]:
            if key in out:
                result[key] = tf.cast(out[key], _OUTPUT_DTYPES[key])
        return result

    def checked(inputs):
        """Shape checks that run in the graph and name the feature.

        Python callers meet the signature's own checks first; a C++ or TF
        Serving client can feed any shape, and without these the graph would
        compute on it (the optimizer trusts the declared static shapes).
        `tf.ensure_shape` checks rank and list length at run time; an
        assertion checks that all inputs have the same batch.
        """
        out = {
            f.name: tf.ensure_shape(inputs[f.name], (None, *f.shape), name=f"check_{f.name}")
            for f in features
        }
        first = features[0].name
        batch = tf.shape(out[first])[0]
        checks = [
            tf.debugging.Assert(
                tf.equal(tf.shape(out[f.name])[0], batch),
                [
                    f"serving input {f.name}: batch size differs from {first}'s:",
                    tf.shape(out[f.name])[0],
                    batch,
                ],
                name=f"check_batch_{f.name}",
            )
            for f in features[1:]
        ]
        with tf.control_dependencies(checks):
            return {k: tf.identity(v) for k, v in out.items()}

    def finite(inputs):
        """NaN, inf and -inf in a numeric feature -> the feature's spec default.

        The readers give a missing or NaN numeric cell the default in training
        (`rq_keras.data`); serving does the same instead of letting one bad
        value make the prediction NaN, or failing the batch. Lists hold ids
        (string or int64), which cannot be non-finite.
        """
        out = dict(inputs)
        for f in features:
            if f.is_numeric:
                value = out[f.name]
                out[f.name] = tf.where(
                    tf.math.is_finite(value), value, tf.constant(f.default, value.dtype)
                )
        return out

    @tf.function(input_signature=[input_signature])
    def serve_features(inputs):
        return outputs_of(finite(checked(inputs)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        rank_ok = tf.debugging.assert_rank(
            examples, 1, message="input 'examples' must be a (batch,) string tensor"
        )
        with tf.control_dependencies([rank_ok]):
            parsed = tf.io.parse_example(examples, spec.parse_spec(with_label=False))
        return outputs_of(finite(to_model_inputs(parsed, spec)))

    module = tf.Module()
    module.model = model
    module.serve_features = serve_features
    module.serve_examples = serve_examples
    signatures = {
        "serving_default": serve_features.get_concrete_function(),
        "examples": serve_examples.get_concrete_function(),
    }
    return module, signatures


# ---------------------------------------------------------- input rows
def serialize_examples(spec, inputs: Mapping[str, np.ndarray]) -> list[bytes]:
    """Model-input rows (lists padded) -> serialized `tf.Example`s.

    The inverse of what the `examples` signature parses: a list's pad values
    are dropped, every scalar is written, NaN included (so nothing falls back
    to a default in the parse: the graph's replacement of non-finite values
    is what the checks exercise). Encoded by `rq_keras.serving.make_example`.
    """
    from rq_keras.serving import make_example

    n = len(next(iter(inputs.values()))) if inputs else 0
    columns = {f.name: np.asarray(inputs[f.name]) for f in spec.features} if n else {}
    out = []
    for i in range(n):
        row = {}
        for f in spec.features:
            v = columns[f.name][i]
            if f.is_list:
                row[f.name] = [t for t in v.tolist() if t != f.pad_value and t != b""]
            else:
                row[f.name] = v.item() if hasattr(v, "item") else v
        out.append(make_example(spec, row, keep_missing=True).SerializeToString())
    return out


def read_rows(files: Sequence[str], spec, rows: int) -> dict[str, np.ndarray]:
    """The first `rows` rows of `files` in the model's input form (no label)."""
    from rq_keras.data import read_chunks

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


def feature_tensors(spec, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """numpy model-input rows -> tensors of the spec's dtypes."""
    import tensorflow as tf

    out = {}
    for f in spec.features:
        v = np.asarray(inputs[f.name])
        if f.dtype == "string":
            v = v.astype(object)
        out[f.name] = tf.constant(v, dtype=tf.as_dtype(f.tf_dtype_name))
    return out


# ---------------------------------------------------------------- runs
def load_run(model_dir: str | os.PathLike):
    """(model, spec, held-out files) of a `train.py` output directory."""
    from rq_keras.run_dir import load_trained, read_yaml

    run = pathlib.Path(model_dir)
    model, spec = load_trained(run)
    held_out: list[str] = []
    config_path = run / "config.yaml"
    if config_path.is_file():
        config = read_yaml(config_path) or {}
        if not isinstance(config, dict):
            raise ExportError(f"{config_path} does not hold a run config")
        held_out = list(config.get("test_files") or config.get("validation_files") or [])
        if config.get("dataset"):
            held_out = sorted(str(p) for p in (run / "data").glob("test.*"))
            held_out = [p for p in held_out if not p.endswith(".json")]
    return model, spec, held_out


def latest_version(base: str | os.PathLike) -> int | None:
    """The largest integer directory name in `base` (TF Serving's versions), or None."""
    base = pathlib.Path(base)
    if not base.is_dir():
        return None
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=None)


def next_version(base: str | os.PathLike) -> int:
    """One more than the largest version in `base` (1 if none)."""
    return (latest_version(base) or 0) + 1


def _process_gone(pid: int) -> bool:
    """True when no process `pid` exists; another user's process counts as running.

    On Windows `os.kill(pid, 0)` would terminate the process, so nothing
    counts as gone there.
    """
    if os.name == "nt":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it runs as another user
        return False
    return False


def remove_stale_temporaries(base: str | os.PathLike) -> list[str]:
    """Removes the temporary directories that killed exports left in `base`.

    Only directories named exactly `.tmp-N-PID` (N and PID positive integers
    without leading zeros) whose process PID no longer runs are removed; a
    running export's directory, files, links and every other name are kept.

    Args:
        base: the export base (`BASE` of `BASE/N`).

    Returns:
        The removed directories' paths; each is also logged (WARNING).
    """
    base = pathlib.Path(base)
    if not base.is_dir():
        return []
    removed = []
    for path in sorted(base.iterdir()):
        match = _TEMP_NAME.fullmatch(path.name)
        if not match or path.is_symlink() or not path.is_dir():
            continue
        pid = int(match.group(2))
        if not _process_gone(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(str(path))
            logger.warning(
                "removed %s: the temporary directory of an export whose process %d "
                "no longer runs",
                path,
                pid,
            )
    return removed


def _dir_size(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _python_ops(export_dir: pathlib.Path) -> list[str]:
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


def _write_warmup(export_dir: pathlib.Path, spec, rows: Mapping[str, np.ndarray], examples):
    """`assets.extra/tf_serving_warmup_requests`: PredictionLogs for both signatures."""
    import tensorflow as tf
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


def _check_in_fresh_process(export_dir: pathlib.Path, spec, model, rows, examples):
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


# ---------------------------------------------------------------- export
def export_model(
    model,
    spec,
    export_base: str | os.PathLike,
    *,
    version: int | None = None,
    check_rows: Mapping[str, np.ndarray] | None = None,
    check: bool = True,
) -> ExportResult:
    """Writes `model` as `export_base/N/` for TF Serving (atomically, checked).

    Args:
        model: a trained `RQRegModel` or `HeadModel` (see `build_serving_module`).
        spec: its `FeatureSpec`.
        export_base: the directory TF Serving watches (`--model_base_path`).
        version: N; default one more than the largest existing version.
        check_rows: held-out rows in the model's input form (`read_rows`):
            the warm-up requests and the checks use them. Required when
            `check` is True.
        check: reload in a fresh process without rq_keras and compare both
            signatures with `model` on `check_rows` (to 1e-5; codes exactly)
            before the version is renamed into place.

    The export starts by removing the temporary directories that killed
    exports left in `export_base` (`remove_stale_temporaries`).

    Returns:
        an `ExportResult`.

    Raises:
        ExportError: the version exists or is not an integer >= 1, or there
            are no rows to check with.
        ExportCheckError: the graph has a Python op or a check failed;
            nothing is left under `export_base`.
    """
    import tensorflow as tf

    start = time.perf_counter()
    base = pathlib.Path(export_base)
    if version is None:
        version = next_version(base)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be an integer >= 1, got {version!r}")
    final = base / str(version)
    if final.exists():
        raise ExportError(
            f"{final} exists: TF Serving versions are immutable; pick another --version"
        )
    if check and not check_rows:
        raise ExportError("the export checks need held-out rows (`check_rows`)")
    base.mkdir(parents=True, exist_ok=True)
    removed_stale = remove_stale_temporaries(base)
    tmp = base / f".tmp-{version}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        module, signatures = build_serving_module(model, spec)
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        (tmp / "assets.extra").mkdir(exist_ok=True)
        spec.save(tmp / "assets.extra" / SPEC_FILE)
        from rq_keras.predict import output_levels

        levels = output_levels(model)
        if levels is not None:
            (tmp / "assets.extra" / OUTPUTS_FILE).write_text(json.dumps(levels) + "\n")
        python_ops = _python_ops(tmp)
        if python_ops:
            raise ExportCheckError(
                f"the graph calls back into Python ({python_ops}); it cannot serve"
            )
        checks: dict[str, Any] = {}
        if check_rows:
            rows = {f.name: np.asarray(check_rows[f.name]) for f in spec.features}
            examples = serialize_examples(spec, rows)
            checks["warmup_records"] = _write_warmup(tmp, spec, rows, examples)
            if check:
                checks.update(_check_in_fresh_process(tmp, spec, model, rows, examples))
        try:
            os.rename(tmp, final)
        except OSError as err:
            raise ExportError(f"could not move the export into {final}: {err}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(
        export_dir=str(final),
        version=version,
        size_bytes=_dir_size(final),
        checks=checks,
        seconds=time.perf_counter() - start,
        removed_stale=removed_stale,
    )


def export_run(
    model_dir: str | os.PathLike,
    export_base: str | os.PathLike,
    *,
    version: int | None = None,
    check_files: Sequence[str] | None = None,
    check_rows: int = 256,
) -> ExportResult:
    """`export_model` for a `train.py` output directory.

    The held-out rows come from `check_files`, or else the run's test split
    (its validation split when it has no test split).
    """
    model, spec, held_out = load_run(model_dir)
    files = list(check_files) if check_files else held_out
    if not files:
        raise ExportError(
            f"{model_dir}: the run has no test or validation files for the export checks; "
            "pass --check-files"
        )
    for path in files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"check file {path} does not exist")
    rows = read_rows(files, spec, check_rows)
    return export_model(model, spec, export_base, version=version, check_rows=rows)
