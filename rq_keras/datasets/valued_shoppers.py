"""Acquire Valued Shoppers: customer LTV in the ZILN set-up (the paper's "Kaggle" set).

Source: `transactions.csv` of the Kaggle competition "Acquire Valued Shoppers
Challenge" (about 350M rows, 22 GB, about 311K customers, March 2012 to July 2013),
downloaded by the user. Comma-separated, one row per purchased product line,
columns `id, chain, dept, category, company, brand, date, productsize,
productmeasure, purchasequantity, purchaseamount` (`date` is `YYYY-MM-DD`).
The Kaggle file has a header line with those names; the 20,000-row sample in
`shared/data/valued_shoppers_sample` has none. Both are accepted: a first line
whose first field is `id` is taken as the header (and must name exactly those
columns). `productmeasure` may be empty. Returns exist as rows with negative
`purchaseamount` (and `purchasequantity`).

Recipe (Wang, Liu & Miao 2019, "A Deep Probabilistic Model for Customer
Lifetime Value Prediction", `customer_level_data` of the ZILN code):

* A customer's first purchase day `d0` is the earliest `date` of their rows.
* Label `holdout_value`: the sum of `purchaseamount` over the rows with
  `d0 < date <= d0 + 365 days` (the first day excluded), 0.0 when there are
  none. Returns (negative amounts) stay in the sum, so the raw label can be
  negative; it is kept raw, and the spec's `clip_min: 0` clips it for
  training. Windows that run past the last date of the file are not
  shortened or dropped (as in ZILN); `make` counts them.
* Features, from the rows of `d0` only (returns included):
  `first_day_spend` (sum of `purchaseamount`, ZILN's calibration value),
  `first_day_items` (number of rows) and `first_day_quantity` (sum of
  `purchasequantity`), all `transform: log` (sign-preserving). The
  categorical ids `chain`, `dept`, `category`, `company`, `brand` and
  `productmeasure` are those of ONE first-day row: the row with the largest
  `purchaseamount` (ZILN sorts the first-day rows by amount, descending, and
  takes the first); ties go to the row with the smallest `(chain, dept,
  category, company, brand, productmeasure)`, so the choice is deterministic
  and all ids describe one product. An empty `productmeasure` is `""` (the
  spec default); no other feature can be missing.
* ZILN keeps only customers of one of the top-20 companies (transactions
  filtered to that company) and drops customers whose first-day spend is
  <= 0. Neither is done by default: `companies=[...]` keeps only the rows of
  those companies before anything is computed (`d0` is then the first
  purchase with them), and customers with `first_day_spend <= 0` are kept and
  counted in the summary.

Split: random 7:1:2 over customers (the paper's ratios), seeded, done by
`write_splits` (one row per customer). The frame `build` returns is indexed
by the customer `id` (sorted), which the written files do not keep.

Memory: the file is read in chunks of `chunksize` rows (default 2M), never
whole. The peak is about 0.9 GB for the parsing of one 2M-row chunk (dates
and measures read as categoricals) plus the per-customer state: one
first-day record per customer and, for the label, one (id, day, amount)
record per distinct customer purchase day (20 bytes, about 40 at the final
concatenation). The full file has some tens of millions of customer-days,
so the build needs roughly 2-5 GB of RAM. Parsing runs at about 0.75M rows
a second on one core (measured on a 3M-row copy of the sample): about 8
minutes for the full file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from rq_keras.datasets._common import DatasetInfo, write_splits
from rq_keras.features.spec import FeatureSpec

__all__ = ["SPEC", "INFO", "build", "make", "COLUMNS", "LABEL_WINDOW_DAYS"]

FILE_NAME = "transactions.csv"
COLUMNS = (
    "id",
    "chain",
    "dept",
    "category",
    "company",
    "brand",
    "date",
    "productsize",
    "productmeasure",
    "purchasequantity",
    "purchaseamount",
)
INT_IDS = ("chain", "dept", "category", "company", "brand")
IDS = (*INT_IDS, "productmeasure")
LABEL_WINDOW_DAYS = 365
DEFAULT_CHUNKSIZE = 2_000_000
_DTYPES = {
    "id": np.int64,
    **{c: np.int64 for c in INT_IDS},
    "date": "category",
    "productsize": np.float64,
    "productmeasure": "category",
    "purchasequantity": np.float64,
    "purchaseamount": np.float64,
}
_LOG_NORMALIZED = {"kind": "numeric", "transform": "log", "encoding": "normalize"}

SPEC = FeatureSpec.from_dict(
    {
        "name": "valued_shoppers",
        "description": (
            "Kaggle Acquire Valued Shoppers customers (ZILN set-up): first-purchase-day "
            "features, label = spend in the next 365 days."
        ),
        "label": {"name": "holdout_value", "clip_min": 0.0},
        "embedding_dim": 64,
        "features": [
            {"name": "chain", "kind": "categorical", "dtype": "int64"},
            {"name": "dept", "kind": "categorical", "dtype": "int64"},
            {"name": "category", "kind": "categorical", "dtype": "int64"},
            {"name": "company", "kind": "categorical", "dtype": "int64", "min_count": 5},
            {"name": "brand", "kind": "categorical", "dtype": "int64", "min_count": 5},
            {"name": "productmeasure", "kind": "categorical", "dtype": "string"},
            {"name": "first_day_spend", **_LOG_NORMALIZED},
            {"name": "first_day_items", **_LOG_NORMALIZED},
            {"name": "first_day_quantity", **_LOG_NORMALIZED},
        ],
    }
)

# A first-day record: one customer-day, reduced; `top_amount` and the ids are
# those of its top row.
_RECORD = ("id", "day", "spend", "items", "quantity", "top_amount", *IDS)
_TOP_ORDER = ("id", "top_amount", *IDS)
_TOP_ASCENDING = (True, False, *(True for _ in IDS))


def _resolve(raw_dir) -> str:
    if raw_dir is None:
        raise ValueError(
            f"valued_shoppers: `raw_dir` is needed (a folder holding {FILE_NAME}, or the file)"
        )
    path = os.fspath(raw_dir)
    if os.path.isdir(path):
        path = os.path.join(path, FILE_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (the Valued Shoppers transactions.csv)")
    return path


def _has_header(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as fh:
        line = fh.readline().rstrip("\r\n")
    if not line:
        raise ValueError(f"{path}: empty file")
    fields = [f.strip().strip('"').lower() for f in line.split(",")]
    if len(fields) != len(COLUMNS):
        raise ValueError(
            f"{path}: line 1 has {len(fields)} comma-separated fields, expected "
            f"{len(COLUMNS)} ({', '.join(COLUMNS)})"
        )
    if fields[0] != "id":
        return False
    if tuple(fields) != COLUMNS:
        raise ValueError(f"{path}: the header names {fields}, expected {list(COLUMNS)}")
    return True


def _chunks(path: str, chunksize: int):
    header = _has_header(path)
    reader = pd.read_csv(
        path,
        header=None,
        names=list(COLUMNS),
        skiprows=1 if header else 0,
        dtype=_DTYPES,
        keep_default_na=False,
        na_values=[""],
        index_col=False,
        chunksize=chunksize,
    )
    try:
        yield from reader
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: malformed transactions ({e})") from e
    finally:
        reader.close()


def _days(path: str, dates: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 of a categorical `YYYY-MM-DD` column."""
    if dates.isna().any():
        raise ValueError(f"{path}: a row has an empty date")
    categories = dates.cat.categories
    parsed = pd.to_datetime(categories, format="%Y-%m-%d", errors="coerce")
    if parsed.isna().any():
        bad = categories[np.argmax(parsed.isna())]
        raise ValueError(f"{path}: unparsable date {bad!r} (expected YYYY-MM-DD)")
    epoch_days = (parsed.to_numpy().astype("datetime64[D]").astype(np.int64)).astype(np.int32)
    return epoch_days[dates.cat.codes.to_numpy()]


def _reduce_first_days(records: pd.DataFrame) -> pd.DataFrame:
    """Keeps each customer's earliest day and merges that day's records into one."""
    earliest = records.groupby("id")["day"].transform("min")
    records = records[records["day"].to_numpy() == earliest.to_numpy()]
    top = records.sort_values(list(_TOP_ORDER), ascending=list(_TOP_ASCENDING), kind="stable")
    top = top.drop_duplicates("id", keep="first").set_index("id")
    sums = records.groupby("id")[["spend", "items", "quantity"]].sum()
    out = top[["day", "top_amount", *IDS]].join(sums)
    return out.reset_index()[list(_RECORD)]


def _scan(path: str, companies: Iterable[int] | None, chunksize: int):
    """One pass over the file: first-day records and per customer-day sums."""
    keep = None if companies is None else np.asarray(sorted(set(companies)), dtype=np.int64)
    first = None
    pair_ids, pair_days, pair_amounts = [], [], []
    facts = {"rows_read": 0, "rows_outside_companies": 0, "negative_amount_rows": 0}
    last_day = None
    for chunk in _chunks(path, chunksize):
        facts["rows_read"] += len(chunk)
        empty = chunk.drop(columns=["productsize", "productmeasure"]).isna().any()
        missing = empty.index[empty.to_numpy()].tolist()
        if missing:
            raise ValueError(f"{path}: empty or missing cells in column(s) {missing}")
        if keep is not None:
            inside = np.isin(chunk["company"].to_numpy(), keep)
            facts["rows_outside_companies"] += int((~inside).sum())
            chunk = chunk[inside]
            if chunk.empty:
                continue
        day = _days(path, chunk["date"])
        amount = chunk["purchaseamount"].to_numpy()
        facts["negative_amount_rows"] += int((amount < 0).sum())
        last_day = day.max() if last_day is None else max(last_day, day.max())

        pairs = pd.DataFrame({"id": chunk["id"].to_numpy(), "day": day, "amount": amount})
        pairs = pairs.groupby(["id", "day"], sort=False)["amount"].sum()
        pair_ids.append(pairs.index.get_level_values("id").to_numpy())
        pair_days.append(pairs.index.get_level_values("day").to_numpy())
        pair_amounts.append(pairs.to_numpy())

        earliest = pd.Series(day).groupby(chunk["id"].to_numpy()).transform("min").to_numpy()
        on_first = day == earliest
        candidates = chunk[on_first]
        records = pd.DataFrame(
            {
                "id": candidates["id"].to_numpy(),
                "day": day[on_first],
                "spend": amount[on_first],
                "items": np.ones(len(candidates), dtype=np.int64),
                "quantity": candidates["purchasequantity"].to_numpy(),
                "top_amount": amount[on_first],
                **{c: candidates[c].to_numpy() for c in INT_IDS},
                "productmeasure": candidates["productmeasure"].astype(object).fillna("").to_numpy(),
            }
        )
        records = _reduce_first_days(records)
        if first is None:
            first = records
        else:
            touched = first["id"].isin(records["id"]).to_numpy()
            merged = _reduce_first_days(pd.concat([first[touched], records]))
            first = pd.concat([first[~touched], merged], ignore_index=True)
    if first is None or first.empty:
        where = "" if keep is None else f" of companies {keep.tolist()}"
        raise ValueError(f"{path}: no transactions{where}")
    pairs = (np.concatenate(pair_ids), np.concatenate(pair_days), np.concatenate(pair_amounts))
    facts["last_date"] = str(np.datetime64(int(last_day), "D"))
    return first.set_index("id").sort_index(), pairs, facts, int(last_day)


def _customer_table(raw_dir, companies=None, chunksize=DEFAULT_CHUNKSIZE):
    if chunksize < 1:
        raise ValueError(f"`chunksize` must be >= 1, got {chunksize}")
    path = _resolve(raw_dir)
    first, (ids, days, amounts), facts, last_day = _scan(path, companies, chunksize)
    position = first.index.get_indexer(ids)
    d0 = first["day"].to_numpy()[position]
    in_window = (days > d0) & (days <= d0 + LABEL_WINDOW_DAYS)
    label = np.bincount(
        position[in_window], weights=amounts[in_window], minlength=len(first)
    ).astype(np.float64)

    frame = pd.DataFrame(index=first.index)
    for c in INT_IDS:
        frame[c] = first[c].astype(np.int64)
    frame["productmeasure"] = first["productmeasure"].astype(str).astype(object)
    frame["first_day_spend"] = first["spend"].astype(np.float64)
    frame["first_day_items"] = first["items"].astype(np.float64)
    frame["first_day_quantity"] = first["quantity"].astype(np.float64)
    frame["holdout_value"] = label
    facts.update(
        customers=int(len(frame)),
        customers_first_day_spend_not_positive=int((frame["first_day_spend"] <= 0).sum()),
        customers_label_negative=int((label < 0).sum()),
        customers_window_past_last_date=int(
            (first["day"].to_numpy() + LABEL_WINDOW_DAYS > last_day).sum()
        ),
    )
    return frame[list(SPEC.columns)], facts


def build(
    raw_dir,
    seed: int = 0,
    *,
    companies: Iterable[int] | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> pd.DataFrame:
    """One row per customer: first-purchase-day features and the 365-day value label.

    Args:
        raw_dir: the folder holding `transactions.csv`, or the file itself.
        seed: unused (the split is random, done by `write_splits`); kept for
            the registry's `build(raw_dir, seed)` signature.
        companies: keep only the rows of these company ids (ZILN's per-company
            set-up); None keeps all.
        chunksize: rows read at a time.

    Returns:
        DataFrame indexed by customer `id` (sorted) with exactly the spec's
        columns: int64 ids, a string `productmeasure`, float64 numerics and
        the raw float64 label (may be negative; see the module docstring).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: wrong column count or header, unparsable numbers or dates,
            empty cells, or no transactions left; the message names the file.
    """
    del seed
    frame, _ = _customer_table(raw_dir, companies, chunksize)
    return frame


INFO = DatasetInfo(
    name="valued_shoppers",
    build=build,
    spec=SPEC,
    ratios=(0.7, 0.1, 0.2),
    group=None,
    description="Kaggle Acquire Valued Shoppers LTV (ZILN): first-day features, 365-day value",
)


def make(
    raw_dir,
    out_dir,
    *,
    seed: int = 0,
    fmt: str = "parquet",
    companies: Iterable[int] | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> dict:
    """Builds the Valued Shoppers splits, `feature_spec.yaml` and `summary.json`.

    Args:
        raw_dir: the folder holding `transactions.csv`, or the file itself.
        out_dir: where the files go (created if missing).
        seed: the split seed.
        fmt: `"parquet"`, `"csv"` or `"tfrecord"`.
        companies: keep only these company ids (None: all).
        chunksize: rows read at a time.

    Returns:
        the summary written to `summary.json`.
    """
    companies = None if companies is None else sorted({int(c) for c in companies})
    frame, facts = _customer_table(raw_dir, companies, chunksize)
    extra = {
        "source": "Kaggle Acquire Valued Shoppers Challenge, transactions.csv",
        "label_definition": (
            f"sum of purchaseamount over first purchase day < date <= first day + "
            f"{LABEL_WINDOW_DAYS} days, returns included, raw (spec clip_min 0)"
        ),
        "feature_window": "first purchase day only",
        "companies": companies,
        **facts,
    }
    return write_splits(frame, INFO, out_dir, seed=seed, fmt=fmt, extra_summary=extra)
