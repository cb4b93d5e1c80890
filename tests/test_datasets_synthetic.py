"""Tests of rq_keras.datasets.synthetic (the seeded KuaiRec-like generator)."""

import glob
import json
import os

import numpy as np
import pandas as pd
import pytest

from rq_keras import data
from rq_keras.datasets import synthetic
from rq_keras.features import FeatureSpec


@pytest.fixture(scope="module")
def frame():
    return synthetic.generate(200_000, seed=0)


def test_same_seed_same_rows_other_seed_other_rows():
    a = synthetic.generate(5_000, seed=7)
    pd.testing.assert_frame_equal(a, synthetic.generate(5_000, seed=7))
    b = synthetic.generate(5_000, seed=8)
    assert not a["watch_time"].equals(b["watch_time"])
    assert not a["user_id"].equals(b["user_id"])


def test_chunked_generation_equals_one_shot():
    # Cuts inside a block and across the block boundary at BLOCK_ROWS.
    block = synthetic.BLOCK_ROWS
    whole = synthetic.generate(block + 20_000, seed=3)
    cuts = [0, 1, 33_333, block - 1, block + 7, block + 20_000]
    parts = [synthetic.generate(b - a, seed=3, start=a) for a, b in zip(cuts, cuts[1:])]
    pd.testing.assert_frame_equal(pd.concat(parts), whole)
    assert list(whole.index[:3]) == [0, 1, 2]
    assert len(synthetic.generate(0, seed=3, start=10)) == 0


def test_schema_matches_spec(frame):
    spec = synthetic.SPEC
    assert list(frame.columns) == list(spec.columns)
    for f in spec.features:
        column = frame[f.name]
        assert not column.isna().any(), f.name
        if f.is_list or f.dtype == "string":
            assert column.map(type).eq(str).all(), f.name
        elif f.dtype == "int64":
            assert column.dtype == np.int64, f.name
        else:
            assert column.dtype == np.float64, f.name
            assert (column > 0).all(), f.name
    assert frame["watch_time"].dtype == np.float64
    assert frame["user_id"].between(0, synthetic.NUM_USERS - 1).all()
    assert frame["video_id"].between(0, synthetic.NUM_VIDEOS - 1).all()
    assert frame["hour"].between(0, 23).all()
    assert set(frame["user_active_degree"]) == set(synthetic.ACTIVITY_LEVELS)
    assert set(frame["follow_user_num_range"]) <= set(synthetic.FOLLOW_RANGES)
    assert set(frame["register_days_range"]) <= set(synthetic.REGISTER_RANGES)
    lists = frame["video_category"].drop_duplicates().str.split("|")
    assert lists.map(len).between(1, synthetic.MAX_CATEGORIES).all()
    assert lists.map(lambda ids: len(set(ids)) == len(ids)).all()
    ids = {int(i) for row in lists for i in row}
    assert ids <= set(range(synthetic.NUM_CATEGORIES))
    # A video keeps its categories and duration on every row.
    per_video = frame.groupby("video_id")[["video_category", "video_duration"]].nunique()
    assert (per_video == 1).all().all()
    # Zipf-like popularity: most ids appear, a few dominate.
    counts = frame["video_id"].value_counts()
    assert len(counts) > 0.9 * synthetic.NUM_VIDEOS
    assert counts.iloc[:100].sum() > 0.15 * len(frame)


def test_label_depends_on_the_features(frame):
    y = frame["watch_time"]
    by_level = y.groupby(frame["user_active_degree"])
    means = by_level.mean()
    assert means["full_active"] > 1.3 * means["UNKNOWN"]
    assert means["full_active"] > means["middle_active"] > means["UNKNOWN"]
    zero = by_level.apply(lambda v: (v == 0).mean())
    assert zero["UNKNOWN"] > 1.5 * zero["full_active"]
    # The watched mode follows the duration.
    watched = frame[y > 2.0]
    rho = watched["watch_time"].rank().corr(watched["video_duration"].rank())
    assert rho > 0.5
    # Per-video means learned on one half predict the other half's log label.
    z = np.log1p(y.to_numpy())
    half = len(frame) // 2
    video = frame["video_id"].to_numpy()
    means_v = pd.Series(z[:half]).groupby(video[:half]).mean()
    pred = pd.Series(video[half:]).map(means_v).fillna(z[:half].mean()).to_numpy()
    mse_model = np.mean((z[half:] - pred) ** 2)
    mse_constant = np.mean((z[half:] - z[:half].mean()) ** 2)
    assert mse_model < 0.95 * mse_constant


def test_zero_share_and_long_tail_are_plausible(frame):
    y = frame["watch_time"].to_numpy()
    assert np.isfinite(y).all() and (y >= 0).all() and y.max() <= synthetic.MAX_WATCH_S
    assert 0.005 < np.mean(y == 0) < 0.05
    assert 0.2 < np.mean(y < 1.0) < 0.45
    q50, q99 = np.quantile(y, [0.5, 0.99])
    assert 4.0 < q50 < 15.0
    assert q99 > 5 * q50
    assert y.max() > 5 * q99
    assert np.array_equal(np.round(y, 3), y)


@pytest.mark.slow
def test_make_writes_chunked_files_and_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "CHUNK_ROWS", 8_000)
    monkeypatch.setattr(synthetic, "SAMPLE_CAP", 5_000)
    rows = 30_000
    summary = synthetic.make(None, tmp_path, seed=5, rows=rows)
    expected = synthetic.generate(rows, seed=5)
    bounds = {"train": (0, 21_000), "validation": (21_000, 24_000), "test": (24_000, 30_000)}
    assert synthetic.split_bounds(rows) == bounds
    counts = {"train": 3, "validation": 1, "test": 1}
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    assert summary["rows"] == rows
    for split, (lo, hi) in bounds.items():
        info = summary["splits"][split]
        n = counts[split]
        names = [f"{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
        assert [os.path.basename(p) for p in info["paths"]] == names
        got = pd.concat([pd.read_parquet(p) for p in info["paths"]], ignore_index=True)
        want = expected.iloc[lo:hi].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want)
        y = want["watch_time"].to_numpy()
        assert info["rows"] == hi - lo
        assert info["mean"] == pytest.approx(y.mean(), rel=1e-12)
        assert info["zero_share"] == pytest.approx(np.mean(y == 0))
        stride = -(-(hi - lo) // 5_000)
        assert info["quantile_rows"] == len(y[::stride])
        assert info["quantiles"]["0.5"] == pytest.approx(np.quantile(y[::stride], 0.5))
    assert FeatureSpec.load(tmp_path / "feature_spec.yaml") == synthetic.SPEC
    train = summary["splits"]["train"]["paths"]
    ds = data.make_dataset(train, synthetic.SPEC, batch_size=4_096)
    assert sum(int(y.shape[0]) for _, y in ds) == 21_000

    # A second run with other file counts leaves none of the first run's files.
    summary = synthetic.make(None, tmp_path, seed=5, rows=rows, files=2, fmt="csv")
    assert sorted(glob.glob(str(tmp_path / "train-*"))) == summary["splits"]["train"]["paths"]
    assert len(glob.glob(str(tmp_path / "*-of-*"))) == 6
    got = pd.concat([pd.read_csv(p) for p in summary["splits"]["test"]["paths"]])
    assert len(got) == 6_000
    np.testing.assert_allclose(got["watch_time"], expected["watch_time"].iloc[24_000:])


def test_make_tfrecord_reads_back(tmp_path):
    summary = synthetic.make(None, tmp_path, seed=1, fmt="tfrecord", rows=1_000)
    (path,) = summary["splits"]["validation"]["paths"]
    assert path.endswith("validation-00000-of-00001.tfrecord")
    (chunk,) = data.read_chunks(path, synthetic.SPEC)
    want = synthetic.generate(100, seed=1, start=700)
    np.testing.assert_array_equal(chunk["video_id"], want["video_id"])
    # tf.Example stores floats as float32.
    np.testing.assert_allclose(chunk["watch_time"], want["watch_time"], rtol=1e-7)
    first = [int(i) for i in want["video_category"].iloc[0].split("|")]
    assert chunk["video_category"][0].tolist()[: len(first)] == first


def test_bad_arguments():
    with pytest.raises(ValueError, match="rows"):
        synthetic.generate(-1)
    with pytest.raises(ValueError, match="seed"):
        synthetic.generate(10, seed=-2)
    with pytest.raises(ValueError, match="fmt"):
        synthetic.make(None, "unused", fmt="json")
    with pytest.raises(ValueError, match="rows"):
        synthetic.make(None, "unused", rows=0)
    with pytest.raises(ValueError, match="files"):
        synthetic.make(None, "unused", files=0)


def test_build_marks_the_contiguous_split():
    frame = synthetic.build(None, seed=2, rows=1_000)
    assert frame["__split__"].value_counts().to_dict() == {
        "train": 700,
        "test": 200,
        "validation": 100,
    }
    assert (frame["__split__"].iloc[:700] == "train").all()
    assert synthetic.INFO.spec is synthetic.SPEC
