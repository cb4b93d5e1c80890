"""Fitting the L levels of a residual quantizer (Algorithm 1), numpy only.

`fit_levels` clusters the labels at level 1 and, at each later level, the
residuals the earlier levels leave (`rq_keras.quantizer.clustering1d` does each level's
1-D clustering); with a zero threshold it takes the rows coded zero out
first. `ResidualQuantizer.fit` (`rq_keras.quantizer.residual`) calls it with
itself; only the quantizer's public attributes are read, so this module does
not import it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from rq_keras.quantizer.clustering1d import (
    Sorted1D,
    kmeanspp_partition,
    lloyd,
    optimal_partition,
    quantile_partition,
)
from rq_keras.quantizer.tokens import decision_boundaries


def fit_levels(
    quantizer: Any, y: np.ndarray, w: np.ndarray | None
) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """The centroids and the per-level fit info of `quantizer`'s L levels.

    Args:
        quantizer: the `ResidualQuantizer` being fitted (its configuration).
        y: clipped labels, float64 `(n,)`.
        w: their weights `(n,)`, or None.

    Returns:
        (centroids, levels): one sorted float64 array and one dict per level.

    Raises:
        ValueError: labels so large that the sums overflow float64.

    Warns:
        UserWarning: a level with fewer distinct residuals than its
            codebook_size, or with none above the zero threshold. The warnings
            point at the caller of `ResidualQuantizer.fit` (stacklevel 3).
    """
    if w is None:
        values, weights = np.sort(y), None
    else:
        order = np.argsort(y, kind="stable")
        values, weights = y[order], w[order]
    data = Sorted1D.from_sorted(values, weights)
    label_range = (float(values[0]), float(values[-1]))
    rng = np.random.default_rng(quantizer.seed)
    centroids, levels = [], []
    zero_weight = 0.0  # weight of the rows coded zero so far (they stay zero)
    for level in range(quantizer.num_levels):
        k = quantizer.codebook_size[level]
        method = quantizer.method[level]
        if quantizer.zero_threshold is not None and data is not None:
            keep = np.abs(data.xs) >= quantizer.zero_threshold
            if not keep.all():
                zero_weight += float(data.ws[~keep].sum())
                data = Sorted1D(data.xs[keep], data.ws[keep]) if keep.any() else None
        if data is None:
            warnings.warn(
                f"level {level}: every residual is below zero_threshold="
                f"{quantizer.zero_threshold}; the level gets the single centroid 0",
                UserWarning,
                stacklevel=3,
            )
            levels.append(
                {
                    "level": level,
                    "method": method,
                    "distinct_values": 0,
                    "codebook_size": 1,
                    "lloyd_iterations": 0,
                    "cost": 0.0,
                    "zero_weight": zero_weight,
                }
            )
            centroids.append(np.zeros(1))
            continue
        if not data.finite:
            _overflow(label_range, level, "the sums of squared deviations")
        if data.n <= k:
            if data.n < k:
                warnings.warn(
                    f"level {level}: residuals have {data.n} distinct value(s), "
                    f"fewer than codebook_size={k}; the level gets {data.n} "
                    "centroid(s), one per distinct value",
                    UserWarning,
                    stacklevel=3,
                )
            c, iterations = data.xs.copy(), 0
        elif method == "quantile":
            bins = quantile_partition(data, k)
            c, iterations = data.centre(bins[:-1], bins[1:], method), 0
        else:
            if quantizer.init == "optimal":
                start_cuts = optimal_partition(data, k, method, quantizer.num_candidates)
            else:
                start_cuts = kmeanspp_partition(data, k, rng)
            c, iterations = lloyd(data, start_cuts, method, quantizer.max_iter)
        cuts = data.cuts_for(c)
        cost = float(np.sum(data.cost(cuts[:-1], cuts[1:], method)))
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(decision_boundaries(c)).all()
        if not (np.isfinite(c).all() and finite and math.isfinite(cost)):
            _overflow(label_range, level, "the centroids or their midpoints")
        levels.append(
            {
                "level": level,
                "method": method,
                "distinct_values": int(data.n),
                "codebook_size": int(c.size),
                "lloyd_iterations": int(iterations),
                "cost": cost,
                "zero_weight": zero_weight,
            }
        )
        centroids.append(c)
        if level + 1 < quantizer.num_levels:
            codes = np.repeat(np.arange(c.size), np.diff(cuts))
            residual = data.xs - c[codes]
            order = np.argsort(residual, kind="stable")  # K sorted runs: a merge
            data = Sorted1D.from_sorted(residual[order], data.ws[order])
    return centroids, levels


def _overflow(label_range: tuple[float, float], level: int, what: str) -> None:
    lo, hi = label_range
    raise ValueError(
        f"labels in [{lo!r}, {hi!r}] are too large to fit: at level {level} {what} "
        "overflow float64; rescale the labels or set `clip_min`/`clip_max`"
    )
