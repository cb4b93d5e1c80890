"""Proper scores of a predictive distribution given by its quantiles.

Every head that serves quantiles (RQ-Reg's code tree, ZILN, OptDist) is
scored the same way, from a grid of predicted quantiles:

* :func:`pinball_loss`: the quantile (check) loss at one level.
* :func:`crps_parts`: each row's CRPS split by level, ``(n, M)``; the
  parts sum to :func:`crps_from_quantiles` (for breakdowns by row or band).
* :func:`non_crossing`: a quantile grid made non-decreasing along levels.
* :func:`crps_from_quantiles`: the continuous ranked probability score,
  ``CRPS(F, y) = 2 * integral_0^1 pinball_tau(y, F^-1(tau)) dtau``, the
  integral taken over the predicted levels, each weighted by the share of
  (0, 1) closest to it. On the midpoint grid ``(j - 0.5) / M`` that is the
  midpoint rule; the error shrinks with M (the tails beyond the outermost
  levels count as those levels' quantiles).
* :func:`quantile_calibration`: per level, is the predicted quantile
  calibrated when the label has an atom (at zero)? A tau-quantile q of a
  distribution with atoms satisfies ``P(y < q) <= tau <= P(y <= q)``; the
  observed shares over the rows bracket tau within ``tolerance``.
* :func:`probability_scores`: the Brier score and the ROC AUC of a predicted
  P(y > 0), beside the Brier score of the observed share as a constant.

numpy only; the inputs are validated (shapes, finite values) and a bad one
raises a `ValueError` that names it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "crps_from_quantiles",
    "crps_parts",
    "level_weights",
    "midpoint_levels",
    "non_crossing",
    "pinball_loss",
    "probability_scores",
    "quantile_calibration",
]


def _labels(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    if y.size == 0:
        raise ValueError("`y_true` is empty")
    if not np.all(np.isfinite(y)):
        raise ValueError("`y_true` has NaN or infinite values")
    return y


def _levels(levels: Any) -> np.ndarray:
    tau = np.asarray(levels, dtype=np.float64).reshape(-1)
    if tau.size == 0 or not np.all((tau > 0) & (tau < 1)):
        raise ValueError(f"quantile levels must be in (0, 1), got {tau.tolist()}")
    if np.any(np.diff(tau) <= 0):
        raise ValueError(f"quantile levels must be increasing, got {tau.tolist()}")
    return tau


def _quantiles(quantiles: Any, rows: int, columns: int) -> np.ndarray:
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim == 1 and columns == 1:
        q = q.reshape(-1, 1)
    if q.shape != (rows, columns):
        raise ValueError(
            f"`quantiles` must have shape ({rows}, {columns}) (rows, levels), got {q.shape}"
        )
    if not np.all(np.isfinite(q)):
        raise ValueError("`quantiles` has NaN or infinite values")
    return q


def midpoint_levels(count: int) -> tuple[float, ...]:
    """The levels ``(j - 0.5) / count``, j = 1..count: the grid on which
    :func:`crps_from_quantiles` is the midpoint rule."""
    if int(count) != count or count < 1:
        raise ValueError(f"`count` must be a positive integer, got {count!r}")
    return tuple(float((j + 0.5) / count) for j in range(int(count)))


def level_weights(levels: Any) -> np.ndarray:
    """The share of (0, 1) closest to each level (they sum to 1)."""
    tau = _levels(levels)
    edges = np.concatenate([[0.0], (tau[1:] + tau[:-1]) / 2, [1.0]])
    return np.diff(edges)


def _pinball(y: np.ndarray, q: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """The quantile loss of each row `(n,)` at each level: `(n, M)`."""
    diff = y[:, None] - q
    return np.maximum(tau * diff, (tau - 1.0) * diff)


def non_crossing(quantiles: Any) -> np.ndarray:
    """`quantiles` `(n, M)` with each row made non-decreasing along the levels
    (its running maximum), so a crossing curve scores as a distribution."""
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 2:
        raise ValueError(f"`quantiles` must be 2-D (rows, levels), got shape {q.shape}")
    return np.maximum.accumulate(q, axis=1)


def pinball_loss(y_true: Any, quantile: Any, level: float) -> float:
    """Mean quantile loss ``max(tau (y - q), (tau - 1) (y - q))`` at level tau."""
    y = _labels(y_true)
    tau = _levels([level])
    q = _quantiles(quantile, y.size, 1)
    return float(np.mean(_pinball(y, q, tau)))


def crps_parts(y_true: Any, quantiles: Any, levels: Any) -> np.ndarray:
    """Each row's CRPS split by level, `(n, M)`: ``2 w_j pinball_j(y_i)``,
    `w_j` the level's share of (0, 1). The mean over rows of the row sums is
    :func:`crps_from_quantiles`; sums over a band of rows or levels (divided
    by n) are that band's share of it."""
    y = _labels(y_true)
    tau = _levels(levels)
    q = _quantiles(quantiles, y.size, tau.size)
    return 2.0 * _pinball(y, q, tau) * level_weights(tau)[None, :]


def crps_from_quantiles(y_true: Any, quantiles: Any, levels: Any) -> float:
    """Mean CRPS of the distributions given by `quantiles` `(n, M)` at `levels` (M,).

    Lower is better; for a point forecast (every quantile equal) it is the
    absolute error, so it reads in the label's units beside MAE.
    """
    return float(np.mean(np.sum(crps_parts(y_true, quantiles, levels), axis=1)))


def quantile_calibration(
    y_true: Any, quantiles: Any, levels: Any, tolerance: float = 0.02
) -> dict[str, Any]:
    """Per level: the observed shares `below` = P(y < q) and `at_or_below` =
    P(y <= q), the `gap` by which tau falls outside ``[below, at_or_below]``
    (0 when inside), and `calibrated` (gap <= `tolerance`); `max_gap` and
    `all_calibrated` over the levels."""
    y = _labels(y_true)
    tau = _levels(levels)
    q = _quantiles(quantiles, y.size, tau.size)
    if not 0 <= tolerance < 1:
        raise ValueError(f"`tolerance` must be in [0, 1), got {tolerance}")
    per_level = {}
    for j, level in enumerate(tau):
        below = float(np.mean(y < q[:, j]))
        at_or_below = float(np.mean(y <= q[:, j]))
        gap = float(max(0.0, below - level, level - at_or_below))
        per_level[f"{level:g}"] = {
            "below": below,
            "at_or_below": at_or_below,
            "gap": gap,
            "calibrated": bool(gap <= tolerance),
        }
    gaps = [v["gap"] for v in per_level.values()]
    return {
        "tolerance": float(tolerance),
        "levels": per_level,
        "max_gap": float(max(gaps)),
        "all_calibrated": bool(all(v["calibrated"] for v in per_level.values())),
    }


def _auc(hit: np.ndarray, p: np.ndarray) -> float | None:
    positives = int(hit.sum())
    negatives = hit.size - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.size, dtype=np.float64)
    sorted_p = p[order]
    # Average ranks over ties (1-based).
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], p.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return float((ranks[hit].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def probability_scores(y_true: Any, positive_probability: Any) -> dict[str, float | None]:
    """`brier` of P(y > 0) against 1[y > 0], `brier_base_rate` (the observed
    share as a constant: a useful P beats it), `auc` (ROC AUC, ties counted
    half; None when every label is on one side) and `mean_predicted` against
    `observed`."""
    y = _labels(y_true)
    p = np.asarray(positive_probability, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"`positive_probability` has {p.size} rows for {y.size} labels")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("`positive_probability` must be in [0, 1] (NaN is not)")
    hit = y > 0
    base = float(hit.mean())
    return {
        "brier": float(np.mean((p - hit) ** 2)),
        "brier_base_rate": float(np.mean((base - hit) ** 2)),
        "auc": _auc(hit, p),
        "mean_predicted": float(p.mean()),
        "observed": base,
    }
