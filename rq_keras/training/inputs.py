"""A run's inputs: the files of a registered dataset or of a feature spec, and
the checked passes over them (the training pass also adapts the features and
collects the labels). Nothing here depends on where the package is installed:
the bundled CDNOW file ships inside it."""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np

from rq_keras.config.configs import TrainConfig
from rq_keras.datasets.cdnow import BUNDLED_RAW_DIR

__all__ = ["DEFAULT_RAW_DIRS", "adapt", "as_paths", "resolve_data", "split_files"]

# Datasets whose raw files ship in the package (others need `raw_dir`).
DEFAULT_RAW_DIRS = {"cdnow": pathlib.Path(BUNDLED_RAW_DIR)}


def as_paths(value) -> list[str]:
    return [os.fspath(v) for v in value]


def split_files(data_dir: pathlib.Path, fmt: str) -> list[list[str]]:
    """The train, validation and test files a dataset's splits were built into."""
    from rq_keras.datasets._common import FORMATS, SPLITS

    return [[os.fspath(data_dir / f"{split}{FORMATS[fmt]}")] for split in SPLITS]


def resolve_data(config: TrainConfig, data_dir: pathlib.Path):
    """(spec, train, validation, test files, format or None).

    A registered dataset's splits are built into `data_dir` (the caller moves
    them into place once every input is checked).
    """
    from rq_keras import datasets
    from rq_keras.features.spec import FeatureSpec

    if config.dataset is None:
        spec = FeatureSpec.load(config.feature_spec)
        return (
            spec,
            as_paths(config.train_files),
            as_paths(config.validation_files),
            as_paths(config.test_files),
            None,
        )
    raw = config.raw_dir or DEFAULT_RAW_DIRS.get(config.dataset)
    if raw is None:
        raise ValueError(f"dataset {config.dataset!r} needs `raw_dir` (its raw files)")
    if data_dir.exists():
        shutil.rmtree(data_dir)  # a killed attempt's staging folder
    summary = datasets.make(config.dataset, raw, data_dir, seed=config.seed)
    spec = FeatureSpec.load(data_dir / "feature_spec.yaml")
    return spec, *split_files(data_dir, summary["format"]), summary["format"]


def adapt(spec, train_files, config, on_chunk=None):
    """One checked pass over the training files: statistics and labels.
    `on_chunk(rows, path)` after each chunk (progress)."""
    from rq_keras.data.readers import chunk_length, iter_files
    from rq_keras.data.reports import DataReport
    from rq_keras.features.preprocessing import FeaturePreprocessor

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
