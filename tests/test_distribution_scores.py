"""CRPS, pinball loss, atom-aware quantile calibration and P(y > 0) scores."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rq_keras.evaluation.distribution_scores import (
    crps_from_quantiles,
    crps_parts,
    level_weights,
    midpoint_levels,
    non_crossing,
    pinball_loss,
    probability_scores,
    quantile_calibration,
)


def _normal_quantiles(levels, mu, sigma):
    from statistics import NormalDist

    z = np.array([NormalDist().inv_cdf(t) for t in levels])
    return mu[:, None] + sigma[:, None] * z[None, :]


def _normal_crps(y, mu, sigma):
    """Closed form (Gneiting and Raftery 2007) of N(mu, sigma^2)."""
    z = (y - mu) / sigma
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return np.mean(sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi)))


def test_crps_matches_the_normal_closed_form():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=500), rng.uniform(0.5, 2.0, size=500)
    y = mu + sigma * rng.normal(size=500) + 0.3
    levels = midpoint_levels(399)
    got = crps_from_quantiles(y, _normal_quantiles(levels, mu, sigma), levels)
    # The midpoint rule's error on this grid, mostly the cut tails.
    assert got == pytest.approx(_normal_crps(y, mu, sigma), rel=5e-3)
    # A coarse grid is a worse estimate, not a different score.
    coarse = midpoint_levels(9)
    assert crps_from_quantiles(y, _normal_quantiles(coarse, mu, sigma), coarse) == pytest.approx(
        _normal_crps(y, mu, sigma), rel=5e-2
    )


def test_crps_of_a_point_forecast_is_the_absolute_error():
    y = np.array([0.0, 1.0, 5.0, 2.0])
    point = np.array([1.0, 1.0, 2.0, 4.0])
    levels = (0.1, 0.5, 0.9)
    quantiles = np.repeat(point[:, None], 3, axis=1)
    assert crps_from_quantiles(y, quantiles, levels) == pytest.approx(np.mean(np.abs(y - point)))
    # Labels at the point: the point forecast scores 0, a wide one around it
    # 2 * (0.3 * 0.1 * 3 + 0.3 * 0.1 * 3) = 0.36 (two tails, weight 0.3 each).
    wide = point[:, None] + np.array([-3.0, 0.0, 3.0])
    assert crps_from_quantiles(point, quantiles, levels) == 0.0
    assert crps_from_quantiles(point, wide, levels) == pytest.approx(0.36)


def test_pinball_loss_by_hand():
    y = np.array([0.0, 10.0])
    q = np.array([2.0, 4.0])
    # Row 1 under-shoots by 2 at (1 - 0.9), row 2 over by 6 at 0.9.
    assert pinball_loss(y, q, 0.9) == pytest.approx((0.1 * 2 + 0.9 * 6) / 2)
    assert pinball_loss(y, q, 0.5) == pytest.approx(np.mean(np.abs(y - q)) / 2)


def test_crps_parts_by_row_and_level_by_hand():
    # Row 1 (y = 0) is over-predicted at every level: 2 * w_j * (1 - tau_j) * q_j;
    # row 2 (y = 10) under-predicted: 2 * w_j * tau_j * (10 - q_j).
    y = np.array([0.0, 10.0])
    levels = (0.1, 0.5, 0.9)
    q = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    w = np.array([0.3, 0.4, 0.3])
    expected = np.array(
        [2 * w * np.array([0.9, 0.5, 0.1]) * q[0], 2 * w * np.array([0.1, 0.5, 0.9]) * (10 - q[1])]
    )
    parts = crps_parts(y, q, levels)
    np.testing.assert_allclose(parts, expected, rtol=1e-12)
    assert parts.sum(axis=1).mean() == pytest.approx(crps_from_quantiles(y, q, levels), rel=1e-12)
    # Each column's mean is 2 * w_j * the pinball loss at that level.
    for j, t in enumerate(levels):
        assert parts[:, j].mean() == pytest.approx(2 * w[j] * pinball_loss(y, q[:, j], t))


def test_non_crossing_is_the_running_maximum_along_levels():
    q = np.array([[0.0, 2.0, 1.0, 3.0], [5.0, 4.0, 4.5, 6.0]])
    np.testing.assert_array_equal(non_crossing(q), [[0, 2, 2, 3], [5, 5, 5, 6]])
    ordered = np.array([[0.0, 1.0, 1.0, 2.0]])
    np.testing.assert_array_equal(non_crossing(ordered), ordered)
    with pytest.raises(ValueError, match="2-D"):
        non_crossing(np.zeros(3))


def test_level_weights_share_the_unit_interval():
    np.testing.assert_allclose(level_weights(midpoint_levels(4)), [0.25] * 4)
    np.testing.assert_allclose(level_weights((0.1, 0.5, 0.9)), [0.3, 0.4, 0.3])


def test_calibration_handles_the_atom_at_zero():
    rng = np.random.default_rng(1)
    y = np.where(rng.uniform(size=4000) < 0.6, 0.0, rng.exponential(10.0, size=4000))
    levels = (0.1, 0.5, 0.7, 0.9)

    # The true quantiles: 0 up to the atom's mass 0.6, then the exponential's.
    def true_q(t):
        return 0.0 if t <= 0.6 else -10.0 * math.log(1 - (t - 0.6) / 0.4)

    q = np.tile([true_q(t) for t in levels], (y.size, 1))
    report = quantile_calibration(y, q, levels, tolerance=0.02)
    assert report["all_calibrated"], report
    json.dumps(report)  # plain Python values, for metrics files
    # At 0.1 and 0.5 the predicted 0 covers the atom: P(y < 0) = 0 <= tau <= P(y <= 0).
    assert report["levels"]["0.1"]["below"] == 0.0
    assert report["levels"]["0.5"]["at_or_below"] == pytest.approx(0.6, abs=0.03)
    # A plain coverage check (P(y <= q) = tau) would call the 0.1-quantile off by 0.5.
    shifted = q * 2.0
    bad = quantile_calibration(y, shifted, levels, tolerance=0.02)
    assert not bad["levels"]["0.9"]["calibrated"] and bad["max_gap"] > 0.02


def test_probability_scores_against_a_pair_count():
    rng = np.random.default_rng(2)
    y = np.where(rng.uniform(size=300) < 0.5, 0.0, 1.0 + rng.uniform(size=300))
    p = np.clip(0.5 * (y > 0) + rng.uniform(size=300) * 0.6, 0, 1).round(1)  # ties
    pos, neg = p[y > 0], p[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    scores = probability_scores(y, p)
    assert scores["auc"] == pytest.approx(pairs)
    assert scores["brier"] < scores["brier_base_rate"]
    assert probability_scores(np.ones(3), np.full(3, 0.5))["auc"] is None


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: crps_from_quantiles([1.0, np.nan], np.zeros((2, 1)), [0.5]), "y_true"),
        (lambda: crps_from_quantiles([1.0, 2.0], np.zeros((3, 1)), [0.5]), "shape"),
        (lambda: crps_from_quantiles([1.0], [[0.0, 1.0]], [0.5, 0.4]), "increasing"),
        (lambda: crps_from_quantiles([1.0], [[0.0]], [1.0]), r"\(0, 1\)"),
        (lambda: pinball_loss([1.0], [np.inf], 0.5), "quantiles"),
        (lambda: crps_parts([1.0, 2.0], np.zeros((2, 2)), [0.5]), "shape"),
        (lambda: quantile_calibration([1.0], [[1.0]], [0.5], tolerance=2), "tolerance"),
        (lambda: probability_scores([1.0, 0.0], [0.5, 1.5]), r"\[0, 1\]"),
        (lambda: probability_scores([1.0, 0.0], [0.5]), "rows"),
        (lambda: midpoint_levels(0), "positive"),
    ],
)
def test_bad_inputs_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
