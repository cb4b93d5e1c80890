"""CDNOW: customer lifetime value of an online CD retailer (the default dataset).

Source: the CDNOW master file of P. Fader and B. Hardie, as shipped in the
`lifetimes==0.11.3` wheel (MIT; see `rq_keras/datasets/data/cdnow/SOURCE.md`). One text file,
`CDNOW_master.txt`, whitespace-separated with a header line
`customer_id date number_of_cds dollar_value`; `date` is `YYYYMMDD`, customer
ids are zero-padded strings. 69,659 transactions of 23,570 customers, all
first seen in Q1 1997; transactions run 1997-01-01 .. 1998-06-30.

Recipe (one row per customer, the classic calibration/holdout LTV set-up):

* Calibration window 1997-01-01 .. 1997-09-30 (the first 39 weeks, 273
  days); holdout window 1997-10-01 .. 1998-06-30 (the next 273 days). All
  features come from calibration transactions only; no holdout transaction
  is seen by a feature.
* Label `holdout_spend`: the sum of `dollar_value` over the customer's
  holdout transactions, 0.0 when there are none (zero-inflated and
  long-tailed: about 70% zeros). Spec `clip_min: 0`.
* Features (days are calendar days, a purchase day is a date with at least one
  transaction; several rows on one date are one purchase day):
  `first_purchase_month` (1-3) and `first_purchase_dow` (0 = Monday) ids;
  `first_purchase_day` (days since 1997-01-01); `first_day_cds` and
  `first_day_spend` (CDs and dollars of the first purchase day);
  `frequency` (repeat purchase days in calibration = purchase days - 1);
  `recency` (days from the first to the last calibration purchase day);
  `age` (days from the first purchase to 1997-09-30, the `T` of BTYD
  models); `calibration_spend`, `calibration_cds` (totals of the window) and
  `calibration_mean_spend` (`calibration_spend / (frequency + 1)`, dollars
  per purchase day). No feature can be missing, so no default is ever used.
* A customer whose first purchase is after the calibration window would have
  no features; such customers are dropped and counted (none in the real file).
  Transactions after the holdout window are ignored and counted (none in the
  real file).

Split: random 7:1:2 over customers (the paper's ratios), seeded, done by
`write_splits` (one row per customer, so no customer is in two splits). The
frame `build` returns is indexed by `customer_id` (sorted), which the written
files do not keep.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from rq_keras.datasets._common import DatasetInfo, write_splits
from rq_keras.features.spec import FeatureSpec

__all__ = [
    "BUNDLED_RAW_DIR",
    "SPEC",
    "INFO",
    "build",
    "make",
    "DATA_START",
    "CALIBRATION",
    "HOLDOUT",
]

FILE_NAME = "CDNOW_master.txt"
# The raw file ships inside the package: `make(BUNDLED_RAW_DIR, out_dir)`.
BUNDLED_RAW_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "cdnow")
COLUMNS = ("customer_id", "date", "number_of_cds", "dollar_value")
DATA_START = "1997-01-01"
CALIBRATION = ("1997-01-01", "1997-09-30")
HOLDOUT = ("1997-10-01", "1998-06-30")

_LOG_NORMALIZED = {"kind": "numeric", "transform": "log", "encoding": "normalize"}

SPEC = FeatureSpec.from_dict(
    {
        "name": "cdnow",
        "description": (
            "CDNOW customers: features of 1997-01-01..1997-09-30, label = spend in "
            "1997-10-01..1998-06-30."
        ),
        "label": {"name": "holdout_spend", "clip_min": 0.0},
        "embedding_dim": 16,
        "features": [
            {"name": "first_purchase_month", "kind": "categorical", "dtype": "int64"},
            {"name": "first_purchase_dow", "kind": "categorical", "dtype": "int64"},
            {"name": "first_purchase_day", "kind": "numeric", "encoding": "normalize"},
            {"name": "first_day_cds", **_LOG_NORMALIZED},
            {"name": "first_day_spend", **_LOG_NORMALIZED},
            {"name": "frequency", **_LOG_NORMALIZED},
            {"name": "recency", **_LOG_NORMALIZED},
            {"name": "age", "kind": "numeric", "encoding": "normalize"},
            {"name": "calibration_spend", **_LOG_NORMALIZED},
            {"name": "calibration_cds", **_LOG_NORMALIZED},
            {"name": "calibration_mean_spend", **_LOG_NORMALIZED},
        ],
    }
)


def _resolve(raw_dir) -> str:
    if raw_dir is None:
        raise ValueError(f"cdnow: `raw_dir` is needed (a folder holding {FILE_NAME}, or the file)")
    path = os.fspath(raw_dir)
    if os.path.isdir(path):
        path = os.path.join(path, FILE_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (the CDNOW master file)")
    return path


def read_transactions(raw_dir) -> pd.DataFrame:
    """Reads and checks the raw transactions.

    Args:
        raw_dir: the folder holding `CDNOW_master.txt`, or the file itself.

    Returns:
        DataFrame with `customer_id` (str), `date` (datetime64), `number_of_cds`
        (float64) and `dollar_value` (float64), in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: wrong columns, unparsable dates or numbers, missing cells,
            dates before 1997-01-01, or no rows; the message names the file.
    """
    path = _resolve(raw_dir)
    try:
        frame = pd.read_csv(path, sep=r"\s+", dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CDNOW master file ({e})") from e
    if tuple(frame.columns) != COLUMNS:
        raise ValueError(f"{path}: expected the columns {list(COLUMNS)}, got {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{path}: no transactions")
    blank = (frame.isna() | frame.eq("")).any(axis=1).to_numpy()
    if blank.any():
        raise ValueError(f"{path}: missing cells in line {int(np.argmax(blank)) + 2}")
    date = pd.to_datetime(frame["date"], format="%Y%m%d", errors="coerce")
    if date.isna().any():
        first = int(np.argmax(date.isna().to_numpy()))
        raise ValueError(
            f"{path}: unparsable date {frame['date'].iloc[first]!r} in line {first + 2} "
            "(expected YYYYMMDD)"
        )
    if (date < pd.Timestamp(DATA_START)).any():
        raise ValueError(f"{path}: dates before the data start {DATA_START}")
    out = pd.DataFrame({"customer_id": frame["customer_id"], "date": date})
    for column in ("number_of_cds", "dollar_value"):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            first = int(np.argmax(values.isna().to_numpy()))
            raise ValueError(
                f"{path}: {column} {frame[column].iloc[first]!r} in line {first + 2} "
                "is not a number"
            )
        out[column] = values.astype(np.float64)
    return out


def _customer_table(raw_dir) -> tuple[pd.DataFrame, dict[str, int]]:
    tx = read_transactions(raw_dir)
    cal_start, cal_end = (pd.Timestamp(d) for d in CALIBRATION)
    hold_start, hold_end = (pd.Timestamp(d) for d in HOLDOUT)
    in_cal = (tx["date"] >= cal_start) & (tx["date"] <= cal_end)
    in_hold = (tx["date"] >= hold_start) & (tx["date"] <= hold_end)

    # Purchase days: several rows of a customer on one date are one purchase.
    days = (
        tx[in_cal]
        .groupby(["customer_id", "date"], sort=True)[["number_of_cds", "dollar_value"]]
        .sum()
        .reset_index()
    )
    by_customer = days.groupby("customer_id", sort=True)
    first = by_customer.first()  # days are sorted by date within a customer
    feats = pd.DataFrame(index=first.index)
    first_date = first["date"]
    feats["first_purchase_month"] = first_date.dt.month.astype(np.int64)
    feats["first_purchase_dow"] = first_date.dt.day_of_week.astype(np.int64)
    feats["first_purchase_day"] = (first_date - pd.Timestamp(DATA_START)).dt.days.astype(np.float64)
    feats["first_day_cds"] = first["number_of_cds"]
    feats["first_day_spend"] = first["dollar_value"]
    n_days = by_customer.size()
    feats["frequency"] = (n_days - 1).astype(np.float64)
    feats["recency"] = (by_customer["date"].max() - first_date).dt.days.astype(np.float64)
    feats["age"] = (cal_end - first_date).dt.days.astype(np.float64)
    feats["calibration_spend"] = by_customer["dollar_value"].sum()
    feats["calibration_cds"] = by_customer["number_of_cds"].sum()
    feats["calibration_mean_spend"] = feats["calibration_spend"] / n_days

    holdout = tx[in_hold].groupby("customer_id")["dollar_value"].sum()
    feats["holdout_spend"] = holdout.reindex(feats.index, fill_value=0.0).astype(np.float64)
    feats.index.name = "customer_id"

    if feats.empty:
        raise ValueError(f"cdnow: no customer bought in the calibration window {CALIBRATION}")
    all_customers = tx["customer_id"].nunique()
    facts = {
        "transactions": int(len(tx)),
        "customers_in_file": int(all_customers),
        "customers_dropped_no_calibration_purchase": int(all_customers - len(feats)),
        "transactions_after_holdout_ignored": int((tx["date"] > hold_end).sum()),
    }
    return feats, facts


def build(raw_dir, seed: int = 0) -> pd.DataFrame:
    """One row per customer: calibration features and the holdout spend label.

    Args:
        raw_dir: the folder holding `CDNOW_master.txt`, or the file itself.
        seed: unused (the split is random, done by `write_splits`); kept for
            the registry's `build(raw_dir, seed)` signature.

    Returns:
        DataFrame indexed by `customer_id` (sorted) with exactly the spec's
        columns: int64 ids, float64 numerics and the float64 label.

    Raises:
        FileNotFoundError: the raw file does not exist.
        ValueError: a malformed raw file, or no customer with a calibration
            purchase.
    """
    del seed
    frame, _ = _customer_table(raw_dir)
    return frame[list(SPEC.columns)]


INFO = DatasetInfo(
    name="cdnow",
    build=build,
    spec=SPEC,
    ratios=(0.7, 0.1, 0.2),
    group=None,
    description="CDNOW customer LTV: 39-week calibration features, 39-week holdout spend label",
)


def make(raw_dir, out_dir, *, seed: int = 0, fmt: str = "parquet", **options) -> dict:
    """Builds the CDNOW splits, `feature_spec.yaml` and `summary.json` in `out_dir`.

    Args:
        raw_dir: the folder holding `CDNOW_master.txt`, or the file itself.
        out_dir: where the files go (created if missing).
        seed: the split seed.
        fmt: `"parquet"`, `"csv"` or `"tfrecord"`.
        **options: none are accepted.

    Returns:
        the summary written to `summary.json`.
    """
    if options:
        raise ValueError(f"cdnow: unknown option(s) {sorted(options)}")
    frame, facts = _customer_table(raw_dir)
    extra = {
        "source": "CDNOW master file (Fader & Hardie), lifetimes==0.11.3 wheel",
        "calibration_window": list(CALIBRATION),
        "holdout_window": list(HOLDOUT),
        "label_definition": "sum of dollar_value in the holdout window (0 when none)",
        **facts,
    }
    return write_splits(
        frame[list(SPEC.columns)], INFO, out_dir, seed=seed, fmt=fmt, extra_summary=extra
    )
