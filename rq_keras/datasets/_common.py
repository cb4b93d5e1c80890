"""What every dataset module shares: splitting, writing and summarising."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rq_keras.features.spec import FeatureSpec

__all__ = ["DatasetInfo", "split_frame", "write_splits", "label_summary", "SPLITS", "FORMATS"]

SPLITS = ("train", "validation", "test")
FORMATS = {"parquet": ".parquet", "csv": ".csv", "tfrecord": ".tfrecord"}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A dataset module's entry in the registry.

    Attributes:
        name: the dataset name (`python -m rq_keras.cli.datasets NAME`).
        build: `build(raw_dir, seed) -> pandas.DataFrame` with one column per
            spec column (lists joined by the feature's separator) and, when the
            split is not random, a `__split__` column of `"train"` /
            `"validation"` / `"test"`.
        spec: the dataset's `FeatureSpec`.
        ratios: train/validation/test shares used when `build` leaves the
            split to `write_splits`.
        group: a column whose values are kept inside one split (no leakage
            across splits), or None for a row-level split.
        description: one line for `--help` and the summary.
        id_columns: key columns written before the spec's columns in text and
            Parquet splits (for joins and leakage checks; no feature reads
            them, and TFRecord splits leave them out).
    """

    name: str
    build: Callable[..., Any]
    spec: FeatureSpec
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    group: str | None = None
    description: str = ""
    id_columns: tuple[str, ...] = ()


def split_frame(frame, ratios: Sequence[float], seed: int, group: str | None = None):
    """Assigns each row to a split, seeded; whole groups move together.

    Returns:
        numpy array of split names, one per row.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.shape != (3,) or (ratios < 0).any() or not np.isclose(ratios.sum(), 1.0):
        raise ValueError(f"`ratios` must be three shares summing to 1, got {ratios.tolist()}")
    rng = np.random.default_rng(seed)
    if group is None:
        keys = np.arange(len(frame))
        inverse = keys
    else:
        keys, inverse = np.unique(frame[group].to_numpy(), return_inverse=True)
    order = rng.permutation(len(keys))
    cut = np.round(np.cumsum(ratios)[:2] * len(keys)).astype(int)
    which = np.empty(len(keys), dtype=object)
    which[order[: cut[0]]] = "train"
    which[order[cut[0] : cut[1]]] = "validation"
    which[order[cut[1] :]] = "test"
    return which[inverse]


def label_summary(values) -> dict[str, Any]:
    """Rows, mean, zero share and quantiles of a label column."""
    y = np.asarray(values, dtype=np.float64)
    if y.size == 0:
        return {"rows": 0}
    qs = [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
    return {
        "rows": int(y.size),
        "mean": float(y.mean()),
        "zero_share": float(np.mean(y == 0)),
        "quantiles": {f"{q:g}": float(v) for q, v in zip(qs, np.quantile(y, qs))},
    }


def write_splits(
    frame,
    info: DatasetInfo,
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    fmt: str = "parquet",
    extra_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes `train/validation/test` files, the feature spec and a summary.

    Args:
        frame: the dataset's rows (see `DatasetInfo.build`).
        info: the dataset's registry entry.
        out_dir: created if missing; receives `train.EXT`, `validation.EXT`,
            `test.EXT`, `feature_spec.yaml` and `summary.json`.
        seed: the split seed (ignored when `frame` has a `__split__` column).
        fmt: `"parquet"`, `"csv"` or `"tfrecord"`.
        extra_summary: dataset facts added to the summary (windows, sources).

    Returns:
        the summary dict (also written to `summary.json`).
    """
    from rq_keras.data.writers import write_table

    if fmt not in FORMATS:
        raise ValueError(f"`fmt` must be one of {sorted(FORMATS)}, got {fmt!r}")
    spec = info.spec
    missing = [c for c in (*info.id_columns, *spec.columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"{info.name}: the built frame lacks spec columns {missing}")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    if "__split__" in frame.columns:
        which = frame["__split__"].to_numpy()
        unknown = sorted(set(which) - set(SPLITS))
        if unknown:
            raise ValueError(f"{info.name}: unknown split names {unknown}")
    else:
        which = split_frame(frame, info.ratios, seed, info.group)
    columns = [*info.id_columns, *spec.columns]
    summary: dict[str, Any] = {
        "dataset": info.name,
        "description": info.description,
        "format": fmt,
        "seed": seed,
        "label": spec.label.name,
        "features": list(spec.feature_names),
        "splits": {},
    }
    for split in SPLITS:
        part = frame.loc[which == split, columns].reset_index(drop=True)
        path = os.path.join(out_dir, split + FORMATS[fmt])
        write_table(part, spec, path, keep=info.id_columns)
        summary["splits"][split] = {"path": path, **label_summary(part[spec.label.name])}
    summary["rows"] = int(sum(s["rows"] for s in summary["splits"].values()))
    if extra_summary:
        summary.update(extra_summary)
    spec.save(os.path.join(out_dir, "feature_spec.yaml"))
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    return summary
