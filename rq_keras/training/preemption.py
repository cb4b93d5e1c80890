"""Preemption: SIGTERM during training saves the state at the current step.

A cluster scheduler sends SIGTERM before it evicts a job, then SIGKILL after
a grace period. Under `PreemptionGuard` a SIGTERM that arrives while
`model.fit` trains lets the running step finish, saves the run's backup at
that step (weights, optimizer slots, the step and epoch counters, the
scheduled-sampling coin counter, the running means of the epoch so far) and
raises `TrainingPreempted`; `train.py` exits with `PREEMPTED_EXIT` (75). The
same command then resumes at the next step, reading the batches the
uninterrupted run would have read (each pass over the data has its own
shuffle seed, and the batches of the interrupted pass already trained on are
read and dropped): the resumed run ends with the weights of a run never
stopped.

Where the signal lands:

* during a training step: that step finishes, then the save (the checkpoint
  write; a few seconds at most at the paper's sizes);
* during the last step of an epoch or its validation pass: the epoch
  finishes (validation, history, early stopping, the epoch's backup), then
  training stops; the grace period must cover one validation pass;
* before training or after it (reading inputs, fitting the codebook,
  evaluating, saving the model): at once, as `TrainingPreempted` with no step
  (whatever was written is complete, every file being written atomically;
  the rerun redoes the unfinished phase).

Under `MultiWorkerMirroredStrategy` saving is collective and one worker's
signal cannot stop the others at the same step, so there a SIGTERM stops the
worker at once and the rerun resumes after the last finished epoch (TF's
`PreemptionCheckpointHandler` covers that case on Google Cloud only).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading

import tf_keras as keras

__all__ = [
    "PREEMPTED_EXIT",
    "PreemptionGuard",
    "SaveOnPreemption",
    "StepBackup",
    "TrainingPreempted",
    "backup_position",
    "batches_per_pass",
    "resume_point",
]

# EX_TEMPFAIL (sysexits.h): a temporary failure, the same command will succeed.
PREEMPTED_EXIT = 75

# BackupAndRestore's step period: never (saves happen at epoch ends and on demand).
_NEVER = 2**62


class TrainingPreempted(Exception):
    """Training stopped on a signal; the backup holds the state to resume from.

    Attributes:
        signal_name: e.g. `"SIGTERM"`.
        epoch, step: where the rerun resumes (0-based epoch, step within it);
            None when the signal came outside training (nothing to save).
        backup: the backup directory (None likewise).
    """

    def __init__(self, signal_name: str, epoch=None, step=None, steps=None, backup=None):
        self.signal_name, self.epoch, self.step, self.backup = signal_name, epoch, step, backup
        if epoch is None:
            message = (
                f"stopped by {signal_name} outside training; every file written is complete: "
                "run the same command again to continue"
            )
        else:
            message = (
                f"stopped by {signal_name}; the state is saved in {backup}: run the same command "
                f"again to resume at epoch {epoch + 1}, step {step + 1} of {steps}"
            )
        super().__init__(message)


class PreemptionGuard:
    """SIGTERM (by default) turned into a saved step and `TrainingPreempted`.

    ```python
    with PreemptionGuard() as guard:
        train(config, output_dir, preemption=guard)
    ```

    The handlers are installed on entering and the previous ones put back on
    leaving (only the main thread can install them: elsewhere entering raises
    RuntimeError). Inside `deferring()` (what `train` wraps `model.fit` in) a
    signal is only recorded, for `SaveOnPreemption` to act on at the next
    step's end; elsewhere it raises `TrainingPreempted` at once.
    """

    def __init__(self, signals=(signal.SIGTERM,)):
        self.signals = tuple(signals)
        self.received: str | None = None
        self._deferring = False
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "PreemptionGuard installs signal handlers: enter it in the main thread"
            )
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False

    @contextlib.contextmanager
    def deferring(self):
        """Signals only recorded (training runs); one recorded before raises
        on entering, one recorded inside and not acted on raises on leaving."""
        if self.requested:
            raise TrainingPreempted(self.received)
        self._deferring = True
        try:
            yield self
        finally:
            self._deferring = False
        if self.requested:  # recorded after the last step's check
            raise TrainingPreempted(self.received)

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        if not self._deferring:
            raise TrainingPreempted(self.received)


class StepBackup(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore`, saving at every epoch end and at a step on
    demand (`save_step`), and restoring to the step after the saved one.

    The backup records the epoch and the step within it that were last
    trained; a rerun's `fit` starts at the following step (Keras reads the
    two counters back). Resuming mid-epoch, the running means of the
    interrupted epoch's steps (saved beside the weights) are put back, so the
    epoch's history row is the uninterrupted run's.
    """

    def __init__(self, backup_dir, steps_per_epoch: int):
        super().__init__(backup_dir, save_freq=_NEVER, delete_checkpoint=False)
        self.steps_per_epoch = int(steps_per_epoch)
        self._carry: list | None = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state = self._training_state
        epoch = int(state._ckpt_saved_epoch.numpy())
        batch = int(state._ckpt_saved_batch.numpy())
        if epoch >= 0 and batch < 0:
            # A backup of an epoch end with no step recorded: the next epoch.
            state._ckpt_saved_batch.assign(self.steps_per_epoch - 1)
        elif epoch >= 0 and batch < self.steps_per_epoch - 1:
            self._carry = [v.numpy() for m in self.model.metrics for v in m.variables]

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if self._carry is not None:  # `fit` has just reset the metrics
            variables = [v for m in self.model.metrics for v in m.variables]
            for variable, value in zip(variables, self._carry):
                variable.assign(value)
            self._carry = None

    def on_epoch_end(self, epoch, logs=None):
        # The step counter holds the epoch's last step: the rerun goes on
        # with the next epoch.
        self._backup(epoch=epoch)

    def save_step(self) -> None:
        """Saves now: the rerun resumes at the step after the last trained one."""
        self._backup(epoch=self._current_epoch)


class SaveOnPreemption(keras.callbacks.Callback):
    """After `StepBackup` in the callbacks: on a signal `guard` recorded, saves
    at the step's end (or lets the epoch's last step finish its epoch) and
    raises `TrainingPreempted`."""

    def __init__(self, guard: PreemptionGuard, backup: StepBackup):
        super().__init__()
        self.guard, self.backup = guard, backup
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        last = self.backup.steps_per_epoch - 1
        if self.guard.requested and batch < last:
            self.backup.save_step()
            self._stop(self._epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.requested:
            self._stop(epoch + 1, 0)

    def _stop(self, epoch: int, step: int):
        raise TrainingPreempted(
            self.guard.received,
            epoch=epoch,
            step=step,
            steps=self.backup.steps_per_epoch,
            backup=os.fspath(self.backup.backup_dir),
        )


def backup_position(backup_dir) -> tuple[int, int] | None:
    """(epoch, step) last trained in the backup in `backup_dir`, or None
    (no backup, or none that recorded them); step -1: an epoch end of a
    backup that recorded no step."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(os.path.join(os.fspath(backup_dir), "chief"))
    if latest is None:
        return None
    reader = tf.train.load_checkpoint(latest)
    try:
        epoch = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
        batch = int(reader.get_tensor("ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.NotFoundError, ValueError):
        return None
    return (epoch, batch) if epoch >= 0 else None


def resume_point(position, steps_per_epoch: int, batches_per_pass: int) -> dict:
    """Where a rerun starts: `epoch` and `step` (Keras' counters), and in the
    data, `start_pass` and `skip_batches` (the batches of that pass already
    trained on). `position` is `backup_position`'s (None: the start)."""
    epoch, step = 0, 0
    if position is not None:
        saved_epoch, saved_batch = position
        if saved_batch < 0 or saved_batch >= steps_per_epoch - 1:
            epoch = saved_epoch + 1
        else:
            epoch, step = saved_epoch, saved_batch + 1
    trained = epoch * steps_per_epoch + step
    return {
        "epoch": epoch,
        "step": step,
        "start_pass": trained // batches_per_pass,
        "skip_batches": trained % batches_per_pass,
    }


def batches_per_pass(rows: int, batch_size: int) -> int:
    """Batches in one pass over `rows` rows (the last one partial)."""
    return max(1, math.ceil(rows / batch_size))
