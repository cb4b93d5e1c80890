"""The codebook's report: reconstruction quality per level, and its plot.

`ResidualQuantizer.report` and `ResidualQuantizer.plot`
(`rq_keras.quantizer.residual`) delegate here; the functions use only the
quantizer's public methods, so this module does not import it. matplotlib is
imported only when a plot is drawn.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from rq_keras.features.labels import as_label_array
from rq_keras.quantizer.tokens import ZERO_CODE


def reconstruction_report(
    quantizer: Any, y: np.ndarray, codes: np.ndarray, values: np.ndarray
) -> dict[str, Any]:
    """`ResidualQuantizer.report`'s dict from labels `y` (a label array) and
    their encoding: codes and per-level quantized values, both `(n, L)`."""
    partial = np.cumsum(values, axis=1)
    err = np.abs(y[:, None] - partial)
    mean_abs_y = float(np.mean(np.abs(y)))
    clipped = int(np.count_nonzero(quantizer.clip(y) != y))
    levels = []
    for level, c in enumerate(quantizer.require_fitted()):
        levels.append(
            {
                "level": level,
                "method": quantizer.method[level],
                "codebook_size": int(c.size),
                "codes_used": int(np.unique(codes[:, level][codes[:, level] >= 0]).size),
                "zero_rows": int(np.count_nonzero(codes[:, level] == ZERO_CODE)),
                "mae": float(err[:, level].mean()),
                "max_abs_error": float(err[:, level].max()),
            }
        )
    mae = levels[-1]["mae"]
    return {
        "n": int(y.size),
        "num_levels": quantizer.num_levels,
        "vocabulary_size": quantizer.vocabulary_size,
        "reconstruction_mae": mae,
        "max_abs_error": levels[-1]["max_abs_error"],
        "relative_error": mae / mean_abs_y if mean_abs_y > 0 else 0.0,
        "clipped_rows": clipped,
        "levels": levels,
    }


def plot_codebook(
    quantizer: Any, y: Any, path: str | os.PathLike, report: dict | None = None
) -> None:
    """Writes `ResidualQuantizer.plot`'s PNG; `report` is `quantizer.report(y)`
    if the caller has it already, computed when None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = as_label_array(y)
    rep = quantizer.report(y) if report is None else report
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    ax0.hist(y, bins=min(200, max(10, int(np.sqrt(y.size)))), color="#4c72b0")
    ax0.set_yscale("log")
    for c in quantizer.require_fitted()[0]:
        ax0.axvline(c, color="#dd8452", linewidth=0.7, alpha=0.8)
    ax0.set_title("labels (log count) and level-1 centroids")
    ax0.set_xlabel("label")
    lv = [entry["level"] + 1 for entry in rep["levels"]]
    ax1.plot(lv, [e["mae"] for e in rep["levels"]], "o-", label="MAE")
    ax1.plot(lv, [e["max_abs_error"] for e in rep["levels"]], "s--", label="max |error|")
    ax1.set_yscale("log")
    ax1.set_xticks(lv)
    ax1.set_xlabel("levels used")
    ax1.set_title("reconstruction error")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)
