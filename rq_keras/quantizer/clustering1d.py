"""Clustering of one-dimensional values on their sorted distinct values, numpy only.

`Sorted1D` holds the sorted distinct values with their weights and prefix
sums, which give any contiguous run's cost and centre. `optimal_partition`
(the dynamic programme over run boundaries) or `kmeanspp_partition` starts
the Lloyd iterations (`lloyd`); `quantile_partition` gives the "quantile"
method's equal-weight bins. `rq_keras.quantizer.residual_fit` fits each level of a
`ResidualQuantizer` with them.
"""

from __future__ import annotations

import numpy as np

from rq_keras.quantizer.tokens import decision_boundaries


def _prefix_sum(x: np.ndarray) -> np.ndarray:
    """[0, x0, x0 + x1, ...], shape `(n + 1,)`, without an extra copy."""
    out = np.empty(x.size + 1, dtype=np.float64)
    out[0] = 0.0
    np.cumsum(x, out=out[1:])
    return out


class Sorted1D:
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
    def from_sorted(cls, values: np.ndarray, weights: np.ndarray | None) -> Sorted1D:
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


def _candidate_cuts(data: Sorted1D, num_candidates: int) -> np.ndarray:
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


def optimal_partition(data: Sorted1D, k: int, method: str, num_candidates: int) -> np.ndarray:
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


def quantile_partition(data: Sorted1D, k: int) -> np.ndarray:
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


def kmeanspp_partition(data: Sorted1D, k: int, rng: np.random.Generator) -> np.ndarray:
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


def lloyd(data: Sorted1D, cuts: np.ndarray, method: str, max_iter: int):
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
