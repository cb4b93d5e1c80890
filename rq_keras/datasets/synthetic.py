"""Synthetic KuaiRec-like watch-time data: any number of rows, seeded, no download.

A generator, not a recorded data set: `raw_dir` is ignored. It stands in for
KuaiRec's big matrix (7,176 users, 10,728 videos, 12.5M impressions) in
tests, demos and the input-pipeline benchmark, at any size.

Entities (drawn once per seed):

* 7,000 users. `user_active_degree` is `full_active`, `high_active`,
  `middle_active` or `UNKNOWN` (shares 0.55/0.25/0.12/0.08);
  `follow_user_num_range` (8 KuaiRec buckets such as `"(10,50]"`) and
  `register_days_range` (7 buckets such as `"181-365"`) are strings. Each
  user also has hidden traits: a favourite video category, a taste bias, and
  an impression weight: Zipf-like (exponent 0.6 over a random rank) times 3,
  1.5, 0.6 or 0.4 by activity level, so active users have more impressions.
* 10,000 videos: 1 to 4 distinct categories of 30 (`video_category`,
  popular categories more often), a duration in seconds (lognormal around
  9.5 s plus 5% long videos around 40 s, 2 to 600 s), a hidden quality, and
  Zipf-like popularity (exponent 0.7 over a random rank), which sets how
  often it is shown and its platform-wide `video_show_cnt`; `video_like_cnt`
  grows with show count and quality.

Rows (impressions) are independent draws: the user and the video by their
weights, the `hour` (0-23) from a daily curve peaking at 21 h, the two
counters with a day-to-day lognormal factor. Features: `user_id`,
`video_id`, `hour` (int64 ids), the three user strings, `video_category`
(int64 list joined by "|"), and `video_duration`, `video_show_cnt`,
`video_like_cnt` (floats, log-normalized). No value is ever missing.

Label `watch_time` (seconds, float64, rounded to the millisecond like
KuaiRec's `play_duration / 1000`), a mixture driven by the affinity
`a = quality + taste bias + 0.9 [the video has the user's favourite
category] + an hour effect`:

* skip, with probability `sigmoid(level base + new-user / commute-hour terms
  - 0.9 a)` (bases -0.6, -0.2, 0.5, 0.9 from full to unknown activity): 0.0
  for 5% of skips, else Gamma(2, 0.35 s) capped at the duration (a mode near
  0.7 s, as KuaiRec's quick swipes);
* watch: `duration * exp(N(0.25 a, 0.12))`, a mode proportional to the
  duration, scaled by the affinity;
* replay tail: with probability `sigmoid(-3 + 0.8 a)` a watched video adds
  `duration * lognormal(0.3, 1.0)`; capped at 7,200 s.

Facts (seed 0, 12.5M rows; the 1,000-row KuaiRec sample has 39% of plays
under 1 s, 1% zeros, mean 9.3 s): about 36% skips, 29% of labels under 1 s,
1.8% exact zeros; mean 11.1 s; quantiles 25/50/75/90/99% = 0.8, 7.3, 13.2,
21.3, 101 s; maximum a few thousand seconds. Mean label by activity level:
about 11.5 (full), 10.5 (high), 7.9 (middle), 6.1 s (unknown). The labels are
learnable but noisy, like real watch time: predicting with the hidden
`E[y | x]` gives XAUC 0.70 and MAE 6.5 s, against MAE 9.1 s for the constant
median (the paper's best KuaiRec XAUC is 0.615).

Cost: 12.5M rows to Parquet (25 files, 251 MB) take 14 s on one core with
a peak RSS of 402 MiB (`/usr/bin/time -v`); to TFRecord (3.8 GB) 7.3
minutes and 822 MiB, most of it TensorFlow itself and the one-by-one
`tf.train.Example` serialization.

Determinism and chunking: row `i` depends only on `(seed, i)`. Rows are made
in blocks of `BLOCK_ROWS` (100,000); block `b` draws from its own
`numpy.random.SeedSequence([seed, 1, b])`, the entities from
`SeedSequence([seed, 0])`. So `generate(n, seed, start)` returns exactly
rows `start .. start + n - 1` of one infinite sequence, whatever the chunks
it was cut into; the rows of a larger `rows` extend those of a smaller
one (the splits are cut anew).

Split: rows are i.i.d., so the split is contiguous: with `rows = n`, train
is rows `[0, round(0.7 n))`, validation up to `round(0.8 n)`, test the rest
(7:1:2, like the paper's KuaiRec set-up with a validation split carved out).
Each split is written as files of at most `CHUNK_ROWS` (500,000) rows,
`train-00000-of-00018.parquet` and so on (or `files` equal files per split),
each built in memory and written by `rq_keras.data.write_table`: memory is
bounded by one file, whatever `rows` is.
"""

from __future__ import annotations

import functools
import glob
import json
import math
import os

import numpy as np
import pandas as pd

from rq_keras.datasets._common import FORMATS, SPLITS, DatasetInfo, label_summary
from rq_keras.features.spec import FeatureSpec

__all__ = [
    "SPEC",
    "INFO",
    "build",
    "generate",
    "make",
    "split_bounds",
    "BLOCK_ROWS",
    "CHUNK_ROWS",
]

NUM_USERS = 7_000
NUM_VIDEOS = 10_000
NUM_CATEGORIES = 30
MAX_CATEGORIES = 4
BLOCK_ROWS = 100_000
CHUNK_ROWS = 500_000
DEFAULT_ROWS = 100_000
RATIOS = (0.7, 0.1, 0.2)
SAMPLE_CAP = 1_000_000
MAX_WATCH_S = 7_200.0

ACTIVITY_LEVELS = ("full_active", "high_active", "middle_active", "UNKNOWN")
ACTIVITY_SHARES = (0.55, 0.25, 0.12, 0.08)
ACTIVITY_WEIGHT = (3.0, 1.5, 0.6, 0.4)
ACTIVITY_SKIP_BASE = (-0.6, -0.2, 0.5, 0.9)
FOLLOW_RANGES = (
    "0",
    "(0,10]",
    "(10,50]",
    "(50,100]",
    "(100,150]",
    "(150,250]",
    "(250,500]",
    "500+",
)
FOLLOW_SHARES = (0.02, 0.27, 0.28, 0.12, 0.09, 0.06, 0.06, 0.10)
REGISTER_RANGES = ("15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+")
REGISTER_SHARES = (0.03, 0.09, 0.07, 0.23, 0.42, 0.08, 0.08)
NEW_USER_SKIP = 0.3  # registered 60 days ago or less
COMMUTE_HOURS = (7, 8, 9)
COMMUTE_SKIP = 0.3
LATE_HOURS = (22, 23, 0, 1)
LATE_AFFINITY = 0.2
FAVOURITE_AFFINITY = 0.9
SKIP_SLOPE = 0.9
CATEGORY_COUNT_SHARES = (0.55, 0.30, 0.10, 0.05)

_LOG_NORMALIZED = {"kind": "numeric", "transform": "log", "encoding": "normalize"}

SPEC = FeatureSpec.from_dict(
    {
        "name": "synthetic",
        "description": (
            "Synthetic KuaiRec-like impressions (seeded generator); "
            "label = watch time in seconds."
        ),
        "label": {"name": "watch_time", "clip_min": 0.0},
        "embedding_dim": 64,
        "features": [
            {"name": "user_id", "kind": "categorical", "dtype": "int64"},
            {"name": "video_id", "kind": "categorical", "dtype": "int64"},
            {"name": "hour", "kind": "categorical", "dtype": "int64"},
            {"name": "user_active_degree", "kind": "categorical", "dtype": "string"},
            {"name": "follow_user_num_range", "kind": "categorical", "dtype": "string"},
            {"name": "register_days_range", "kind": "categorical", "dtype": "string"},
            {
                "name": "video_category",
                "kind": "list",
                "dtype": "int64",
                "max_length": MAX_CATEGORIES,
                "pooling": "mean",
            },
            {"name": "video_duration", **_LOG_NORMALIZED},
            {"name": "video_show_cnt", **_LOG_NORMALIZED},
            {"name": "video_like_cnt", **_LOG_NORMALIZED},
        ],
    }
)


# --------------------------------------------------------------- entities
def _zipf_cdf(rng: np.random.Generator, n: int, exponent: float, scale=1.0):
    """Weights 1/rank^exponent over a random ranking (times `scale`), and their CDF."""
    rank = rng.permutation(n) + 1
    weight = scale / rank.astype(np.float64) ** exponent
    weight /= weight.sum()
    cdf = np.cumsum(weight)
    cdf[-1] = 1.0
    return weight, cdf


@functools.lru_cache(maxsize=4)
def _entities(seed: int) -> dict[str, np.ndarray]:
    """The users and videos of `seed` (hidden traits included)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    u = {}
    u["level"] = rng.choice(len(ACTIVITY_LEVELS), NUM_USERS, p=ACTIVITY_SHARES)
    u["follow"] = rng.choice(len(FOLLOW_RANGES), NUM_USERS, p=FOLLOW_SHARES)
    u["register"] = rng.choice(len(REGISTER_RANGES), NUM_USERS, p=REGISTER_SHARES)
    category_weight, _ = _zipf_cdf(rng, NUM_CATEGORIES, 0.7)
    u["favourite"] = rng.choice(NUM_CATEGORIES, NUM_USERS, p=category_weight)
    u["taste"] = rng.normal(0.0, 0.4, NUM_USERS)
    _, u["cdf"] = _zipf_cdf(rng, NUM_USERS, 0.6, np.take(ACTIVITY_WEIGHT, u["level"]))
    u["skip_base"] = np.take(ACTIVITY_SKIP_BASE, u["level"]) + NEW_USER_SKIP * (u["register"] < 2)

    v = {}
    # k distinct categories per video: the top k of Gumbel-perturbed log weights.
    counts = rng.choice(MAX_CATEGORIES, NUM_VIDEOS, p=CATEGORY_COUNT_SHARES) + 1
    keys = np.log(category_weight) + rng.gumbel(size=(NUM_VIDEOS, NUM_CATEGORIES))
    top = np.argsort(-keys, axis=1)[:, :MAX_CATEGORIES]
    present = np.arange(MAX_CATEGORIES) < counts[:, None]
    v["categories"] = np.where(present, top, -1)
    v["category_text"] = np.array(
        ["|".join(map(str, row[:k])) for row, k in zip(top.tolist(), counts)], dtype=object
    )
    long = rng.random(NUM_VIDEOS) < 0.05
    duration = np.where(
        long,
        rng.lognormal(math.log(40.0), 0.8, NUM_VIDEOS),
        rng.lognormal(math.log(9.5), 0.45, NUM_VIDEOS),
    )
    v["duration"] = np.round(np.clip(duration, 2.0, 600.0), 3)
    v["quality"] = rng.normal(0.0, 0.6, NUM_VIDEOS)
    popularity, v["cdf"] = _zipf_cdf(rng, NUM_VIDEOS, 0.7)
    v["show"] = np.round(popularity * 3e8 * rng.lognormal(0.0, 0.3, NUM_VIDEOS)) + 50.0
    like_rate = 1.0 / (1.0 + np.exp(-(-3.5 + 0.8 * v["quality"] + rng.normal(0, 0.3, NUM_VIDEOS))))
    v["like"] = np.round(v["show"] * like_rate)

    hours = np.arange(24)
    hour_weight = 1.0 + 0.8 * np.cos(2 * np.pi * (hours - 21) / 24)
    hour_cdf = np.cumsum(hour_weight / hour_weight.sum())
    hour_cdf[-1] = 1.0
    return {
        **{f"user_{k}": a for k, a in u.items()},
        **{f"video_{k}": a for k, a in v.items()},
        "hour_cdf": hour_cdf,
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _block(seed: int, index: int) -> dict[str, np.ndarray]:
    """Rows `[index * BLOCK_ROWS, (index + 1) * BLOCK_ROWS)` as columns."""
    e = _entities(seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, index]))
    n = BLOCK_ROWS
    user = np.searchsorted(e["user_cdf"], rng.random(n), side="right")
    video = np.searchsorted(e["video_cdf"], rng.random(n), side="right")
    hour = np.searchsorted(e["hour_cdf"], rng.random(n), side="right")
    day_factor = rng.lognormal(0.0, 0.3, n)
    show = np.round(e["video_show"][video] * day_factor)
    like = np.round(e["video_like"][video] * day_factor * rng.lognormal(0.0, 0.1, n))

    duration = e["video_duration"][video]
    favourite = e["user_favourite"][user]
    has_favourite = (e["video_categories"][video] == favourite[:, None]).any(axis=1)
    late = np.isin(hour, LATE_HOURS)
    affinity = (
        e["video_quality"][video]
        + e["user_taste"][user]
        + FAVOURITE_AFFINITY * has_favourite
        + LATE_AFFINITY * late
    )
    skip_logit = e["user_skip_base"][user] + COMMUTE_SKIP * np.isin(hour, COMMUTE_HOURS)
    skip = rng.random(n) < _sigmoid(skip_logit - SKIP_SLOPE * affinity)
    zero = rng.random(n) < 0.05
    swipe = np.minimum(rng.gamma(2.0, 0.35, n), duration)
    watch = duration * np.exp(rng.normal(0.25 * affinity, 0.12))
    replay = rng.random(n) < _sigmoid(-3.0 + 0.8 * affinity)
    extra = duration * rng.lognormal(0.3, 1.0, n)
    watched = np.minimum(watch + np.where(replay, extra, 0.0), MAX_WATCH_S)
    label = np.where(skip, np.where(zero, 0.0, swipe), watched)

    level = e["user_level"][user]
    return {
        "user_id": user.astype(np.int64),
        "video_id": video.astype(np.int64),
        "hour": hour.astype(np.int64),
        "user_active_degree": np.asarray(ACTIVITY_LEVELS, dtype=object)[level],
        "follow_user_num_range": np.asarray(FOLLOW_RANGES, dtype=object)[e["user_follow"][user]],
        "register_days_range": np.asarray(REGISTER_RANGES, dtype=object)[e["user_register"][user]],
        "video_category": e["video_category_text"][video],
        "video_duration": duration.astype(np.float64),
        "video_show_cnt": show,
        "video_like_cnt": like,
        "watch_time": np.round(label, 3),
    }


def generate(rows: int, seed: int = 0, start: int = 0) -> pd.DataFrame:
    """Rows `start .. start + rows - 1` of the seed's sequence.

    Args:
        rows: how many rows (>= 0).
        seed: the generator seed (>= 0).
        start: the first row's number in the sequence (>= 0).

    Returns:
        DataFrame with exactly the spec's columns (features then the label)
        and a `RangeIndex` of the row numbers. Ids int64, strings str,
        numerics and the label float64; `video_category` the ids joined by
        "|". The same rows for the same `(seed, start, rows)` however they
        are chunked: `generate(a + b, s)` equals `generate(a, s)` followed by
        `generate(b, s, start=a)`.
    """
    for name, value in (("rows", rows), ("seed", seed), ("start", start)):
        if int(value) != value or value < 0:
            raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}")
    rows, seed, start = int(rows), int(seed), int(start)
    stop = start + rows
    parts = []
    for index in range(start // BLOCK_ROWS, -(-stop // BLOCK_ROWS)):
        block = _block(seed, index)
        lo = max(start - index * BLOCK_ROWS, 0)
        hi = min(stop - index * BLOCK_ROWS, BLOCK_ROWS)
        parts.append({k: v[lo:hi] for k, v in block.items()})
    if parts:
        columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
        columns = {k: v[:0] for k, v in _block(seed, 0).items()}
    frame = pd.DataFrame(columns, index=pd.RangeIndex(start, stop))
    return frame[list(SPEC.columns)]


def split_bounds(rows: int) -> dict[str, tuple[int, int]]:
    """Row ranges `[start, stop)` of train/validation/test for `rows` rows (7:1:2)."""
    cut = np.round(np.cumsum(RATIOS)[:2] * rows).astype(int).tolist()
    edges = [0, *cut, rows]
    return {s: (edges[i], edges[i + 1]) for i, s in enumerate(SPLITS)}


def build(raw_dir=None, seed: int = 0, rows: int = DEFAULT_ROWS) -> pd.DataFrame:
    """`generate(rows, seed)` plus the `__split__` column of `make`'s split.

    In memory: for large `rows` use `make`, which writes chunk by chunk.
    `raw_dir` is ignored.
    """
    frame = generate(rows, seed)
    which = np.empty(rows, dtype=object)
    for split, (lo, hi) in split_bounds(rows).items():
        which[lo:hi] = split
    frame["__split__"] = which
    return frame


INFO = DatasetInfo(
    name="synthetic",
    build=build,
    spec=SPEC,
    ratios=RATIOS,
    group=None,
    description="Synthetic KuaiRec-like watch time (seeded; any number of rows).",
)


def _file_ranges(lo: int, hi: int, files: int | None) -> list[tuple[int, int]]:
    count = hi - lo
    if files is None:
        n = max(1, -(-count // CHUNK_ROWS))
        return [(lo + i * CHUNK_ROWS, min(lo + (i + 1) * CHUNK_ROWS, hi)) for i in range(n)]
    edges = lo + np.round(np.linspace(0, count, files + 1)).astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def _remove_stale(out_dir: str, split: str) -> None:
    """Removes this generator's files of `split` left by an earlier run."""
    for ext in FORMATS.values():
        pattern = os.path.join(glob.escape(out_dir), f"{split}-[0-9]*-of-[0-9]*{ext}")
        for path in glob.glob(pattern):
            os.remove(path)


def make(
    raw_dir,
    out_dir,
    *,
    seed: int = 0,
    fmt: str = "parquet",
    rows: int = DEFAULT_ROWS,
    files: int | None = None,
) -> dict:
    """Generates the splits, `feature_spec.yaml` and `summary.json`.

    Args:
        raw_dir: ignored (nothing is read).
        out_dir: where the files go (created if missing). Files of an earlier
            run named like `train-00000-of-00004.parquet` (any of the three
            formats) are removed first, so a glob finds only this run's.
        seed: the generator seed.
        fmt: `"parquet"`, `"csv"` or `"tfrecord"`.
        rows: rows over the three splits (7:1:2, contiguous; see the module
            docstring).
        files: files per split; None writes one file per `CHUNK_ROWS` rows
            (at least one per split, an empty split gives one empty file).
            Memory grows with the rows of one file.

    Returns:
        the summary written to `summary.json`: per split its `paths`, `rows`,
        exact `mean` and `zero_share`, and label `quantiles` computed over
        `quantile_rows` rows (all rows up to 1M per split, else every k-th row,
        an unbiased sample as rows are i.i.d.).
    """
    from rq_keras.data.writers import write_table

    if fmt not in FORMATS:
        raise ValueError(f"`fmt` must be one of {sorted(FORMATS)}, got {fmt!r}")
    if int(rows) != rows or rows < 1:
        raise ValueError(f"`rows` must be an integer >= 1, got {rows!r}")
    if files is not None and (int(files) != files or files < 1):
        raise ValueError(f"`files` must be an integer >= 1 or None, got {files!r}")
    rows = int(rows)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    ext = FORMATS[fmt]
    label = SPEC.label.name
    summary = {
        "dataset": INFO.name,
        "description": INFO.description,
        "format": fmt,
        "seed": seed,
        "label": label,
        "features": list(SPEC.feature_names),
        "splits": {},
    }
    for split, (lo, hi) in split_bounds(rows).items():
        _remove_stale(out_dir, split)
        ranges = _file_ranges(lo, hi, files)
        stride = max(1, -(-(hi - lo) // SAMPLE_CAP))
        paths, total, zeros, sample = [], 0.0, 0, []
        for i, (a, b) in enumerate(ranges):
            frame = generate(b - a, seed, start=a)
            path = os.path.join(out_dir, f"{split}-{i:05d}-of-{len(ranges):05d}{ext}")
            write_table(frame, SPEC, path)
            paths.append(path)
            y = frame[label].to_numpy()
            total += float(y.sum())
            zeros += int((y == 0).sum())
            sample.append(y[(np.arange(a, b) - lo) % stride == 0])
            del frame
        sampled = label_summary(np.concatenate(sample))
        count = hi - lo
        summary["splits"][split] = {
            "paths": paths,
            "rows": count,
            "first_row": lo,
            **(
                {
                    "mean": total / count,
                    "zero_share": zeros / count,
                    "quantiles": sampled["quantiles"],
                }
                if count
                else {}
            ),
            "quantile_rows": sampled["rows"],
        }
    summary["rows"] = rows
    summary["generator"] = {
        "users": NUM_USERS,
        "videos": NUM_VIDEOS,
        "categories": NUM_CATEGORIES,
        "block_rows": BLOCK_ROWS,
        "split": "contiguous row ranges, 7:1:2 (rows are i.i.d.)",
    }
    SPEC.save(os.path.join(out_dir, "feature_spec.yaml"))
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    return summary
