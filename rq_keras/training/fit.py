"""Training itself: the input pipelines, the callbacks (scheduled sampling,
early stopping on the chief's state, history, TensorBoard, BackupAndRestore)
and `model.fit`, on one device, mirrored or multi-worker; and the model of a
run's head."""

from __future__ import annotations

import contextlib
import os
import pathlib
import time
from typing import Any

import numpy as np

from rq_keras.config.configs import TrainConfig
from rq_keras.training.console import verbosity
from rq_keras.training.distribute import in_multi_worker
from rq_keras.training.state import RESUME, TrainResult, weights_digest

__all__ = ["build_head", "fit"]


def fit(
    config, strategy, model, spec, data, rows, out, scratch, phase, verbose, say, preemption=None
):
    """Trains `model` (resuming from the backup); (TrainResult, final weights).

    The training data is read pass after pass, pass p shuffled by its own
    seed, and an epoch is `steps_per_epoch` batches (one pass unless the
    config says otherwise), so a rerun resumed at a step of the backup reads
    the batches the uninterrupted run would have. `preemption`: a
    `PreemptionGuard` to save at the step on its signal (one host only).
    """
    import tf_keras as keras

    from rq_keras.data.pipeline import make_dataset
    from rq_keras.training import callbacks as cb
    from rq_keras.training.preemption import (
        SaveOnPreemption,
        StepBackup,
        backup_position,
        batches_per_pass,
        resume_point,
    )

    train_files, validation_files = data
    chief = scratch is None
    multi_worker = in_multi_worker(strategy)
    fit_kwargs: dict[str, Any] = {}
    per_pass = batches_per_pass(rows["train"], config.batch_size)
    steps = config.steps_per_epoch or per_pass
    backup_dir = os.fspath(out / "backup")
    # Under MultiWorkerMirroredStrategy each worker reads its shard, whose
    # passes are about `per_pass` batches long: exact when the shards are equal.
    start = resume_point(backup_position(backup_dir) if phase == RESUME else None, steps, per_pass)
    if phase == RESUME:
        say(f"resuming at epoch {start['epoch'] + 1}, step {start['step'] + 1} of {steps}")

    def pipeline(files, training, input_context=None):
        # The training data: shuffled passes, from where the backup stopped.
        # The validation data in file order, repeated where the distributed
        # dataset needs a fixed `validation_steps`.
        return make_dataset(
            files,
            spec,
            batch_size=config.batch_size,
            shuffle=training,
            shuffle_buffer=config.shuffle_buffer,
            seed=config.seed,
            on_bad_rows=config.on_bad_rows,
            parquet_reader=config.parquet_reader,
            repeat=training or multi_worker,
            input_context=input_context,
            start_pass=start["start_pass"] if training else 0,
            skip_batches=start["skip_batches"] if training else 0,
        )

    if multi_worker:
        # Each worker reads its shard of the files.
        def distributed(files, training):
            return strategy.distribute_datasets_from_function(
                lambda context: pipeline(files, training, context)
            )

        train_data = distributed(train_files, True)
        if validation_files:
            fit_kwargs["validation_data"] = distributed(validation_files, False)
            fit_kwargs["validation_steps"] = batches_per_pass(rows["validation"], config.batch_size)
    else:
        train_data = pipeline(train_files, True)
        if validation_files:
            fit_kwargs["validation_data"] = pipeline(validation_files, False)

    # Every worker reads the chief's checkpoints and early-stopping state (a
    # restarted worker must agree with the others on "improved"); the other
    # workers write theirs to scratch (saving is collective, so all save).
    checkpoints = out / "checkpoints"
    write_dir = checkpoints if chief else pathlib.Path(scratch) / "checkpoints"
    write_dir.mkdir(parents=True, exist_ok=True)
    callbacks: list[keras.callbacks.Callback] = []
    if config.head in ("rq_reg", "kmeans"):
        callbacks.append(
            cb.ScheduledSampling(
                config.sampling_k, config.sampling_t0, per_batch=config.sampling_per_batch
            )
        )
    callbacks.append(
        cb.StopOnNonFiniteLoss(
            keep=f"The last good weights are in {backup_dir} (last finished epoch) and "
            f"{checkpoints} (best epoch); lower the learning rate or check the labels."
        )
    )
    early = None
    epochs = config.epochs
    if validation_files:
        early = cb.EarlyStoppingCheckpoint(
            os.fspath(checkpoints / "best"),
            os.fspath(checkpoints / "early_stopping.json"),
            monitor=config.resolved_monitor,
            patience=config.patience,
            min_delta=config.min_delta,
            write_weights_path=os.fspath(write_dir / "best"),
            write_state_path=os.fspath(write_dir / "early_stopping.json"),
        )
        callbacks.append(early)
        if phase == RESUME:
            stopped = early.read_state()["stopped_epoch"]
            if stopped is not None:
                # Early stopping had ended training when the run was stopped:
                # restore (no epoch runs) and go on to the evaluation.
                epochs = min(epochs, int(stopped))
    history_cb = cb.EpochHistory(os.fspath(out / "history.csv")) if chief else None
    if history_cb is not None:
        callbacks.append(history_cb)
    timer = cb.EpochTimer()
    callbacks.append(timer)
    if say.on:
        callbacks.append(cb.EpochEstimate(epochs, say, timer))  # after the timer
    # Last, so an epoch's backup follows its history and early-stopping
    # state; kept after training until every output is written.
    backup = StepBackup(backup_dir, steps)
    callbacks += [keras.callbacks.TensorBoard(os.fspath(out / "logs"), profile_batch=0), backup]
    guarded = preemption is not None and not multi_worker
    if guarded:
        callbacks.append(SaveOnPreemption(preemption, backup))
    # The optimizer's slots exist before fit: the train step is then traced
    # once, not twice (no variables made while tracing: 1.5 s of a 7.5 s toy
    # run), and a resume restores the backup into them even when it runs no
    # step.
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    started = time.perf_counter()
    with preemption.deferring() if guarded else contextlib.nullcontext():
        keras_history = model.fit(
            train_data,
            epochs=epochs,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=verbosity(verbose),
            **fit_kwargs,
        )
    train_seconds = time.perf_counter() - started
    history = history_cb.history() if history_cb is not None else keras_history.history
    # Every worker reads the weights (reads can be collective under
    # MultiWorkerMirroredStrategy); after this only the chief works.
    weights = model.get_weights()
    result = TrainResult(
        output_dir=os.fspath(out),
        metrics={},
        history=history,
        best_epoch=early.state["best_epoch"] if early is not None else None,
        epochs_run=len(next(iter(history.values()), [])),
        resumed=phase == RESUME,
        plots={},
        model=None,
        weights_digest=weights_digest(weights),
        epoch_seconds=list(timer.seconds),
        train_seconds=round(train_seconds, 3),
    )
    return result, weights


def build_head(spec, preprocessor, quantizer, config: TrainConfig, y_train):
    """The model of `config.head`, built (weights made), not compiled."""
    from rq_keras.models.rq_reg import build_model

    if config.head in ("rq_reg", "kmeans"):
        return build_model(spec, preprocessor, quantizer, config.model)
    from rq_keras.models.baselines import build_baseline_model

    # ZILN's lognormal mean is bounded by the largest training label (clipped).
    largest = float(np.max(y_train))
    if spec.label.clip_max is not None:
        largest = min(largest, spec.label.clip_max)
    return build_baseline_model(
        spec, preprocessor, config.head, config.model, prediction_max=largest
    )
