"""The toy training runs of the training and run-directory tests: files, a
TrainConfig and the train.py arguments of a tiny RQ-Reg model."""

import json

from toy_data import SPEC
from toy_data import frame as _frame

from rq_keras.config import config_from_dict
from rq_keras.data import write_table

TINY = {
    "units": 16,
    "code_embedding_dim": 8,
    "encoder_units": 16,
    "predictor_units": 16,
    "regressor_units": 8,
    "delta": 1.0,
}


def toy_files(root):
    """Train/validation/test Parquet files of the toy set in `root`, and their spec."""
    files = {}
    for split, n, seed in (("train", 3000, 0), ("validation", 500, 1), ("test", 800, 2)):
        files[split] = root / f"{split}.parquet"
        write_table(_frame(n, seed), SPEC, files[split])
    SPEC.save(root / "spec.yaml")
    files["spec"] = root / "spec.yaml"
    return files


def train_config(toy, **overrides):
    """A `TrainConfig` on the toy files: 2 epochs, batch 256, L=3, K=8, TINY."""
    values = {
        "train_files": [str(toy["train"])],
        "validation_files": [str(toy["validation"])],
        "test_files": [str(toy["test"])],
        "feature_spec": str(toy["spec"]),
        "epochs": 2,
        "batch_size": 256,
        "learning_rate": 3e-3,
        "quantizer": {"num_levels": 3, "codebook_size": 8},
        "model": dict(TINY),
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            values[key] = {**values.get(key, {}), **value}
        else:
            values[key] = value
    return config_from_dict(values)


def cli_args(toy, out, *extra):
    """train.py arguments of the same run (batch 128), then `extra`."""
    args = [
        "--train", str(toy["train"]),
        "--validation", str(toy["validation"]),
        "--test", str(toy["test"]),
        "--feature-spec", str(toy["spec"]),
        "--output-dir", str(out),
        "--batch-size", "128",
        "--set", "quantizer.codebook_size=8",
        "--verbose", "2",
    ]  # fmt: skip
    for key, value in TINY.items():
        args += ["--set", f"model.{key}={value}"]
    return [*args, *extra]


def summary(stdout):
    """The JSON summary train.py prints as its last line."""
    return json.loads(stdout.strip().splitlines()[-1])
