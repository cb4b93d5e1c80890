"""Dataset builders: raw files -> train/validation/test splits + a feature spec.

One module per dataset; each defines `INFO` (a `DatasetInfo`) and
`make(raw_dir, out_dir, *, seed=0, fmt="parquet", **options)`, which writes
the splits, `feature_spec.yaml` and `summary.json` and returns the summary.
Run one with `python -m rq_keras.cli.datasets NAME --raw-dir DIR --out-dir DIR`.
"""

from __future__ import annotations

import importlib

from rq_keras.datasets._common import DatasetInfo

__all__ = ["DATASETS", "DatasetInfo", "get", "make"]

# name -> module; imported on first use (some read optional packages).
DATASETS = {
    "cdnow": "rq_keras.datasets.cdnow",
    "complete_journey": "rq_keras.datasets.complete_journey",
    "kuairec": "rq_keras.datasets.kuairec",
    "cikm16": "rq_keras.datasets.cikm16",
    "valued_shoppers": "rq_keras.datasets.valued_shoppers",
    "criteo_ssc": "rq_keras.datasets.criteo_ssc",
    "nycflights": "rq_keras.datasets.nycflights",
    "synthetic": "rq_keras.datasets.synthetic",
}


def get(name: str):
    """The module of dataset `name` (it has `INFO` and `make`)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; datasets are {sorted(DATASETS)}")
    return importlib.import_module(DATASETS[name])


def make(name: str, raw_dir, out_dir, **kwargs):
    """Builds dataset `name` from `raw_dir` into `out_dir`; returns its summary."""
    return get(name).make(raw_dir, out_dir, **kwargs)
