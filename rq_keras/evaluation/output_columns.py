"""The columns of a model's outputs in a table: one column per output value.

`output_columns` names the model's outputs one column each (a 2-D output by its
quantile levels or thresholds, `output_levels`, when known): the columns of a
run's `predictions.parquet` and of `predict_files`' output table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["output_columns", "output_levels"]

# Column-name prefixes of the 2-D outputs; the levels of `quantiles` and
# `exceedance` name their columns when known, an index (from 1) otherwise.
_PREFIXES = {
    "quantiles": "quantile_",
    "exceedance": "p_above_",
    "codes": "code_",
    "level_values": "level_value_",
}
# Index names when the levels are unknown: `exceedance_1`, never `p_above_1`,
# which would read as the threshold 1.
_INDEX_PREFIXES = {"quantiles": "quantile_", "exceedance": "exceedance_"}
_LEVELS = {"quantiles": "quantiles", "exceedance": "thresholds"}


def output_columns(
    outputs: Mapping[str, np.ndarray],
    *,
    quantiles: Sequence[float] | None = None,
    thresholds: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """Per-row model outputs -> named 1-D columns, in the order of `outputs`.

    A `(batch,)` output keeps its name (`prediction`, `regressor`, `mean`,
    `median`, `positive_mean`); a `(batch, n)` one gives n columns: `quantile_0.1`..,
    `p_above_0`.. (the levels formatted with `:g`), `code_1`..,
    `level_value_1`.., `NAME_1`.. for any other. Without `quantiles`
    (`thresholds`) the columns are numbered instead: `quantile_1`..,
    `exceedance_1`...

    Args:
        outputs: output name -> `(batch,)` or `(batch, n)` array.
        quantiles: the levels of the `quantiles` output, or None if unknown.
        thresholds: the thresholds t of the `exceedance` output P(y > t),
            or None if unknown.

    Returns:
        column name -> `(batch,)` array (views of `outputs`).

    Raises:
        ValueError: known levels whose number differs from the output's
            columns.
    """
    levels = {"quantiles": quantiles, "exceedance": thresholds}
    columns: dict[str, np.ndarray] = {}
    for key, value in outputs.items():
        value = np.asarray(value)
        if value.ndim == 1:
            columns[key] = value
            continue
        width = value.shape[1]
        known = levels.get(key)
        if known is not None:
            known = list(known)
            if len(known) != width:
                raise ValueError(
                    f"output {key!r} has {width} columns but {len(known)} "
                    f"{_LEVELS[key]} are given ({known})"
                )
            names = [f"{_PREFIXES[key]}{v:g}" for v in known]
        else:
            prefix = _INDEX_PREFIXES.get(key) or _PREFIXES.get(key) or f"{key}_"
            names = [f"{prefix}{j + 1}" for j in range(width)]
        for j, name in enumerate(names):
            columns[name] = value[:, j]
    return columns


def output_levels(model) -> dict[str, list[float]] | None:
    """`{"quantiles": [...], "thresholds": [...]}` of a model's decoder, or None.

    None for a model without an RQ decoder (a baseline head), which has no
    `quantiles` or `exceedance` output. `export.py` writes this as
    `assets.extra/outputs.json`.
    """
    decoder = getattr(model, "decoder", None)
    if decoder is None or not hasattr(decoder, "quantiles"):
        return None
    return {
        "quantiles": [float(q) for q in decoder.quantiles],
        "thresholds": [float(t) for t in getattr(decoder, "thresholds", ())],
    }
