"""rq_keras.evaluation.metrics against brute-force O(n^2) references and hand-computed values."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from rq_keras.evaluation import metrics
from rq_keras.evaluation.code_report import CodeReport
from rq_keras.evaluation.metrics import (
    evaluate,
    mae,
    normalized_gini,
    normalized_gini_positive,
    spearman,
    spearman_positive,
    trivial_predictors,
    value_calibration,
    xauc,
    xauc_tie_aware,
)

# --- brute-force references, written from the definitions --------------------


def bf_xauc(y, p):
    """Eq. 18: ordered pairs i != j, indicator of a positive product, over n (n - 1)."""
    n = len(y)
    if n < 2:
        return math.nan
    hits = sum(
        1 for i in range(n) for j in range(n) if i != j and (y[i] - y[j]) * (p[i] - p[j]) > 0
    )
    return hits / (n * (n - 1))


def bf_xauc_tie_aware(y, p):
    """Unordered pairs with y_i != y_j: 1 concordant, 1/2 prediction tie, 0 discordant."""
    score, pairs = Fraction(0), 0
    for i in range(len(y)):
        for j in range(i + 1, len(y)):
            if y[i] == y[j]:
                continue
            pairs += 1
            if p[i] == p[j]:
                score += Fraction(1, 2)
            elif (y[i] - y[j]) * (p[i] - p[j]) > 0:
                score += 1
    return float(score / pairs) if pairs else math.nan


def bf_gini_area(ranked):
    """2 * (trapezoid area under the gain curve through (k/n, S_k/S_n)) - 1, exactly."""
    ranked = [Fraction(v) for v in ranked]
    n, total = len(ranked), sum(ranked)
    area, prev, running = Fraction(0), Fraction(0), Fraction(0)
    for v in ranked:
        running += v
        cur = running / total
        area += (prev + cur) / 2 / n
        prev = cur
    return 2 * area - 1


def bf_gini_pairs(ranked):
    """The same Gini as sum over pairs (i ranked before j) of (y_i - y_j), over n S_n."""
    ranked = [Fraction(v) for v in ranked]
    n = len(ranked)
    diff = sum(ranked[i] - ranked[j] for i in range(n) for j in range(i + 1, n))
    return diff / (n * sum(ranked))


def bf_normalized_gini(y, p):
    if len(y) == 0 or sum(y) == 0 or min(y) == max(y):
        return math.nan
    # Python's sort is stable: rows tied in the prediction keep their input order.
    order = sorted(range(len(y)), key=lambda i: -p[i])
    model = bf_gini_area([y[i] for i in order])
    perfect = bf_gini_area(sorted(y, reverse=True))
    assert model == bf_gini_pairs([y[i] for i in order])
    return float(model / perfect)


def bf_average_ranks(x):
    return [
        1
        + sum(1 for v in x if v < xi)
        + Fraction(sum(1 for j, v in enumerate(x) if v == xi and j != i), 2)
        for i, xi in enumerate(x)
    ]


def bf_spearman(y, p):
    n = len(y)
    if n < 2 or min(y) == max(y) or min(p) == max(p):
        return math.nan
    a, b = bf_average_ranks(y), bf_average_ranks(p)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((u - ma) * (v - mb) for u, v in zip(a, b))
    var_a = sum((u - ma) ** 2 for u in a)
    var_b = sum((v - mb) ** 2 for v in b)
    return float(cov) / math.sqrt(float(var_a) * float(var_b))


def bf_positive(y, p):
    keep = [i for i in range(len(y)) if y[i] > 0]
    return [y[i] for i in keep], [p[i] for i in keep]


def assert_same(actual, expected, tol=1e-12):
    if math.isnan(expected):
        assert math.isnan(actual), actual
    else:
        assert abs(actual - expected) <= tol, (actual, expected)


def random_case(seed):
    """Small integer labels (many zeros and ties) and predictions from a small range."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 45))
    y = rng.integers(0, 5, n) * (rng.random(n) < 0.7)
    p = rng.integers(0, 6, n)
    if seed % 4 == 3:
        p = p / 4.0  # some float predictions, still tied
    return y.tolist(), p.tolist()


# --- golden tests --------------------------------------------------------------

Y = [0, 1, 2, 2, 5]
P = [0.1, 0.3, 0.3, 0.3, 0.9]


def test_hand_computed_values():
    # Pairs: 7 concordant, (1,2) and (1,3) tied in the prediction only, (2,3) tied in both.
    assert xauc(Y, P) == pytest.approx(14 / 20, abs=1e-15)
    assert xauc_tie_aware(Y, P) == pytest.approx(8 / 9, abs=1e-15)
    # Ranked by prediction (ties in input order): 5, 1, 2, 2, 0 -> 18 / 50; perfect 22 / 50.
    assert normalized_gini(Y, P) == pytest.approx(9 / 11, abs=1e-15)
    # Ranks y: 1, 2, 3.5, 3.5, 5; ranks p: 1, 3, 3, 3, 5.
    assert spearman(Y, P) == pytest.approx(4 / math.sqrt(19), abs=1e-15)
    # Positive rows: y 1, 2, 2, 5; ranked 5, 1, 2, 2 -> 8 / 40; perfect 12 / 40.
    assert normalized_gini_positive(Y, P) == pytest.approx(2 / 3, abs=1e-15)
    assert spearman_positive(Y, P) == pytest.approx(math.sqrt(2 / 3), abs=1e-15)
    assert mae(Y, P) == pytest.approx(8.3 / 5, abs=1e-15)


def test_evaluate_report():
    report = evaluate(np.array(Y)[:, None], np.array(P)[:, None])
    assert report == pytest.approx(
        {
            "rows": 5,
            "positive_rows": 4,
            "mae": 1.66,
            "xauc": 0.7,
            "xauc_tie_aware": 8 / 9,
            "normalized_gini": 9 / 11,
            "spearman": 4 / math.sqrt(19),
            "normalized_gini_positive": 2 / 3,
            "spearman_positive": math.sqrt(2 / 3),
            "mean_label": 2.0,
            "mean_prediction": 0.38,
            "mean_ratio": 0.19,
        },
        abs=1e-15,
    )
    assert isinstance(report["rows"], int)
    json.dumps(report, allow_nan=False)


def test_perfect_and_reversed_rankings():
    y = [0.0, 1.0, 3.0, 7.0, 20.0]
    assert xauc(y, y) == 1.0
    assert xauc_tie_aware(y, y) == 1.0
    assert normalized_gini(y, y) == 1.0
    assert spearman(y, y) == 1.0
    reversed_pred = [-v for v in y]
    assert xauc(y, reversed_pred) == 0.0
    assert xauc_tie_aware(y, reversed_pred) == 0.0
    assert spearman(y, reversed_pred) == -1.0
    assert normalized_gini(y, reversed_pred) < 0


def test_gini_prediction_ties_keep_input_order():
    # Both rows tie at 1.0: the first row in the input is ranked first.
    assert normalized_gini([10.0, 0.0], [1.0, 1.0]) == 1.0
    assert normalized_gini([0.0, 10.0], [1.0, 1.0]) == -1.0


def test_label_ties_are_not_concordant_in_eq18():
    # One pair, tied in the label: Eq. 18 counts it in the normaliser only.
    assert xauc([1.0, 1.0, 2.0], [0.0, 1.0, 2.0]) == pytest.approx(2 / 3, abs=1e-15)
    assert xauc_tie_aware([1.0, 1.0, 2.0], [0.0, 1.0, 2.0]) == 1.0


# --- degenerate cases ----------------------------------------------------------


def test_all_labels_equal():
    y, p = [3.0, 3.0, 3.0], [1.0, 2.0, 3.0]
    assert xauc(y, p) == 0.0
    assert math.isnan(xauc_tie_aware(y, p))
    assert math.isnan(normalized_gini(y, p))
    assert math.isnan(spearman(y, p))
    assert math.isnan(normalized_gini_positive(y, p))
    assert math.isnan(spearman_positive(y, p))
    report = evaluate(y, p)
    assert report["xauc"] == 0.0 and report["xauc_tie_aware"] is None
    assert report["normalized_gini"] is None and report["spearman"] is None
    json.dumps(report, allow_nan=False)


def test_constant_predictions():
    y, p = [0.0, 1.0, 2.0, 4.0], [5.0] * 4
    assert xauc(y, p) == 0.0
    assert xauc_tie_aware(y, p) == 0.5
    assert math.isnan(spearman(y, p))
    assert normalized_gini(y, p) == pytest.approx(bf_normalized_gini(y, p), abs=1e-12)


def test_no_positive_rows():
    y, p = [0.0, 0.0, 0.0], [0.1, 0.2, 0.3]
    assert math.isnan(normalized_gini(y, p))
    assert math.isnan(normalized_gini_positive(y, p))
    assert math.isnan(spearman_positive(y, p))
    report = evaluate(y, p)
    assert report["positive_rows"] == 0
    assert report["normalized_gini_positive"] is None and report["spearman_positive"] is None


def test_single_row():
    assert mae([2.0], [0.5]) == 1.5
    for fn in (xauc, xauc_tie_aware, normalized_gini, spearman, normalized_gini_positive):
        assert math.isnan(fn([2.0], [0.5])), fn.__name__
    assert evaluate([2.0], [0.5]) == {
        "rows": 1,
        "positive_rows": 1,
        "mae": 1.5,
        "xauc": None,
        "xauc_tie_aware": None,
        "normalized_gini": None,
        "spearman": None,
        "normalized_gini_positive": None,
        "spearman_positive": None,
        "mean_label": 2.0,
        "mean_prediction": 0.5,
        "mean_ratio": 0.25,
    }


# --- brute force on random inputs with ties ------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_against_brute_force(seed):
    y, p = random_case(seed)
    assert_same(xauc(y, p), bf_xauc(y, p))
    assert_same(xauc_tie_aware(y, p), bf_xauc_tie_aware(y, p))
    assert_same(normalized_gini(y, p), bf_normalized_gini(y, p))
    assert_same(spearman(y, p), bf_spearman(y, p))
    yp, pp = bf_positive(y, p)
    assert_same(normalized_gini_positive(y, p), bf_normalized_gini(yp, pp))
    assert_same(spearman_positive(y, p), bf_spearman(yp, pp))
    assert_same(mae(y, p), float(np.mean(np.abs(np.subtract(y, p)))))


def test_xauc_many_distinct_values_against_vectorised_brute_force():
    # Continuous zero-inflated labels exercise every bit level of the inversion count.
    rng = np.random.default_rng(7)
    n = 1500
    y = np.round(rng.lognormal(1.0, 1.5, n), 1) * (rng.random(n) < 0.6)
    p = np.round(y * rng.lognormal(0.0, 1.0, n) + rng.random(n), 1)
    sign = np.sign(y[:, None] - y[None, :]) * np.sign(p[:, None] - p[None, :])
    distinct = np.triu(y[:, None] != y[None, :], 1)
    assert_same(xauc(y, p), float((sign > 0).sum()) / (n * (n - 1)))
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    tie_aware = ((sign > 0) & upper).sum() + 0.5 * ((sign == 0) & distinct).sum()
    assert_same(xauc_tie_aware(y, p), float(tie_aware / distinct.sum()))


def test_strict_inversions_against_brute_force():
    rng = np.random.default_rng(3)
    for num_values in (1, 2, 3, 17, 1000):
        a = rng.integers(0, num_values, 200)
        expected = int(np.triu(a[:, None] > a[None, :], 1).sum())
        assert metrics._strict_inversions(a, num_values) == expected


# --- validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "y_true, y_pred, message",
    [
        ([], [], "`y_true` is empty"),
        ([1.0, 2.0], [], "`y_pred` is empty"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "same length, got 3 and 2"),
        ([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0], r"`y_true` must be 1-D .*\(2, 2\)"),
        ([1.0, np.nan, np.nan], [1.0, 2.0, 3.0], "`y_true` has NaN values: 2 row"),
        ([1.0, 2.0], [np.inf, 1.0], "`y_pred` has infinite values: 1 row"),
        (["a", 1.0], [1.0, 2.0], "`y_true` has non-numeric values"),
    ],
)
def test_validation_errors(y_true, y_pred, message):
    for fn in (mae, xauc, xauc_tie_aware, normalized_gini, spearman, evaluate):
        with pytest.raises(ValueError, match=message):
            fn(y_true, y_pred)


# --- total value, trivial predictors, the code report -------------------------
def test_value_calibration_and_trivial_predictors():
    y = np.array([0.0, 0.0, 10.0, 30.0])
    assert value_calibration(y, y / 2) == {
        "mean_label": 10.0,
        "mean_prediction": 5.0,
        "mean_ratio": 0.5,
    }
    assert value_calibration([0.0, 0.0], [1.0, 2.0])["mean_ratio"] is None
    trivial = trivial_predictors([0.0, 2.0, 4.0, 10.0], y)
    assert trivial["train_mean"] == {"value": 4.0, "mae": 10.0, "mean_ratio": 0.4}
    assert trivial["train_median"] == {"value": 3.0, "mae": 10.0, "mean_ratio": 0.3}


def test_code_report_golden():
    # Two levels of K = 2 (tokens 1-2 and 3-4 after <start>), uniform logits.
    train = [[0, 0], [0, 1], [1, 0], [0, 0]]  # marginals (3, 1) at both levels
    report = CodeReport(train, [2, 2], [1, 3])
    logits = np.zeros((2, 2, 5))
    report.update(logits, predicted_codes=[[0, 0], [1, 0]], true_codes=[[0, 1], [1, 0]])
    q = np.log([3.5 / 5, 1.5 / 5])
    level1, level2 = report.result()
    assert level1["level"] == 1 and level2["level"] == 2
    for level in (level1, level2):
        assert level["nll"] == pytest.approx(math.log(5))
        assert level["marginal_nll"] == pytest.approx(-(q[0] + q[1]) / 2)
        assert level["other_level_mass"] == pytest.approx(3 / 5)
        assert level["majority_accuracy"] == 0.5
    assert (level1["accuracy"], level2["accuracy"]) == (1.0, 0.5)
    # A confident, right classifier: NLL near 0, below the marginal's.
    sharp = CodeReport(train, [2, 2], [1, 3])
    logits = np.full((2, 2, 5), -30.0)
    logits[0, 0, 1] = logits[1, 0, 2] = logits[0, 1, 4] = logits[1, 1, 3] = 30.0
    sharp.update(logits, [[0, 1], [1, 0]], [[0, 1], [1, 0]])
    for level in sharp.result():
        assert level["nll"] < 1e-12 and level["accuracy"] == 1.0
        assert level["other_level_mass"] < 1e-12


def test_code_report_zero_code_and_errors():
    # One level of K = 2 with <zero> (token 1); codes at tokens 2, 3.
    report = CodeReport([[-1], [-1], [0], [1]], [2], [2], zero_token=True)
    logits = np.full((3, 1, 4), -30.0)
    logits[0, 0, 1] = logits[1, 0, 2] = logits[2, 0, 3] = 30.0
    report.update(logits, [[-1], [0], [1]], [[-1], [0], [1]])
    (level,) = report.result()
    assert level["accuracy"] == 1.0 and level["nll"] < 1e-12
    assert level["majority_accuracy"] == pytest.approx(1 / 3)  # the zero code is the mode
    assert level["marginal_nll"] == pytest.approx(
        -np.mean(np.log([2.5 / 5.5, 1.5 / 5.5, 1.5 / 5.5]))
    )
    with pytest.raises(ValueError, match="do not match"):
        report.update(np.zeros((2, 1, 4)), [[0]], [[0], [1]])
    with pytest.raises(ValueError, match="must be"):
        CodeReport(np.zeros((0, 1), int), [2], [1])
    assert CodeReport([[0]], [2], [1]).result() == []


def test_distribution_report_coverage_and_reliability():
    from rq_keras.evaluation.distribution_metrics import distribution_report

    y = np.array([0.0, 0.0, 1.0, 2.0, 5.0, 10.0, 0.0, 3.0])
    # q0.1 = 0 everywhere; q0.9 = 4: covers every label but 5 and 10.
    quantiles = np.stack([np.zeros(8), np.full(8, 4.0)], axis=1)
    p = np.array([0.1, 0.2, 0.9, 0.8, 0.95, 0.85, 0.15, 0.7])
    report = distribution_report(y, quantiles, (0.1, 0.9), p[:, None], (0.0,), bins=2)
    assert report["quantile_coverage"] == {"0.1": 3 / 8, "0.9": 6 / 8}
    assert report["interval"] == {"low": 0.1, "high": 0.9, "nominal": 0.8, "coverage": 6 / 8}
    entry = report["exceedance"]["0"]
    assert entry["observed"] == 5 / 8 and entry["mean_predicted"] == pytest.approx(p.mean())
    hit = (y > 0).astype(float)
    assert entry["brier"] == pytest.approx(np.mean((p - hit) ** 2))
    assert entry["brier_base_rate"] == pytest.approx(np.mean((5 / 8 - hit) ** 2))
    low, high = entry["reliability"]
    assert (low["rows"], high["rows"]) == (3, 5)
    assert low["observed"] == 0.0 and high["observed"] == 1.0
    with pytest.raises(ValueError, match="columns for 3 levels"):
        distribution_report(y, quantiles, (0.1, 0.5, 0.9))
