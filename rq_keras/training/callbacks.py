"""Training callbacks: scheduled sampling, NaN stop, resumable early stopping and history."""

from __future__ import annotations

import csv
import json
import math
import os
import time

import tf_keras as keras

from rq_keras.atomic import atomic_path, temporary_name, write_json
from rq_keras.layers.decoding import SamplingSchedule

__all__ = [
    "EarlyStoppingCheckpoint",
    "EpochHistory",
    "EpochTimer",
    "NonFiniteLossError",
    "ScheduledSampling",
    "StopOnNonFiniteLoss",
    "read_history",
]


@keras.utils.register_keras_serializable(package="rq_keras")
class ScheduledSampling(SamplingSchedule, keras.callbacks.Callback):
    """Sets every `RQDecoder`'s `sampling_probability` at each epoch's start.

    `p` is the probability that a training step feeds the true previous code
    (Eq. 17; the paper's defaults `k = 0.1`, `t0 = 10`: p = 0.73 at epoch 0,
    0.5 at epoch 10, 0.02 at epoch 50). Epochs count from 0 as Keras does.

    With `per_batch=True`, p follows the fractional epoch instead, updated
    before every training batch: `t = epoch + batch / steps_per_epoch` (a
    smooth curve, as the authors' released code does it; needs a known number
    of steps per epoch).

    Args:
        k: decay rate (> 0).
        t0: the epoch where p = 0.5.
        per_batch: update p every batch from the fractional epoch.
    """

    def get_config(self):
        return {"k": self.k, "t0": self.t0, "per_batch": self.per_batch}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss, naming epoch and step.

    It raises `NonFiniteLossError` from the batch's end, so the epoch-end
    callbacks never run: no checkpoint or backup of the bad weights is written
    and the last good ones stay. Epochs and steps in the message count from 1.

    Args:
        keep: a sentence appended to the message (where the good weights are).
    """

    def __init__(self, keep: str = ""):
        super().__init__()
        self.keep = keep
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"the training loss became {float(loss)} at epoch {self._epoch + 1}, "
                f"step {batch + 1}; training stopped. {self.keep}".strip()
            )


# EarlyStoppingCheckpoint's state before its first epoch.
_INITIAL_STATE = {"best": None, "best_epoch": None, "wait": 0, "stopped_epoch": None}


class EarlyStoppingCheckpoint(keras.callbacks.Callback):
    """Early stopping with the best weights on disk, resumable.

    After each epoch it compares `monitor` with the best value so far; an
    improvement (by more than `min_delta`) saves the weights to
    `weights_path` (TF checkpoint); `patience` epochs without one stop
    training. At the end of training the best weights are loaded back. Its
    state (best value and epoch, epochs waited) is a JSON file written after
    every epoch and read at the start of training, so a run resumed by
    `BackupAndRestore` keeps counting where it stopped.

    Under `MultiWorkerMirroredStrategy` every worker must take the same
    decisions (saving is collective): all read the chief's state and best
    weights (`state_path`, `weights_path`), and the other workers write
    theirs elsewhere (`write_state_path`, `write_weights_path`).

    Args:
        weights_path: checkpoint prefix of the best weights.
        state_path: the JSON state file.
        monitor: a `logs` key, such as `"val_mae"` (lower is better).
        patience: epochs without improvement before stopping, >= 1; None
            never stops (the best weights are still kept and restored).
        min_delta: the smallest decrease that counts as an improvement.
        write_weights_path: where this process saves the best weights
            (default: `weights_path`).
        write_state_path: where this process writes the state (default:
            `state_path`).
    """

    def __init__(
        self,
        weights_path: str,
        state_path: str,
        monitor: str = "val_mae",
        patience: int | None = 5,
        min_delta: float = 0.0,
        write_weights_path: str | None = None,
        write_state_path: str | None = None,
    ):
        super().__init__()
        if patience is not None and patience < 1:
            raise ValueError(f"`patience` must be >= 1 or None, got {patience}")
        if min_delta < 0:
            raise ValueError(f"`min_delta` must be >= 0, got {min_delta}")
        self.weights_path = weights_path
        self.state_path = state_path
        self.monitor = monitor
        self.patience = patience
        self.min_delta = float(min_delta)
        self.write_weights_path = write_weights_path or weights_path
        self.write_state_path = write_state_path or state_path
        self.state = dict(_INITIAL_STATE)

    def read_state(self) -> dict:
        """The saved state (the initial one when there is none).

        Raises:
            ValueError: the state file cannot be read or is not a state,
                naming it.
        """
        state = dict(_INITIAL_STATE)
        if not os.path.exists(self.state_path):
            return state
        try:
            with open(self.state_path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"the early-stopping state {self.state_path} cannot be read ({err}); "
                "pass --overwrite to start over"
            ) from None
        if not isinstance(doc, dict) or not set(state) <= set(doc):
            raise ValueError(
                f"the early-stopping state {self.state_path} lacks {sorted(state)}; "
                "pass --overwrite to start over"
            )
        state.update(doc)
        return state

    def on_train_begin(self, logs=None):
        self.state = self.read_state()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(
                f"EarlyStoppingCheckpoint: `{self.monitor}` is not in the epoch's logs "
                f"(keys: {sorted(logs or {})}); is there validation data?"
            )
        value = float(value)
        best = self.state["best"]
        if math.isfinite(value) and (best is None or value < best - self.min_delta):
            self.model.save_weights(self.write_weights_path)
            self.state.update(best=value, best_epoch=epoch + 1, wait=0)
        else:
            self.state["wait"] += 1
            if self.patience is not None and self.state["wait"] >= self.patience:
                self.state["stopped_epoch"] = epoch + 1
                self.model.stop_training = True
        write_json(
            self.write_state_path,
            self.state,
            tmp_name=temporary_name(self.write_state_path),
        )

    def on_train_end(self, logs=None):
        if self.state["best_epoch"] is not None:
            self.model.load_weights(self.weights_path).expect_partial()


class EpochHistory(keras.callbacks.Callback):
    """Writes the per-epoch logs to a CSV file keyed by epoch, resumable.

    An epoch run again after a resume replaces its row, so the file holds one
    row per epoch whatever was interrupted.

    Args:
        path: the CSV file (read at the start of training if it exists).
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.rows: dict[int, dict[str, float]] = {}

    def on_train_begin(self, logs=None):
        self.rows = read_history(self.path)

    def on_epoch_end(self, epoch, logs=None):
        self.rows[epoch + 1] = {k: float(v) for k, v in (logs or {}).items()}
        keys = sorted({k for row in self.rows.values() for k in row})
        with atomic_path(self.path, tmp_name=temporary_name(self.path)) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["epoch", *keys])
                for e in sorted(self.rows):
                    writer.writerow([e, *(repr(self.rows[e].get(k, math.nan)) for k in keys)])

    def history(self) -> dict[str, list[float]]:
        """Metric name -> values of epochs 1..n (as Keras `History.history`)."""
        return rows_to_history(self.rows)


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch's training part (validation excluded).

    `seconds[i]` runs from epoch i's start to its validation's start (or its
    end without validation data): the input pipeline and the training steps.
    The first epoch includes tracing the training function.
    """

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def _stop(self):
        if self._start is not None:
            self.seconds.append(time.perf_counter() - self._start)
            self._start = None

    def on_test_begin(self, logs=None):
        self._stop()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()


class EpochEstimate(keras.callbacks.Callback):
    """After the first epochs of this process, says how long the rest will take.

    The first epoch includes tracing the training step, so its time says
    little; after the second the estimate uses the second's time.

    Args:
        epochs: the run's epoch count.
        say: a callable taking one line of text.
        timer: the run's `EpochTimer` (its seconds, validation excluded); the
            estimate adds the rest of the epoch (validation) measured here.
    """

    def __init__(self, epochs: int, say, timer: EpochTimer):
        super().__init__()
        self.epochs = int(epochs)
        self.say = say
        self.timer = timer
        self._seen = 0
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self._seen += 1
        left = self.epochs - (epoch + 1)
        if self._seen > 2 or not self.timer.seconds or left <= 0:
            return
        last = self.timer.seconds[-1]
        if self._seen == 1:
            self.say(f"epoch {epoch + 1} trained in {last:.1f} s (the first includes tracing)")
            return
        # The whole epoch: training, validation (the code tree) and callbacks.
        whole = max(last, time.perf_counter() - self._start) if self._start else last
        self.say(
            f"about {last:.1f} s of training and {whole - last:.1f} s of validation an "
            f"epoch: at most {_duration(left * whole)} for the {left} epochs left (early "
            "stopping may end sooner)"
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def read_history(path: str) -> dict[int, dict[str, float]]:
    """The rows of an `EpochHistory` CSV file ({} if there is none).

    Raises:
        ValueError: the file is not such a table (truncated, edited), naming
            it and the line.
    """
    if not os.path.exists(path):
        return {}
    rows = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is not None and "epoch" not in reader.fieldnames:
                raise ValueError("no `epoch` column")
            for row in reader:
                if None in row or None in row.values():
                    raise ValueError(f"line {reader.line_num} has the wrong number of fields")
                epoch = int(row.pop("epoch"))
                rows[epoch] = {k: float(v) for k, v in row.items()}
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as err:
        raise ValueError(
            f"the training history {path} cannot be read ({err}); pass --overwrite to start over"
        ) from None
    return rows


def rows_to_history(rows: dict[int, dict[str, float]]) -> dict[str, list[float]]:
    keys = sorted({k for row in rows.values() for k in row})
    return {k: [rows[e].get(k, math.nan) for e in sorted(rows)] for k in keys}
