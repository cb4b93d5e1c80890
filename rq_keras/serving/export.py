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
graph by that feature's spec default, as it is in training and batch scoring
(one policy on every path, `rq_keras.data`), so a bad value never makes a
prediction NaN or fails the batch.

Both return `prediction` float32 `(batch,)`, and for RQ-Reg `regressor`
(f_reg's sum), the code tree's `mean` and `median` (all `(batch,)`),
`quantiles` `(batch, Q)` and `exceedance` `(batch, T)` (P(y > t) per
threshold of the model's config), `level_values` float32 `(batch, L)` and
`codes` int32 `(batch, L)` (-1 is the zero code when the codebook has one);
a baseline head (`rq_keras.models.baselines`) returns `prediction` only.
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

The modules, by idea (none imports TensorFlow when it loads):

* `rq_keras.serving.export` (this one): `export_model`, `export_run`, `load_run`,
  the versions and the temporary directories of `BASE`;
* `rq_keras.serving.signatures`: the `tf.Module`, its two signatures and
  their `OUTPUTS`, and the inputs they take (`feature_tensors`,
  `serialize_examples`);
* `rq_keras.serving.export_checks`: the held-out rows (`read_rows`), the Python-op
  check, the warm-up requests and the check in a fresh process;
* `rq_keras.serving.errors`: `ExportError`, `ExportCheckError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rq_keras.atomic import DirectoryLock, host_tag, process_gone, unique_suffix
from rq_keras.config.keras_version import import_tensorflow
from rq_keras.serving.errors import ExportCheckError, ExportError
from rq_keras.serving.export_checks import (
    check_in_fresh_process,
    python_ops,
    read_rows,
    write_warmup,
)
from rq_keras.serving.signatures import build_serving_module, serialize_examples

__all__ = [
    "ExportResult",
    "export_run",
    "is_keras3_model",
    "export_model",
    "latest_version",
    "load_run",
    "next_version",
    "remove_stale_temporaries",
]

# The spec beside the warm-up file: clients and `python -m rq_keras.cli.serving_check`
# read the features from it. TF Serving ignores other files in assets.extra.
SPEC_FILE = "feature_spec.yaml"
# The levels behind the 2-D outputs: {"quantiles": [...], "thresholds": [...]}.
OUTPUTS_FILE = "outputs.json"
# `BASE/.tmp-N-PID-RANDOM-HOST`: an export's temporary directory (see
# `export_model`); rq_keras 0.2 named it `.tmp-N-PID`.
_TEMP_NAME = re.compile(r"\.tmp-([1-9][0-9]*)-([1-9][0-9]*)(?:-[0-9a-f]{8}-([A-Za-z0-9._]+))?")

logger = logging.getLogger(__name__)


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


# ---------------------------------------------------------------- runs
def load_run(model_dir: str | os.PathLike):
    """(model, spec, held-out files) of a `train.py` output directory."""
    from rq_keras.training.run_dir import held_out_files, load_trained

    model, spec = load_trained(model_dir)
    return model, spec, held_out_files(model_dir)


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


def remove_stale_temporaries(base: str | os.PathLike) -> list[str]:
    """Removes the temporary directories that killed exports of this host left in `base`.

    Only directories named exactly `.tmp-N-PID-RANDOM-HOST` (or `.tmp-N-PID`,
    rq_keras 0.2's form) whose HOST is this host and whose process PID no
    longer runs are removed; a running export's directory, another host's
    (whose process cannot be checked from here: it is logged), files, links and
    every other name are kept.

    Args:
        base: the export base (`BASE` of `BASE/N`).

    Returns:
        The removed directories' paths; each is also logged (WARNING).
    """
    base = pathlib.Path(base)
    if not base.is_dir():
        return []
    host = host_tag()
    removed = []
    for path in sorted(base.iterdir()):
        match = _TEMP_NAME.fullmatch(path.name)
        if not match or path.is_symlink() or not path.is_dir():
            continue
        pid, its_host = int(match.group(2)), match.group(3)
        if its_host is not None and its_host != host:
            logger.warning(
                "kept %s: the temporary directory of an export on host %s, whose process "
                "cannot be checked from here; delete it once no export runs there",
                path,
                its_host,
            )
            continue
        if not process_gone(pid):
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
        model: a trained `RQRegModel` or `BaselineModel` (see `build_serving_module`),
            or a Keras 3 model taking the spec's feature dict (an
            `rq_keras.layers.keras3.RQRegRanker` on a `build_keras3_model`
            tower), written through Keras 3's `ExportArchive`.
        spec: its `FeatureSpec`.
        export_base: the directory TF Serving watches (`--model_base_path`).
        version: N; default one more than the largest existing version.
        check_rows: held-out rows in the model's input form (`read_rows`):
            the warm-up requests and the checks use them. Required when
            `check` is True.
        check: reload in a fresh process without rq_keras and compare both
            signatures with `model` on `check_rows` (to 1e-5; codes exactly)
            before the version is renamed into place.

    The export holds `export_base`'s lock (`rq_keras.atomic.DirectoryLock`)
    from choosing the version to renaming it into place, so a second export
    into the same base fails at once, naming this one; it starts by removing
    the temporary directories that killed exports of this host left there
    (`remove_stale_temporaries`).

    Returns:
        an `ExportResult`.

    Raises:
        ExportError: the version exists or is not an integer >= 1, or there
            are no rows to check with.
        ExportCheckError: the graph has a Python op or a check failed;
            nothing is left under `export_base`.
        DirectoryInUseError: another export holds `export_base`, or a lock
            file of another host is there.
    """
    start = time.perf_counter()
    if check and not check_rows:
        raise ExportError("the export checks need held-out rows (`check_rows`)")
    with _base_lock(export_base, version):
        return _export_held(
            model, spec, pathlib.Path(export_base), version, check_rows, check, start
        )


@contextlib.contextmanager
def _base_lock(export_base, version):
    """Holds `export_base`'s lock: one export into a base at a time, so the
    version number and the temporary directories' cleanup are decided alone."""
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise ExportError(f"version must be an integer >= 1, got {version!r}")
    with DirectoryLock(export_base, f"export.py into {os.fspath(export_base)}") as lock:
        if lock.notice:
            logger.warning("%s", lock.notice)
        yield


def _export_held(model, spec, base, version, check_rows, check, start) -> ExportResult:
    if version is None:
        version = next_version(base)
    final = base / str(version)
    if final.exists():
        raise ExportError(
            f"{final} exists: TF Serving versions are immutable; pick another --version"
        )
    removed_stale = remove_stale_temporaries(base)
    checks = _write_version(model, spec, base, final, version, check_rows, check)
    return ExportResult(
        export_dir=str(final),
        version=version,
        size_bytes=_dir_size(final),
        checks=checks,
        seconds=time.perf_counter() - start,
        removed_stale=removed_stale,
    )


def _write_version(model, spec, base, final, version, check_rows, check) -> dict[str, Any]:
    """Writes, checks and renames one version into place (under the base's lock)."""
    tf = import_tensorflow()

    tmp = base / f".tmp-{version}-{unique_suffix()}"
    try:
        module, signatures = build_serving_module(model, spec)
        try:
            _save(model, module, signatures, tmp)
        except tf.errors.OpError as err:  # a full disk, a read-only base
            raise ExportError(f"could not write the SavedModel into {tmp}: {err.message}") from None
        (tmp / "assets.extra").mkdir(exist_ok=True)
        spec.save(tmp / "assets.extra" / SPEC_FILE)
        from rq_keras.evaluation.output_columns import output_levels

        levels = output_levels(model)
        if levels is not None:
            (tmp / "assets.extra" / OUTPUTS_FILE).write_text(json.dumps(levels) + "\n")
        found = python_ops(tmp)
        if found:
            raise ExportCheckError(f"the graph calls back into Python ({found}); it cannot serve")
        checks: dict[str, Any] = {}
        if check_rows:
            rows = {f.name: np.asarray(check_rows[f.name]) for f in spec.features}
            examples = serialize_examples(spec, rows)
            checks["warmup_records"] = write_warmup(tmp, spec, rows, examples)
            if check:
                checks.update(check_in_fresh_process(tmp, spec, model, rows, examples))
        try:
            os.rename(tmp, final)
        except OSError as err:
            raise ExportError(f"could not move the export into {final}: {err}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return checks


def is_keras3_model(model) -> bool:
    """True for a Keras 3 model (`keras.Model` of the `keras` 3 package), False
    for a Keras 2 (`tf_keras`) one; neither import is forced."""
    keras = sys.modules.get("keras")
    return (
        keras is not None
        and str(getattr(keras, "__version__", "")).startswith("3.")
        and isinstance(model, keras.Model)
    )


def _save(model, module, signatures, path: pathlib.Path) -> None:
    """Writes the SavedModel: a Keras 3 model through Keras 3's own export
    (`keras.export.ExportArchive`, the two signatures as its endpoints), a
    Keras 2 one with `tf.saved_model.save`. Either way the same two
    signatures, inputs and outputs."""
    if not is_keras3_model(model):
        import_tensorflow().saved_model.save(module, str(path), signatures=signatures)
        return
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", module.serve_features)
    archive.add_endpoint("examples", module.serve_examples)
    archive.write_out(str(path), verbose=False)


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
    start = time.perf_counter()
    # The base's lock first: a second export into it fails before loading anything.
    with _base_lock(export_base, version):
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
        return _export_held(model, spec, pathlib.Path(export_base), version, rows, True, start)
