"""Criteo Sponsored Search Conversion Log: LTV of search-ad clicks (paper Table 1, "Criteo-SSC").

Source: the Criteo Sponsored Search Conversion Log dataset (Criteo AI Lab;
logs of Criteo Predictive Search, 90 days), downloaded by the user: one
tab-separated file `CriteoSearchData` WITHOUT a header, one row per click
(15,995,633 rows, 7.20% with a sale, per the paper), sorted by click time.
The 23 documented columns, in order: `Sale` (1 if the click converted),
`SalesAmountInEuro` (-1 without a sale), `Time_delay_for_conversion`
(seconds, -1 without a sale), `click_timestamp` (unix seconds),
`nb_clicks_1week` (clicks of the product in the past week), `product_price`,
then the hashed categorical columns `product_age_group`, `device_type`,
`audience_id`, `product_gender`, `product_brand`, `product_category1` ..
`product_category7`, `product_country`, `product_id`, `product_title`,
`partner_id`, `user_id`. Missing values are -1. The reader checks that the
first line has 23 fields (a first line starting with `Sale` is taken as a
header and skipped), and that no later line has more (pandas) or fewer (an
empty last field) fields; the errors name the file and the line.

Recipe (one row per click, the OptDist / paper set-up):

* Label `sales_amount`: `SalesAmountInEuro` where `Sale == 1`, else 0.0; a
  sale with amount -1 (unknown) and negative amounts are 0.0 too (counted).
  Zero-inflated: about 93% zeros. Spec `clip_min: 0`.
* Hashed ids (many distinct values): `product_id` (500k bins), `user_id`
  (200k), `product_title` (200k; the whole title string is one id),
  `product_brand` (50k), `audience_id` (20k).
* Learned-vocabulary ids (`min_count` 5): `product_age_group`,
  `device_type`, `product_gender`, `product_category1..7`,
  `product_country`, `partner_id`. All categorical cells are strings; -1 (or
  an empty cell) becomes "" (the spec default), one "missing" id.
* `nb_clicks_1week`, `product_price`: log-normalized; -1 (missing) becomes
  0.0 (the spec default) and is counted.
* `click_hour` (0-23) and `click_day_of_week` (0 = Monday) of
  `click_timestamp` in UTC (the time zone of the log is not documented);
  -1 where the timestamp is missing.
* `Time_delay_for_conversion` is not a feature: it is known only after a
  sale, so it would leak the label.

Split: random 7:1:2 over clicks (row level, the paper's ratios after
OptDist), seeded, by `write_splits`. The frame `build` returns is indexed by
the 0-based data line (`row`), which the written files do not keep.

Memory: read in chunks of `chunksize` rows (default 2M); categorical columns
are parsed as pandas categoricals and expanded to object arrays that point
to one string per distinct value and chunk (8 bytes a cell). The built frame
is about 23 columns x 8 bytes x 16M rows = 3 GB plus the distinct strings;
the final concatenation of the chunks doubles it for a moment. Measured on a
2M-row file (1 GB): 12 s and 1.1 GB peak on one core, so about 2 minutes for
the full log.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from rq_keras.datasets._common import DatasetInfo, write_splits
from rq_keras.features.spec import FeatureSpec

__all__ = ["SPEC", "INFO", "build", "make", "COLUMNS", "HASHED", "VOCABULARY"]

FILE_NAME = "CriteoSearchData"
NUMERIC_COLUMNS = (
    "Sale",
    "SalesAmountInEuro",
    "Time_delay_for_conversion",
    "click_timestamp",
    "nb_clicks_1week",
    "product_price",
)
CATEGORICAL_COLUMNS = (
    "product_age_group",
    "device_type",
    "audience_id",
    "product_gender",
    "product_brand",
    *(f"product_category{i}" for i in range(1, 8)),
    "product_country",
    "product_id",
    "product_title",
    "partner_id",
    "user_id",
)
COLUMNS = (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS)
HASHED = {
    "product_id": 500_000,
    "user_id": 200_000,
    "product_title": 200_000,
    "product_brand": 50_000,
    "audience_id": 20_000,
}
VOCABULARY = tuple(c for c in CATEGORICAL_COLUMNS if c not in HASHED)
DEFAULT_CHUNKSIZE = 2_000_000
MISSING = -1
# 1970-01-01 was a Thursday (day 3 when Monday is 0).
EPOCH_DAY_OF_WEEK = 3

_LOG_NORMALIZED = {"kind": "numeric", "transform": "log", "encoding": "normalize"}

SPEC = FeatureSpec.from_dict(
    {
        "name": "criteo_ssc",
        "description": (
            "Criteo Sponsored Search Conversion Log clicks: product, partner, user and "
            "click-time features; label = sales amount in euro (0 without a sale)."
        ),
        "label": {"name": "sales_amount", "clip_min": 0.0},
        "embedding_dim": 64,
        "features": [
            *(
                {"name": c, "kind": "categorical", "dtype": "string", "min_count": 5}
                for c in VOCABULARY
            ),
            *(
                {"name": c, "kind": "hashed", "dtype": "string", "num_bins": HASHED[c]}
                for c in CATEGORICAL_COLUMNS
                if c in HASHED
            ),
            {"name": "nb_clicks_1week", **_LOG_NORMALIZED},
            {"name": "product_price", **_LOG_NORMALIZED},
            {"name": "click_hour", "kind": "categorical", "dtype": "int64"},
            {"name": "click_day_of_week", "kind": "categorical", "dtype": "int64"},
        ],
    }
)


def _resolve(raw_dir) -> str:
    if raw_dir is None:
        raise ValueError(f"criteo_ssc: `raw_dir` is needed (a folder holding {FILE_NAME})")
    path = os.fspath(raw_dir)
    if os.path.isdir(path):
        folder = path
        path = os.path.join(folder, FILE_NAME)
        if not os.path.isfile(path):
            found = [
                p
                for p in sorted(glob.glob(os.path.join(glob.escape(folder), FILE_NAME + ".*")))
                if not p.endswith(".zip")
            ]
            if len(found) == 1:
                path = found[0]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (the Criteo SSC {FILE_NAME})")
    return path


def _has_header(path: str) -> bool:
    """Checks the first line's field count; True when it is a header line."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        line = fh.readline().rstrip("\r\n")
    if not line:
        raise ValueError(f"{path}: empty file")
    fields = line.split("\t")
    if len(fields) != len(COLUMNS):
        raise ValueError(
            f"{path}: line 1 has {len(fields)} tab-separated fields, expected {len(COLUMNS)} "
            f"({', '.join(COLUMNS)})"
        )
    return fields[0].strip() == "Sale"


def _chunks(path: str, chunksize: int):
    header = _has_header(path)
    # No `usecols`: with it, pandas drops the extra fields of a long line instead of raising.
    reader = pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=list(COLUMNS),
        skiprows=1 if header else 0,
        dtype={
            **{c: np.float64 for c in NUMERIC_COLUMNS},
            **{c: "category" for c in CATEGORICAL_COLUMNS},
        },
        na_values=[""],
        keep_default_na=False,
        index_col=False,
        chunksize=chunksize,
    )
    try:
        for chunk in reader:
            yield chunk, 1 + int(header)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: malformed Criteo SSC log ({e})") from e
    finally:
        reader.close()


def _strings(values: pd.Series) -> np.ndarray:
    """A categorical column as an object array of str; -1 and empty cells are ""."""
    # as str: pandas 3 may infer numeric categories for a chunk of numbers only
    categories = values.cat.categories.astype(str).to_numpy(dtype=object)
    categories = np.append(np.where(categories == str(MISSING), "", categories), "")
    codes = values.cat.codes.to_numpy()
    return categories[np.where(codes < 0, len(categories) - 1, codes)]


def _line(chunk: pd.DataFrame, mask: np.ndarray, offset: int) -> int:
    """File line (1-based) of the first masked row; `offset` = 1 + header lines."""
    return int(chunk.index[np.argmax(mask)]) + offset


def _clicks(path: str, chunksize: int, facts: dict) -> pd.DataFrame:
    parts = []
    for chunk, offset in _chunks(path, chunksize):
        short = chunk["user_id"].isna().to_numpy()
        if short.any():
            raise ValueError(
                f"{path}: line {_line(chunk, short, offset)} has fewer than {len(COLUMNS)} fields"
            )
        sale = chunk["Sale"].to_numpy()
        bad = ~np.isin(sale, (0.0, 1.0))
        if bad.any():
            raise ValueError(f"{path}: line {_line(chunk, bad, offset)}: Sale is not 0 or 1")
        amount = chunk["SalesAmountInEuro"].to_numpy()
        sold = sale == 1.0
        known = sold & (amount >= 0)
        label = np.where(known, amount, 0.0)
        facts["rows_read"] += len(chunk)
        facts["sales"] += int(sold.sum())
        facts["sales_amount_missing"] += int((sold & (amount == MISSING)).sum())
        facts["sales_amount_negative_other"] += int(
            (sold & (amount < 0) & (amount != MISSING)).sum()
        )
        facts["sales_amount_nan"] += int((sold & np.isnan(amount)).sum())

        frame = pd.DataFrame({c: _strings(chunk[c]) for c in CATEGORICAL_COLUMNS})
        for c in ("nb_clicks_1week", "product_price"):
            values = chunk[c].to_numpy()
            missing = np.isnan(values) | (values == MISSING)
            facts["rows_missing"][c] += int(missing.sum())
            frame[c] = np.where(missing, SPEC.feature(c).default, values)
        stamp = chunk["click_timestamp"].to_numpy()
        no_time = np.isnan(stamp) | (stamp < 0)
        facts["rows_missing"]["click_timestamp"] += int(no_time.sum())
        stamp = np.where(no_time, 0.0, stamp)
        frame["click_hour"] = np.where(no_time, -1, (stamp // 3600) % 24).astype(np.int64)
        frame["click_day_of_week"] = np.where(
            no_time, -1, (stamp // 86400 + EPOCH_DAY_OF_WEEK) % 7
        ).astype(np.int64)
        frame["sales_amount"] = label.astype(np.float64)
        frame.index = chunk.index
        parts.append(frame[list(SPEC.columns)])
    if not parts:
        raise ValueError(f"{path}: no clicks")
    out = pd.concat(parts)
    out.index.name = "row"
    return out


def _click_table(raw_dir, chunksize=DEFAULT_CHUNKSIZE):
    if chunksize < 1:
        raise ValueError(f"`chunksize` must be >= 1, got {chunksize}")
    path = _resolve(raw_dir)
    facts = {
        "rows_read": 0,
        "sales": 0,
        "sales_amount_missing": 0,
        "sales_amount_negative_other": 0,
        "sales_amount_nan": 0,
        "rows_missing": {"nb_clicks_1week": 0, "product_price": 0, "click_timestamp": 0},
    }
    frame = _clicks(path, chunksize, facts)
    facts["positive_share"] = float(np.mean(frame["sales_amount"].to_numpy() > 0))
    return frame, facts, os.path.basename(path)


def build(raw_dir, seed: int = 0, *, chunksize: int = DEFAULT_CHUNKSIZE) -> pd.DataFrame:
    """One row per click: product, partner, user and time features; sales amount label.

    Args:
        raw_dir: the folder holding `CriteoSearchData`, or the file itself.
        seed: unused (the split is random, done by `write_splits`); kept for
            the registry's `build(raw_dir, seed)` signature.
        chunksize: rows read at a time.

    Returns:
        DataFrame indexed by the 0-based data line (`row`) with exactly the
        spec's columns: string ids ("" for missing), float64 numerics, int64
        hour and day of week, and the float64 label (euro).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line with the wrong number of fields, a non-numeric
            number, a `Sale` other than 0/1, or no rows; the message names the
            file.
    """
    del seed
    frame, _, _ = _click_table(raw_dir, chunksize)
    return frame


INFO = DatasetInfo(
    name="criteo_ssc",
    build=build,
    spec=SPEC,
    ratios=(0.7, 0.1, 0.2),
    group=None,
    description="Criteo Sponsored Search Conversion Log: sales amount per click (euro)",
)


def make(
    raw_dir,
    out_dir,
    *,
    seed: int = 0,
    fmt: str = "parquet",
    ratios: Sequence[float] = INFO.ratios,
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> dict:
    """Builds the Criteo SSC splits, `feature_spec.yaml` and `summary.json` in `out_dir`.

    Args:
        raw_dir: the folder holding `CriteoSearchData`, or the file itself.
        out_dir: where the files go (created if missing).
        seed: the split seed.
        fmt: `"parquet"`, `"csv"` or `"tfrecord"`.
        ratios: train/validation/test shares of the random row split.
        chunksize: rows read at a time.

    Returns:
        the summary written to `summary.json`.
    """
    ratios = tuple(float(r) for r in ratios)
    frame, facts, file_name = _click_table(raw_dir, chunksize)
    extra = {
        "source": "Criteo Sponsored Search Conversion Log (Criteo AI Lab)",
        "file": file_name,
        "label_definition": "SalesAmountInEuro if Sale == 1 else 0 (-1 amounts -> 0)",
        "split": f"random row-level split, ratios {list(ratios)}",
        "time_zone": "click_hour / click_day_of_week in UTC",
        **facts,
    }
    info = dataclasses.replace(INFO, ratios=ratios)
    return write_splits(frame, info, out_dir, seed=seed, fmt=fmt, extra_summary=extra)
