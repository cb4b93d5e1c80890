"""benchmarks/mean_factors.py: a served mean's Norm-Gini(+) split into its
P(y > 0) and E[y | y > 0] factors, and the factors swapped between runs."""

import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import mean_factors  # noqa: E402

from rq_keras.evaluation.metrics import normalized_gini_positive  # noqa: E402


def write_run(path, y, probability, positive_mean, names=("p_above_0", "mean")):
    """A predictions table whose mean is P * E+ (the code tree's and ZILN's)."""
    path.mkdir(parents=True)
    p_name, mean_name = names
    frame = {
        "label": y,
        p_name: probability,
        "positive_mean": positive_mean,
        mean_name: probability * positive_mean,
    }
    pd.DataFrame(frame).to_parquet(path / "predictions.parquet")
    return str(path)


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    n = 4000
    value = rng.lognormal(1.0, 1.0, n)  # what a buyer would buy
    buys = rng.random(n) < 0.4
    y = np.where(buys, value, 0.0)
    # both runs know the value up to the same noise
    positive_mean = value * rng.lognormal(0.0, 0.5, n)
    base = np.where(buys, 0.6, 0.3) + rng.normal(0, 0.05, n)
    return y, positive_mean, base


def test_a_p_that_rises_with_the_value_ranks_the_buyers_better(tmp_path, rows):
    y, positive_mean, base = rows
    rank = np.argsort(np.argsort(positive_mean)) / y.size
    coupled = np.clip(base + 0.2 * rank, 0.01, 0.99)  # P rises with E+
    plain = np.clip(base + 0.1, 0.01, 0.99)  # P knows nothing of the value
    a = write_run(tmp_path / "coupled", y, coupled, positive_mean)
    b = write_run(
        tmp_path / "plain", y, plain, positive_mean, ("positive_probability", "prediction")
    )
    text = mean_factors.report({"coupled": a, "plain": b})
    rows_of = [
        (line.split(" | ")[0].strip("| `"), line.strip(" |").split(" | ")[1:])
        for line in text.splitlines()
        if line.startswith("| `")
    ]
    # first the scores (7 columns), then the swap table (one column a run)
    table = {name: cells for name, cells in rows_of if len(cells) == 7}
    swap = {name: cells for name, cells in rows_of if len(cells) == 2}
    coupled_row, plain_row = table["coupled"], table["plain"]
    # the same E+: the same Norm-Gini(+) of E+ (column 4) ...
    assert coupled_row[3] == plain_row[3]
    # ... and the coupled P's mean ranks buyers better, its P too
    assert float(coupled_row[1]) > float(plain_row[1])
    assert float(coupled_row[4]) > float(plain_row[4])
    # the mean is P * E+ here: columns 2 and 3 agree
    assert coupled_row[1] == coupled_row[2] and plain_row[1] == plain_row[2]
    # the swap table: the rows are P's, so each row holds one value (E+ equal)
    want = normalized_gini_positive(y, coupled * positive_mean)
    assert swap["coupled"] == [f"{want:.4f}"] * 2
    assert swap["coupled"][0] == coupled_row[1]


def test_bad_runs_are_refused(tmp_path, rows):
    y, positive_mean, base = rows
    p = np.clip(base, 0.01, 0.99)
    a = write_run(tmp_path / "a", y, p, positive_mean)
    with pytest.raises(SystemExit, match="at least two"):
        mean_factors.report({"a": a})
    b = write_run(tmp_path / "b", y[::-1].copy(), p, positive_mean)
    with pytest.raises(SystemExit, match="other rows"):
        mean_factors.report({"a": a, "b": b})
    c = tmp_path / "c"
    c.mkdir()
    pd.DataFrame({"label": y, "prediction": y}).to_parquet(c / "predictions.parquet")
    with pytest.raises(SystemExit, match=r"no P\(y > 0\) column"):
        mean_factors.report({"a": a, "c": str(c)})
    d = write_run(tmp_path / "d", y, np.where(y > 0, 1.5, 0.5), positive_mean)
    with pytest.raises(SystemExit, match=r"outside \[0, 1\]"):
        mean_factors.report({"a": a, "d": d})
    e = write_run(tmp_path / "e", y, p, np.where(y > 5, np.nan, positive_mean))
    with pytest.raises(SystemExit, match="NaN"):
        mean_factors.report({"a": a, "e": e})
    with pytest.raises(SystemExit, match="no predictions.parquet"):
        mean_factors.report({"a": a, "f": str(tmp_path / "f")})
    with pytest.raises(SystemExit):
        mean_factors.main(["--run", "a"])
    with pytest.raises(SystemExit):
        mean_factors.main(["--run", f"a={a}", "--run", f"a={a}"])
