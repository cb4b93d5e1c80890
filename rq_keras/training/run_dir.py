"""The output directory of a training run: what it owns and what it may delete.

A run directory holds a manifest, `rq_keras_run.json`, written before the run
creates anything else in it. It lists the names (directly in the directory)
that runs in it own. Nothing the manifest does not list is ever removed or
written over:

* a directory that does not exist, or is empty, becomes a run directory;
* a non-empty directory without a manifest is refused (`RunDirError`), since
  whatever is in it belongs to someone else (a project folder, the bundled
  data, `/`);
* in a run directory, a name that runs write but that the manifest does not
  list (a file the user put there under that name) is refused too;
* starting again (`--overwrite`, or after an attempt that failed before its
  first finished epoch) removes only names the manifest lists, and only once
  every input has been checked.

Files of the user's beside the run's (notes, other outputs) are left alone.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
from collections.abc import Iterable

from rq_keras.atomic import LOCK_NAME, temporary_name, write_json

__all__ = [
    "ARTIFACTS",
    "MANIFEST",
    "OWNED",
    "STAGING",
    "RunDir",
    "RunDirError",
    "held_out_files",
    "load_model",
    "load_trained",
    "read_yaml",
    "remove_write_leftovers",
]

MANIFEST = "rq_keras_run.json"
# What a run writes (files and folders directly in its directory).
ARTIFACTS = (
    "config.yaml",
    "feature_spec.yaml",
    "preprocessing.json",
    "codebook.json",
    "data_report.json",
    "history.csv",
    "checkpoints",
    "backup",
    "logs",
    "model.keras",
    "trained.json",
    "predictions.parquet",
    "metrics.json",
    "plots",
    "data",
)
_FILES = tuple(name for name in ARTIFACTS if "." in name)


# Where a dataset's splits are built before they replace `data/`.
STAGING = "data.staging"
# Every name a run may create: its artifacts, the temporary files it writes
# them through (then renamed), and the folder a dataset's splits are built in
# before they replace `data/`.
OWNED = (
    *ARTIFACTS,
    *(temporary_name(name) for name in _FILES),
    "model.keras.tmp.keras",
    STAGING,
)
_FORMAT = 1


class RunDirError(ValueError):
    """The output directory is not one a run may write to, or its state is unreadable."""


class RunDir:
    """A training run's output directory and its manifest.

    Args:
        path: the directory (need not exist).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.manifest_path = self.path / MANIFEST
        self._listed: set[str] | None = None

    def __truediv__(self, name: str) -> pathlib.Path:
        return self.path / name

    def inspect(self) -> None:
        """Checks that a run may write here; reads nothing else, writes nothing.

        Raises:
            RunDirError: the path is a file; a non-empty directory without a
                manifest; an unreadable manifest; or run names in it that the
                manifest does not list (each named).
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--output-dir {self.path} is a file, not a directory")
        if not self.path.is_dir():
            self._listed = set()
            return
        if not self.manifest_path.exists():
            present = sorted(n for n in os.listdir(self.path) if n != LOCK_NAME)
            if present:
                shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
                raise RunDirError(
                    f"--output-dir {self.path} is not empty ({shown}) and holds no {MANIFEST}, "
                    "so it is not a train.py run directory; train.py writes only into a new or "
                    "empty directory or one an earlier run made, and deletes nothing it did not "
                    "create: choose another --output-dir"
                )
            self._listed = set()
            return
        self._listed = self._read_manifest()
        strangers = sorted(n for n in OWNED if n not in self._listed and (self / n).exists())
        if strangers:
            raise RunDirError(
                f"{self.path} holds {strangers}, which its {MANIFEST} does not list (not made by "
                "a run here); train.py would write over them: move them away or choose another "
                "--output-dir"
            )

    def _read_manifest(self) -> set[str]:
        try:
            doc = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RunDirError(
                f"{self.manifest_path} is not a readable run manifest: {err}"
            ) from None
        entries = doc.get("entries") if isinstance(doc, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise RunDirError(
                f"{self.manifest_path} is not a run manifest (expected an `entries` list of names)"
            )
        # Only names a run makes count: a manifest edited to list "../x" or a
        # user's file cannot make a run delete it.
        return {e for e in entries if e in OWNED}

    @property
    def listed(self) -> set[str]:
        """The names the manifest lists (after `inspect`)."""
        if self._listed is None:
            raise RuntimeError("RunDir.inspect() first")
        return set(self._listed)

    def claim(self) -> None:
        """Creates the directory (if missing) and lists every run name in the manifest.

        Called after `inspect`, before the run creates anything: the names
        not present now are the run's to create, and so to remove later.
        """
        before = self.listed
        self.path.mkdir(parents=True, exist_ok=True)
        listed = before | {n for n in OWNED if not (self / n).exists()}
        if listed == before and self.manifest_path.exists():
            return  # nothing new: the manifest (and when it was first written) stays
        doc = {
            "rq_keras_run": _FORMAT,
            "note": "written by rq_keras train.py: a later run here may remove the entries "
            "listed below (and nothing else)",
            "claimed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "entries": sorted(listed),
        }
        write_json(self.manifest_path, doc, tmp_name=f".{MANIFEST}.tmp")
        self._listed = listed

    def remove(self, names: Iterable[str] | None = None) -> list[str]:
        """Removes listed names (all of them by default) that exist; returns them.

        Raises:
            RunDirError: a name that the manifest does not list.
        """
        listed = self.listed
        names = sorted(listed) if names is None else list(names)
        unlisted = [n for n in names if n not in listed]
        if unlisted:
            raise RunDirError(f"{self.path}: {unlisted} are not listed in {MANIFEST}")
        removed = []
        for name in names:
            path = self / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(name)
        return removed


def remove_write_leftovers(out: str | os.PathLike) -> list[str]:
    """Removes what failed writes of a run leave in `out` (its writer holds
    the directory's lock, so nothing here is another process's): TensorFlow's
    checkpoint temporaries in `backup/` and `checkpoints/` (`*_temp/`
    folders, `*.tempstate*` and `checkpoint.tmp*` files) and temporary model
    files. Returns the paths removed."""
    out = pathlib.Path(out)
    removed = []
    found = [p for p in out.glob("model*.tmp*") if p.is_file()]
    for sub in ("backup", "checkpoints"):
        if (out / sub).is_dir():
            found += [
                p
                for p in (out / sub).rglob("*")
                if (p.is_dir() and p.name.endswith("_temp"))
                or ".tempstate" in p.name
                or p.name.startswith("checkpoint.tmp")
            ]
    for path in found:
        if not path.exists():  # inside a folder removed before
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(os.fspath(path))
    return removed


def read_yaml(path: str | os.PathLike):
    """The YAML document in `path` (safe_load).

    Raises:
        RunDirError: the file cannot be read or is not YAML, naming it.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise RunDirError(f"{path} cannot be read: {err}") from None


def load_model(path: str | os.PathLike):
    """A run's `model.keras`, uncompiled, with rq_keras' classes registered.

    Raises:
        RunDirError: the file is missing, truncated or not a model, naming it.
    """
    import tf_keras as keras

    # Importing rq_keras.models registers every Keras 2 layer, too.
    import rq_keras.models.baselines  # noqa: F401  (registers BaselineModel)
    import rq_keras.models.rq_reg  # noqa: F401  (registers RQRegModel)

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001  Keras raises many kinds for a damaged file
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise RunDirError(
            f"{path} cannot be loaded as a model ({type(err).__name__}: {first})"
        ) from None


def load_trained(run: str | os.PathLike):
    """`(model, spec)` of a finished run: its `model.keras` and `feature_spec.yaml`.

    Raises:
        FileNotFoundError: one of the two files is missing, naming it.
        RunDirError: the model cannot be loaded (see `load_model`).
    """
    from rq_keras.features.spec import FeatureSpec

    run = pathlib.Path(run)
    for name in ("model.keras", "feature_spec.yaml"):
        if not (run / name).is_file():
            raise FileNotFoundError(
                f"{run / name} is missing: --model-dir must be a finished train.py run"
            )
    spec = FeatureSpec.load(run / "feature_spec.yaml")
    return load_model(run / "model.keras"), spec


def held_out_files(run: str | os.PathLike) -> list[str]:
    """The held-out files of a run, from its `config.yaml`: its `test_files`
    (its `validation_files` when it had none), or for a registered `dataset`
    the `data/test.*` split the run built. Empty without a config. Only these
    keys are read, so a config written by hand or by another version works.

    Raises:
        RunDirError: `config.yaml` cannot be read or is not a mapping.
    """
    run = pathlib.Path(run)
    path = run / "config.yaml"
    if not path.is_file():
        return []
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise RunDirError(f"{path} does not hold a run config (got {type(doc).__name__})")
    if doc.get("dataset"):
        built = sorted((run / "data").glob("test.*"))
        return [os.fspath(p) for p in built if p.suffix != ".json"]
    return [os.fspath(p) for p in (doc.get("test_files") or doc.get("validation_files") or [])]
