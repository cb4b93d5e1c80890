"""Calibration of a predictive distribution: quantile coverage and P(y > t).

:func:`distribution_report` checks predicted quantiles against the share of
labels they cover and predicted exceedance probabilities against the observed
share (Brier scores and a reliability table). numpy only; re-exported by
:mod:`rq_keras.evaluation.metrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["distribution_report"]


def distribution_report(
    y_true: Any,
    quantiles: Any,
    quantile_levels: Any,
    exceedance: Any = None,
    thresholds: Any = (),
    bins: int = 10,
) -> dict[str, Any]:
    """Is the predictive distribution calibrated? Quantiles and P(y > t).

    Args:
        y_true: labels `(n,)`.
        quantiles: predicted quantiles `(n, Q)`, column j at level
            `quantile_levels[j]`.
        quantile_levels: the Q levels, each in (0, 1).
        exceedance: predicted P(y > t) `(n, T)`, or None.
        thresholds: the T thresholds t.
        bins: equal-width probability bins of the reliability table.

    Returns:
        dict: `quantile_coverage`, per level the share of labels at or below
        the predicted quantile (a calibrated q-quantile covers q);
        `interval` (the lowest and highest level, the share of labels inside
        `[q_low, q_high]`, and the nominal share `high - low`); and per
        threshold in `exceedance` the mean predicted P(y > t) against the
        observed share, the Brier score against the Brier score of the
        observed share as a constant (the base rate: a useful P beats it),
        and a reliability table (per bin: rows, mean predicted, observed).
    """
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    q = np.asarray(quantiles, dtype=np.float64).reshape(y.size, -1)
    levels = [float(v) for v in quantile_levels]
    if q.shape[1] != len(levels):
        raise ValueError(f"`quantiles` has {q.shape[1]} columns for {len(levels)} levels")
    report: dict[str, Any] = {
        "quantile_coverage": {
            f"{level:g}": float(np.mean(y <= q[:, j])) for j, level in enumerate(levels)
        }
    }
    if len(levels) >= 2:
        lo, hi = int(np.argmin(levels)), int(np.argmax(levels))
        report["interval"] = {
            "low": levels[lo],
            "high": levels[hi],
            "nominal": levels[hi] - levels[lo],
            "coverage": float(np.mean((y >= q[:, lo]) & (y <= q[:, hi]))),
        }
    report["exceedance"] = {}
    if exceedance is not None:
        e = np.asarray(exceedance, dtype=np.float64).reshape(y.size, -1)
        edges = np.linspace(0.0, 1.0, bins + 1)
        for j, t in enumerate(thresholds):
            p, hit = e[:, j], (y > float(t)).astype(np.float64)
            base = float(hit.mean())
            which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
            table = [
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "rows": int(np.sum(which == b)),
                    "mean_predicted": float(p[which == b].mean()),
                    "observed": float(hit[which == b].mean()),
                }
                for b in range(bins)
                if np.any(which == b)
            ]
            report["exceedance"][f"{float(t):g}"] = {
                "mean_predicted": float(p.mean()),
                "observed": base,
                "brier": float(np.mean((p - hit) ** 2)),
                "brier_base_rate": float(np.mean((base - hit) ** 2)),
                "reliability": table,
            }
    return report
