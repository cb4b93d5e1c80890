"""Residual quantization of a continuous target (paper section 3.2, Algorithm 1).

A :class:`ResidualQuantizer` turns each target value ``y`` into ``L`` ordered
codes: level 1 clusters the labels, level ``l`` clusters the residuals left by
levels ``1..l-1`` (Eq. 1-4), and ``y ~ sum_l c[l, code_l]`` (Eq. 5).

The values are one-dimensional, and this module uses that:

* the labels are sorted once and compressed to distinct values with their
  (weighted) counts, and prefix sums over them give the cost of any contiguous
  cluster in O(1) (k-means) or O(log n) (k-medians);
* in 1-D the optimal clusters are contiguous runs of the sorted values, so the
  default initialisation is an exact dynamic programme over cluster boundaries.
  It is exact (the global optimum) when a level has at most ``num_candidates``
  distinct values; above that the boundaries are restricted to a candidate grid
  (weighted quantiles, an even grid over the value range, and a geometric grid
  towards the tail) and Lloyd iterations on the full data refine the result;
* a Lloyd iteration is a ``searchsorted`` of the ``K - 1`` decision boundaries
  into the sorted values plus prefix-sum look-ups: O(K log n), not O(n K).

Decision rule. Level ``l`` stores its sorted centroids ``c`` and the decision
boundaries ``b[k] = c[k] + (c[k+1] - c[k]) / 2``. A residual ``r`` gets code
``k = #{j : b[j] < r}``: the nearest centroid, and on an exact midpoint the
lower one. The numpy encoder and the in-graph encoder
(:class:`rq_keras.layers.ResidualCodeEncoder`) apply the same rule to the same
float64 boundaries, so their codes are bit-identical.

Vocabulary (ARCHITECTURE.md section 2): token 0 is ``<start>``; level ``l``'s
code ``k`` is token ``1 + sum(K[:l]) + k`` (levels are 0-based in the API).

Zero code (optional, ``zero_threshold``; the authors' released code uses
5e-3). Once a residual is smaller than the threshold in absolute value, the
level and every later level get the code ``-1``, which stands for the value 0
and is the token ``<zero>``. A label below the threshold (a zero of a
zero-inflated target) is ``<zero>`` at every level, so level 1 says "zero or
not" outright. Rows coded ``<zero>`` at a level are left out of that level's
K-means, which spends the centroids on the non-zero residuals. With the zero
code the vocabulary is ``<start>`` = 0, ``<zero>`` = 1, and level ``l``'s code
``k`` is token ``2 + sum(K[:l]) + k``; without it, the layout above.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from rq_keras.atomic import write_json

# The token layout lives in a leaf module; its names stay importable from here.
from rq_keras.tokens import (  # noqa: F401
    START_TOKEN,
    ZERO_CODE,
    ZERO_TOKEN,
    decision_boundaries,
    special_tokens,
    token_offsets_for,
)

__all__ = ["ResidualQuantizer"]

FORMAT_NAME = "rq_keras.residual_quantizer"
FORMAT_VERSION = 1
# "quantile": the dynamic-quantile discretization the paper compares against
# (Table 5): equal-count bins, no Lloyd iterations (see `_quantile_partition`).
METHODS = ("kmeans", "kmedians", "quantile")
INITS = ("optimal", "kmeans++")

# How many bad rows an error message lists.
_MAX_LISTED = 5


def _first_rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    listed = ", ".join(str(int(i)) for i in rows[:_MAX_LISTED])
    more = ", ..." if rows.size > _MAX_LISTED else ""
    return f"{rows.size} row(s), first row indices (0-based): [{listed}{more}]"


def as_label_array(values: Any, name: str = "`y`") -> np.ndarray:
    """Converts labels to a finite 1-D float64 array or raises a clear error.

    Args:
        values: array-like of shape `(n,)` or `(n, 1)`.
        name: how error messages name the values.

    Returns:
        float64 array of shape `(n,)`.

    Raises:
        ValueError: empty input, wrong shape, non-numeric, NaN or infinite
            entries; the message counts the bad rows and lists the first ones.
    """
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,) or (n, 1), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: at least one value is needed")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        out = np.empty(arr.shape, dtype=np.float64)
        bad = np.zeros(arr.shape, dtype=bool)
        for i, v in enumerate(arr.tolist()):
            try:
                if isinstance(v, (bool, np.bool_)) or v is None:
                    raise TypeError
                out[i] = float(v)
            except (TypeError, ValueError):
                bad[i] = True
        if bad.any():
            examples = [repr(arr[i]) for i in np.flatnonzero(bad)[:_MAX_LISTED]]
            raise ValueError(
                f"{name} has non-numeric values: {_first_rows(bad)}, e.g. {', '.join(examples)}"
            )
        arr = out
    arr = arr.astype(np.float64, copy=False)
    nan = np.isnan(arr)
    if nan.any():
        raise ValueError(f"{name} has NaN values: {_first_rows(nan)}")
    inf = np.isinf(arr)
    if inf.any():
        raise ValueError(f"{name} has infinite values: {_first_rows(inf)}")
    return arr


def _as_weights(sample_weight: Any, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n,):
        raise ValueError(f"`sample_weight` must have shape ({n},), got {w.shape}")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        raise ValueError(f"`sample_weight` must be finite and >= 0: {_first_rows(bad)}")
    if not w.sum() > 0:
        raise ValueError("`sample_weight` sums to 0: no value carries weight")
    return w


# --------------------------------------------------------------------------
# 1-D clustering on compressed sorted data
# --------------------------------------------------------------------------


def _prefix_sum(x: np.ndarray) -> np.ndarray:
    """[0, x0, x0 + x1, ...], shape `(n + 1,)`, without an extra copy."""
    out = np.empty(x.size + 1, dtype=np.float64)
    out[0] = 0.0
    np.cumsum(x, out=out[1:])
    return out


class _Sorted1D:
    """Sorted distinct values with weights and prefix sums over them.

    The first and second moments are taken about the weighted mean (`shift`),
    which keeps the prefix sums small and the cost differences accurate.
    Values near the float64 limits overflow these sums; `finite` says whether
    every cost the clustering computes stays finite.
    """

    def __init__(self, xs: np.ndarray, ws: np.ndarray):
        self.xs = xs
        self.ws = ws
        self.n = xs.size
        with np.errstate(over="ignore", invalid="ignore"):
            self.cw = _prefix_sum(ws)
            self.shift = float(np.dot(xs, ws) / self.cw[-1])
            moment = xs - self.shift
            moment *= ws
            self.c1 = _prefix_sum(moment)
            moment *= xs - self.shift
            self.c2 = _prefix_sum(moment)
            # A run's s1 * s1 / w is at most its w * (sum of squares), so a
            # finite total weight * total square keeps every cost finite.
            bound = self.cw[-1] * self.c2[-1]
        self.finite = bool(np.isfinite(bound) and np.isfinite(self.c1).all())

    @classmethod
    def from_sorted(cls, values: np.ndarray, weights: np.ndarray | None) -> _Sorted1D:
        """Compresses sorted values (with optional weights) to distinct values."""
        repeated = values[1:] == values[:-1]
        if not repeated.any():  # continuous data: nothing to merge
            ws = np.ones(values.size) if weights is None else weights
        else:
            start = np.flatnonzero(np.concatenate([[True], ~repeated]))
            if weights is None:
                ws = np.diff(np.append(start, values.size)).astype(np.float64)
            else:
                ws = np.add.reduceat(weights, start)
            values = values[start]
        if weights is not None and not np.all(ws > 0):
            keep = ws > 0
            values, ws = values[keep], ws[keep]
        return cls(values, ws)

    # Cluster statistics for runs [a, b) of the distinct values. ------------
    def weight(self, a, b):
        return self.cw[b] - self.cw[a]

    def mean(self, a, b):
        m = self.shift + (self.c1[b] - self.c1[a]) / self.weight(a, b)
        # Rounding in the prefix sums must not move a mean outside its run,
        # which keeps the centroids of disjoint runs strictly increasing.
        return np.clip(m, self.xs[a], self.xs[np.asarray(b) - 1])

    def median_index(self, a, b):
        half = self.cw[a] + 0.5 * self.weight(a, b)
        # First index i in [a, b) whose cumulative weight cw[i + 1] reaches half.
        idx = np.searchsorted(self.cw, half, side="left") - 1
        return np.clip(idx, a, np.asarray(b) - 1)

    def cost(self, a, b, method: str):
        """Within-cluster cost of runs [a, b): squared (kmeans, quantile) or
        absolute (kmedians)."""
        w = self.weight(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            if method in ("kmeans", "quantile"):
                s1 = self.c1[b] - self.c1[a]
                out = (self.c2[b] - self.c2[a]) - np.where(w > 0, s1 * s1 / w, 0.0)
                return np.maximum(out, 0.0)
            t = self.median_index(a, b)
            med = self.xs[t] - self.shift
            upper = (self.c1[b] - self.c1[t + 1]) - med * (self.cw[b] - self.cw[t + 1])
            lower = med * (self.cw[t + 1] - self.cw[a]) - (self.c1[t + 1] - self.c1[a])
            return np.maximum(upper + lower, 0.0)

    def centre(self, a, b, method: str):
        if method in ("kmeans", "quantile"):
            return self.mean(a, b)
        return self.xs[self.median_index(a, b)]

    def cuts_for(self, centroids: np.ndarray) -> np.ndarray:
        """Run boundaries [0, ..., n] of the partition the decision rule makes."""
        inner = np.searchsorted(self.xs, decision_boundaries(centroids), side="right")
        return np.concatenate([[0], inner, [self.n]])


def _candidate_cuts(data: _Sorted1D, num_candidates: int) -> np.ndarray:
    """Positions in [0, n] where the dynamic programme may place boundaries."""
    n = data.n
    if n <= num_candidates:
        return np.arange(n + 1)
    per_grid = max(num_candidates // 3, 2)
    total = data.cw[-1]
    by_weight = np.searchsorted(data.cw, np.linspace(0.0, total, per_grid + 1), side="left")
    lo, hi = data.xs[0], data.xs[-1]
    even = np.linspace(lo, hi, per_grid + 1)
    geometric = lo + (hi - lo) * np.geomspace(1e-6, 1.0, per_grid)
    by_value = np.searchsorted(data.xs, np.concatenate([even, geometric]), side="left")
    cuts = np.unique(np.concatenate([[0, n], by_weight, by_value]))
    return cuts[(cuts >= 0) & (cuts <= n)]


def _optimal_partition(data: _Sorted1D, k: int, method: str, num_candidates: int) -> np.ndarray:
    """Minimum-cost split into k runs with boundaries on the candidate grid.

    Returns:
        run boundaries `(k + 1,)`: 0, the k - 1 cut positions, n.
    """
    cuts = _candidate_cuts(data, max(num_candidates, 4 * k))
    m = cuts.size
    cost = np.full((m, m), np.inf)
    ia, ib = np.nonzero(cuts[:, None] < cuts[None, :])
    cost[ia, ib] = data.cost(cuts[ia], cuts[ib], method)
    best = cost[0].copy()  # best[j]: cost of one cluster covering runs [0, cuts[j])
    back = np.zeros((k, m), dtype=np.int64)
    for j in range(1, k):
        total = best[:, None] + cost
        back[j] = np.argmin(total, axis=0)
        best = total[back[j], np.arange(m)]
    bounds = [m - 1]
    for j in range(k - 1, 0, -1):
        bounds.append(back[j, bounds[-1]])
    bounds.append(0)
    return cuts[np.array(bounds[::-1])]


def _quantile_partition(data: _Sorted1D, k: int) -> np.ndarray:
    """Dynamic quantiles: k runs of equal weight, rebalanced after each cut.

    Each cut closes a run at the first distinct value where the run's weight
    reaches an equal share of the weight that is left (`left / bins left`),
    so a heavy tie (the zeros of a zero-inflated label, one distinct value)
    fills its run alone and the remaining bins share the rest equally, and
    no run is empty. Fewer than k runs only when the values run out.

    Returns:
        run boundaries `(runs + 1,)`: 0, the cut positions, n.
    """
    cw, n = data.cw, data.n
    cuts, start = [0], 0
    for bins_left in range(k, 1, -1):
        target = cw[start] + (cw[n] - cw[start]) / bins_left
        end = max(int(np.searchsorted(cw, target, side="left")), start + 1)
        if end >= n:
            break
        cuts.append(end)
        start = end
    cuts.append(n)
    return np.asarray(cuts)


def _kmeanspp_partition(data: _Sorted1D, k: int, rng: np.random.Generator) -> np.ndarray:
    """Weighted k-means++ (D^2 sampling) on the distinct values, as a partition.

    Every sampled centre is a distinct data value, so each run is non-empty.
    """
    xs, ws = data.xs, data.ws
    centres = [xs[rng.choice(data.n, p=ws / data.cw[-1])]]
    d2 = (xs - centres[0]) ** 2
    for _ in range(1, k):
        p = ws * d2
        centres.append(xs[rng.choice(data.n, p=p / p.sum())])
        d2 = np.minimum(d2, (xs - centres[-1]) ** 2)
    return data.cuts_for(np.sort(np.asarray(centres)))


def _lloyd(data: _Sorted1D, cuts: np.ndarray, method: str, max_iter: int):
    """Lloyd iterations from a partition into non-empty runs, O(K log n) each.

    Stops when the partition is stable, after `max_iter` updates, or before
    an update that would empty a cluster (possible in 1-D), so every centroid
    returned is the centre of a non-empty run.

    Returns:
        (centroids, number of partition updates).
    """
    c = data.centre(cuts[:-1], cuts[1:], method)
    for iterations in range(max_iter):
        new_cuts = data.cuts_for(c)
        if np.array_equal(new_cuts, cuts) or np.any(new_cuts[1:] <= new_cuts[:-1]):
            return c, iterations
        cuts = new_cuts
        c = data.centre(cuts[:-1], cuts[1:], method)
    return c, max_iter


# --------------------------------------------------------------------------
# The quantizer
# --------------------------------------------------------------------------


def _per_level(value, num_levels: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != num_levels:
            raise ValueError(f"`{name}` has {len(value)} entries but `num_levels` is {num_levels}")
        return list(value)
    return [value] * num_levels


class ResidualQuantizer:
    """RQ K-means codebook: L ordered codes per continuous value (Algorithm 1).

    Args:
        num_levels: L, the number of levels (codes per value), >= 1.
        codebook_size: K, centroids per level: an int, or one int per level.
            A level whose residuals have fewer distinct values than K gets one
            centroid per distinct value (exact at that level) and a
            `UserWarning`; `fitted_codebook_sizes` reports what was fitted and
            the vocabulary follows the fitted sizes.
        method: `"kmeans"` (squared error, centroid = weighted mean),
            `"kmedians"` (absolute error, centroid = weighted median; the
            paper's online system uses it at level 1) or `"quantile"` (the
            dynamic-quantile discretization of the paper's Table 5: K bins of
            equal count, rebalanced after a heavy tie, centroid = the bin's
            mean, no Lloyd iterations); one string or one per level. Codes
            are the nearest centroid for every method (the codebook's one
            decision rule), so a quantile bin's edge values can take the
            neighbouring bin's code; that only lowers the reconstruction
            error.
        clip_min: labels below are clipped to it before fitting and encoding.
        clip_max: labels above are clipped to it before fitting and encoding.
        init: `"optimal"` (default): dynamic programme over cluster boundaries,
            the global optimum when a level has at most `num_candidates`
            distinct values; `"kmeans++"`: seeded weighted k-means++ start.
            Both are refined by Lloyd iterations on the full data.
        seed: seed of the `"kmeans++"` initialisation.
        max_iter: maximum Lloyd iterations per level.
        num_candidates: size of the boundary grid of the `"optimal"` init.
        zero_threshold: None (default, the paper) or a positive number (the
            authors' released code: 5e-3): a residual with absolute value
            below it gets the zero code (-1, value 0, token `<zero>`) at its
            level and every later one, and is left out of those levels'
            K-means. A level left with no non-zero residual gets the single
            centroid 0 and a `UserWarning`.

    Attributes (after `fit` or `load`):
        centroids: list of L sorted float64 arrays, level l of shape `(K_l,)`.
        fitted_codebook_sizes: list of the K_l actually fitted.
        vocabulary_size: `<start>`, `<zero>` if `zero_threshold` is set, and
            every level's codes: `1 + sum(K_l)` or `2 + sum(K_l)`.
        fit_info: dict with sizes, per-level cost and iterations, seconds.
    """

    def __init__(
        self,
        num_levels: int = 3,
        codebook_size: int | Sequence[int] = 48,
        method: str | Sequence[str] = "kmeans",
        clip_min: float | None = None,
        clip_max: float | None = None,
        init: str = "optimal",
        seed: int = 0,
        max_iter: int = 300,
        num_candidates: int = 1024,
        zero_threshold: float | None = None,
    ):
        if isinstance(num_levels, bool) or not isinstance(num_levels, (int, np.integer)):
            raise TypeError(f"`num_levels` must be an int, got {num_levels!r}")
        if num_levels < 1:
            raise ValueError(f"`num_levels` must be >= 1, got {num_levels}")
        sizes = _per_level(codebook_size, num_levels, "codebook_size")
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
                raise ValueError(f"`codebook_size` must be an int >= 1 per level, got {size!r}")
        methods = _per_level(method, num_levels, "method")
        for m in methods:
            if m not in METHODS:
                raise ValueError(f"`method` must be one of {METHODS}, got {m!r}")
        for name, bound in (("clip_min", clip_min), ("clip_max", clip_max)):
            if bound is not None and not math.isfinite(float(bound)):
                raise ValueError(f"`{name}` must be a finite number or None, got {bound!r}")
        if clip_min is not None and clip_max is not None and clip_min > clip_max:
            raise ValueError(f"`clip_min` ({clip_min}) must be <= `clip_max` ({clip_max})")
        if init not in INITS:
            raise ValueError(f"`init` must be one of {INITS}, got {init!r}")
        if max_iter < 0:
            raise ValueError(f"`max_iter` must be >= 0, got {max_iter}")
        if num_candidates < 2:
            raise ValueError(f"`num_candidates` must be >= 2, got {num_candidates}")
        if zero_threshold is not None:
            if isinstance(zero_threshold, bool) or not isinstance(
                zero_threshold, (int, float, np.integer, np.floating)
            ):
                raise TypeError(
                    f"`zero_threshold` must be a number or None, got {zero_threshold!r}"
                )
            if not (math.isfinite(zero_threshold) and zero_threshold > 0):
                raise ValueError(
                    f"`zero_threshold` must be a finite number > 0 or None, got {zero_threshold!r}"
                )
        self.num_levels = int(num_levels)
        self.codebook_size = [int(s) for s in sizes]
        self.method = list(methods)
        self.clip_min = None if clip_min is None else float(clip_min)
        self.clip_max = None if clip_max is None else float(clip_max)
        self.init = init
        self.seed = int(seed)
        self.max_iter = int(max_iter)
        self.num_candidates = int(num_candidates)
        self.zero_threshold = None if zero_threshold is None else float(zero_threshold)
        self.centroids: list[np.ndarray] | None = None
        self.fit_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """Every constructor argument, JSON-serializable."""
        return {
            "num_levels": self.num_levels,
            "codebook_size": list(self.codebook_size),
            "method": list(self.method),
            "clip_min": self.clip_min,
            "clip_max": self.clip_max,
            "init": self.init,
            "seed": self.seed,
            "max_iter": self.max_iter,
            "num_candidates": self.num_candidates,
            "zero_threshold": self.zero_threshold,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ResidualQuantizer:
        return cls(**config)

    # --------------------------------------------------------------------- fit
    def clip(self, y: np.ndarray) -> np.ndarray:
        """Labels clipped to `[clip_min, clip_max]`, as `fit` and `encode` see them."""
        if self.clip_min is None and self.clip_max is None:
            return y
        return np.clip(y, self.clip_min, self.clip_max)

    def fit(self, y: Any, sample_weight: Any = None) -> ResidualQuantizer:
        """Fits the L codebooks on labels `y` (Algorithm 1).

        Args:
            y: labels, shape `(n,)`; any finite float, negatives included.
            sample_weight: optional non-negative weights, shape `(n,)`.

        Returns:
            self.

        Raises:
            ValueError: bad labels or weights, or labels so large (near the
                float64 limits) that their squared deviations overflow; the
                message names the label range. Nothing is fitted then.
        """
        start = time.perf_counter()
        y = self.clip(as_label_array(y))
        w = _as_weights(sample_weight, y.size)
        if w is None:
            values, weights = np.sort(y), None
        else:
            order = np.argsort(y, kind="stable")
            values, weights = y[order], w[order]
        data = _Sorted1D.from_sorted(values, weights)
        label_range = (float(values[0]), float(values[-1]))
        rng = np.random.default_rng(self.seed)
        centroids, levels = [], []
        zero_weight = 0.0  # weight of the rows coded zero so far (they stay zero)
        for level in range(self.num_levels):
            k = self.codebook_size[level]
            method = self.method[level]
            if self.zero_threshold is not None and data is not None:
                keep = np.abs(data.xs) >= self.zero_threshold
                if not keep.all():
                    zero_weight += float(data.ws[~keep].sum())
                    data = _Sorted1D(data.xs[keep], data.ws[keep]) if keep.any() else None
            if data is None:
                warnings.warn(
                    f"level {level}: every residual is below zero_threshold="
                    f"{self.zero_threshold}; the level gets the single centroid 0",
                    UserWarning,
                    stacklevel=2,
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
                        stacklevel=2,
                    )
                c, iterations = data.xs.copy(), 0
            elif method == "quantile":
                bins = _quantile_partition(data, k)
                c, iterations = data.centre(bins[:-1], bins[1:], method), 0
            else:
                if self.init == "optimal":
                    start_cuts = _optimal_partition(data, k, method, self.num_candidates)
                else:
                    start_cuts = _kmeanspp_partition(data, k, rng)
                c, iterations = _lloyd(data, start_cuts, method, self.max_iter)
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
            if level + 1 < self.num_levels:
                codes = np.repeat(np.arange(c.size), np.diff(cuts))
                residual = data.xs - c[codes]
                order = np.argsort(residual, kind="stable")  # K sorted runs: a merge
                data = _Sorted1D.from_sorted(residual[order], data.ws[order])
        self.centroids = centroids
        mean = float(np.average(y, weights=w))
        self.fit_info = {
            "n": int(y.size),
            "total_weight": float(y.size if w is None else w.sum()),
            # The (clipped, weighted) labels' std: the unit of L_reg with
            # ModelConfig.label_scale="std".
            "label_std": math.sqrt(float(np.average(np.square(y - mean), weights=w))),
            "levels": levels,
            "fit_seconds": time.perf_counter() - start,
        }
        return self

    @property
    def label_std(self) -> float:
        """The std of the labels the codebook was fitted on (clipped,
        weighted); 1.0 when they are all equal.

        Raises:
            RuntimeError: not fitted.
            ValueError: a codebook saved by an rq_keras without the field.
        """
        self.require_fitted()
        value = self.fit_info.get("label_std")
        if value is None:
            raise ValueError(
                "the codebook has no label_std (saved by an older rq_keras): fit it again"
            )
        value = float(value)
        return value if value > 0 else 1.0

    # ------------------------------------------------------------ vocabulary
    def require_fitted(self) -> list[np.ndarray]:
        if self.centroids is None:
            raise RuntimeError("the ResidualQuantizer is not fitted: call fit() or load() first")
        return self.centroids

    @property
    def fitted_codebook_sizes(self) -> list[int]:
        return [int(c.size) for c in self.require_fitted()]

    @property
    def zero_token(self) -> bool:
        """True when the vocabulary has the `<zero>` token (`zero_threshold`)."""
        return self.zero_threshold is not None

    @property
    def token_offsets(self) -> np.ndarray:
        """Global token id of code 0 of each level, shape `(L,)`."""
        return token_offsets_for(self.fitted_codebook_sizes, self.zero_token)

    @property
    def vocabulary_size(self) -> int:
        return special_tokens(self.zero_token) + sum(self.fitted_codebook_sizes)

    @property
    def boundaries(self) -> list[np.ndarray]:
        """Decision boundaries per level, level l of shape `(K_l - 1,)`."""
        return [decision_boundaries(c) for c in self.require_fitted()]

    def token_id(self, level: int, code: int) -> int:
        """Global token id of `code` at 0-based `level` (-1 is `<zero>`)."""
        sizes = self.fitted_codebook_sizes
        if not 0 <= level < len(sizes):
            raise ValueError(f"`level` must be in [0, {len(sizes)}), got {level}")
        if code == ZERO_CODE and self.zero_token:
            return ZERO_TOKEN
        low = ZERO_CODE if self.zero_token else 0
        if not low <= code < sizes[level]:
            raise ValueError(
                f"`code` must be in [{low}, {sizes[level]}) at level {level}, got {code}"
            )
        return int(self.token_offsets[level] + code)

    def level_and_code(self, token: int) -> tuple[int, int]:
        """Inverse of `token_id` for a level's code token.

        The special tokens (`<start>`, and `<zero>`, which every level shares)
        have no level and are rejected.
        """
        first = special_tokens(self.zero_token)
        if not first <= token < self.vocabulary_size:
            named = "0 is <start>, 1 is <zero>" if self.zero_token else "0 is <start>"
            raise ValueError(
                f"`token` must be in [{first}, {self.vocabulary_size}) ({named}), got {token}"
            )
        offsets = self.token_offsets
        level = int(np.searchsorted(offsets, token, side="right") - 1)
        return level, int(token - offsets[level])

    def codes_to_tokens(self, codes: Any) -> np.ndarray:
        """Codes `(n, L)` -> global token ids `(n, L)` (code -1 -> `<zero>`)."""
        codes = self._check_codes(codes)
        tokens = codes + self.token_offsets[None, :]
        if self.zero_token:
            tokens[codes == ZERO_CODE] = ZERO_TOKEN
        return tokens

    def tokens_to_codes(self, tokens: Any) -> np.ndarray:
        """Global token ids `(n, L)` (level l in column l) -> codes `(n, L)`."""
        tokens = np.asarray(tokens)
        if tokens.dtype.kind not in "iu":
            raise ValueError(f"`tokens` must be integers, got dtype {tokens.dtype}")
        tokens = tokens.astype(np.int64)
        if tokens.ndim != 2 or tokens.shape[1] != self.num_levels:
            raise ValueError(f"`tokens` must have shape (n, {self.num_levels}), got {tokens.shape}")
        codes = tokens - self.token_offsets[None, :]
        if self.zero_token:
            # <zero> would otherwise land below the level's range; marking it as
            # the zero code keeps the range check for every other token.
            codes[tokens == ZERO_TOKEN] = ZERO_CODE
        return self._check_codes(codes, what="tokens")

    def _check_codes(self, codes: Any, what: str = "codes") -> np.ndarray:
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise ValueError(f"`{what}` must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64)
        sizes = np.asarray(self.fitted_codebook_sizes)
        if codes.ndim != 2 or codes.shape[1] != sizes.size:
            raise ValueError(f"`{what}` must have shape (n, {sizes.size}), got {codes.shape}")
        low = ZERO_CODE if self.zero_token else 0
        bad = (codes < low) | (codes >= sizes[None, :])
        if bad.any():
            raise ValueError(f"`{what}` out of range: {_first_rows(bad.any(axis=1))}")
        return codes

    # ------------------------------------------------------ encode / decode
    def encode(self, y: Any) -> np.ndarray:
        """Codes of labels `y`: int64 array `(n, L)` (Eq. 2-4)."""
        return self._encode(y)[0]

    def quantized(self, y: Any) -> np.ndarray:
        """Per-level quantized values q_l of labels `y`: float64 `(n, L)`."""
        return self._encode(y)[1]

    def _encode(self, y: Any) -> tuple[np.ndarray, np.ndarray]:
        centroids = self.require_fitted()
        r = self.clip(as_label_array(y))
        codes = np.empty((r.size, self.num_levels), dtype=np.int64)
        values = np.empty((r.size, self.num_levels), dtype=np.float64)
        for level, c in enumerate(centroids):
            code = np.searchsorted(decision_boundaries(c), r, side="left")
            value = c[code]
            if self.zero_token:
                zero = np.abs(r) < self.zero_threshold
                code[zero] = ZERO_CODE
                value[zero] = 0.0
            codes[:, level] = code
            values[:, level] = value
            r = r - value
        return codes, values

    def decode(self, codes: Any) -> np.ndarray:
        """Reconstructed values sum_l c[l, code_l]: float64 `(n,)` (Eq. 5).

        The zero code (-1) contributes 0.
        """
        codes = self._check_codes(codes)
        out = np.zeros(codes.shape[0], dtype=np.float64)
        for level, c in enumerate(self.require_fitted()):
            code = codes[:, level]
            out += np.where(code == ZERO_CODE, 0.0, c[np.maximum(code, 0)])
        return out

    # ------------------------------------------------------------ save / load
    def to_json_dict(self) -> dict[str, Any]:
        centroids = [c.tolist() for c in self.require_fitted()]
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "config": self.get_config(),
            "centroids": centroids,
            "centroids_sha256": _digest(centroids),
            "fit_info": self.fit_info,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Writes the codebook as JSON (atomically: temp file then rename).

        Raises:
            ValueError: a centroid is NaN or infinite; nothing is written and
                an existing file at `path` is left as it was.
        """
        path = os.fspath(path)
        for level, c in enumerate(self.require_fitted()):
            if not np.all(np.isfinite(c)):
                raise ValueError(
                    f"level {level}: centroids must be finite, got {c.tolist()}; "
                    f"nothing written to {path}"
                )
        write_json(path, self.to_json_dict(), indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ResidualQuantizer:
        """Reads a codebook written by `save`, validating every field.

        Raises:
            ValueError: the file is not valid JSON, not an rq_keras codebook,
                of an unknown format version, or its centroids are malformed
                or do not match their checksum. The message names the file.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a valid JSON codebook ({e})") from e
        try:
            return cls.from_json_dict(doc)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path}: {e}") from e

    @classmethod
    def from_json_dict(cls, doc: Any) -> ResidualQuantizer:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise ValueError(f"not an rq_keras codebook (expected format {FORMAT_NAME!r})")
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"unsupported codebook format_version {version!r} (this rq_keras reads "
                f"{FORMAT_VERSION})"
            )
        for key in ("config", "centroids", "centroids_sha256"):
            if key not in doc:
                raise ValueError(f"codebook is missing the field {key!r}")
        if not isinstance(doc["config"], dict):
            raise ValueError("codebook field 'config' must be an object")
        quantizer = cls.from_config(doc["config"])
        raw = doc["centroids"]
        if not isinstance(raw, list) or len(raw) != quantizer.num_levels:
            raise ValueError(
                f"codebook field 'centroids' must be a list of {quantizer.num_levels} levels"
            )
        if _digest(raw) != doc["centroids_sha256"]:
            raise ValueError("centroids do not match centroids_sha256: the file is corrupted")
        centroids = []
        for level, values in enumerate(raw):
            if not isinstance(values, list) or not values:
                raise ValueError(f"level {level}: centroids must be a non-empty list")
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
                raise ValueError(f"level {level}: centroids must be numbers")
            c = np.asarray(values, dtype=np.float64)
            if not np.all(np.isfinite(c)):
                raise ValueError(f"level {level}: centroids must be finite")
            if np.any(np.diff(c) <= 0):
                raise ValueError(f"level {level}: centroids must be strictly increasing")
            if c.size > quantizer.codebook_size[level]:
                raise ValueError(
                    f"level {level}: {c.size} centroids but codebook_size is "
                    f"{quantizer.codebook_size[level]}"
                )
            centroids.append(c)
        quantizer.centroids = centroids
        quantizer.fit_info = doc.get("fit_info") or {}
        return quantizer

    # ---------------------------------------------------------------- report
    def report(self, y: Any) -> dict[str, Any]:
        """Reconstruction quality of the codebook on labels `y`.

        Returns:
            dict with `n`, `reconstruction_mae` (mean |y - y~| after all L
            levels, against the unclipped labels), `max_abs_error`,
            `relative_error` (MAE / mean |y|), `clipped_rows`, and `levels`: per
            level the fitted size, `codes_used` (distinct codes taken by `y`,
            the zero code not counted), `zero_rows` (rows with the zero code
            there; 0 without `zero_threshold`), and the MAE and max error of
            the reconstruction up to that level.
        """
        y = as_label_array(y)
        codes, values = self._encode(y)
        partial = np.cumsum(values, axis=1)
        err = np.abs(y[:, None] - partial)
        mean_abs_y = float(np.mean(np.abs(y)))
        clipped = int(np.count_nonzero(self.clip(y) != y))
        levels = []
        for level, c in enumerate(self.require_fitted()):
            levels.append(
                {
                    "level": level,
                    "method": self.method[level],
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
            "num_levels": self.num_levels,
            "vocabulary_size": self.vocabulary_size,
            "reconstruction_mae": mae,
            "max_abs_error": levels[-1]["max_abs_error"],
            "relative_error": mae / mean_abs_y if mean_abs_y > 0 else 0.0,
            "clipped_rows": clipped,
            "levels": levels,
        }

    def plot(self, y: Any, path: str | os.PathLike, report: dict | None = None) -> None:
        """Writes a PNG: label histogram (log axis) with the level-1 centroids,
        and the reconstruction error after each level.

        Args:
            y: the labels the report is about.
            path: where the PNG goes.
            report: `self.report(y)` if the caller has it already (saves an
                encoding pass); computed when None.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        y = as_label_array(y)
        rep = self.report(y) if report is None else report
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
        ax0.hist(y, bins=min(200, max(10, int(np.sqrt(y.size)))), color="#4c72b0")
        ax0.set_yscale("log")
        for c in self.require_fitted()[0]:
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


def _overflow(label_range: tuple[float, float], level: int, what: str) -> None:
    lo, hi = label_range
    raise ValueError(
        f"labels in [{lo!r}, {hi!r}] are too large to fit: at level {level} {what} "
        "overflow float64; rescale the labels or set `clip_min`/`clip_max`"
    )


def _digest(centroids: list) -> str:
    payload = json.dumps(centroids, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()
