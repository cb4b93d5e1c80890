"""CIKM Cup 2016 (DIGINETICA): query durations of an e-commerce search engine (paper Table 2).

Source: `train-queries.csv` of the CIKM Cup 2016 Track 2 "Personalized
E-Commerce Search Challenge" (DIGINETICA; 310,302 sessions, 122,991 items),
downloaded by the user. Semicolon-separated with a header line
`queryId;sessionId;userId;timeframe;duration;eventdate;searchstring.tokens;
categoryId;items;is.test`: one row per search query (result page);
`duration` is the time spent on it in milliseconds; `searchstring.tokens` a
comma-separated list of integer token ids, empty for "query-less" queries
(a category page: only `categoryId`); `items` the comma-separated integer
ids of the listed products (can be empty); `is.test` `TRUE`/`FALSE` (the
competition's test queries; kept, and counted). Real data: about 9,778
distinct tokens and 116,883 distinct listed items.

Recipe (one row per query, the TPM / GR watch-time set-up):

* Label `query_duration`: `duration / 1000`, in SECONDS (float64). Queries
  with an empty (or `NA`) `duration` are dropped, and so are `duration >=
  6000` ms (the paper's baselines keep durations under 6 s) and negative
  durations; all three are counted in the summary.
* `query_tokens`: the first 10 ids of `searchstring.tokens` (int64 list,
  `max_length` 10, mean pooling, learned vocabulary with `min_count` 2);
  `query_items`: the first 10 ids of `items` (the same, a learned vocabulary
  with `min_count` 2 keeps the ~117k items embeddable without hash
  collisions). Empty cells are empty lists ("").
* `num_tokens`, `num_items`: the full list lengths (before the cut at 10),
  log-normalized.
* `category_id`: `categoryId` as an int64 id (learned vocabulary); an empty
  (or `NA`) cell is -1 (the spec default) and counted.

Split: the paper splits CIKM16 randomly 8:2 into train/test; the project
needs a validation split, so 10% of the train share is carved out:
random row-level 0.72 / 0.08 / 0.2, seeded, by `write_splits` (`ratios` of
`make` changes it). Queries of one session can land in different splits, as
in the paper's random split (no session feature is used). The frame `build`
returns is indexed by `queryId` (file order), which the written files do not
keep.

The file (about 920k queries, 80 MB) is read whole, as strings.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from rq_keras.datasets._common import DatasetInfo, write_splits
from rq_keras.features.spec import FeatureSpec

__all__ = ["SPEC", "INFO", "build", "make", "COLUMNS", "MAX_DURATION_MS", "MAX_LENGTH"]

FILE_NAME = "train-queries.csv"
COLUMNS = (
    "queryId",
    "sessionId",
    "userId",
    "timeframe",
    "duration",
    "eventdate",
    "searchstring.tokens",
    "categoryId",
    "items",
    "is.test",
)
MAX_DURATION_MS = 6000
MAX_LENGTH = 10
MS_PER_SECOND = 1000.0
_ID_LIST = r"(\d+(\s*,\s*\d+)*)?"
_FIRST_IDS = rf"^((?:\d+\s*,\s*){{{MAX_LENGTH - 1}}}\d+)\s*,.*$"
_LOG_NORMALIZED = {"kind": "numeric", "transform": "log", "encoding": "normalize"}


def _list(name: str) -> dict:
    return {
        "name": name,
        "kind": "list",
        "dtype": "int64",
        "max_length": MAX_LENGTH,
        "pooling": "mean",
        "min_count": 2,
    }


SPEC = FeatureSpec.from_dict(
    {
        "name": "cikm16",
        "description": (
            "CIKM Cup 2016 (DIGINETICA) search queries: first 10 tokens and listed items, "
            "category; label = query duration in seconds (< 6 s)."
        ),
        "label": {"name": "query_duration", "clip_min": 0.0},
        "embedding_dim": 64,
        "features": [
            _list("query_tokens"),
            _list("query_items"),
            {"name": "num_tokens", **_LOG_NORMALIZED},
            {"name": "num_items", **_LOG_NORMALIZED},
            {"name": "category_id", "kind": "categorical", "dtype": "int64"},
        ],
    }
)


def _resolve(raw_dir) -> str:
    if raw_dir is None:
        raise ValueError(f"cikm16: `raw_dir` is needed (a folder holding {FILE_NAME}, or the file)")
    path = os.fspath(raw_dir)
    if os.path.isdir(path):
        path = os.path.join(path, FILE_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (the CIKM Cup 2016 {FILE_NAME})")
    return path


def read_queries(raw_dir) -> pd.DataFrame:
    """Reads and checks `train-queries.csv`; every cell stays a string.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a wrong header, a line with the wrong number of fields, or
            no rows; the message names the file (and the line).
    """
    path = _resolve(raw_dir)
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        lines = pd.Series(fh.read().rstrip("\r\n").splitlines())
    if lines.empty:
        raise ValueError(f"{path}: empty file")
    header = lines[0].split(";")
    if tuple(h.strip().strip('"') for h in header) != COLUMNS:
        raise ValueError(
            f"{path}: expected {len(COLUMNS)} semicolon-separated columns {list(COLUMNS)}, "
            f"the header has {len(header)}: {header}"
        )
    fields = lines.str.count(";").to_numpy() + 1
    wrong = fields != len(COLUMNS)
    if wrong.any():
        line = int(np.argmax(wrong))
        raise ValueError(
            f"{path}: line {line + 1} has {fields[line]} fields, expected {len(COLUMNS)}"
        )
    del lines
    try:
        frame = pd.read_csv(
            path,
            sep=";",
            encoding="utf-8-sig",
            dtype=str,
            keep_default_na=False,
            index_col=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CIKM16 queries file ({e})") from e
    frame.columns = list(COLUMNS)
    if frame.empty:
        raise ValueError(f"{path}: no queries")
    return frame


def _bad(path: str, frame: pd.DataFrame, mask, column: str, what: str):
    """Raises for the first masked row; data line n is file line n + 2 (after the header)."""
    row = int(np.argmax(np.asarray(mask)))
    line = int(frame.index[row]) + 2
    raise ValueError(f"{path}: line {line}: {column} {frame[column].iloc[row]!r} is not {what}")


def _id_list(path, frame, column) -> tuple[pd.Series, np.ndarray]:
    """First `MAX_LENGTH` ids joined by "|", and the full count of ids."""
    cells = frame[column].str.strip()
    bad = ~cells.str.fullmatch(_ID_LIST)
    if bad.any():
        _bad(path, frame, bad, column, "a comma-separated list of integer ids")
    count = np.where(cells.eq(""), 0, cells.str.count(",") + 1).astype(np.float64)
    first = cells.str.replace(_FIRST_IDS, r"\1", regex=True)
    return first.str.replace(r"\s*,\s*", "|", regex=True), count


def _query_table(raw_dir) -> tuple[pd.DataFrame, dict]:
    path = _resolve(raw_dir)
    raw = read_queries(path)
    query_id = pd.to_numeric(raw["queryId"], errors="coerce")
    if query_id.isna().any():
        _bad(path, raw, query_id.isna(), "queryId", "an integer")
    if query_id.duplicated().any():
        _bad(path, raw, query_id.duplicated(), "queryId", "unique")
    empty = raw["duration"].str.strip().isin(["", "NA"]).to_numpy()
    duration = pd.to_numeric(raw["duration"].where(~empty, "0"), errors="coerce").to_numpy()
    if np.isnan(duration).any():
        _bad(path, raw, np.isnan(duration), "duration", "a number of milliseconds")
    long = ~empty & (duration >= MAX_DURATION_MS)
    negative = ~empty & (duration < 0)
    keep = ~(empty | long | negative)
    facts = {
        "queries_read": int(len(raw)),
        "queries_dropped_duration_empty": int(empty.sum()),
        "queries_dropped_duration_ge_6000ms": int(long.sum()),
        "queries_dropped_duration_negative": int(negative.sum()),
    }
    raw = raw[keep]
    if raw.empty:
        raise ValueError(f"{path}: no query with a duration in [0, {MAX_DURATION_MS}) ms")

    tokens, num_tokens = _id_list(path, raw, "searchstring.tokens")
    items, num_items = _id_list(path, raw, "items")
    category = raw["categoryId"].str.strip()
    no_category = category.isin(["", "NA"])
    category_id = pd.to_numeric(category.where(~no_category, "-1"), errors="coerce")
    if category_id.isna().any():
        _bad(path, raw, category_id.isna(), "categoryId", "an integer")
    frame = pd.DataFrame(
        {
            "query_tokens": tokens.to_numpy(dtype=object),
            "query_items": items.to_numpy(dtype=object),
            "num_tokens": num_tokens,
            "num_items": num_items,
            "category_id": category_id.to_numpy(dtype=np.int64),
            "query_duration": duration[keep] / MS_PER_SECOND,
        },
        index=pd.Index(query_id[keep].to_numpy(dtype=np.int64), name="queryId"),
    )
    facts.update(
        queries=int(len(frame)),
        sessions=int(raw["sessionId"].nunique()),
        queries_is_test=int(raw["is.test"].str.upper().eq("TRUE").sum()),
        queries_without_tokens=int((num_tokens == 0).sum()),
        queries_without_items=int((num_items == 0).sum()),
        queries_without_category=int(no_category.sum()),
        queries_tokens_cut_to_10=int((num_tokens > MAX_LENGTH).sum()),
        queries_items_cut_to_10=int((num_items > MAX_LENGTH).sum()),
        distinct_tokens=int(_distinct(tokens)),
        distinct_items=int(_distinct(items)),
    )
    return frame[list(SPEC.columns)], facts


def _distinct(joined: pd.Series) -> int:
    """Distinct ids among the kept (first 10) ids of a joined list column."""
    text = "|".join(joined[joined.ne("")])
    return len(set(text.split("|"))) if text else 0


def build(raw_dir, seed: int = 0) -> pd.DataFrame:
    """One row per query with a duration under 6 s: token/item lists, category; seconds label.

    Args:
        raw_dir: the folder holding `train-queries.csv`, or the file itself.
        seed: unused (the split is random, done by `write_splits`); kept for
            the registry's `build(raw_dir, seed)` signature.

    Returns:
        DataFrame indexed by `queryId` with exactly the spec's columns: the
        lists as "|"-joined strings, float64 lengths, the int64 category and
        the float64 label in seconds.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a wrong header or field count, a non-numeric duration,
            a malformed id list, or no query left; the message names the file.
    """
    del seed
    frame, _ = _query_table(raw_dir)
    return frame


INFO = DatasetInfo(
    name="cikm16",
    build=build,
    spec=SPEC,
    ratios=(0.72, 0.08, 0.2),
    group=None,
    description="CIKM Cup 2016 (DIGINETICA) query duration in seconds (< 6 s)",
)


def make(
    raw_dir,
    out_dir,
    *,
    seed: int = 0,
    fmt: str = "parquet",
    ratios: Sequence[float] = INFO.ratios,
) -> dict:
    """Builds the CIKM16 splits, `feature_spec.yaml` and `summary.json` in `out_dir`.

    Args:
        raw_dir: the folder holding `train-queries.csv`, or the file itself.
        out_dir: where the files go (created if missing).
        seed: the split seed.
        fmt: `"parquet"`, `"csv"` or `"tfrecord"`.
        ratios: train/validation/test shares of the random row split.

    Returns:
        the summary written to `summary.json`.
    """
    ratios = tuple(float(r) for r in ratios)
    frame, facts = _query_table(raw_dir)
    extra = {
        "source": "CIKM Cup 2016 Track 2 (DIGINETICA), train-queries.csv",
        "label_definition": "duration / 1000 (seconds); durations >= 6000 ms dropped",
        "split": f"random row-level split, ratios {list(ratios)} (paper: 8:2 train/test)",
        **facts,
    }
    info = dataclasses.replace(INFO, ratios=ratios)
    return write_splits(frame, info, out_dir, seed=seed, fmt=fmt, extra_summary=extra)
