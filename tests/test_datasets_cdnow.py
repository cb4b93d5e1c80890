"""Tests of rq_keras.datasets.cdnow on the real CDNOW master file."""

import datetime
import json

import numpy as np
import pandas as pd
import pytest

from conftest import CDNOW
from rq_keras.datasets import cdnow
from rq_keras.datasets._common import split_frame

HEADER = "customer_id date number_of_cds dollar_value\n"


@pytest.fixture(scope="module")
def frame():
    return cdnow.build(CDNOW)


def raw_rows(customer_id):
    """(date, cds, dollars) of one customer, straight from the text file."""
    rows = []
    with open(CDNOW, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            cid, date, cds, dollars = line.split()
            if cid == customer_id:
                rows.append((date, int(cds), float(dollars)))
    return rows


def expected(customer_id):
    """Features and label of one customer, computed from first principles."""
    rows = raw_rows(customer_id)
    cal = [r for r in rows if "19970101" <= r[0] <= "19970930"]
    hold = [r for r in rows if "19971001" <= r[0] <= "19980630"]

    def day(s):
        return datetime.date(int(s[:4]), int(s[4:6]), int(s[6:]))

    first = min(r[0] for r in cal)
    last = max(r[0] for r in cal)
    purchase_days = {r[0] for r in cal}
    return {
        "first_purchase_month": day(first).month,
        "first_purchase_dow": day(first).weekday(),
        "first_purchase_day": (day(first) - datetime.date(1997, 1, 1)).days,
        "first_day_cds": sum(r[1] for r in cal if r[0] == first),
        "first_day_spend": sum(r[2] for r in cal if r[0] == first),
        "frequency": len(purchase_days) - 1,
        "recency": (day(last) - day(first)).days,
        "age": (datetime.date(1997, 9, 30) - day(first)).days,
        "calibration_spend": sum(r[2] for r in cal),
        "calibration_cds": sum(r[1] for r in cal),
        "calibration_mean_spend": sum(r[2] for r in cal) / len(purchase_days),
        "holdout_spend": sum(r[2] for r in hold),
    }


@pytest.mark.parametrize("customer_id", ["09172", "00002"])
def test_golden_customer(frame, customer_id):
    # 09172 buys on 1997-09-30 and 1997-10-01 (both window edges) and twice on
    # 1997-09-15; 00002 has two rows on its only purchase day, nothing later.
    row = frame.loc[customer_id]
    want = expected(customer_id)
    for name, value in want.items():
        assert row[name] == pytest.approx(value, abs=1e-9), name


def test_golden_literal_values(frame):
    row = frame.loc["09172"]
    assert row["first_day_cds"] == 3.0
    assert row["frequency"] == 5.0  # 6 purchase days in calibration
    assert row["recency"] == 239.0  # 1997-02-03 .. 1997-09-30
    assert row["holdout_spend"] == pytest.approx(
        15.49 + 31.95 + 185.34 + 45.47 + 29.99 + 47.45 + 409.22 + 15.49 + 18.49 + 139.89
    )
    assert frame.loc["00002", "first_day_spend"] == pytest.approx(89.0)
    assert frame.loc["00002", "holdout_spend"] == 0.0


def test_shape_columns_and_types(frame):
    assert len(frame) == 23_570
    assert frame.index.is_unique and frame.index.is_monotonic_increasing
    assert tuple(frame.columns) == cdnow.SPEC.columns
    for f in cdnow.SPEC.features:
        want = np.int64 if f.dtype == "int64" else np.float64
        assert frame[f.name].dtype == want, f.name
    assert frame["holdout_spend"].dtype == np.float64
    assert not frame.isna().any().any()
    assert set(frame["first_purchase_month"]) == {1, 2, 3}


def test_label_facts(frame):
    y = frame["holdout_spend"].to_numpy()
    assert (y >= 0).all()
    zero_share = float(np.mean(y == 0))
    assert 0.69 < zero_share < 0.71  # measured 0.7006
    assert frame["holdout_spend"].sum() == pytest.approx(776_962.0, rel=1e-3)
    assert (frame["age"] >= frame["recency"]).all()


def test_no_holdout_leak_into_features(frame):
    # Calibration totals equal the sums over rows up to 1997-09-30.
    raw = pd.read_csv(CDNOW, sep=r"\s+", dtype={"customer_id": str, "date": str})
    cal = raw[raw["date"] <= "19970930"]
    assert frame["calibration_spend"].sum() == pytest.approx(cal["dollar_value"].sum())
    assert frame["calibration_cds"].sum() == cal["number_of_cds"].sum()
    hold = raw[raw["date"] >= "19971001"]
    assert frame["holdout_spend"].sum() == pytest.approx(hold["dollar_value"].sum())


def test_split_is_deterministic_and_disjoint(frame):
    a = split_frame(frame, cdnow.INFO.ratios, seed=0)
    b = split_frame(frame, cdnow.INFO.ratios, seed=0)
    c = split_frame(frame, cdnow.INFO.ratios, seed=1)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    ids = {s: set(frame.index[a == s]) for s in ("train", "validation", "test")}
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    assert [len(ids[s]) for s in ("train", "validation", "test")] == [16_499, 2_357, 4_714]


def test_build_is_deterministic(frame):
    pd.testing.assert_frame_equal(cdnow.build(CDNOW.parent, seed=3), frame)


def test_make_writes_splits(tmp_path, frame):
    summary = cdnow.make(CDNOW.parent, tmp_path / "a", seed=0)
    cdnow.make(CDNOW, tmp_path / "b", seed=0)
    for name in ("train.parquet", "validation.parquet", "test.parquet", "feature_spec.yaml"):
        assert (tmp_path / "a" / name).is_file()
    on_disk = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert on_disk["rows"] == summary["rows"] == 23_570
    assert summary["calibration_window"] == ["1997-01-01", "1997-09-30"]
    assert summary["holdout_window"] == ["1997-10-01", "1998-06-30"]
    assert summary["customers_dropped_no_calibration_purchase"] == 0
    assert summary["splits"]["train"]["rows"] == 16_499
    parts = []
    for split in ("train", "validation", "test"):
        left = pd.read_parquet(tmp_path / "a" / f"{split}.parquet")
        right = pd.read_parquet(tmp_path / "b" / f"{split}.parquet")
        pd.testing.assert_frame_equal(left, right)
        assert tuple(left.columns) == cdnow.SPEC.columns
        parts.append(left)
    # Every customer's row is written exactly once.
    written = pd.concat(parts).sort_values(list(cdnow.SPEC.columns)).reset_index(drop=True)
    built = frame.sort_values(list(cdnow.SPEC.columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(written, built, check_dtype=False)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="CDNOW_master.txt"):
        cdnow.build(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        cdnow.build(tmp_path / "nope.txt")


def test_wrong_column_count(tmp_path):
    path = tmp_path / "CDNOW_master.txt"
    path.write_text(HEADER + "00001 19970101 1 11.77\n00002 19970112 1 12.00 7\n")
    with pytest.raises(ValueError, match="CDNOW_master.txt"):
        cdnow.build(tmp_path)
    path.write_text("customer_id date dollar_value\n00001 19970101 11.77\n")
    with pytest.raises(ValueError, match="expected the columns"):
        cdnow.build(path)


def test_unparsable_date(tmp_path):
    path = tmp_path / "CDNOW_master.txt"
    path.write_text(HEADER + "00001 19970101 1 11.77\n00002 1997-01-12 1 12.00\n")
    with pytest.raises(ValueError, match=r"unparsable date '1997-01-12' in line 3"):
        cdnow.build(path)


def test_no_calibration_customer(tmp_path):
    path = tmp_path / "CDNOW_master.txt"
    path.write_text(HEADER + "00001 19971101 1 11.77\n")
    with pytest.raises(ValueError, match="calibration window"):
        cdnow.build(path)


def test_tiny_file_edges(tmp_path):
    # A late first purchase is dropped and counted; after-holdout rows ignored.
    path = tmp_path / "CDNOW_master.txt"
    path.write_text(
        HEADER
        + "00001 19970101 1 10.00\n00001 19970101 2 5.00\n00001 19970930 1 1.00\n"
        + "00001 19971001 1 2.00\n00001 19980701 1 100.00\n00002 19971101 1 7.00\n"
    )
    frame, facts = cdnow._customer_table(path)
    assert list(frame.index) == ["00001"]
    row = frame.loc["00001"]
    assert row["first_day_cds"] == 3.0 and row["first_day_spend"] == 15.0
    assert row["frequency"] == 1.0 and row["recency"] == 272.0 and row["age"] == 272.0
    assert row["holdout_spend"] == 2.0
    assert facts["customers_dropped_no_calibration_purchase"] == 1
    assert facts["transactions_after_holdout_ignored"] == 1
