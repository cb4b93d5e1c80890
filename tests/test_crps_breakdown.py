"""benchmarks/crps_breakdown.py: the parts of a run's CRPS sum to the CRPS
`scale.py` reports, and runs scored on other rows or grids are refused."""

import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import crps_breakdown  # noqa: E402

from rq_keras.evaluation.distribution_scores import crps_from_quantiles, crps_parts  # noqa: E402

LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)


def write_run(path, y, scale):
    """A predictions table whose quantiles are `scale` times a zero-inflated
    exponential's (0 below the zero share)."""
    path.mkdir(parents=True)
    frame = {"label": y}
    zero = float(np.mean(y == 0))
    for t in LEVELS:
        value = 0.0 if t <= zero else -np.log((1 - t) / (1 - zero)) * scale
        frame[f"quantile_{t:g}"] = np.full(y.size, value)
    pd.DataFrame(frame).to_parquet(path / "predictions.parquet")
    return str(path)


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    y = rng.exponential(3.0, 2000)
    y[rng.random(2000) < 0.4] = 0.0
    return y


def test_the_parts_sum_to_the_crps_by_level_and_by_label(tmp_path, labels):
    run = write_run(tmp_path / "a", labels, 3.0)
    y, levels, q = crps_breakdown.load_run(run)
    parts = crps_parts(y, q, levels)
    crps = crps_from_quantiles(y, q, levels)
    assert parts.sum(axis=1).mean() == pytest.approx(crps, rel=1e-12)
    bands = crps_breakdown.label_bands(y)
    # the bands cover every row once
    assert sum(mask.astype(int) for _, mask in bands).tolist() == [1] * y.size
    text = crps_breakdown.breakdown({"a": run})
    assert text.count(f"| CRPS | {crps:.4f} |") == 2


def test_a_second_run_reads_as_differences_from_the_first(tmp_path, labels):
    good = write_run(tmp_path / "good", labels, 3.0)
    wide = write_run(tmp_path / "wide", labels, 9.0)
    text = crps_breakdown.breakdown({"good": good, "wide": wide})
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    crps = [float(v) for v in rows["| CRPS"].strip(" |").split(" | ")[1:]]
    # a three times too wide upper tail costs more in all; it is paid on the
    # rows with y = 0 and small y, and it gains on the top quartile
    # (each figure rounded to 4 decimals: the difference to within two roundings)
    assert crps[1] > crps[0] and crps[2] == pytest.approx(crps[1] - crps[0], abs=1.01e-4)

    def difference(band):
        line = next(line for label, line in rows.items() if band in label)
        return float(line.split(" | ")[-1].strip(" |"))

    assert difference("y = 0") > 0 and difference("quartile 1") > 0
    assert difference("quartile 4") < 0


def test_runs_on_other_rows_or_a_missing_table_are_refused(tmp_path, labels, capsys):
    a = write_run(tmp_path / "a", labels, 3.0)
    b = write_run(tmp_path / "b", labels[::-1].copy(), 3.0)
    with pytest.raises(SystemExit, match="other rows"):
        crps_breakdown.breakdown({"a": a, "b": b})
    coarse = tmp_path / "coarse"
    coarse.mkdir()
    pd.read_parquet(f"{a}/predictions.parquet").drop(columns="quantile_0.25").to_parquet(
        coarse / "predictions.parquet"
    )
    with pytest.raises(SystemExit, match="another quantile grid"):
        crps_breakdown.breakdown({"a": a, "coarse": str(coarse)})
    with pytest.raises(SystemExit, match="no predictions.parquet"):
        crps_breakdown.breakdown({"a": str(tmp_path)})
    for bad in (["--run", "noequals"], ["--run", "a=" + a, "--run", "a=" + a]):
        with pytest.raises(SystemExit):
            crps_breakdown.main(bad)
        assert "--run" in capsys.readouterr().err
