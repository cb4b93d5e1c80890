"""KuaiRec 2.0: watch-time prediction on the Kuaishou short-video app (paper Table 2).

Source: KuaiRec 2.0 (Gao et al., "KuaiRec: A Fully-observed Dataset and
Insights for Evaluating Recommender Systems", CIKM 2022; CC BY-SA 4.0),
downloaded by the user. `raw_dir` is the folder holding the tables (the
`data/` folder of the release; a folder whose `data/` subfolder holds them
works too):

* `big_matrix.csv` (12,530,806 impressions of 7,176 users and 10,728 videos,
  the set the paper uses; the default) or `small_matrix.csv` (4,676,570
  impressions of 1,411 users x 3,327 videos, fully observed), option
  `matrix="big"|"small"`. Columns `user_id, video_id, play_duration,
  video_duration, time, date, timestamp, watch_ratio`; `play_duration` and
  `video_duration` in milliseconds, `date` an int `YYYYMMDD`, `timestamp`
  unix seconds (float), `time` the same instant in Beijing time (UTC+8).
  Some published copies have empty `time/date/timestamp` cells.
* `item_categories.csv`: `video_id, feat`, where `feat` is a list of category
  ids written like `[8]` or `"[27, 9]"` (1 to 4 ids).
* `item_daily_features.csv`: one row per (video_id, date) with 58 columns:
  static attributes (`author_id`, `video_type`, `upload_dt`, `upload_type`,
  `music_id`), `visible_status`, `video_tag_id` (can change over days) and
  the day's platform-wide counters (`show_cnt`, `play_cnt`, `like_cnt`, ...).
* `user_features.csv`: `user_id`, activity/flag columns, `*_range` buckets of
  follow/fan/friend counts and registration days, `onehot_feat0..17`
  (anonymised ids; `onehot_feat4` and `onehot_feat12..17` have empty cells).

Files may start with a UTF-8 byte-order mark. Besides the official names,
one file per table matching `big_matrix*.csv`, `small_matrix*.csv`,
`item_categories*.csv`, `item_daily_features*.csv` or `user_features*.csv`
is accepted (the 1,000-row test samples are named like that).

Recipe (one row per impression of the matrix):

* Label `watch_time`: `play_duration / 1000`, the watch time in SECONDS
  (float64; may exceed the video's duration: replays). Rows with an empty or
  negative `play_duration` are dropped and counted. Spec `clip_min: 0`.
* Impression features: `user_id`, `video_id` (int64 ids, learned
  vocabularies); `hour` (0-23) and `day_of_week` (0 = Monday) of the
  impression in Beijing time, from `timestamp + 8 h` (-1 where the timestamp
  is empty); `video_duration` = matrix `video_duration / 1000` (seconds,
  log-normalized; 0.0 where empty).
* User features (joined on `user_id`): `user_active_degree` and the four
  `*_range` buckets (strings), `is_lowactive_period`, `is_live_streamer`,
  `is_video_author` and `onehot_feat0..17` (int64 ids). Empty cells take the
  spec default (-1 or "").
* `video_category`: the ids of `item_categories.feat` joined on `video_id`,
  as an int64 list ("" when the video has no row).
* Static video attributes, from the video's earliest row of
  `item_daily_features` (joined on `video_id` only, so a missing day does not
  lose them): `author_id`, `video_type`, `upload_type` (ids), `music_id`
  (hashed, many values) and `video_age_days` (impression date - `upload_dt`,
  log-normalized).
* Daily video features, joined on (`video_id`, `date`): `visible_status`,
  `video_tag_id` and the platform-wide counters `show_cnt`, `play_cnt`,
  `like_cnt`, `comment_cnt`, `share_cnt`, `follow_cnt` (log-normalized).
  They are the counters of the impression's own day over all Kuaishou users,
  so they include that day's later traffic (the usual KuaiRec practice; one
  impression of 7,176 sampled users is a negligible part of them). Daily
  aggregates of watching itself (`play_duration`, `play_progress`,
  `complete_play_cnt`, ...) are left out: they are averages of the target.
* Every missing join (no user row, no category row, no daily row for the
  video, no row for the video on that date) gives the spec defaults (-1, "",
  0.0, empty list) and is counted in the summary (`missing_joins`).

Split: random 7:1:2 over impressions (row level), seeded, by `write_splits`.
The paper's watch-time set-up is a random 8:2 train/test split; the project
needs a validation split, so it is carved as 7:1:2 by default, and
`ratios=(0.8, 0.0, 0.2)` or any other shares can be given to `make`.
The frame `build` returns is indexed by the 0-based data line of the matrix
file (`row`), which the written files do not keep.

Memory and time: the matrix is read in chunks of `chunksize` rows (default
2M), only the six needed columns; side tables are read whole (the daily
table, about 343k rows, with 15 of its 58 columns). The built frame holds 46
columns of 8 bytes per row (string cells point to shared objects): about
4.6 GB for the big matrix; the final concatenation of the chunks doubles it
for a moment (peak about 10 GB), and `write_splits` copies one split at a
time. Measured on a 2M-row matrix: 10 s and 2.5 GB peak on one core, so
about a minute for the big matrix.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from rq_keras.datasets._common import DatasetInfo, write_splits
from rq_keras.datasets.kuairec_tables import (
    DAILY_COUNT_COLUMNS,
    DAILY_INT_COLUMNS,
    DAILY_STRING_COLUMNS,
    MAX_CATEGORIES,
    STATIC_STRING_COLUMNS,
    USER_INT_COLUMNS,
    USER_STRING_COLUMNS,
    category_table,
    daily_tables,
    day_keys,
    matrix_chunks,
    resolve,
    user_table,
)
from rq_keras.features.spec import FeatureSpec

__all__ = ["SPEC", "INFO", "build", "make", "MS_PER_SECOND"]

MS_PER_SECOND = 1000.0
DEFAULT_CHUNKSIZE = 2_000_000
BEIJING_OFFSET_S = 8 * 3600
# 1970-01-01 was a Thursday (day 3 when Monday is 0).
EPOCH_DAY_OF_WEEK = 3

_LOG_NORMALIZED = {"kind": "numeric", "transform": "log", "encoding": "normalize"}


def _ids(names, dtype, **extra):
    return [{"name": n, "kind": "categorical", "dtype": dtype, **extra} for n in names]


SPEC = FeatureSpec.from_dict(
    {
        "name": "kuairec",
        "description": (
            "KuaiRec 2.0 impressions: user, video, time and video-day features; "
            "label = play_duration in seconds."
        ),
        "label": {"name": "watch_time", "clip_min": 0.0},
        "embedding_dim": 64,
        "features": [
            *_ids(("user_id", "video_id", "hour", "day_of_week"), "int64"),
            {"name": "video_duration", **_LOG_NORMALIZED},
            *_ids(USER_STRING_COLUMNS, "string"),
            *_ids(USER_INT_COLUMNS, "int64"),
            {
                "name": "video_category",
                "kind": "list",
                "dtype": "int64",
                "max_length": MAX_CATEGORIES,
                "pooling": "mean",
            },
            *_ids(("author_id",), "int64"),
            *_ids(STATIC_STRING_COLUMNS, "string"),
            {"name": "music_id", "kind": "hashed", "dtype": "int64", "num_bins": 20_000},
            {"name": "video_age_days", **_LOG_NORMALIZED},
            *_ids(DAILY_STRING_COLUMNS, "string"),
            *_ids(DAILY_INT_COLUMNS, "int64"),
            *({"name": c, **_LOG_NORMALIZED} for c in DAILY_COUNT_COLUMNS),
        ],
    }
)

_DEFAULTS = {f.name: ("" if f.is_list else f.default) for f in SPEC.features}


def _epoch_days(date: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of YYYYMMDD numbers (float64; NaN where empty or invalid)."""
    parts = pd.DataFrame({"year": date // 10000, "month": date // 100 % 100, "day": date % 100})
    days = (pd.to_datetime(parts, errors="coerce") - pd.Timestamp(0)).dt.days
    return days.to_numpy(dtype=np.float64, na_value=np.nan)


def _lookup(table: pd.DataFrame, keys: np.ndarray) -> tuple[pd.DataFrame, int]:
    """Rows of `table` at `keys` (its index); spec defaults where a key is absent."""
    position = table.index.get_indexer(keys)
    missing = position < 0
    defaults = {c: _DEFAULTS.get(c, np.nan) for c in table.columns}
    padded = pd.concat([table, pd.DataFrame([defaults], index=[None])], ignore_index=True)
    out = padded.iloc[np.where(missing, len(table), position)].reset_index(drop=True)
    return out, int(missing.sum())


def _impressions(path, users, categories, static, daily, chunksize, facts):
    parts = []
    for chunk in matrix_chunks(path, chunksize):
        facts["rows_read"] += len(chunk)
        for key in ("user_id", "video_id"):
            if chunk[key].isna().any():
                line = int(chunk.index[np.argmax(chunk[key].isna().to_numpy())]) + 2
                raise ValueError(f"{path}: empty {key} in line {line}")
        play = chunk["play_duration"].to_numpy()
        keep = play >= 0  # False for NaN too
        facts["rows_dropped_play_duration_empty"] += int(np.isnan(play).sum())
        facts["rows_dropped_play_duration_negative"] += int((play < 0).sum())
        chunk = chunk[keep]
        if chunk.empty:
            continue
        user_id = chunk["user_id"].to_numpy().astype(np.int64)
        video_id = chunk["video_id"].to_numpy().astype(np.int64)
        date = chunk["date"].to_numpy()

        local = chunk["timestamp"].to_numpy() + BEIJING_OFFSET_S
        no_time = np.isnan(local)
        local = np.nan_to_num(local)
        hour = np.where(no_time, -1, (local // 3600) % 24).astype(np.int64)
        dow = np.where(no_time, -1, (local // 86400 + EPOCH_DAY_OF_WEEK) % 7).astype(np.int64)
        duration = chunk["video_duration"].to_numpy()
        facts["rows_timestamp_empty"] += int(no_time.sum())
        facts["rows_video_duration_empty"] += int(np.isnan(duration).sum())

        frame = pd.DataFrame(
            {
                "user_id": user_id,
                "video_id": video_id,
                "hour": hour,
                "day_of_week": dow,
                "video_duration": np.nan_to_num(duration / MS_PER_SECOND),
            }
        )
        user_part, miss_user = _lookup(users, user_id)
        category_part, miss_category = _lookup(categories, video_id)
        static_part, miss_static = _lookup(static, video_id)
        daily_part, miss_daily = _lookup(daily, day_keys(video_id, date))
        age = np.nan_to_num(_epoch_days(date) - static_part.pop("upload_day").to_numpy())
        missing = facts["missing_joins"]
        missing["user_features"] += miss_user
        missing["item_categories"] += miss_category
        missing["item_daily_features_video"] += miss_static
        missing["item_daily_features_video_date"] += miss_daily
        part = pd.concat([frame, user_part, category_part, static_part, daily_part], axis=1)
        part["video_age_days"] = age
        part["watch_time"] = chunk["play_duration"].to_numpy() / MS_PER_SECOND
        part.index = chunk.index
        parts.append(part[list(SPEC.columns)])
    if not parts:
        raise ValueError(f"{path}: no impressions with a play_duration")
    out = pd.concat(parts)
    out.index.name = "row"
    return out


def _impression_table(raw_dir, matrix="big", chunksize=DEFAULT_CHUNKSIZE):
    if chunksize < 1:
        raise ValueError(f"`chunksize` must be >= 1, got {chunksize}")
    paths = resolve(raw_dir, matrix)
    users, user_facts = user_table(paths["user_features"], _DEFAULTS)
    categories, category_facts = category_table(paths["item_categories"])
    static, daily, daily_facts = daily_tables(paths["item_daily_features"], _DEFAULTS)
    facts = {
        "rows_read": 0,
        "rows_dropped_play_duration_empty": 0,
        "rows_dropped_play_duration_negative": 0,
        "rows_timestamp_empty": 0,
        "rows_video_duration_empty": 0,
        "missing_joins": {
            "user_features": 0,
            "item_categories": 0,
            "item_daily_features_video": 0,
            "item_daily_features_video_date": 0,
        },
    }
    frame = _impressions(paths["matrix"], users, categories, static, daily, chunksize, facts)
    facts.update(
        impressions=int(len(frame)),
        users_in_matrix=int(frame["user_id"].nunique()),
        videos_in_matrix=int(frame["video_id"].nunique()),
        **user_facts,
        **category_facts,
        **daily_facts,
    )
    sources = {k: os.path.basename(v) for k, v in paths.items()}
    return frame, facts, sources


def build(
    raw_dir, seed: int = 0, *, matrix: str = "big", chunksize: int = DEFAULT_CHUNKSIZE
) -> pd.DataFrame:
    """One row per impression: user, video, time and video-day features; watch time label.

    Args:
        raw_dir: the folder holding the KuaiRec tables (or its parent with a
            `data/` subfolder).
        seed: unused (the split is random, done by `write_splits`); kept for
            the registry's `build(raw_dir, seed)` signature.
        matrix: `"big"` (`big_matrix.csv`, the paper's set) or `"small"`.
        chunksize: matrix rows read at a time.

    Returns:
        DataFrame indexed by the matrix data line (`row`, 0-based) with exactly
        the spec's columns: int64 ids, string ids, the category list as one
        "|"-joined string, float64 numerics and the float64 label (seconds).

    Raises:
        FileNotFoundError: a table does not exist.
        ValueError: a missing column, an unparsable cell, an empty id, a
            malformed category list, or no impression left; the message names
            the file.
    """
    del seed
    frame, _, _ = _impression_table(raw_dir, matrix, chunksize)
    return frame


INFO = DatasetInfo(
    name="kuairec",
    build=build,
    spec=SPEC,
    ratios=(0.7, 0.1, 0.2),
    group=None,
    description="KuaiRec 2.0 watch time (seconds) per impression of big_matrix.csv",
)


def make(
    raw_dir,
    out_dir,
    *,
    seed: int = 0,
    fmt: str = "parquet",
    matrix: str = "big",
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> dict:
    """Builds the KuaiRec splits, `feature_spec.yaml` and `summary.json` in `out_dir`.

    Args:
        raw_dir: the folder holding the KuaiRec tables.
        out_dir: where the files go (created if missing).
        seed: the split seed.
        fmt: `"parquet"`, `"csv"` or `"tfrecord"`.
        matrix: `"big"` or `"small"`.
        ratios: train/validation/test shares of the random row split.
        chunksize: matrix rows read at a time.

    Returns:
        the summary written to `summary.json`.
    """
    ratios = tuple(float(r) for r in ratios)
    frame, facts, sources = _impression_table(raw_dir, matrix, chunksize)
    info = dataclasses.replace(INFO, ratios=ratios)
    extra = {
        "source": "KuaiRec 2.0 (Gao et al., CIKM 2022), CC BY-SA 4.0",
        "files": sources,
        "matrix": matrix,
        "label_definition": "play_duration / 1000 (seconds) of the impression",
        "split": f"random row-level split, ratios {list(ratios)} (paper: 8:2 train/test)",
        "time_zone": "hour/day_of_week in Beijing time (timestamp + 8 h)",
        **facts,
    }
    return write_splits(frame, info, out_dir, seed=seed, fmt=fmt, extra_summary=extra)
