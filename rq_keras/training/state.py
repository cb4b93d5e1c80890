"""A run's state on disk between processes: where a run starts (fresh, resume,
evaluate), the checks that a resumed run continues the same one, the record
of finished training (`trained.json`) and the result `train` returns. What
may be deleted is `rq_keras.training.run_dir`'s contract."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from rq_keras.atomic import temporary_name, write_json
from rq_keras.config.configs import TrainConfig
from rq_keras.quantizer.residual import ResidualQuantizer
from rq_keras.training.run_dir import RunDirError, load_model, read_yaml

__all__ = [
    "EVALUATE",
    "FRESH",
    "RESUME",
    "RunExistsError",
    "TrainResult",
    "check_backup",
    "check_same_codebook",
    "run_phase",
    "trained_doc",
    "trained_result",
    "weights_digest",
    "write_run_json",
]


class RunExistsError(FileExistsError):
    """The output directory holds a finished run (or another unfinished one)."""


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        output_dir: the run's directory.
        metrics: the test metrics (empty without test files).
        history: metric name -> per-epoch values.
        best_epoch: the epoch whose weights the model holds (None: the last).
        epochs_run: epochs in the history (resumed runs included).
        resumed: the run continued a killed one.
        plots: plot name -> path.
        model: the trained model (None on non-chief workers).
        weights_digest: sha256 of the final weights (equal on every worker).
        epoch_seconds: seconds of each epoch's training part in this process
            (input pipeline and steps; validation excluded; the first epoch
            includes tracing).
        train_seconds: seconds `fit` took in this process.
    """

    output_dir: str
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    best_epoch: int | None
    epochs_run: int
    resumed: bool
    plots: dict[str, str]
    model: Any
    weights_digest: str
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    train_seconds: float = 0.0


FRESH, RESUME, EVALUATE = "fresh", "resume", "evaluate"


def read_state_json(path: pathlib.Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(
            f"{path} cannot be read ({err}); pass --overwrite to start over"
        ) from None
    if not isinstance(doc, dict):
        raise RunDirError(f"{path} must hold a JSON object; pass --overwrite to start over")
    return doc


def run_phase(out: pathlib.Path, config: TrainConfig, overwrite: bool) -> str:
    """Where a run in `out` starts: FRESH, RESUME (training) or EVALUATE.

    Reads only; nothing is removed here.
    """
    if overwrite:
        return FRESH
    if (out / "metrics.json").exists():
        raise RunExistsError(
            f"{out} holds a finished run (metrics.json); pass --overwrite to replace it, "
            "or choose another --output-dir"
        )
    backup = out / "backup"
    trained = (out / "trained.json").exists()
    if not (out / "config.yaml").exists() or not (
        trained or (backup.is_dir() and any(p.is_file() for p in backup.rglob("*")))
    ):
        return FRESH  # nothing finished to continue from
    saved = read_yaml(out / "config.yaml")
    if not isinstance(saved, dict):
        raise RunDirError(
            f"{out / 'config.yaml'} does not hold a run config (got {type(saved).__name__}); "
            "pass --overwrite to start over"
        )
    current = config.to_dict()
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise RunExistsError(
            f"{out} holds an unfinished run with another config (differs in {diff}); "
            "run the same command to resume it, or pass --overwrite"
        )
    return EVALUATE if trained else RESUME


def check_backup(backup: pathlib.Path) -> None:
    """Reads every tensor of the newest backup, so a damaged one fails, named."""
    import tensorflow as tf

    directory = backup / "chief"
    try:
        latest = tf.train.latest_checkpoint(os.fspath(directory))
        if latest is None:
            raise ValueError(f"no checkpoint in {directory}")
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (ValueError, tf.errors.OpError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunDirError(
            f"the backup of the unfinished run in {backup} cannot be read ({message}); "
            "pass --overwrite to start over"
        ) from None


def check_same_codebook(path: pathlib.Path, quantizer) -> None:
    """An unfinished run continues only on the codebook it started with."""
    try:
        saved = ResidualQuantizer.load(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunDirError(
            f"{path} cannot be read ({err}); pass --overwrite to start over"
        ) from None
    if saved.get_config() != quantizer.get_config() or any(
        not np.array_equal(a, b) for a, b in zip(saved.centroids, quantizer.centroids)
    ):
        raise RunExistsError(
            f"{path.parent} holds an unfinished run whose codebook differs from the one fitted "
            "now (did the training data change?); pass --overwrite to start over"
        )


def write_run_json(path: pathlib.Path, doc) -> None:
    """A run's JSON file, written through its `temporary_name`."""
    write_json(path, doc, tmp_name=temporary_name(path))


def weights_digest(weights: Sequence[np.ndarray]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for w in weights:
        digest.update(str(w.shape).encode())
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def trained_doc(result: TrainResult) -> dict[str, Any]:
    return {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "weights_digest": result.weights_digest,
        "train_seconds": result.train_seconds,
        "epoch_train_seconds": [round(t, 3) for t in result.epoch_seconds],
    }


def trained_result(out: pathlib.Path, chief: bool):
    """The result of a run whose training finished before it was stopped."""
    from rq_keras.training import callbacks as cb

    doc = read_state_json(out / "trained.json")
    try:
        digest = str(doc["weights_digest"])
        epochs_run, best_epoch = int(doc["epochs_run"]), doc["best_epoch"]
        seconds = [float(t) for t in doc["epoch_train_seconds"]]
        train_seconds = float(doc["train_seconds"])
    except (KeyError, TypeError, ValueError) as err:
        raise RunDirError(f"{out / 'trained.json'} is incomplete ({err!r})") from None
    weights = None
    if chief:
        weights = load_model(out / "model.keras").get_weights()
        if weights_digest(weights) != digest:
            raise RunDirError(
                f"{out / 'model.keras'} does not hold the weights trained.json records; "
                "pass --overwrite to train again"
            )
    result = TrainResult(
        output_dir=os.fspath(out),
        metrics={},
        # read_history names the file when it cannot be read (a ValueError: exit 2)
        history=cb.rows_to_history(cb.read_history(os.fspath(out / "history.csv")))
        if chief
        else {},
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        resumed=True,
        plots={},
        model=None,
        weights_digest=digest,
        epoch_seconds=seconds,
        train_seconds=train_seconds,
    )
    return result, weights
