"""`train(config, output_dir)`: one run, phase by phase (see `rq_keras.training`)."""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import shutil
import tempfile
import warnings
from typing import Any

import numpy as np
import yaml

from rq_keras.atomic import DirectoryLock, atomic_path, temporary_name, unique_suffix, write_text
from rq_keras.config.configs import TrainConfig
from rq_keras.training.console import Progress, rows_text, verbosity
from rq_keras.training.distribute import is_chief, make_strategy, strategy_name
from rq_keras.training.evaluate import evaluate_run
from rq_keras.training.fit import build_head, fit
from rq_keras.training.inputs import adapt, resolve_data, split_files
from rq_keras.training.optimizers import make_optimizer
from rq_keras.training.run_dir import STAGING, RunDir, remove_write_leftovers
from rq_keras.training.state import (
    EVALUATE,
    FRESH,
    RESUME,
    TrainResult,
    check_backup,
    check_same_codebook,
    run_phase,
    trained_doc,
    trained_result,
    write_run_json,
)

__all__ = ["train"]

_PHASE_LINES = {
    FRESH: "a new run",
    RESUME: "resuming the unfinished run from its backup",
    EVALUATE: "training had finished: evaluating only",
}


def train(
    config: TrainConfig,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    strategy=None,
    verbose: int | str = "auto",
    preemption=None,
) -> TrainResult:
    """Runs training end to end (see `rq_keras.training`).

    Args:
        config: the run's `TrainConfig`.
        output_dir: where everything is written (created if missing).
        overwrite: replace a finished run in `output_dir`.
        strategy: a `tf.distribute` strategy to use instead of
            `make_strategy(config.strategy, config.devices)`.
        verbose: Keras' verbosity; `"auto"`: progress bars on a terminal,
            one line per epoch otherwise.
        preemption: an entered `PreemptionGuard`: its signal during training
            saves the state at the step and raises `TrainingPreempted` (see
            `rq_keras.training.preemption`); None: signals keep their
            handlers.

    Returns:
        a `TrainResult`.

    Raises:
        RunExistsError: `output_dir` holds a finished run and not `overwrite`,
            or an unfinished run of another config.
        RunDirError: `output_dir` is not a run's directory (not empty, no
            manifest), or a file of an unfinished run cannot be read.
        ValueError / FileNotFoundError / MalformedDataError: bad config or
            input files, before training starts.
        NonFiniteLossError: the loss became NaN or infinite.
        DirectoryInUseError: another process holds `output_dir` (a second
            `train.py` on it), or a lock file of another host is there.
        TrainingPreempted: `preemption`'s signal came; rerun to resume.
    """
    # The strategy first: MultiWorkerMirroredStrategy must exist before any op.
    strategy = strategy or make_strategy(config.strategy, config.devices, config.cpu_devices)
    chief = is_chief(strategy)
    say = Progress(chief and verbosity(verbose) > 0)
    if not chief:  # the other workers write only into temporary directories
        return _train(
            config, pathlib.Path(output_dir), overwrite, strategy, verbose, say, chief, preemption
        )
    # One run per directory: a second train.py here fails now, naming this one.
    lock = DirectoryLock(output_dir, f"train.py --output-dir {os.fspath(output_dir)}")
    notice = lock.acquire()
    if notice and say.on:
        say(notice)
    elif notice:
        warnings.warn(notice, stacklevel=2)
    try:
        return _train(
            config, pathlib.Path(output_dir), overwrite, strategy, verbose, say, chief, preemption
        )
    finally:
        lock.release()


def _train(config, out, overwrite, strategy, verbose, say, chief, preemption) -> TrainResult:
    import tf_keras as keras

    run_dir = RunDir(out)
    if chief:
        run_dir.inspect()  # a directory that is not a run's is refused, untouched
    phase = run_phase(out, config, overwrite)
    if chief:
        run_dir.claim()
    replacing = " (replacing the run there)" if overwrite and phase == FRESH else ""
    say(f"{out}: {_PHASE_LINES[phase]}{replacing}")
    scratch = tempfile.mkdtemp(prefix="rq_keras_worker_") if not chief else None
    try:
        # Every input is read and checked before anything in `out` is removed.
        staging = out / STAGING if chief else pathlib.Path(scratch) / "data"
        inputs = _read_inputs(config, staging, say)
        quantizer = _fit_codebook(config, inputs["spec"], inputs["y_train"], say)
        if phase != FRESH and (out / "codebook.json").exists():
            check_same_codebook(out / "codebook.json", quantizer)
        if phase == RESUME:
            check_backup(out / "backup")
        if chief:
            _write_run_inputs(run_dir, phase, config, inputs, quantizer, staging)

        spec, preprocessor, y_train = inputs["spec"], inputs["preprocessor"], inputs["y_train"]
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            model = build_head(spec, preprocessor, quantizer, config, y_train)
            model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate))
        rows = {split: r.rows_kept for split, r in inputs["reports"].items()}
        # config.yaml keeps "auto"; from here on the batch is a number.
        auto_batch = config.batch_size == "auto"
        config = dataclasses.replace(config, batch_size=config.resolved_batch_size(rows["train"]))
        if say.on:
            say(_model_line(config, model, strategy, rows["train"], auto_batch), since=True)
        if phase == EVALUATE:
            result, weights = trained_result(out, chief)
        else:
            files = (inputs["train"], inputs["validation"])
            result, weights = fit(
                config,
                strategy,
                model,
                spec,
                files,
                rows,
                out,
                scratch,
                phase,
                verbose,
                say,
                preemption=preemption,
            )
        if not chief:
            return result

        # A plain (strategy-free) copy for evaluation and saving.
        final = build_head(spec, preprocessor, quantizer, config, y_train)
        final.set_weights(weights)
        final.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate))
        if phase != EVALUATE:
            # Keras wants the `.keras` ending on the temporary name too.
            with atomic_path(out / "model.keras", f"model.tmp-{unique_suffix()}.keras") as tmp:
                final.save(tmp)
            # Training is over: from here a rerun starts at the evaluation.
            write_run_json(out / "trained.json", trained_doc(result))
        result.model = final
        metrics = _run_metrics(config, result, rows, strategy, bool(inputs["validation"]))
        test_files = inputs["test"]
        say("training done; evaluating on the test split" if test_files else "training done")
        if test_files:
            metrics["test"], result.plots = evaluate_run(
                final, config, spec, quantizer, y_train, test_files, out, result
            )
        metrics["weights_digest"] = result.weights_digest
        write_run_json(out / "metrics.json", metrics)
        result.metrics = metrics
        # Every output is written: the backup has done its job.
        run_dir.remove(["backup"])
        return result
    except BaseException:
        if chief:  # a failed write (a full disk, say) leaves no temporary behind
            remove_write_leftovers(out)
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if chief and (out / STAGING).is_dir():
            shutil.rmtree(out / STAGING, ignore_errors=True)  # a failed attempt's


def _read_inputs(config: TrainConfig, staging: pathlib.Path, say) -> dict[str, Any]:
    """Every input file read and checked (the training pass adapts the
    features and collects the labels): spec, files per split, format of
    built splits (None for given files), preprocessor, labels, reports."""
    from rq_keras.data.pipeline import require_tfio
    from rq_keras.data.readers import check_files

    if config.parquet_reader == "tensorflow-io":
        require_tfio("config")  # before any input is read or anything written
    spec, train_files, validation_files, test_files, fmt = resolve_data(config, staging)
    if fmt is not None:
        say(f"built the {config.dataset} splits ({fmt})", since=True)
    preprocessor, y_train, train_report = adapt(
        spec, train_files, config, on_chunk=say.rows("checking training rows")
    )
    say(
        f"checked {rows_text(train_report)} training rows and adapted "
        f"{len(spec.features)} features",
        since=True,
    )
    reports = {"train": train_report}
    for split, files in (("validation", validation_files), ("test", test_files)):
        if files:
            reports[split] = check_files(
                files,
                spec,
                on_bad_rows=config.on_bad_rows,
                on_chunk=say.rows(f"checking {split} rows"),
            )
            if reports[split].rows_kept == 0:
                raise ValueError(f"the {split} files {files} hold no usable rows")
            say(f"checked {rows_text(reports[split])} {split} rows", since=True)
    return {
        "spec": spec,
        "train": train_files,
        "validation": validation_files,
        "test": test_files,
        "format": fmt,
        "preprocessor": preprocessor,
        "y_train": y_train,
        "reports": reports,
    }


def _fit_codebook(config: TrainConfig, spec, y_train, say):
    """The residual quantizer of the run, fitted on the training labels."""
    quantizer = config.quantizer.build(
        spec.label.clip_min, spec.label.clip_max, labels=y_train
    ).fit(y_train)
    if say.on:
        fitted = quantizer.report(y_train)
        sizes = quantizer.fitted_codebook_sizes
        k = sizes[0] if len(set(sizes)) == 1 else sizes
        zero = (
            ""
            if quantizer.zero_threshold is None
            else f"zero code below {quantizer.zero_threshold:g}, "
        )
        say(
            f"codebook: L={quantizer.num_levels}, K={k}, {zero}reconstruction MAE "
            f"{fitted['reconstruction_mae']:.4g} on the training labels",
            since=True,
        )
    return quantizer


def _write_run_inputs(run_dir: RunDir, phase, config, inputs, quantizer, staging) -> None:
    """The chief's first writes, once every input is checked: an earlier run's
    outputs go (fresh runs), built splits move into `data/`, and the config,
    spec, statistics, codebook and data report are written."""
    out = run_dir.path
    if phase == FRESH:
        # An earlier run's (or attempt's) outputs, as listed; not the splits
        # just built and checked.
        run_dir.remove(sorted(run_dir.listed - {staging.name}))
    if inputs["format"] is not None:
        run_dir.remove(["data"])
        os.replace(staging, out / "data")
        inputs["train"], inputs["validation"], inputs["test"] = split_files(
            out / "data", inputs["format"]
        )
    write_text(
        out / "config.yaml",
        yaml.safe_dump(config.to_dict(), sort_keys=False),
        tmp_name=temporary_name("config.yaml"),
    )
    inputs["spec"].save(out / "feature_spec.yaml")
    inputs["preprocessor"].save(out / "preprocessing.json")
    quantizer.save(out / "codebook.json")
    reports = {k: r.to_dict() for k, r in inputs["reports"].items()}
    write_run_json(out / "data_report.json", reports)


def _model_line(config: TrainConfig, model, strategy, train_rows: int, auto_batch: bool) -> str:
    """The "model:" line: head and sizes, parameters, strategy, batch, steps."""
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    steps = config.steps_per_epoch or math.ceil(train_rows / config.batch_size)
    auto = f" (auto: {train_rows:,} training rows)" if auto_batch else ""
    m = config.model
    sizes = (
        f"{m.cell.upper()} {m.units}, code embeddings {m.code_embedding_dim}, "
        f"f_enc {m.encoder_units}, f_pred {m.predictor_units}, f_reg {m.regressor_units}"
        if config.head in ("rq_reg", "kmeans")
        else f"f_enc {m.encoder_units}"
    )
    return (
        f"model: head {config.head} ({sizes}), {params:,} trainable parameters; "
        f"{strategy_name(strategy)} over {strategy.num_replicas_in_sync} replica(s); "
        f"batch {config.batch_size}{auto}, {steps:,} steps an epoch"
    )


def _run_metrics(config, result, rows, strategy, validated: bool) -> dict[str, Any]:
    """metrics.json's description of the training (the test metrics join it)."""
    return {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "monitor": config.resolved_monitor if validated else None,
        "resumed": result.resumed,
        "train_seconds_this_process": result.train_seconds,
        "epoch_train_seconds": [round(t, 3) for t in result.epoch_seconds],
        "batch_size": config.batch_size,
        "train_rows": rows["train"],
        "replicas": strategy.num_replicas_in_sync,
        "head": config.head,
    }
