"""KuaiRec 2.0's raw tables: finding the files and reading them (`kuairec` builds the dataset).

The readers check the columns they need, read only those, and turn the side
tables into frames indexed by their key: users, video categories, and the
daily video features (a video's static attributes, and its rows per day).
Empty cells take the `defaults` given (the spec defaults of `kuairec.SPEC`).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "MATRICES",
    "MATRIX_COLUMNS",
    "USER_STRING_COLUMNS",
    "USER_INT_COLUMNS",
    "STATIC_STRING_COLUMNS",
    "STATIC_INT_COLUMNS",
    "DAILY_STRING_COLUMNS",
    "DAILY_INT_COLUMNS",
    "DAILY_COUNT_COLUMNS",
    "MAX_CATEGORIES",
    "resolve",
    "user_table",
    "category_table",
    "daily_tables",
    "day_keys",
    "matrix_chunks",
]

MATRICES = ("big", "small")
MATRIX_COLUMNS = ("user_id", "video_id", "play_duration", "video_duration", "date", "timestamp")
USER_STRING_COLUMNS = (
    "user_active_degree",
    "follow_user_num_range",
    "fans_user_num_range",
    "friend_user_num_range",
    "register_days_range",
)
USER_INT_COLUMNS = (
    "is_lowactive_period",
    "is_live_streamer",
    "is_video_author",
    *(f"onehot_feat{i}" for i in range(18)),
)
STATIC_STRING_COLUMNS = ("video_type", "upload_type")
STATIC_INT_COLUMNS = ("author_id", "music_id")
DAILY_STRING_COLUMNS = ("visible_status",)
DAILY_INT_COLUMNS = ("video_tag_id",)
DAILY_COUNT_COLUMNS = (
    "show_cnt",
    "play_cnt",
    "like_cnt",
    "comment_cnt",
    "share_cnt",
    "follow_cnt",
)
MAX_CATEGORIES = 4


# ------------------------------------------------------------------ files
def _find(folder: str, official: str, what: str) -> str:
    """The official file, else the one file matching `STEM*.csv`."""
    path = os.path.join(folder, official)
    if os.path.isfile(path):
        return path
    stem = official[: -len(".csv")]
    matches = sorted(glob.glob(os.path.join(glob.escape(folder), f"{stem}*.csv")))
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = [os.path.basename(m) for m in matches]
        raise ValueError(f"{folder}: several files could be the {what} ({names}); keep one")
    raise FileNotFoundError(f"{path}: no such file (the KuaiRec {what}, or {stem}*.csv)")


def resolve(raw_dir, matrix: str) -> dict[str, str]:
    """The paths of the matrix and the three side tables in `raw_dir` (or its `data/`)."""
    if matrix not in MATRICES:
        raise ValueError(f"`matrix` must be one of {list(MATRICES)}, got {matrix!r}")
    if raw_dir is None:
        raise ValueError("kuairec: `raw_dir` is needed (the folder holding the KuaiRec tables)")
    folder = os.fspath(raw_dir)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder (the KuaiRec data folder)")
    official = f"{matrix}_matrix.csv"
    has_matrix = os.path.isfile(os.path.join(folder, official)) or glob.glob(
        os.path.join(glob.escape(folder), f"{matrix}_matrix*.csv")
    )
    if not has_matrix and os.path.isdir(os.path.join(folder, "data")):
        folder = os.path.join(folder, "data")
    return {
        "matrix": _find(folder, official, f"{matrix} matrix"),
        "item_categories": _find(folder, "item_categories.csv", "item categories"),
        "item_daily_features": _find(folder, "item_daily_features.csv", "item daily features"),
        "user_features": _find(folder, "user_features.csv", "user features"),
    }


def _header(path: str) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        line = fh.readline().rstrip("\r\n")
    if not line:
        raise ValueError(f"{path}: empty file")
    return [c.strip().strip('"') for c in line.split(",")]


def _check_columns(path: str, needed: Sequence[str]) -> None:
    have = _header(path)
    missing = [c for c in needed if c not in have]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; the header has {have}")


def _read(path: str, columns: Sequence[str], dtype: dict) -> pd.DataFrame:
    _check_columns(path, columns)
    try:
        return pd.read_csv(path, encoding="utf-8-sig", usecols=list(columns), dtype=dtype)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: malformed table ({e})") from e


def _unique_index(path: str, frame: pd.DataFrame, key: str) -> pd.DataFrame:
    if frame[key].isna().any():
        line = int(np.argmax(frame[key].isna().to_numpy())) + 2
        raise ValueError(f"{path}: empty {key} in line {line}")
    frame = frame.drop_duplicates(key, keep="first")
    return frame.set_index(frame[key].astype(np.int64)).drop(columns=key)


def _int_ids(
    frame: pd.DataFrame, columns: Sequence[str], defaults: Mapping[str, object]
) -> dict[str, np.ndarray]:
    out = {}
    for c in columns:
        values = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
        out[c] = np.where(np.isnan(values), defaults[c], values).astype(np.int64)
    return out


def _strings(
    frame: pd.DataFrame, columns: Sequence[str], defaults: Mapping[str, object]
) -> dict[str, np.ndarray]:
    return {c: frame[c].astype(object).fillna(defaults[c]).to_numpy() for c in columns}


# ----------------------------------------------------------- side tables
def user_table(path: str, defaults: Mapping[str, object]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The user features indexed by `user_id`, and facts for the summary."""
    dtype = {"user_id": np.float64, **{c: str for c in USER_STRING_COLUMNS}}
    dtype.update({c: np.float64 for c in USER_INT_COLUMNS})
    raw = _read(path, ("user_id", *USER_STRING_COLUMNS, *USER_INT_COLUMNS), dtype)
    empty = int(raw.drop(columns="user_id").isna().to_numpy().sum())
    raw = _unique_index(path, raw, "user_id")
    table = pd.DataFrame(
        {
            **_strings(raw, USER_STRING_COLUMNS, defaults),
            **_int_ids(raw, USER_INT_COLUMNS, defaults),
        },
        index=raw.index,
    )
    return table, {"users": len(table), "user_feature_cells_empty": empty}


def category_table(path: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The `|`-joined category ids indexed by `video_id`, and facts."""
    raw = _read(path, ("video_id", "feat"), {"video_id": np.float64, "feat": str})
    feat = raw["feat"].fillna("[]").str.strip()
    bad = ~feat.str.fullmatch(r"\[\s*(\d+(\s*,\s*\d+)*)?\s*\]")
    if bad.any():
        line = int(np.argmax(bad.to_numpy())) + 2
        raise ValueError(
            f"{path}: line {line}: `feat` {feat.iloc[line - 2]!r} is not a list like [27, 9]"
        )
    raw["video_category"] = feat.str.strip("[] ").str.replace(r"\s*,\s*", "|", regex=True)
    long_lists = int((raw["video_category"].str.count(r"\|") >= MAX_CATEGORIES).sum())
    table = _unique_index(path, raw[["video_id", "video_category"]], "video_id")
    return table, {"videos_with_categories": len(table), "category_lists_truncated": long_lists}


def daily_tables(
    path: str, defaults: Mapping[str, object]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Per video its static attributes, per (video, day) its daily features; facts."""
    strings = (*STATIC_STRING_COLUMNS, *DAILY_STRING_COLUMNS, "upload_dt")
    numbers = ("video_id", "date", *STATIC_INT_COLUMNS, *DAILY_INT_COLUMNS, *DAILY_COUNT_COLUMNS)
    dtype = {**{c: str for c in strings}, **{c: np.float64 for c in numbers}}
    raw = _read(path, (*numbers, *strings), dtype)
    for key in ("video_id", "date"):
        if raw[key].isna().any():
            line = int(np.argmax(raw[key].isna().to_numpy())) + 2
            raise ValueError(f"{path}: empty {key} in line {line}")
    raw = raw.sort_values(["video_id", "date"], kind="stable")

    first = raw.drop_duplicates("video_id", keep="first")
    upload = pd.to_datetime(first["upload_dt"], format="%Y-%m-%d", errors="coerce")
    static = pd.DataFrame(
        {
            **_int_ids(first, STATIC_INT_COLUMNS, defaults),
            **_strings(first, STATIC_STRING_COLUMNS, defaults),
            # Days since 1970-01-01; NaN where `upload_dt` is empty or unparsable.
            "upload_day": (upload - pd.Timestamp(0)).dt.days.to_numpy(dtype=np.float64),
        },
        index=pd.Index(first["video_id"].astype(np.int64).to_numpy()),
    )

    keys = day_keys(raw["video_id"].to_numpy(), raw["date"].to_numpy())
    duplicated = pd.Index(keys).duplicated(keep="first")
    raw = raw[~duplicated]
    counts = raw[list(DAILY_COUNT_COLUMNS)].to_numpy(dtype=np.float64)
    daily = pd.DataFrame(
        {
            **_strings(raw, DAILY_STRING_COLUMNS, defaults),
            **_int_ids(raw, DAILY_INT_COLUMNS, defaults),
            **{c: counts[:, i] for i, c in enumerate(DAILY_COUNT_COLUMNS)},
        },
        index=pd.Index(keys[~duplicated]),
    )
    daily[list(DAILY_COUNT_COLUMNS)] = daily[list(DAILY_COUNT_COLUMNS)].fillna(0.0)
    facts = {
        "videos_with_daily_features": len(static),
        "video_days_with_daily_features": len(daily),
        "daily_rows_duplicated_ignored": int(duplicated.sum()),
        "daily_count_cells_empty": int(np.isnan(counts).sum()),
        "videos_upload_dt_missing": int(upload.isna().sum()),
    }
    return static, daily, facts


def day_keys(video_id: np.ndarray, date: np.ndarray) -> np.ndarray:
    """One int64 per (video_id, YYYYMMDD date); -1 where the date is empty."""
    date = np.asarray(date, dtype=np.float64)
    key = np.asarray(video_id, dtype=np.int64) * 100_000_000 + np.nan_to_num(date).astype(np.int64)
    return np.where(np.isnan(date), -1, key)


# ----------------------------------------------------------------- matrix
def matrix_chunks(path: str, chunksize: int):
    """The matrix's needed columns as float64 frames of `chunksize` rows."""
    _check_columns(path, MATRIX_COLUMNS)
    reader = pd.read_csv(
        path,
        encoding="utf-8-sig",
        usecols=list(MATRIX_COLUMNS),
        dtype={c: np.float64 for c in MATRIX_COLUMNS},
        chunksize=chunksize,
    )
    try:
        yield from reader
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: malformed matrix ({e})") from e
    finally:
        reader.close()
