"""Training runs: distribution strategies, the run and its report (the
configs, `TrainConfig` among them, are in `rq_keras.config`).

`train(config, output_dir)` is what `python train.py` runs:

1. checks the input files (a missing, unreadable or malformed file fails
   here, naming it, before anything is trained) while adapting the feature
   preprocessing and collecting the training labels in one pass;
2. fits the residual quantizer on the training labels;
3. builds the model, its optimizer and metrics inside the strategy's scope
   and trains it with scheduled sampling, early stopping on a validation
   metric (best weights restored), `BackupAndRestore` (a killed run started
   again with the same command resumes from its last finished epoch),
   TensorBoard logs and a stop at the first NaN loss;
4. evaluates on the test split and writes `metrics.json`, the test
   predictions and the plots.

Output directory::

    rq_keras_run.json      the manifest: the names runs here own (`run_dir`)
    config.yaml            the resolved TrainConfig
    feature_spec.yaml      the spec the model was built from
    preprocessing.json     the adapted statistics (vocabularies, moments)
    codebook.json          the fitted quantizer
    data_report.json       rows read and dropped per input file
    history.csv            one row per epoch (losses, validation metrics, p)
    checkpoints/           best weights and the early-stopping state
    backup/                BackupAndRestore state (removed once metrics.json is written)
    logs/                  TensorBoard
    model.keras            the trained model (best weights)
    trained.json           training finished: a rerun goes straight to evaluation
    predictions.parquet    test labels, predictions and codes
    metrics.json           test metrics; its presence marks a finished run
    plots/                 distribution, calibration, gain, loss curves

Under `MultiWorkerMirroredStrategy` only the chief writes these; the other
workers write their checkpoints to temporary directories and read the
chief's (storage shared by the workers, as `backup/` needs anyway).

What a run may delete, and what survives a kill, is `rq_keras.run_dir`'s
contract: a run writes only into a new or empty directory or one an earlier
run made, removes only what the manifest lists and only after every input
was checked; a kill during training resumes at the last finished epoch, a
kill after training at the evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import yaml

from rq_keras.atomic import atomic_path, write_json, write_text

# The configs live in rq_keras.config; these names stay importable from here.
from rq_keras.config import (  # noqa: F401
    HEAD_CHOICES,
    MONITORS,
    PREDICTIONS,
    STRATEGIES,
    QuantizerConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
)
from rq_keras.progress import RowTicker
from rq_keras.quantization import ResidualQuantizer
from rq_keras.run_dir import (
    STAGING,
    RunDir,
    RunDirError,
    load_model,
    read_yaml,
    temporary_name,
)

__all__ = [
    "QuantizerConfig",
    "RunDirError",
    "RunExistsError",
    "STRATEGIES",
    "TrainConfig",
    "TrainResult",
    "config_from_dict",
    "is_chief",
    "load_config",
    "make_strategy",
    "train",
]

REPO_DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
# Datasets whose raw files ship in `data/` (others need `raw_dir`).
DEFAULT_RAW_DIRS = {"cdnow": REPO_DATA / "cdnow"}


class RunExistsError(FileExistsError):
    """The output directory holds a finished run (or another unfinished one)."""


# ----------------------------------------------------------------- strategy
def _tf_config() -> dict[str, Any]:
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from None
    if not isinstance(doc, dict) or "cluster" not in doc or "task" not in doc:
        raise ValueError("TF_CONFIG must have `cluster` and `task` entries")
    return doc


def _split_cpu(count: int) -> list[str]:
    """Makes `count` logical CPU devices (before TF starts); their names."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError:
        # Already started (or already split): fine if the split is the one asked for.
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise ValueError(
                f"`cpu_devices` {count}: TensorFlow has already started with "
                f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s) in this process; "
                "the CPU can only be split before the first TensorFlow op"
            ) from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _check_devices(devices: Sequence[str]) -> None:
    """Every named device exists here (a missing one would hang a mirrored run)."""
    import tensorflow as tf

    known = tf.config.list_logical_devices()

    def key(name):
        spec = tf.DeviceSpec.from_string(name)
        return (spec.device_type or "").upper(), spec.device_index or 0

    available = {key(d.name) for d in known}
    for device in devices:
        try:
            wanted = key(device)
        except ValueError:
            wanted = None
        if wanted is None or wanted not in available:
            names = ", ".join(d.name for d in known)
            raise ValueError(
                f"device {device!r} does not exist on this host (it has {names}); to mirror "
                "over several CPU devices, split the CPU with --cpu-devices N"
            )


def make_strategy(name: str = "auto", devices: Sequence[str] = (), cpu_devices: int | None = None):
    """The `tf.distribute` strategy of a run; create it before any other TF op.

    Args:
        name: `"auto"` (multi_worker when `TF_CONFIG` names more than one
            task, mirrored with several local GPUs, `devices` or
            `cpu_devices`, else one_device), `"mirrored"`, `"multi_worker"`
            (needs `TF_CONFIG`) or `"one_device"`.
        devices: device names for mirrored/one_device; each must exist.
        cpu_devices: split the host CPU into this many logical devices first
            (mirrored then runs over them when `devices` is empty).

    `one_device` is TF's default strategy (its device placement), or a
    MirroredStrategy over `devices[0]` when one is named: Keras'
    `BackupAndRestore` does not accept `OneDeviceStrategy`.

    Raises:
        ValueError: an unknown strategy, a device this host does not have, a
            CPU split after TensorFlow started, or a bad `TF_CONFIG`.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {name!r}")
    if cpu_devices is not None and cpu_devices < 1:
        raise ValueError(f"`cpu_devices` must be >= 1, got {cpu_devices}")
    tf_config = _tf_config()
    tasks = sum(len(v) for v in tf_config.get("cluster", {}).values() if isinstance(v, list))
    split = _split_cpu(cpu_devices) if cpu_devices else []
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        if tasks > 1:
            name = "multi_worker"
        elif len(gpus) > 1 or len(devices) > 1 or len(split) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if name == "multi_worker":
        if not tf_config:
            raise ValueError(
                "strategy multi_worker needs TF_CONFIG (the cluster and this task) in the "
                "environment"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    _check_devices(devices)
    if name == "mirrored":
        if not devices and len(split) > 1 and not gpus:
            devices = split
        return tf.distribute.MirroredStrategy(list(devices) or None)
    if devices:
        return tf.distribute.MirroredStrategy([devices[0]])
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    """True where this process writes the run's outputs (always, off multi-worker)."""
    return bool(strategy.extended.should_checkpoint)


def _in_multi_worker(strategy) -> bool:
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec()
    return sum(cluster.num_tasks(job) for job in cluster.jobs) > 1


# -------------------------------------------------------------------- result
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


# ---------------------------------------------------------------- the run
FRESH, RESUME, EVALUATE = "fresh", "resume", "evaluate"


# Seconds between two progress lines of a long pass over the inputs.
PROGRESS_SECONDS = 10.0


class _Progress:
    """Prints what the run is doing before and around Keras' epoch lines.

    `say(text, since=True)` appends the seconds since the previous line.
    """

    def __init__(self, on: bool):
        self.on = on
        self._last = time.perf_counter()

    def __call__(self, text: str, since: bool = False) -> None:
        now = time.perf_counter()
        if self.on:
            print(f"{text} in {now - self._last:.1f} s" if since else text, flush=True)
        self._last = now

    def rows(self, what: str):
        """`on_chunk(rows, path)` for a long pass: an indented line every
        `PROGRESS_SECONDS`."""
        if not self.on:
            return None
        say = lambda line: print("  " + line, flush=True)  # noqa: E731
        return RowTicker(say, what, every=PROGRESS_SECONDS).add


def _strategy_name(strategy) -> str:
    name = type(strategy).__name__
    return "the default strategy" if name.startswith("_Default") else name


def _rows(report) -> str:
    dropped = report.rows_dropped
    return f"{report.rows_kept:,}" + (f" ({dropped:,} bad rows skipped)" if dropped else "")


def _read_state_json(path: pathlib.Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(
            f"{path} cannot be read ({err}); pass --overwrite to start over"
        ) from None
    if not isinstance(doc, dict):
        raise RunDirError(f"{path} must hold a JSON object; pass --overwrite to start over")
    return doc


def _run_phase(out: pathlib.Path, config: TrainConfig, overwrite: bool) -> str:
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


def _check_backup(backup: pathlib.Path) -> None:
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


def _files(value) -> list[str]:
    return [os.fspath(v) for v in value]


def _split_files(data_dir: pathlib.Path, fmt: str) -> list[list[str]]:
    ext = {"parquet": ".parquet", "csv": ".csv", "tfrecord": ".tfrecord"}[fmt]
    return [[os.fspath(data_dir / f"{split}{ext}")] for split in ("train", "validation", "test")]


def _resolve_data(config: TrainConfig, data_dir: pathlib.Path):
    """(spec, train, validation, test files, format or None).

    A registered dataset's splits are built into `data_dir` (the caller moves
    them into place once every input is checked).
    """
    from rq_keras import datasets
    from rq_keras.features import FeatureSpec

    if config.dataset is None:
        spec = FeatureSpec.load(config.feature_spec)
        return (
            spec,
            _files(config.train_files),
            _files(config.validation_files),
            _files(config.test_files),
            None,
        )
    raw = config.raw_dir or DEFAULT_RAW_DIRS.get(config.dataset)
    if raw is None:
        raise ValueError(f"dataset {config.dataset!r} needs `raw_dir` (its raw files)")
    if data_dir.exists():
        shutil.rmtree(data_dir)  # a killed attempt's staging folder
    summary = datasets.make(config.dataset, raw, data_dir, seed=config.seed)
    spec = FeatureSpec.load(data_dir / "feature_spec.yaml")
    return spec, *_split_files(data_dir, summary["format"]), summary["format"]


def _adapt(spec, train_files, config, on_chunk=None):
    """One checked pass over the training files: statistics and labels.
    `on_chunk(rows, path)` after each chunk (progress)."""
    from rq_keras.data import DataReport, chunk_length, iter_files
    from rq_keras.preprocessing import FeaturePreprocessor

    report = DataReport()
    labels = []

    def chunks():
        for chunk in iter_files(train_files, spec, report=report, on_bad_rows=config.on_bad_rows):
            labels.append(chunk[spec.label.name])
            if on_chunk is not None:
                on_chunk(chunk_length(chunk), report.files[-1].path)
            yield chunk

    preprocessor = FeaturePreprocessor(spec).adapt(chunks())
    y = np.concatenate(labels) if labels else np.zeros(0)
    if y.size == 0:
        raise ValueError(f"the training files {train_files} hold no usable rows")
    return preprocessor, y, report


def _write_json(path: pathlib.Path, doc) -> None:
    """A run's JSON file, written through its `temporary_name`."""
    write_json(path, doc, tmp_name=temporary_name(path))


def _weights_digest(weights: Sequence[np.ndarray]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for w in weights:
        digest.update(str(w.shape).encode())
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def _verbose(verbose) -> int:
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def train(
    config: TrainConfig,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    strategy=None,
    verbose: int | str = "auto",
) -> TrainResult:
    """Runs training end to end (see the module docstring).

    Args:
        config: the run's `TrainConfig`.
        output_dir: where everything is written (created if missing).
        overwrite: replace a finished run in `output_dir`.
        strategy: a `tf.distribute` strategy to use instead of
            `make_strategy(config.strategy, config.devices)`.
        verbose: Keras' verbosity; `"auto"`: progress bars on a terminal,
            one line per epoch otherwise.

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
    """
    # The strategy first: MultiWorkerMirroredStrategy must exist before any op.
    strategy = strategy or make_strategy(config.strategy, config.devices, config.cpu_devices)

    import tf_keras as keras

    from rq_keras.data import check_files, make_dataset

    out = pathlib.Path(output_dir)
    run_dir = RunDir(out)
    chief = is_chief(strategy)
    say = _Progress(chief and _verbose(verbose) > 0)
    if chief:
        run_dir.inspect()  # a directory that is not a run's is refused, untouched
    phase = _run_phase(out, config, overwrite)
    if chief:
        run_dir.claim()
    say(
        f"{out}: "
        + {
            FRESH: "a new run" + (" (replacing the run there)" if overwrite else ""),
            RESUME: "resuming the unfinished run after its last finished epoch",
            EVALUATE: "training had finished: evaluating only",
        }[phase]
    )
    scratch = tempfile.mkdtemp(prefix="rq_keras_worker_") if not chief else None
    try:
        # Every input is read and checked before anything in `out` is removed.
        staging = out / STAGING if chief else pathlib.Path(scratch) / "data"
        spec, train_files, validation_files, test_files, fmt = _resolve_data(config, staging)
        if fmt is not None:
            say(f"built the {config.dataset} splits ({fmt})", since=True)
        preprocessor, y_train, train_report = _adapt(
            spec, train_files, config, on_chunk=say.rows("checking training rows")
        )
        say(
            f"checked {_rows(train_report)} training rows and adapted {len(spec.features)} "
            "features",
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
                say(f"checked {_rows(reports[split])} {split} rows", since=True)
        quantizer = config.quantizer.build(
            spec.label.clip_min, spec.label.clip_max, labels=y_train
        ).fit(y_train)
        if say.on:
            fit = quantizer.report(y_train)
            sizes = quantizer.fitted_codebook_sizes
            k = sizes[0] if len(set(sizes)) == 1 else sizes
            say(
                f"codebook: L={quantizer.num_levels}, K={k}, "
                + (
                    ""
                    if quantizer.zero_threshold is None
                    else f"zero code below {quantizer.zero_threshold:g}, "
                )
                + f"reconstruction MAE {fit['reconstruction_mae']:.4g} on the training labels",
                since=True,
            )
        if phase != FRESH and (out / "codebook.json").exists():
            _check_same_codebook(out / "codebook.json", quantizer)
        if phase == RESUME:
            _check_backup(out / "backup")
        if chief:
            if phase == FRESH:
                # An earlier run's (or attempt's) outputs, as listed; not the
                # splits just built and checked.
                run_dir.remove(sorted(run_dir.listed - {staging.name}))
            if fmt is not None:
                run_dir.remove(["data"])
                os.replace(staging, out / "data")
                train_files, validation_files, test_files = _split_files(out / "data", fmt)
            write_text(
                out / "config.yaml",
                yaml.safe_dump(config.to_dict(), sort_keys=False),
                tmp_name=temporary_name("config.yaml"),
            )
            spec.save(out / "feature_spec.yaml")
            preprocessor.save(out / "preprocessing.json")
            quantizer.save(out / "codebook.json")
            _write_json(out / "data_report.json", {k: r.to_dict() for k, r in reports.items()})

        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            model = _build(spec, preprocessor, quantizer, config, y_train)
            model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))

        rows = {split: r.rows_kept for split, r in reports.items()}
        # config.yaml keeps "auto"; from here on the batch is a number.
        auto_batch = config.batch_size == "auto"
        config = dataclasses.replace(config, batch_size=config.resolved_batch_size(rows["train"]))
        if say.on:
            params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
            steps = config.steps_per_epoch or math.ceil(rows["train"] / config.batch_size)
            auto = f" (auto: {rows['train']:,} training rows)" if auto_batch else ""
            m = config.model
            sizes = (
                f"{m.cell.upper()} {m.units}, code embeddings {m.code_embedding_dim}, "
                f"f_enc {m.encoder_units}, f_pred {m.predictor_units}, f_reg {m.regressor_units}"
                if config.head in ("rq_reg", "kmeans")
                else f"f_enc {m.encoder_units}"
            )
            say(
                f"model: head {config.head} ({sizes}), {params:,} trainable parameters; "
                f"{_strategy_name(strategy)} over {strategy.num_replicas_in_sync} replica(s); "
                f"batch {config.batch_size}{auto}, {steps:,} steps an epoch",
                since=True,
            )
        if phase == EVALUATE:
            result, weights = _trained_result(out, chief)
        else:
            data = (train_files, validation_files)
            result, weights = _fit(
                config, strategy, model, spec, data, rows, out, scratch, phase, verbose, say
            )
        if not chief:
            return result

        # A plain (strategy-free) copy for evaluation and saving.
        final = _build(spec, preprocessor, quantizer, config, y_train)
        final.set_weights(weights)
        final.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
        if phase != EVALUATE:
            final.save(out / "model.keras.tmp.keras")
            os.replace(out / "model.keras.tmp.keras", out / "model.keras")
            # Training is over: from here a rerun starts at the evaluation.
            _write_json(out / "trained.json", _trained_doc(result))
        result.model = final

        metrics: dict[str, Any] = {
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "monitor": config.resolved_monitor if validation_files else None,
            "resumed": result.resumed,
            "train_seconds_this_process": result.train_seconds,
            "epoch_train_seconds": [round(t, 3) for t in result.epoch_seconds],
            "batch_size": config.batch_size,
            "train_rows": rows["train"],
            "replicas": strategy.num_replicas_in_sync,
            "head": config.head,
        }
        say("training done; evaluating on the test split" if test_files else "training done")
        if test_files:
            from rq_keras import report as report_lib
            from rq_keras.metrics import (
                CodeReport,
                distribution_report,
                evaluate,
                trivial_predictors,
            )

            code_report = None
            if config.head in ("rq_reg", "kmeans"):
                code_report = CodeReport(
                    quantizer.encode(y_train),
                    quantizer.fitted_codebook_sizes,
                    quantizer.token_offsets,
                    zero_token=quantizer.zero_token,
                )
            # 1,024: with `exact_levels` >= 1 the code tree multiplies the
            # decoder's rows by K_1.
            test_data = make_dataset(test_files, spec, batch_size=1024)
            y_true, outputs = _predict(final, test_data, quantizer, code_report)
            y_pred = outputs["prediction"]
            metrics["test"] = evaluate(y_true, y_pred)
            metrics["test"]["trivial"] = trivial_predictors(y_train, y_true)
            if code_report is not None:
                metrics["test"]["codes"] = code_report.result()
            # Every prediction type the model has (ZILN: its positive_mean).
            kinds = [k for k in PREDICTIONS if k in outputs]
            if kinds:
                metrics["test"]["prediction_type"] = (
                    config.model.prediction if "mean" in outputs else "mean"
                )
                metrics["test"]["by_prediction"] = {k: evaluate(y_true, outputs[k]) for k in kinds}
            if "mean" in outputs:
                metrics["test"]["distribution"] = distribution_report(
                    y_true,
                    outputs["quantiles"],
                    config.model.quantiles,
                    outputs.get("exceedance"),
                    config.model.thresholds,
                )
            metrics["test"]["decile_calibration"] = report_lib.decile_calibration(y_true, y_pred)
            _write_predictions(out / "predictions.parquet", y_true, outputs, config.model)
            result.plots = report_lib.write_plots(
                y_true,
                y_pred,
                result.history,
                out / "plots",
                title=config.dataset or spec.name,
                best_epoch=result.best_epoch,
                epochs=config.epochs,
            )
            if "exceedance" in outputs:
                result.plots["reliability"] = report_lib.write_reliability_plot(
                    metrics["test"]["distribution"]["exceedance"],
                    out / "plots",
                    title=config.dataset or spec.name,
                )
            if config.head in ("rq_reg", "kmeans"):
                values = _embedding_grid(y_train, quantizer)
                result.plots["embedding"] = report_lib.write_embedding_plot(
                    values,
                    code_sequence_embeddings(final, quantizer, values),
                    out / "plots",
                    title=config.dataset or spec.name,
                )
        metrics["weights_digest"] = result.weights_digest
        _write_json(out / "metrics.json", metrics)
        result.metrics = metrics
        # Every output is written: the backup has done its job.
        run_dir.remove(["backup"])
        return result
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if chief and (out / STAGING).is_dir():
            shutil.rmtree(out / STAGING, ignore_errors=True)  # a failed attempt's


def _check_same_codebook(path: pathlib.Path, quantizer) -> None:
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


def _trained_doc(result: TrainResult) -> dict[str, Any]:
    return {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "weights_digest": result.weights_digest,
        "train_seconds": result.train_seconds,
        "epoch_train_seconds": [round(t, 3) for t in result.epoch_seconds],
    }


def _trained_result(out: pathlib.Path, chief: bool):
    """The result of a run whose training finished before it was stopped."""
    from rq_keras import callbacks as cb

    doc = _read_state_json(out / "trained.json")
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
        if _weights_digest(weights) != digest:
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


def _fit(config, strategy, model, spec, data, rows, out, scratch, phase, verbose, say):
    """Trains `model` (resuming from the backup); (TrainResult, final weights)."""
    import tf_keras as keras

    from rq_keras import callbacks as cb
    from rq_keras.data import make_dataset

    train_files, validation_files = data
    chief = scratch is None
    multi_worker = _in_multi_worker(strategy)
    fit_kwargs: dict[str, Any] = {}
    steps = config.steps_per_epoch
    if steps is None and (multi_worker or config.sampling_per_batch):
        # A distributed dataset, and p per batch, need a known epoch length.
        steps = max(1, math.ceil(rows["train"] / config.batch_size))

    def pipeline(files, shuffle, repeat, input_context=None):
        return make_dataset(
            files,
            spec,
            batch_size=config.batch_size,
            shuffle=shuffle,
            shuffle_buffer=config.shuffle_buffer,
            seed=config.seed,
            on_bad_rows=config.on_bad_rows,
            repeat=repeat,
            input_context=input_context,
        )

    if multi_worker:
        # Each worker reads its shard of the (repeated) files.
        def distributed(files, shuffle):
            return strategy.distribute_datasets_from_function(
                lambda context: pipeline(files, shuffle, True, context)
            )

        train_data = distributed(train_files, True)
        if validation_files:
            fit_kwargs["validation_data"] = distributed(validation_files, False)
            fit_kwargs["validation_steps"] = max(
                1, math.ceil(rows["validation"] / config.batch_size)
            )
    else:
        train_data = pipeline(train_files, True, repeat=steps is not None)
        if validation_files:
            fit_kwargs["validation_data"] = pipeline(validation_files, False, repeat=False)

    # Every worker reads the chief's checkpoints and early-stopping state (a
    # restarted worker must agree with the others on "improved"); the other
    # workers write theirs to scratch (saving is collective, so all save).
    checkpoints = out / "checkpoints"
    write_dir = checkpoints if chief else pathlib.Path(scratch) / "checkpoints"
    write_dir.mkdir(parents=True, exist_ok=True)
    backup_dir = os.fspath(out / "backup")
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
    callbacks += [
        keras.callbacks.TensorBoard(os.fspath(out / "logs"), profile_batch=0),
        # Last, so an epoch's backup follows its history and early-stopping
        # state; kept after training until every output is written.
        keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False),
    ]
    # The optimizer's slots exist before fit: the train step is then traced
    # once, not twice (no variables made while tracing: 1.5 s of a 7.5 s toy
    # run), and a resume restores the backup into them even when it runs no
    # step.
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    started = time.perf_counter()
    keras_history = model.fit(
        train_data,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=callbacks,
        verbose=_verbose(verbose),
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
        weights_digest=_weights_digest(weights),
        epoch_seconds=list(timer.seconds),
        train_seconds=round(train_seconds, 3),
    )
    return result, weights


def _build(spec, preprocessor, quantizer, config: TrainConfig, y_train):
    """The model of `config.head`, built (weights made), not compiled."""
    from rq_keras.model import build_model

    if config.head in ("rq_reg", "kmeans"):
        return build_model(spec, preprocessor, quantizer, config.model)
    from rq_keras.heads import build_head_model

    # ZILN's lognormal mean is bounded by the largest training label (clipped).
    largest = float(np.max(y_train))
    if spec.label.clip_max is not None:
        largest = min(largest, spec.label.clip_max)
    return build_head_model(spec, preprocessor, config.head, config.model, prediction_max=largest)


# Per-row outputs of the evaluation, beside the label (predictions.parquet).
EVALUATED = ("prediction", *PREDICTIONS, "quantiles", "exceedance", "codes")


def _predict(model, dataset, quantizer=None, code_report=None):
    """(labels, outputs) of a dataset, batch by batch, in order.

    `outputs` maps each of `EVALUATED` the model returns to its rows
    (float64, `codes` int). With a `CodeReport` (and the quantizer that codes
    the labels), the decoder's logits of each batch are scored against the
    true codes.
    """
    import tensorflow as tf

    keys = EVALUATED + (("logits",) if code_report is not None else ())

    @tf.function(reduce_retracing=True, autograph=False)
    def step(features):
        out = model(features, training=False)
        return {k: out[k] for k in keys if k in out}

    labels, parts = [], {}
    for features, label in dataset:
        out = {k: v.numpy() for k, v in step(features).items()}
        labels.append(label.numpy())
        for key in EVALUATED:
            if key in out:
                parts.setdefault(key, []).append(out[key])
        if code_report is not None:
            true = quantizer.encode(labels[-1].astype(np.float64))
            code_report.update(out["logits"], out["codes"], true)
    outputs = {
        k: np.concatenate(v) if k == "codes" else np.concatenate(v).astype(np.float64)
        for k, v in parts.items()
    }
    return np.concatenate(labels).astype(np.float64), outputs


def _embedding_grid(y_train, quantizer, points: int = 400) -> np.ndarray:
    """Target values for the embedding picture: quantiles of the (clipped)
    training labels, distinct."""
    y = quantizer.clip(np.asarray(y_train, dtype=np.float64))
    return np.unique(np.quantile(y, np.linspace(0.0, 1.0, points)))


def code_sequence_embeddings(model, quantizer, values) -> np.ndarray:
    """`[e(q_1); ...; e(q_L)]` of each value's codes, from an RQ-Reg model's
    decoder table: float64 `(n, L * D)` (the picture of the paper's Figure 3)."""
    tokens = quantizer.codes_to_tokens(quantizer.encode(np.asarray(values, dtype=np.float64)))
    table = np.asarray(model.decoder.code_embeddings.numpy(), dtype=np.float64)
    return table[tokens].reshape(tokens.shape[0], -1)


def _write_predictions(path: pathlib.Path, y_true, outputs, model_config) -> None:
    """predictions.parquet: the label and every per-row output (2-D ones one
    column each: `code_1`.., `quantile_0.1`.., `p_above_0`..)."""
    import pandas as pd

    from rq_keras.predict import output_columns

    columns = output_columns(
        outputs, quantiles=model_config.quantiles, thresholds=model_config.thresholds
    )
    frame = pd.DataFrame({"label": y_true, **columns})
    with atomic_path(path, tmp_name=temporary_name(path)) as tmp:
        frame.to_parquet(tmp, index=False)
