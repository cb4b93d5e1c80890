"""Tests of the KuaiRec 2.0 dataset builder on the real 1,000-row samples."""

import json
import pathlib
import shutil

import numpy as np
import pandas as pd
import pytest

from rq_keras.data import check_files
from rq_keras.datasets import kuairec

SAMPLE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "kuairec_sample"
SAMPLE_FILES = {
    "big_matrix.csv": "big_matrix_1000.csv",
    "item_categories.csv": "item_categories_sample.csv",
    "item_daily_features.csv": "item_daily_features_sample.csv",
    "user_features.csv": "user_features_raw_sample.csv",
}

pytestmark = pytest.mark.skipif(not SAMPLE.is_dir(), reason="KuaiRec sample not available")


def _raw(name):
    return pd.read_csv(SAMPLE / SAMPLE_FILES[name], encoding="utf-8-sig")


@pytest.fixture(scope="module")
def frame():
    return kuairec.build(SAMPLE)


def _official_copy(folder, matrix=None):
    """The samples under the official names, rewritten without a byte-order mark."""
    folder.mkdir(parents=True, exist_ok=True)
    for official in SAMPLE_FILES:
        table = matrix if (official == "big_matrix.csv" and matrix is not None) else _raw(official)
        table.to_csv(folder / official, index=False)
    return folder


def test_sample_files_keep_the_bom():
    assert (SAMPLE / "big_matrix_1000.csv").read_bytes()[:3] == b"\xef\xbb\xbf"


def test_build_columns_and_dtypes(frame):
    spec = kuairec.SPEC
    assert list(frame.columns) == list(spec.columns)
    assert len(frame) == 1000
    assert not frame.isna().any().any()
    for f in spec.features:
        column = frame[f.name]
        if f.is_numeric:
            assert column.dtype == np.float64, f.name
        elif f.is_list or f.dtype == "string":
            assert column.map(type).eq(str).all(), f.name
        else:
            assert column.dtype == np.int64, f.name
    assert frame["watch_time"].dtype == np.float64


def test_label_is_play_duration_in_seconds(frame):
    raw = _raw("big_matrix.csv")
    np.testing.assert_allclose(frame["watch_time"], raw["play_duration"] / 1000.0)
    np.testing.assert_allclose(frame["video_duration"], raw["video_duration"] / 1000.0)
    assert frame.index.tolist() == list(range(1000))


def test_hour_and_day_of_week_match_the_beijing_time_column(frame):
    time = pd.to_datetime(_raw("big_matrix.csv")["time"], format="%Y-%m-%d %H:%M:%S.%f")
    np.testing.assert_array_equal(frame["hour"], time.dt.hour)
    np.testing.assert_array_equal(frame["day_of_week"], time.dt.day_of_week)


def test_golden_row_with_two_categories(frame):
    raw = _raw("big_matrix.csv")
    categories = _raw("item_categories.csv").set_index("video_id")["feat"]
    two = categories[categories.str.contains(",")]
    row = int(np.flatnonzero(raw["video_id"].isin(two.index))[0])
    line = raw.iloc[row]
    got = frame.loc[row]

    assert got["user_id"] == line["user_id"] == 0
    assert got["video_id"] == line["video_id"]
    assert got["watch_time"] == pytest.approx(line["play_duration"] / 1000.0)
    ids = [int(t) for t in categories[line["video_id"]].strip("[]").split(",")]
    assert got["video_category"] == "|".join(str(i) for i in ids)
    user = _raw("user_features.csv").set_index("user_id").loc[0]
    assert got["user_active_degree"] == user["user_active_degree"] == "high_active"
    assert got["follow_user_num_range"] == user["follow_user_num_range"] == "(0,10]"
    assert got["onehot_feat3"] == user["onehot_feat3"] == 638
    # Video ids 0..16 only in the daily sample: the join misses, defaults apply.
    assert got["author_id"] == -1 and got["upload_type"] == "" and got["show_cnt"] == 0.0


def test_golden_daily_join(tmp_path):
    # One real impression moved to video 0 on 2020-07-05, a day the daily sample has.
    matrix = _raw("big_matrix.csv")
    matrix.loc[0, "video_id"] = 0
    folder = _official_copy(tmp_path / "raw", matrix)
    got = kuairec.build(folder).loc[0]
    daily = _raw("item_daily_features.csv")
    day = daily[(daily["video_id"] == 0) & (daily["date"] == 20200705)].iloc[0]
    assert got["author_id"] == day["author_id"] == 3309
    assert got["music_id"] == day["music_id"] == 3350323409
    assert got["upload_type"] == "ShortImport" and got["video_type"] == "NORMAL"
    assert got["visible_status"] == "public" and got["video_tag_id"] == 841
    assert got["show_cnt"] == day["show_cnt"] == 14665.0
    assert got["follow_cnt"] == day["follow_cnt"]
    assert got["video_age_days"] == (pd.Timestamp("2020-07-05") - pd.Timestamp("2020-03-30")).days
    assert got["video_category"] == "8"
    assert got["watch_time"] == pytest.approx(13.838)


def test_make_writes_splits_and_counts_missing_joins(tmp_path):
    summary = kuairec.make(SAMPLE, tmp_path / "out", seed=3)
    assert [summary["splits"][s]["rows"] for s in ("train", "validation", "test")] == [
        700,
        100,
        200,
    ]
    for name in ("train.parquet", "validation.parquet", "test.parquet", "feature_spec.yaml"):
        assert (tmp_path / "out" / name).is_file()
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["rows"] == 1000
    files = [tmp_path / "out" / f"{s}.parquet" for s in ("train", "validation", "test")]
    assert check_files(files, kuairec.SPEC).rows_kept == 1000
    misses = written["missing_joins"]
    videos = _raw("big_matrix.csv")["video_id"]
    assert misses["user_features"] == 0
    assert misses["item_categories"] == int(
        (~videos.isin(_raw("item_categories.csv")["video_id"])).sum()
    )
    assert misses["item_daily_features_video"] == 1000
    assert misses["item_daily_features_video_date"] == 1000
    assert written["files"]["matrix"] == "big_matrix_1000.csv"
    assert written["user_feature_cells_empty"] == int(_raw("user_features.csv").isna().sum().sum())


def test_split_is_deterministic_and_ratios_apply(tmp_path):
    a = kuairec.make(SAMPLE, tmp_path / "a", seed=1)
    b = kuairec.make(SAMPLE, tmp_path / "b", seed=1)
    for split in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "a" / f"{split}.parquet"),
            pd.read_parquet(tmp_path / "b" / f"{split}.parquet"),
        )
    assert a["splits"]["test"] == {**b["splits"]["test"], "path": a["splits"]["test"]["path"]}
    c = kuairec.make(SAMPLE, tmp_path / "c", seed=1, ratios=(0.8, 0.0, 0.2))
    assert [c["splits"][s]["rows"] for s in ("train", "validation", "test")] == [800, 0, 200]


def test_small_matrix_and_data_subfolder(tmp_path):
    folder = _official_copy(tmp_path / "KuaiRec" / "data")
    (folder / "big_matrix.csv").rename(folder / "small_matrix.csv")
    frame = kuairec.build(tmp_path / "KuaiRec", matrix="small")
    assert len(frame) == 1000
    with pytest.raises(FileNotFoundError, match="big matrix"):
        kuairec.build(folder, matrix="big")
    with pytest.raises(ValueError, match="`matrix`"):
        kuairec.build(folder, matrix="medium")


def test_empty_play_duration_is_dropped_and_counted(tmp_path):
    matrix = _raw("big_matrix.csv")
    matrix["play_duration"] = matrix["play_duration"].astype(float)
    matrix.loc[[5, 7], "play_duration"] = np.nan
    matrix.loc[[9], ["date", "timestamp"]] = np.nan
    folder = _official_copy(tmp_path / "raw", matrix)
    summary = kuairec.make(folder, tmp_path / "out")
    assert summary["rows"] == 998
    assert summary["rows_dropped_play_duration_empty"] == 2
    assert summary["rows_timestamp_empty"] == 1
    frame = kuairec.build(folder, chunksize=300)
    assert 5 not in frame.index and 7 not in frame.index
    assert frame.loc[9, "hour"] == -1 and frame.loc[9, "day_of_week"] == -1
    assert frame.loc[9, "video_age_days"] == 0.0
    pd.testing.assert_frame_equal(frame, kuairec.build(folder, chunksize=10_000))


def test_missing_file_and_ambiguous_names(tmp_path):
    folder = _official_copy(tmp_path / "raw")
    (folder / "user_features.csv").unlink()
    with pytest.raises(FileNotFoundError, match="user_features.csv"):
        kuairec.build(folder)
    shutil.copy(SAMPLE / "user_features_raw_sample.csv", folder / "user_features_a.csv")
    shutil.copy(SAMPLE / "user_features_raw_sample.csv", folder / "user_features_b.csv")
    with pytest.raises(ValueError, match="several files"):
        kuairec.build(folder)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        kuairec.build(tmp_path / "nowhere")


def test_missing_column_names_the_file(tmp_path):
    folder = _official_copy(tmp_path / "raw")
    users = _raw("user_features.csv").drop(columns="register_days_range")
    users.to_csv(folder / "user_features.csv", index=False)
    with pytest.raises(ValueError, match=r"user_features\.csv.*register_days_range"):
        kuairec.build(folder)


def test_bad_cells_name_the_file(tmp_path):
    folder = _official_copy(tmp_path / "raw")
    categories = _raw("item_categories.csv")
    categories.loc[3, "feat"] = "8, 9"
    categories.to_csv(folder / "item_categories.csv", index=False)
    with pytest.raises(ValueError, match=r"item_categories\.csv: line 5"):
        kuairec.build(folder)
    _official_copy(folder)
    matrix = _raw("big_matrix.csv").astype({"play_duration": object})
    matrix.loc[2, "play_duration"] = "fast"
    matrix.to_csv(folder / "big_matrix.csv", index=False)
    with pytest.raises(ValueError, match=r"big_matrix\.csv: malformed"):
        kuairec.build(folder)
