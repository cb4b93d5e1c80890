"""Tests of rq_keras.datasets.valued_shoppers on the 20,000-row Kaggle sample."""

import csv
import datetime
import json

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from rq_keras.datasets import valued_shoppers as vs

SAMPLE = REPO.parent / "shared" / "data" / "valued_shoppers_sample" / "transactions-sample.csv"
HEADER = ",".join(vs.COLUMNS) + "\n"

pytestmark = pytest.mark.skipif(not SAMPLE.is_file(), reason=f"{SAMPLE} is not there")


@pytest.fixture(scope="module")
def frame():
    return vs.build(SAMPLE)


def raw_rows(path=SAMPLE):
    """The sample as a list of dicts, parsed with the csv module."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [dict(zip(vs.COLUMNS, r)) for r in csv.reader(fh)]


def expected(rows, customer_id):
    """First-day features and the 365-day label of one customer, by hand."""
    mine = [r for r in rows if int(r["id"]) == customer_id]
    day = {r["date"] for r in mine}
    d0 = min(datetime.date.fromisoformat(d) for d in day)
    first = [r for r in mine if datetime.date.fromisoformat(r["date"]) == d0]
    end = d0 + datetime.timedelta(days=365)
    later = [r for r in mine if d0 < datetime.date.fromisoformat(r["date"]) <= end]

    def key(r):
        ids = [int(r[c]) for c in ("chain", "dept", "category", "company", "brand")]
        return (-float(r["purchaseamount"]), *ids, r["productmeasure"])

    top = min(first, key=key)
    out = {c: int(top[c]) for c in ("chain", "dept", "category", "company", "brand")}
    out["productmeasure"] = top["productmeasure"]
    out["first_day_spend"] = sum(float(r["purchaseamount"]) for r in first)
    out["first_day_items"] = len(first)
    out["first_day_quantity"] = sum(float(r["purchasequantity"]) for r in first)
    out["holdout_value"] = sum(float(r["purchaseamount"]) for r in later)
    return out


def assert_row(row, want):
    for name, value in want.items():
        if isinstance(value, str):
            assert row[name] == value, name
        else:
            assert row[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.parametrize("customer_id", [86246, 86252])
def test_golden_customers(frame, customer_id):
    assert_row(frame.loc[customer_id], expected(raw_rows(), customer_id))


def test_golden_literal_values(frame):
    # Both customers start on 2012-03-02; rows after 2013-03-02 are outside.
    assert list(frame.index) == [86246, 86252]
    a, b = frame.loc[86246], frame.loc[86252]
    assert a["first_day_spend"] == pytest.approx(210.51)
    assert a["first_day_items"] == 52.0 and a["first_day_quantity"] == 58.0
    assert a["holdout_value"] == pytest.approx(21150.52)
    assert b["first_day_spend"] == pytest.approx(137.67)
    assert b["holdout_value"] == pytest.approx(24188.18)
    assert (a["dept"], a["category"], a["company"], a["brand"]) == (64, 6401, 108066080, 4098)


def test_columns_and_types(frame):
    assert tuple(frame.columns) == vs.SPEC.columns
    for f in vs.SPEC.features:
        if f.dtype == "string":  # object (pandas 2) or pandas 3's str dtype: strings
            assert pd.api.types.is_string_dtype(frame[f.name]), f.name
            continue
        want = {"int64": np.int64, "float32": np.float64}[f.dtype]
        assert frame[f.name].dtype == want, f.name
    assert frame["holdout_value"].dtype == np.float64
    assert not frame.isna().any().any()


def test_chunks_and_header_give_the_same_frame(frame, tmp_path):
    pd.testing.assert_frame_equal(vs.build(SAMPLE, chunksize=997), frame)
    with_header = tmp_path / "transactions.csv"
    with_header.write_text(HEADER + SAMPLE.read_text())
    pd.testing.assert_frame_equal(vs.build(tmp_path, chunksize=5000), frame)


def test_companies_filter(frame):
    company = 107654575
    got = vs.build(SAMPLE, companies=[company])
    rows = [r for r in raw_rows() if int(r["company"]) == company]
    assert sorted({int(r["id"]) for r in rows}) == list(got.index)
    for cid in got.index:
        assert_row(got.loc[cid], expected(rows, cid))
    with pytest.raises(ValueError, match="no transactions of companies"):
        vs.build(SAMPLE, companies=[1])


def test_returns_stay_in_sums(tmp_path):
    # Customer 1: first day 10 - 3 (a return); later -5 then +2 (label -3,
    # kept raw); a row 366 days later is outside. Customer 2: a tie on amount,
    # broken by the smaller (chain, dept, ...).
    path = tmp_path / "t.csv"
    path.write_text(
        "1,5,2,20,100,7,2012-03-02,1,OZ,2,10.0\n"
        "1,5,2,20,100,7,2012-03-02,1,OZ,-1,-3.0\n"
        "1,5,2,20,100,7,2012-03-05,1,OZ,-1,-5.0\n"
        "1,5,2,20,100,7,2013-03-02,1,OZ,1,2.0\n"
        "1,5,2,20,100,7,2013-03-03,1,OZ,1,50.0\n"
        "2,9,4,40,300,8,2012-04-01,1,,1,4.0\n"
        "2,9,3,30,200,9,2012-04-01,1,LB,1,4.0\n"
        "2,9,3,30,200,9,2012-04-02,1,LB,1,4.0\n"
    )
    frame, facts = vs._customer_table(path, chunksize=3)
    one, two = frame.loc[1], frame.loc[2]
    assert one["first_day_spend"] == 7.0 and one["first_day_quantity"] == 1.0
    assert one["first_day_items"] == 2.0
    assert one["holdout_value"] == -3.0
    assert two["first_day_spend"] == 8.0 and two["holdout_value"] == 4.0
    assert (two["dept"], two["brand"], two["productmeasure"]) == (3, 9, "LB")
    assert facts["negative_amount_rows"] == 2
    assert facts["customers_label_negative"] == 1
    assert facts["customers_window_past_last_date"] == 1
    # An empty productmeasure on the top row becomes "".
    path.write_text("3,1,1,1,1,1,2012-03-02,1,,1,9.0\n3,1,1,1,1,1,2012-03-02,1,OZ,1,1.0\n")
    assert vs.build(path).loc[3, "productmeasure"] == ""


def test_make_writes_splits(tmp_path, frame):
    summary = vs.make(SAMPLE, tmp_path, seed=0, fmt="csv")
    for name in ("train.csv", "validation.csv", "test.csv", "feature_spec.yaml"):
        assert (tmp_path / name).is_file()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["rows"] == summary["rows"] == 2
    assert summary["rows_read"] == 20_000
    assert summary["negative_amount_rows"] == 67
    assert summary["companies"] is None
    assert summary["last_date"] == "2013-04-23"
    again = vs.make(SAMPLE, tmp_path / "again", seed=0, fmt="csv")
    assert {s: again["splits"][s]["rows"] for s in again["splits"]} == {
        s: summary["splits"][s]["rows"] for s in summary["splits"]
    }


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="transactions.csv"):
        vs.build(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        vs.build(tmp_path / "nope.csv")


def test_wrong_column_count(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("1,5,2,20,100,7,2012-03-02,1,OZ,2\n")
    with pytest.raises(ValueError, match=r"t.csv: line 1 has 10 comma-separated fields"):
        vs.build(path)
    path.write_text("1,5,2,20,100,7,2012-03-02,1,OZ,2,10.0\n1,5,2,20,100,7,2012-03-02,1,OZ,2,1,9\n")
    with pytest.raises(ValueError, match=r"t.csv: malformed"):
        vs.build(path)
    path.write_text("1,5,2,20,100,7,2012-03-02,1,OZ,2,10.0\n1,5,2,20,100,7,2012-03-02,1,OZ,2\n")
    with pytest.raises(ValueError, match=r"t.csv: empty or missing cells"):
        vs.build(path)
    path.write_text("id,chain,dept,category,company,brand,day,a,b,c,d\n")
    with pytest.raises(ValueError, match="the header names"):
        vs.build(path)


def test_bad_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("1,5,2,20,100,7,2012-03-02,1,OZ,2,10.0\n1,5,2,20,100,7,2012-03-40,1,OZ,2,1\n")
    with pytest.raises(ValueError, match=r"t.csv: unparsable date '2012-03-40'"):
        vs.build(path)
    path.write_text("1,5,2,20,100,7,2012-03-02,1,OZ,2,ten\n")
    with pytest.raises(ValueError, match=r"t.csv: malformed"):
        vs.build(path)
    path.write_text("1,5,2,20,100,7,2012-03-02,1,OZ,2,\n")
    with pytest.raises(
        ValueError, match=r"t.csv: empty or missing cells in column\(s\) \['purchaseamount'\]"
    ):
        vs.build(path)
    path.write_text("")
    with pytest.raises(ValueError, match="empty file"):
        vs.build(path)
