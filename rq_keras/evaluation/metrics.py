"""Evaluation metrics of the paper (section 4.1.3): MAE, XAUC, Norm-Gini, Spearman.

All metrics are exact, numpy only, and O(N log N): each one is a few sorts
plus vectorised passes (1M rows take well under a second per metric; see
``benchmarks/metrics.py``). Inputs are array-likes of shape ``(n,)`` or
``(n, 1)``; both arguments must have the same length and finite values.

Definitions (``y`` the labels, ``p`` the predictions, ``n`` the rows):

* **MAE**: ``mean(|y - p|)``.
* **XAUC** (Eq. 18): ``1 / (n (n - 1)) * sum_{i != j} 1((y_i - y_j)(p_i - p_j) > 0)``
  over ordered pairs. The paper writes ``1(.)`` of a real number; we read it as
  "the product is positive", so a pair tied in the label or in the prediction
  counts as not concordant and still counts in the normaliser. Each unordered
  pair appears twice, so the value is ``concordant pairs / (n (n - 1) / 2)``.
  (The paper says N is "the size of the training set"; it is the number of
  rows being evaluated.) The authors' code (``utils/criterion.py``,
  ``auc_score``) counts the same strict label inversions after a stable sort
  by prediction, so there a prediction tie counts as concordant when the
  earlier row has the larger label; the values agree whenever predictions
  are distinct.
* **Tie-aware XAUC**: over the unordered pairs with distinct labels only, a
  concordant pair counts 1, a prediction tie 1/2, a discordant pair 0; this is
  the probability that a random pair with different labels is ordered right
  (the AUC convention). A constant predictor scores exactly 0.5.
* **Normalized Gini** (ZILN, Wang et al. 2019): the rows are ranked by
  prediction, highest first; the cumulative-gain curve joins ``(0, 0)`` and
  ``(k / n, S_k / S_n)``, ``S_k`` the sum of the labels of the top ``k`` rows.
  ``Gini = 2 * (area under the curve) - 1`` (twice the area between the curve
  and the diagonal), and the normalized Gini is the model's Gini over the Gini
  of the perfect ranking (the labels sorted descending). The area is the exact
  area of the piecewise-linear curve (trapezoids), which gives
  ``Gini = sum_k (n - 1 - 2k) y_(k) / (n S_n)`` (``k`` 0-based), the form used
  here. The ZILN code takes the right Riemann sum instead, which adds ``1 / n``
  to each raw Gini; normalising makes that difference O(1 / n). Ties in the
  prediction: a stable sort on the prediction, descending, so tied rows keep
  their input order (the perfect ranking does not depend on the tie order).
  Meant for non-negative labels.
* **Spearman's rho**: the Pearson correlation of the average ranks (ties get
  the mean of the ranks they span, as ``scipy.stats.rankdata(method="average")``).
* **Norm-Gini (+)** and **Spearman's rho (+)** (Table 1): the same metrics on the
  rows whose label is > 0.
* **Total value** (`value_calibration`): the mean prediction over the mean label
  (`mean_ratio`); for LTV the summed predictions are a budget.

Undefined values are NaN (``evaluate`` reports them as ``None``):

* a single row: XAUC and tie-aware XAUC (no pairs), Gini (the perfect Gini is 0)
  and Spearman (constant ranks); MAE is defined;
* all labels equal: tie-aware XAUC (no pair with distinct labels), Gini (the
  perfect ranking is no better than any other: its Gini is 0) and Spearman;
  Eq. 18 is defined and is 0 (no pair has a positive product);
* labels summing to 0: Gini (no gain curve);
* constant predictions: Spearman (Eq. 18 gives 0, tie-aware XAUC 0.5, Gini is
  defined and follows the input order of the rows);
* no row with a label > 0: the (+) variants.

The code classifier's report (:class:`CodeReport`, in
:mod:`rq_keras.evaluation.code_report`) and the predictive distribution's
(:func:`distribution_report`, in :mod:`rq_keras.evaluation.distribution_metrics`) are
re-exported here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rq_keras.features.labels import as_label_array

__all__ = [
    "evaluate",
    "mae",
    "normalized_gini",
    "normalized_gini_positive",
    "spearman",
    "spearman_positive",
    "trivial_predictors",
    "value_calibration",
    "xauc",
    "xauc_tie_aware",
]


def _validate(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    y = as_label_array(y_true, "`y_true`")
    p = as_label_array(y_pred, "`y_pred`")
    if y.size != p.size:
        raise ValueError(
            f"`y_true` and `y_pred` must have the same length, got {y.size} and {p.size}"
        )
    return y, p


def _run_starts(new_run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs marked by `new_run` (True at each run's first row)."""
    starts = np.flatnonzero(new_run)
    lengths = np.diff(np.append(starts, new_run.size))
    return starts, lengths


def _tied_pairs(new_run: np.ndarray) -> int:
    """Unordered pairs inside the same run, for a sorted array's run marks."""
    _, lengths = _run_starts(new_run)
    return int(np.sum(lengths * (lengths - 1) // 2))


def _strict_inversions(ranks: np.ndarray, num_values: int) -> int:
    """Counts pairs ``i < j`` with ``ranks[i] > ranks[j]``.

    A radix (wavelet-tree) count: from the most significant bit down, the rows
    are kept grouped by the bits already seen, in their original order inside a
    group; a pair is decided at the first bit where its two ranks differ, and
    it is an inversion when the earlier row has a 1 there. Each of the
    ``ceil(log2(num_values))`` levels is a few O(n) numpy passes, and the
    stable 0-then-1 split of every group is done with prefix sums.

    Args:
        ranks: integer array of shape `(n,)` with values in ``[0, num_values)``.
        num_values: an upper bound on ``ranks.max() + 1``.

    Returns:
        The number of strictly inverted pairs.
    """
    n = ranks.size
    if n < 2 or num_values < 2:
        return 0
    cur = ranks.astype(np.int64)
    idx = np.arange(n, dtype=np.int64)
    total = 0
    for b in range(int(num_values - 1).bit_length() - 1, -1, -1):
        prefix = cur >> (b + 1)
        bit = (cur >> b) & 1
        new_group = np.empty(n, dtype=bool)
        new_group[0] = True
        np.not_equal(prefix[1:], prefix[:-1], out=new_group[1:])
        starts, sizes = _run_starts(new_group)
        group_start = np.repeat(starts, sizes)
        ones_excl = np.cumsum(bit) - bit
        ones_before = ones_excl - ones_excl[group_start]
        total += int(ones_before[bit == 0].sum())
        if b == 0:
            break
        zeros_in_group = sizes - np.add.reduceat(bit, starts)
        zeros_before = idx - group_start - ones_before
        new_pos = group_start + np.where(
            bit == 0, zeros_before, np.repeat(zeros_in_group, sizes) + ones_before
        )
        nxt = np.empty_like(cur)
        nxt[new_pos] = cur
        cur = nxt
    return total


def _pair_counts(y: np.ndarray, p: np.ndarray) -> dict[str, int]:
    """Counts the unordered pairs by how their labels and predictions compare.

    Returns:
        dict with `pairs` (all), `label_ties`, `pred_ties`, `both_ties` (tied in
        both), `discordant` (strictly opposite order) and `concordant` (strictly
        same order).
    """
    n = y.size
    order = np.lexsort((y, p))
    ys, ps = y[order], p[order]
    label_values, label_ranks, label_counts = np.unique(ys, return_inverse=True, return_counts=True)
    same_pred = ps[1:] == ps[:-1]
    same_label = ys[1:] == ys[:-1]
    pairs = n * (n - 1) // 2
    label_ties = int(np.sum(label_counts * (label_counts - 1) // 2))
    pred_ties = _tied_pairs(np.r_[True, ~same_pred])
    both_ties = _tied_pairs(np.r_[True, ~(same_pred & same_label)])
    # Sorted by (prediction, label): every strict label inversion is a pair with
    # p_i < p_j and y_i > y_j; pairs tied in the prediction are never inverted.
    discordant = _strict_inversions(label_ranks.reshape(-1), label_values.size)
    concordant = pairs - label_ties - pred_ties + both_ties - discordant
    return {
        "pairs": pairs,
        "label_ties": label_ties,
        "pred_ties": pred_ties,
        "both_ties": both_ties,
        "discordant": discordant,
        "concordant": concordant,
    }


def _xauc_both(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Eq. 18 XAUC and the tie-aware XAUC from one pair count."""
    if y.size < 2:
        return math.nan, math.nan
    c = _pair_counts(y, p)
    distinct = c["pairs"] - c["label_ties"]
    eq18 = c["concordant"] / c["pairs"]
    if distinct == 0:
        return eq18, math.nan
    return eq18, (c["concordant"] + 0.5 * (c["pred_ties"] - c["both_ties"])) / distinct


def _gini(ranked: np.ndarray, total: float) -> float:
    """Twice the area between the gain curve of `ranked` (best first) and the diagonal."""
    n = ranked.size
    weights = (n - 1) - 2 * np.arange(n, dtype=np.float64)
    return float(np.dot(weights, ranked)) / (n * total)


def _normalized_gini(y: np.ndarray, p: np.ndarray) -> float:
    if y.size == 0:
        return math.nan
    total = float(np.sum(y))
    if total == 0.0 or y.min() == y.max():
        return math.nan
    perfect = _gini(np.sort(y)[::-1], total)
    if perfect == 0.0:
        return math.nan
    model = _gini(y[np.argsort(-p, kind="stable")], total)
    return model / perfect


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values get the mean of the ranks they span."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new_run = np.empty(x.size, dtype=bool)
    new_run[:1] = True
    np.not_equal(xs[1:], xs[:-1], out=new_run[1:])
    starts, lengths = _run_starts(new_run)
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(starts + (lengths + 1) / 2.0, lengths)
    return ranks


def _spearman(y: np.ndarray, p: np.ndarray) -> float:
    if y.size < 2 or y.min() == y.max() or p.min() == p.max():
        return math.nan
    center = (y.size + 1) / 2.0
    a = _average_ranks(y) - center
    b = _average_ranks(p) - center
    rho = float(np.dot(a, b)) / math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return min(1.0, max(-1.0, rho))


def _positive(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = y > 0
    return y[keep], p[keep]


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error.

    Args:
        y_true: labels, shape `(n,)` or `(n, 1)`.
        y_pred: predictions, same length.

    Returns:
        ``mean(|y_true - y_pred|)``.

    Raises:
        ValueError: empty, misshapen, non-numeric or non-finite input, or
            lengths that differ.
    """
    y, p = _validate(y_true, y_pred)
    return float(np.mean(np.abs(y - p)))


def xauc(y_true: Any, y_pred: Any) -> float:
    """XAUC exactly as Eq. 18 of the paper, in O(n log n).

    ``1 / (n (n - 1))`` times the number of ordered pairs ``i != j`` with
    ``(y_i - y_j)(p_i - p_j) > 0``: pairs tied in the label or the prediction
    count as not concordant (and stay in the normaliser), so a constant
    predictor or constant labels score 0.

    Args:
        y_true: labels, shape `(n,)` or `(n, 1)`.
        y_pred: predictions, same length.

    Returns:
        A value in ``[0, 1]``; NaN for a single row.

    Raises:
        ValueError: as for :func:`mae`.
    """
    return _xauc_both(*_validate(y_true, y_pred))[0]


def xauc_tie_aware(y_true: Any, y_pred: Any) -> float:
    """XAUC over the pairs with distinct labels, prediction ties counting 1/2.

    Args:
        y_true: labels, shape `(n,)` or `(n, 1)`.
        y_pred: predictions, same length.

    Returns:
        ``(concordant + prediction_ties / 2) / pairs_with_distinct_labels``, in
        ``[0, 1]``; NaN when no two labels differ (a single row included).

    Raises:
        ValueError: as for :func:`mae`.
    """
    return _xauc_both(*_validate(y_true, y_pred))[1]


def normalized_gini(y_true: Any, y_pred: Any) -> float:
    """Normalized Gini of the cumulative-gain curve (see the module docstring).

    Args:
        y_true: labels (non-negative for a meaningful value), shape `(n,)` or `(n, 1)`.
        y_pred: predictions, same length; ties keep the input row order.

    Returns:
        Model Gini over the perfect ranking's Gini (1 for a perfect ranking);
        NaN when the labels sum to 0 or are all equal (a single row included).

    Raises:
        ValueError: as for :func:`mae`.
    """
    return _normalized_gini(*_validate(y_true, y_pred))


def spearman(y_true: Any, y_pred: Any) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks.

    Args:
        y_true: labels, shape `(n,)` or `(n, 1)`.
        y_pred: predictions, same length.

    Returns:
        A value in ``[-1, 1]``; NaN when either input is constant (a single row
        included).

    Raises:
        ValueError: as for :func:`mae`.
    """
    return _spearman(*_validate(y_true, y_pred))


def normalized_gini_positive(y_true: Any, y_pred: Any) -> float:
    """Norm-Gini (+): :func:`normalized_gini` on the rows with ``y_true > 0``.

    Returns:
        The value, or NaN when fewer than two positive rows have distinct labels.
    """
    return _normalized_gini(*_positive(*_validate(y_true, y_pred)))


def spearman_positive(y_true: Any, y_pred: Any) -> float:
    """Spearman's rho (+): :func:`spearman` on the rows with ``y_true > 0``.

    Returns:
        The value, or NaN when there are no positive rows or either input is
        constant on them.
    """
    return _spearman(*_positive(*_validate(y_true, y_pred)))


def evaluate(y_true: Any, y_pred: Any) -> dict[str, float | int | None]:
    """Every metric of the paper, as the report the training command writes.

    Args:
        y_true: labels, shape `(n,)` or `(n, 1)`.
        y_pred: predictions, same length.

    Returns:
        dict with `rows`, `positive_rows` (labels > 0), `mae`, `xauc`,
        `xauc_tie_aware`, `normalized_gini`, `spearman`,
        `normalized_gini_positive`, `spearman_positive` and the total value
        (`mean_label`, `mean_prediction`, `mean_ratio`). Undefined values
        (NaN from the functions) are ``None``, so the dict is strict JSON.

    Raises:
        ValueError: as for :func:`mae`.
    """
    y, p = _validate(y_true, y_pred)
    yp, pp = _positive(y, p)
    eq18, tie_aware = _xauc_both(y, p)
    values = {
        "mae": float(np.mean(np.abs(y - p))),
        "xauc": eq18,
        "xauc_tie_aware": tie_aware,
        "normalized_gini": _normalized_gini(y, p),
        "spearman": _spearman(y, p),
        "normalized_gini_positive": _normalized_gini(yp, pp),
        "spearman_positive": _spearman(yp, pp),
    }
    report: dict[str, float | int | None] = {"rows": int(y.size), "positive_rows": int(yp.size)}
    report.update({k: None if math.isnan(v) else float(v) for k, v in values.items()})
    report.update(value_calibration(y, p))
    return report


def value_calibration(y_true: Any, y_pred: Any) -> dict[str, float | None]:
    """Total value: the mean prediction against the mean label.

    For LTV and GMV the sum of the predictions over customers is a budget;
    `mean_ratio` is `mean_prediction / mean_label` (1.0: right in total; 0.5:
    half the value is missing).

    Returns:
        dict with `mean_label`, `mean_prediction` and `mean_ratio` (None
        when the labels average 0).

    Raises:
        ValueError: as for :func:`mae`.
    """
    y, p = _validate(y_true, y_pred)
    mean_label, mean_prediction = float(np.mean(y)), float(np.mean(p))
    ratio = mean_prediction / mean_label if mean_label != 0 else None
    return {"mean_label": mean_label, "mean_prediction": mean_prediction, "mean_ratio": ratio}


def trivial_predictors(y_train: Any, y_true: Any) -> dict[str, dict[str, float | None]]:
    """What predicting one constant from the training labels scores on `y_true`.

    The floor any model must beat: the training labels' mean (right in
    total when the splits match) and median (the best constant for MAE). A
    constant ranks no one, so its ranking metrics are left out (ties broken
    at random give a Norm-Gini of 0 and a tie-aware XAUC of 0.5).

    Returns:
        `{"train_mean": {...}, "train_median": {...}}`, each with `value`,
        `mae` and `mean_ratio`.
    """
    train = as_label_array(y_train)
    y, _ = _validate(y_true, y_true)
    out = {}
    for name, value in (("train_mean", np.mean(train)), ("train_median", np.median(train))):
        p = np.full_like(y, float(value))
        out[name] = {
            "value": float(value),
            "mae": float(np.mean(np.abs(y - p))),
            "mean_ratio": value_calibration(y, p)["mean_ratio"],
        }
    return out
