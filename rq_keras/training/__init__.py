"""Training runs (the configs, `TrainConfig` among them, are in
`rq_keras.config.configs`).

`train(config, output_dir)` is what `python train.py` runs:

1. checks the input files (a missing, unreadable or malformed file fails
   here, naming it, before anything is trained) while adapting the feature
   preprocessing and collecting the training labels in one pass;
2. fits the residual quantizer on the training labels;
3. builds the model, its optimizer and metrics inside the strategy's scope
   and trains it with scheduled sampling, early stopping on a validation
   metric (best weights restored), a backup at each epoch's end (a killed
   run started again with the same command resumes from its last finished
   epoch; on SIGTERM, `preemption`, from the step it stopped at), TensorBoard
   logs and a stop at the first NaN loss;
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
    backup/                the training state (removed once metrics.json is written)
    logs/                  TensorBoard
    model.keras            the trained model (best weights)
    trained.json           training finished: a rerun goes straight to evaluation
    predictions.parquet    test labels, predictions and codes
    metrics.json           test metrics; its presence marks a finished run
    plots/                 distribution, calibration, gain, loss curves

Under `MultiWorkerMirroredStrategy` only the chief writes these; the other
workers write their checkpoints to temporary directories and read the
chief's (storage shared by the workers, as `backup/` needs anyway).

What a run may delete, and what survives a kill, is `rq_keras.training.run_dir`'s
contract: a run writes only into a new or empty directory or one an earlier
run made, removes only what the manifest lists and only after every input
was checked; a kill during training resumes at the last finished epoch (a
SIGTERM: at the step), a kill after training at the evaluation.

Modules: `run` (`train()`, phase by phase), `distribute` (strategies),
`inputs` (the input files and their checked passes), `state` (where a run
starts, resume checks, `TrainResult`), `fit` (callbacks and `model.fit`),
`callbacks` (scheduled sampling, NaN stop, resumable early stopping,
history), `preemption` (SIGTERM: save at the step, exit 75), `run_dir` (the
run directory's manifest and files), `evaluate` (the test split: metrics,
predictions, plots), `console` (what a run prints).
"""

from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.training")  # before TensorFlow loads

from rq_keras.training.distribute import is_chief, make_strategy  # noqa: E402
from rq_keras.training.evaluate import code_sequence_embeddings  # noqa: E402
from rq_keras.training.inputs import DEFAULT_RAW_DIRS  # noqa: E402
from rq_keras.training.run import train  # noqa: E402
from rq_keras.training.run_dir import RunDirError  # noqa: E402
from rq_keras.training.state import RunExistsError, TrainResult  # noqa: E402

__all__ = [
    "DEFAULT_RAW_DIRS",
    "RunDirError",
    "RunExistsError",
    "TrainResult",
    "code_sequence_embeddings",
    "is_chief",
    "make_strategy",
    "train",
]


def __getattr__(name):
    """A name this package had in rq_keras 0.2 (it warns), or AttributeError."""
    from rq_keras._deprecated import module_getattr

    return module_getattr(__name__, stacklevel=3)(name)
