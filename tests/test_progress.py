"""Progress lines of long passes over input rows (`rq_keras.data.progress`)."""

import numpy as np
import pandas as pd
import pytest

from rq_keras.data import check_files, write_table
from rq_keras.data.progress import RowTicker
from rq_keras.features import FeatureSpec


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_ticker_prints_at_most_once_per_interval_with_the_rate():
    clock, lines = _Clock(), []
    ticker = RowTicker(lines.append, "checking training rows", every=10.0, clock=clock)
    ticker.add(1000, "a.csv")
    clock.now += 9.9
    ticker.add(1000, "a.csv")
    assert lines == []  # not 10 s yet
    clock.now += 0.1  # 10 s after the start: 2,500 rows / 10 s
    ticker.add(500, "b.csv")
    assert lines == ["checking training rows: 2,500 so far (250 rows/s), reading b.csv"]
    clock.now += 5.0
    ticker.at(4000)
    assert len(lines) == 1 and ticker.rows == 4000
    clock.now += 5.0
    ticker.at(6000)
    assert lines[-1] == "checking training rows: 6,000 so far (300 rows/s)"


@pytest.mark.parametrize("every", [0.0, -1.0, float("nan")])
def test_ticker_refuses_a_bad_interval(every):
    with pytest.raises(ValueError, match="`every` must be > 0 seconds"):
        RowTicker(print, "rows", every=every)


def test_check_files_reports_each_chunk(tmp_path):
    spec = FeatureSpec.from_dict(
        {"name": "t", "label": "y", "features": [{"name": "x", "kind": "numeric"}]}
    )
    paths = []
    for i, n in enumerate((7, 5)):
        path = tmp_path / f"part{i}.csv"
        write_table(pd.DataFrame({"x": np.arange(n, dtype=float), "y": 1.0}), spec, path)
        paths.append(str(path))
    seen = []
    report = check_files(paths, spec, chunk_rows=3, on_chunk=lambda n, p: seen.append((n, p)))
    assert sum(n for n, _ in seen) == report.rows_kept == 12
    assert [n for n, _ in seen] == [3, 3, 1, 3, 2]
    assert {p for _, p in seen} == set(paths)
