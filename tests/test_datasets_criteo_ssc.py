"""Tests of the Criteo Sponsored Search Conversion Log builder on a hand-made fixture."""

import datetime
import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from rq_keras.data import check_files
from rq_keras.datasets import criteo_ssc

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "criteo_ssc"
FILE = FIXTURE / "CriteoSearchData"
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def frame():
    return criteo_ssc.build(FIXTURE)


def _lines():
    return FILE.read_text().splitlines()


def _write(tmp_path, lines, name="CriteoSearchData"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_columns_and_dtypes(frame):
    spec = criteo_ssc.SPEC
    assert list(frame.columns) == list(spec.columns)
    assert len(frame) == 50 and frame.index.tolist() == list(range(50))
    assert not frame.isna().any().any()
    for f in spec.features:
        if f.is_numeric:
            assert frame[f.name].dtype == np.float64, f.name
        elif f.dtype == "string":
            assert frame[f.name].map(type).eq(str).all(), f.name
        else:
            assert frame[f.name].dtype == np.int64, f.name
    assert frame["sales_amount"].dtype == np.float64
    assert len(criteo_ssc.COLUMNS) == 23


def test_golden_rows_by_hand(frame):
    # Line 1: a sale of 24.98 EUR clicked at 1596441600 = 2020-08-03 08:00 UTC, a Monday.
    one = frame.loc[0]
    assert one["sales_amount"] == 24.98
    assert (one["click_hour"], one["click_day_of_week"]) == (8, 0)
    assert (one["nb_clicks_1week"], one["product_price"]) == (12.0, 24.98)
    assert one["device_type"] == "7E56C27BFF0305E788DA55A029EC4988"
    assert one["audience_id"] == "" and one["product_category3"] == ""
    assert one["product_title"] == "6CF9A0B1C2D3E4F5 0A1B2C3D4E5F6071"
    assert one["user_id"] == "9A1B2C3D4E5F60718293A4B5C6D7E8F9"
    # Line 2: no sale, clicked 53,999 s later (22:59:59 the same Monday), price and
    # click count missing (-1), every categorical but device/product/partner/user -1.
    two = frame.loc[1]
    assert two["sales_amount"] == 0.0
    assert (two["click_hour"], two["click_day_of_week"]) == (22, 0)
    assert (two["nb_clicks_1week"], two["product_price"]) == (0.0, 0.0)
    assert two["product_brand"] == "" and two["product_age_group"] == ""
    assert two["product_id"] == "F00DBEEF0123456789ABCDEF01234567"
    assert two["partner_id"] == "E3DDEB04F8AFF944B11943BB57D2F620"


def test_every_row_from_first_principles(frame):
    raw = pd.read_csv(FILE, sep="\t", header=None, names=criteo_ssc.COLUMNS, dtype=str)
    sale = raw["Sale"].astype(int)
    amount = raw["SalesAmountInEuro"].astype(float)
    expected = np.where((sale == 1) & (amount >= 0), amount, 0.0)
    np.testing.assert_array_equal(frame["sales_amount"], expected)
    for c in ("product_price", "nb_clicks_1week"):
        value = raw[c].astype(float)
        np.testing.assert_array_equal(frame[c], np.where(value == -1, 0.0, value))
    for c in criteo_ssc.CATEGORICAL_COLUMNS:
        np.testing.assert_array_equal(frame[c], np.where(raw[c] == "-1", "", raw[c]))
    for i, stamp in enumerate(raw["click_timestamp"].astype(int)):
        if stamp == -1:
            assert frame.loc[i, "click_hour"] == -1 == frame.loc[i, "click_day_of_week"]
            continue
        moment = datetime.datetime.fromtimestamp(stamp, tz=datetime.timezone.utc)
        assert frame.loc[i, "click_hour"] == moment.hour
        assert frame.loc[i, "click_day_of_week"] == moment.weekday()


def test_sale_with_unknown_amount_is_zero(frame):
    # Line 47: Sale 1, SalesAmountInEuro -1.
    assert _lines()[46].split("\t")[:2] == ["1", "-1"]
    assert frame.loc[46, "sales_amount"] == 0.0


def test_make_writes_splits_and_summary(tmp_path):
    summary = criteo_ssc.make(FILE, tmp_path / "out", seed=0)
    assert [summary["splits"][s]["rows"] for s in SPLITS] == [35, 5, 10]
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["rows"] == 50 and written["sales"] == 14
    assert written["sales_amount_missing"] == 1
    assert written["rows_missing"]["click_timestamp"] == 1
    assert written["positive_share"] == pytest.approx(12 / 50)
    files = [tmp_path / "out" / f"{s}.parquet" for s in SPLITS]
    assert check_files(files, criteo_ssc.SPEC).rows_kept == 50


def test_split_is_deterministic_and_chunking_does_not_matter(tmp_path, frame):
    criteo_ssc.make(FIXTURE, tmp_path / "a", seed=2)
    criteo_ssc.make(FIXTURE, tmp_path / "b", seed=2, chunksize=7)
    for split in SPLITS:
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "a" / f"{split}.parquet"),
            pd.read_parquet(tmp_path / "b" / f"{split}.parquet"),
        )
    pd.testing.assert_frame_equal(criteo_ssc.build(FIXTURE, chunksize=7), frame)


def test_header_line_is_skipped(tmp_path, frame):
    path = _write(tmp_path, ["\t".join(criteo_ssc.COLUMNS), *_lines()], name="CriteoSearchData.tsv")
    pd.testing.assert_frame_equal(criteo_ssc.build(tmp_path), frame)
    assert criteo_ssc.build(path).shape == frame.shape


def test_bad_input_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="CriteoSearchData"):
        criteo_ssc.build(tmp_path)
    lines = _lines()
    with pytest.raises(ValueError, match=r"CriteoSearchData: line 1 has 22 tab-separated fields"):
        criteo_ssc.build(_write(tmp_path, [lines[0].rsplit("\t", 1)[0], *lines[1:]]))
    with pytest.raises(ValueError, match=r"line 4 has fewer than 23 fields"):
        criteo_ssc.build(_write(tmp_path, [*lines[:3], lines[3].rsplit("\t", 1)[0], *lines[4:]]))
    with pytest.raises(ValueError, match=r"CriteoSearchData: malformed"):
        criteo_ssc.build(_write(tmp_path, [*lines[:3], lines[3] + "\textra", *lines[4:]]))
    with pytest.raises(ValueError, match=r"line 3: Sale is not 0 or 1"):
        criteo_ssc.build(_write(tmp_path, [*lines[:2], "2" + lines[2][1:], *lines[3:]]))
    bad = lines[1].split("\t")
    bad[5] = "cheap"
    with pytest.raises(ValueError, match=r"CriteoSearchData: malformed"):
        criteo_ssc.build(_write(tmp_path, [lines[0], "\t".join(bad), *lines[2:]]))
