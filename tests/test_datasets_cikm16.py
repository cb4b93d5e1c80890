"""Tests of the CIKM Cup 2016 (DIGINETICA) builder on a hand-made fixture."""

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from rq_keras.data import check_files
from rq_keras.datasets import cikm16

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "cikm16"
FILE = FIXTURE / "train-queries.csv"
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def frame():
    return cikm16.build(FIXTURE)


def _lines():
    return FILE.read_text().splitlines()


def _write(tmp_path, lines):
    path = tmp_path / "train-queries.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_columns_and_dtypes(frame):
    assert list(frame.columns) == list(cikm16.SPEC.columns)
    assert not frame.isna().any().any()
    for name in ("query_tokens", "query_items"):
        assert frame[name].map(type).eq(str).all()
    for name in ("num_tokens", "num_items", "query_duration"):
        assert frame[name].dtype == np.float64
    assert frame["category_id"].dtype == np.int64
    assert frame.index.name == "queryId"


def test_golden_rows_by_hand(frame):
    # 1;1;NA;0;1520;2016-05-09;16655,244087,3321;0;9654,33043,32118,12036,47181;FALSE
    one = frame.loc[1]
    assert one["query_tokens"] == "16655|244087|3321"
    assert one["query_items"] == "9654|33043|32118|12036|47181"
    assert (one["num_tokens"], one["num_items"]) == (3.0, 5.0)
    assert one["category_id"] == 0
    assert one["query_duration"] == pytest.approx(1.52)
    # 2;1;NA;2704;4301;2016-05-09;;1096;81766,...,60 (13 items);FALSE: a query-less row.
    two = frame.loc[2]
    assert two["query_tokens"] == ""
    assert two["query_items"] == "81766|31331|32627|112|4400|5001|17|906|3321|74"
    assert (two["num_tokens"], two["num_items"]) == (0.0, 13.0)
    assert two["category_id"] == 1096
    assert two["query_duration"] == pytest.approx(4.301)


def test_every_row_from_first_principles(frame):
    kept = 0
    for line in _lines()[1:]:
        fields = line.split(";")
        query_id, duration = int(fields[0]), fields[4]
        if duration == "" or int(duration) >= 6000:
            assert query_id not in frame.index
            continue
        kept += 1
        row = frame.loc[query_id]
        tokens = [t for t in fields[6].split(",") if t]
        items = [t for t in fields[8].split(",") if t]
        assert row["query_tokens"] == "|".join(tokens[:10])
        assert row["query_items"] == "|".join(items[:10])
        assert row["num_tokens"] == len(tokens) and row["num_items"] == len(items)
        assert row["category_id"] == int(fields[7])
        assert row["query_duration"] == int(duration) / 1000.0
    assert kept == len(frame) == 63


def test_edge_cases(frame):
    assert 200 not in frame.index  # duration exactly 6000 ms
    assert 205 not in frame.index  # 17500 ms
    assert 202 not in frame.index  # empty duration
    assert frame.loc[201, "query_duration"] == pytest.approx(5.999)
    assert frame.loc[203, "query_items"] == "" and frame.loc[203, "num_items"] == 0.0
    assert frame.loc[204, "query_tokens"] == "" and frame.loc[204, "query_items"] == ""
    assert (frame["num_tokens"] > 10).sum() > 0
    assert frame["query_tokens"].str.count(r"\|").max() == 9


def test_make_counts_drops_and_writes_splits(tmp_path):
    summary = cikm16.make(FILE, tmp_path / "out", seed=0)
    assert summary["queries_read"] == 66
    assert summary["queries_dropped_duration_ge_6000ms"] == 2
    assert summary["queries_dropped_duration_empty"] == 1
    assert summary["queries_without_tokens"] == 19
    assert summary["queries_without_items"] == 4
    # round(0.72 * 63) = 45, round(0.8 * 63) = 50.
    assert [summary["splits"][s]["rows"] for s in SPLITS] == [45, 5, 13]
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["rows"] == 63
    files = [tmp_path / "out" / f"{s}.parquet" for s in SPLITS]
    assert check_files(files, cikm16.SPEC).rows_kept == 63
    assert (tmp_path / "out" / "feature_spec.yaml").is_file()


def test_split_is_deterministic(tmp_path):
    cikm16.make(FIXTURE, tmp_path / "a", seed=5, fmt="csv")
    cikm16.make(FIXTURE, tmp_path / "b", seed=5, fmt="csv")
    cikm16.make(FIXTURE, tmp_path / "c", seed=6, fmt="csv")
    read = {k: pd.read_csv(tmp_path / k / "test.csv", keep_default_na=False) for k in "abc"}
    pd.testing.assert_frame_equal(read["a"], read["b"])
    assert not read["a"].equals(read["c"])
    summary = cikm16.make(FIXTURE, tmp_path / "d", ratios=(0.8, 0.0, 0.2))
    assert [summary["splits"][s]["rows"] for s in SPLITS] == [50, 0, 13]


def test_na_cells_and_blanks(tmp_path):
    lines = _lines()
    lines.append("300;99;NA;0;NA;2016-05-12;151;0;1001;FALSE")
    lines.append("301;99;NA;10;700;2016-05-12;;NA;1001;FALSE")
    lines.append("302;99;NA;20;800;2016-05-12; 5, 6;0;7 ,8;FALSE")
    frame, facts = cikm16._query_table(_write(tmp_path, lines))
    assert frame.loc[302, "query_tokens"] == "5|6" and frame.loc[302, "query_items"] == "7|8"
    assert 300 not in frame.index and facts["queries_dropped_duration_empty"] == 2
    assert frame.loc[301, "category_id"] == -1 and facts["queries_without_category"] == 1


def test_bad_input_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-queries.csv"):
        cikm16.build(tmp_path)
    lines = _lines()
    with pytest.raises(ValueError, match="header"):
        cikm16.build(_write(tmp_path, [lines[0].replace(";", ","), *lines[1:]]))
    with pytest.raises(ValueError, match="line 4 has 9 fields"):
        cikm16.build(_write(tmp_path, [*lines[:3], lines[3].rsplit(";", 1)[0], *lines[4:]]))
    bad = lines[1].replace(";1520;", ";fast;")
    with pytest.raises(ValueError, match=r"train-queries\.csv: line 2: duration 'fast'"):
        cikm16.build(_write(tmp_path, [lines[0], bad, *lines[2:]]))
    bad = lines[2].replace(";1096;", ";1096;a,b")
    with pytest.raises(ValueError, match=r"line 3: items"):
        cikm16.build(_write(tmp_path, [lines[0], lines[1], bad, *lines[3:]]))
    only_long = [lines[0], "200;90;NA;0;6000;2016-05-10;151,152;0;1001,1002;FALSE"]
    with pytest.raises(ValueError, match="no query"):
        cikm16.build(_write(tmp_path, only_long))
