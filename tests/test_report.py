"""rq_keras.evaluation.calibration: hand-computed calibration and gain, input checks, PNGs."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from rq_keras.evaluation.calibration import (
    _history_series,
    cumulative_gain,
    decile_calibration,
    write_plots,
)
from rq_keras.evaluation.metrics import normalized_gini
from rq_keras.evaluation.plots import project_2d, write_embedding_plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Predictions with a three-way tie at 2 (rows 2, 3, 7): a stable sort keeps them
# in row order, so row 2 (label 20) ends the first group and rows 3 and 7 start
# the second.
LABELS = [30.0, 10.0, 20.0, 21.0, 50.0, 0.0, 40.0, 22.0]
PREDS = [3.0, 1.0, 2.0, 2.0, 5.0, 0.0, 4.0, 2.0]

HISTORY = {
    "loss": [3.0, 2.0, 1.5],
    "gen": [2.0, 1.2, 0.9],
    "reg": [0.5, 0.4, 0.3],
    "mae": [9.0, 8.0, 7.5],
    "sampling_probability": [0.0, 0.1, 0.2],
    "lr": [1e-3, 1e-3, 5e-4],
    "val_loss": [3.1, 2.2, 1.7],
    "val_gen": [2.1, 1.3, 1.0],
    "val_mae": [9.5, 8.1, 7.9],
    "xauc": [0.6, 0.65, 0.7],
}


# --- decile_calibration ------------------------------------------------------


def test_decile_calibration_golden_with_ties():
    rows = decile_calibration(LABELS, PREDS, num_bins=3)
    total = 193.0
    expected = [
        (1, 3, 1.0, 10.0, 30.0 / total),
        (2, 3, 7.0 / 3.0, 73.0 / 3.0, 73.0 / total),
        (3, 2, 4.5, 45.0, 90.0 / total),
    ]
    assert [r["bin"] for r in rows] == [1, 2, 3]
    for row, (b, n, mp, ml, share) in zip(rows, expected):
        assert row == {
            "bin": b,
            "rows": n,
            "mean_prediction": pytest.approx(mp),
            "mean_label": pytest.approx(ml),
            "label_share": pytest.approx(share),
        }
    assert sum(r["label_share"] for r in rows) == pytest.approx(1.0)


def test_decile_calibration_default_ten_bins_and_column_input():
    y = np.arange(25, dtype=float).reshape(-1, 1)
    rows = decile_calibration(y, y[::-1] * -1.0)
    assert [r["rows"] for r in rows] == [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
    assert rows[0]["mean_prediction"] == pytest.approx(-23.0)
    assert rows[0]["mean_label"] == pytest.approx(1.0)
    assert rows[-1]["mean_label"] == pytest.approx(23.5)


def test_decile_calibration_fewer_rows_than_bins():
    rows = decile_calibration([5.0, 0.0, 1.0], [0.3, 0.1, 0.2], num_bins=10)
    assert [(r["bin"], r["rows"], r["mean_label"]) for r in rows] == [
        (1, 1, 0.0),
        (2, 1, 1.0),
        (3, 1, 5.0),
    ]
    assert [r["label_share"] for r in rows] == pytest.approx([0.0, 1 / 6, 5 / 6])


def test_decile_calibration_zero_label_total_has_no_share():
    rows = decile_calibration([0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], num_bins=2)
    assert [r["label_share"] for r in rows] == [None, None]
    assert [r["mean_prediction"] for r in rows] == [1.5, 3.5]


@pytest.mark.parametrize("num_bins", [0, -3, 2.5, "10", True, None])
def test_decile_calibration_rejects_bad_num_bins(num_bins):
    with pytest.raises(ValueError, match=r"`num_bins` must be an int >= 1"):
        decile_calibration(LABELS, PREDS, num_bins=num_bins)


def test_decile_calibration_accepts_numpy_int_bins():
    assert len(decile_calibration(LABELS, PREDS, num_bins=np.int64(4))) == 4


# --- cumulative_gain ---------------------------------------------------------


def test_cumulative_gain_golden_four_rows():
    # Ranked by prediction: rows 1, 0, 3, 2, labels 3, 0, 4, 1 (total 8);
    # perfect: 4, 3, 1, 0.
    gain = cumulative_gain([0.0, 3.0, 1.0, 4.0], [0.6, 0.9, 0.1, 0.3])
    np.testing.assert_allclose(gain["share_of_rows"], [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(gain["model"], [0.0, 0.375, 0.375, 0.875, 1.0])
    np.testing.assert_allclose(gain["perfect"], [0.0, 0.5, 0.875, 1.0, 1.0])
    # Trapezoid areas: model 0.53125, perfect 0.71875.
    assert gain["gini"] == pytest.approx(0.0625)
    assert gain["normalized_gini"] == pytest.approx(0.0625 / 0.4375)


def test_cumulative_gain_prediction_ties_keep_row_order():
    gain = cumulative_gain([1.0, 2.0, 0.0], [5.0, 5.0, 1.0])
    np.testing.assert_allclose(gain["model"], [0.0, 1 / 3, 1.0, 1.0])
    np.testing.assert_allclose(gain["perfect"], [0.0, 2 / 3, 1.0, 1.0])


def test_cumulative_gain_reversed_ranking_is_minus_one():
    gain = cumulative_gain([0.0, 1.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0])
    assert gain["normalized_gini"] == pytest.approx(-1.0)


def test_cumulative_gain_matches_metrics_normalized_gini():
    rng = np.random.default_rng(7)
    n = 2_000
    y = rng.lognormal(1.0, 1.5, n) * (rng.random(n) < 0.3)
    p = 0.5 * y + rng.lognormal(0.0, 2.0, n)
    assert np.unique(p).size == n
    gain = cumulative_gain(y, p)
    assert gain["normalized_gini"] == pytest.approx(normalized_gini(y, p), rel=1e-10, abs=1e-12)
    # The perfect ranking scores exactly 1 and is an upper bound.
    assert cumulative_gain(y, y)["normalized_gini"] == pytest.approx(1.0)
    assert gain["normalized_gini"] < 1.0


def test_cumulative_gain_zero_label_total():
    gain = cumulative_gain([0.0, 0.0, 0.0], [0.2, 0.1, 0.3])
    np.testing.assert_array_equal(gain["model"], np.zeros(4))
    np.testing.assert_array_equal(gain["perfect"], np.zeros(4))
    np.testing.assert_allclose(gain["share_of_rows"], [0.0, 1 / 3, 2 / 3, 1.0])
    assert gain["gini"] is None
    assert gain["normalized_gini"] is None
    assert math.isnan(normalized_gini([0.0, 0.0, 0.0], [0.2, 0.1, 0.3]))


def test_cumulative_gain_equal_labels_have_no_normalized_gini():
    gain = cumulative_gain([0.1] * 7, np.arange(7.0))
    assert gain["gini"] == 0.0
    assert gain["normalized_gini"] is None
    np.testing.assert_allclose(gain["model"], np.arange(8) / 7)


def test_cumulative_gain_single_row():
    gain = cumulative_gain([2.0], [1.0])
    np.testing.assert_allclose(gain["model"], [0.0, 1.0])
    assert gain["normalized_gini"] is None


# --- input validation ----------------------------------------------------------


def _call_each(y_true, y_pred, tmp_path):
    return [
        lambda: decile_calibration(y_true, y_pred),
        lambda: cumulative_gain(y_true, y_pred),
        lambda: write_plots(y_true, y_pred, None, tmp_path / "plots"),
    ]


BAD_INPUTS = [
    (
        [1.0] * 10,
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, np.nan, np.inf, -np.inf],
        r"^`y_pred` has 3 non-finite values \(first at row 7\)$",
    ),
    ([1.0, np.inf, 2.0], [1.0, 2.0, 3.0], r"^`y_true` has 1 non-finite value \(first at row 1\)$"),
    ([1.0] * 10, [1.0] * 9, r"^`y_true` and `y_pred` differ in length: 10 vs 9$"),
    ([], [], r"no rows"),
    (["a", "b"], [1.0, 2.0], r"^`y_true` is not numeric"),
    ([1.0, 2.0], [1.0, None], r"^`y_pred` has 1 non-finite value \(first at row 1\)$"),
]


@pytest.mark.parametrize("y_true, y_pred, message", BAD_INPUTS)
def test_bad_inputs_raise_in_every_function(y_true, y_pred, message, tmp_path):
    for call in _call_each(y_true, y_pred, tmp_path):
        with pytest.raises(ValueError, match=message):
            call()
    assert not (tmp_path / "plots").exists()


def test_any_shape_is_flattened():
    a = cumulative_gain(np.array([[0.0, 3.0], [1.0, 4.0]]), [[0.6], [0.9], [0.1], [0.3]])
    b = cumulative_gain([0.0, 3.0, 1.0, 4.0], [0.6, 0.9, 0.1, 0.3])
    np.testing.assert_array_equal(a["model"], b["model"])


# --- write_plots ---------------------------------------------------------------


def _assert_pngs(paths, out_dir):
    assert set(paths) == {"distribution", "calibration", "gain", "loss_curves"}
    assert {os.path.basename(p) for p in paths.values()} == {
        "distribution.png",
        "calibration.png",
        "gain.png",
        "loss_curves.png",
    }
    for path in paths.values():
        assert os.path.dirname(path) == str(out_dir)
        with open(path, "rb") as f:
            data = f.read()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 5_000
    assert sorted(os.listdir(out_dir)) == sorted(os.path.basename(p) for p in paths.values())


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(3)
    n = 3_000
    y = rng.lognormal(2.0, 1.2, n) * (rng.random(n) < 0.4)
    p = np.maximum(0.0, 0.6 * y + rng.normal(0.0, 3.0, n))
    return y, p


def test_write_plots_writes_four_pngs(sample, tmp_path):
    out_dir = tmp_path / "nested" / "report"
    paths = write_plots(*sample, HISTORY, out_dir, title="cdnow run")
    _assert_pngs(paths, out_dir)


@pytest.mark.parametrize("history", [None, {}, {"sampling_probability": [0.1, 0.2]}])
def test_write_plots_without_history(history, tmp_path):
    paths = write_plots([0.0, 1.0, 5.0], [0.5, 0.5, 2.0], history, tmp_path)
    _assert_pngs(paths, tmp_path)


def test_write_plots_history_with_nan_and_inf(tmp_path):
    history = {
        "loss": [np.nan, 2.0, np.inf, 1.0],
        "val_loss": [float("nan")] * 4,
        "rnc": [1.0, -np.inf, 0.5, None],
    }
    paths = write_plots(*([[0.0, 0.0, 2.0, 30.0]] * 2), history, tmp_path)
    _assert_pngs(paths, tmp_path)


@pytest.mark.slow
def test_write_plots_overwrites_existing_files(sample, tmp_path):
    first = write_plots(*sample, None, tmp_path)
    before = os.path.getsize(first["loss_curves"])
    second = write_plots(*sample, HISTORY, tmp_path)
    assert second == first
    assert os.path.getsize(second["loss_curves"]) != before
    _assert_pngs(second, tmp_path)


def test_write_plots_rejects_bad_history_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"`history` must be a dict"):
        write_plots([1.0], [1.0], [1.0, 2.0], tmp_path / "out")
    with pytest.raises(ValueError, match=r"history 'loss' is not numeric"):
        write_plots([1.0], [1.0], {"loss": ["high"]}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_history_panels_order_and_exclusions():
    panels = _history_series(HISTORY)
    assert [name for name, _, _ in panels] == ["loss", "gen", "reg", "mae", "xauc"]
    by_name = {name: (train, val) for name, train, val in panels}
    np.testing.assert_array_equal(by_name["loss"][1], [3.1, 2.2, 1.7])
    assert by_name["reg"][1] is None
    assert _history_series({"val_rnc": [1.0, np.inf]})[0][0] == "rnc"
    assert np.isnan(_history_series({"val_rnc": [1.0, np.inf]})[0][2][1])


def test_report_needs_neither_tensorflow_nor_pyplot(tmp_path):
    code = (
        "import sys\n"
        "from rq_keras.evaluation.calibration import write_plots\n"
        "write_plots([0.0, 1.0, 9.0], [0.2, 1.5, 7.0], {'loss': [1.0, 0.5]}, sys.argv[1])\n"
        "bad = [m for m in ('tensorflow', 'matplotlib.pyplot') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    assert len(os.listdir(tmp_path)) == 4


def test_calibration_labels_merge_near_coincident_deciles():
    from rq_keras.evaluation.plots import _label_groups

    bins = [{"bin": b} for b in range(1, 11)]
    # Seven deciles at about 0 (a zero-inflated target), then three spread out.
    xs = np.array([0.0, 0.01, 0.02, 0.02, 0.03, 0.05, 0.08, 5.0, 20.0, 60.0])
    ys = np.array([0.0, 0.0, 0.1, 0.0, 0.2, 0.1, 0.3, 6.0, 18.0, 70.0])
    groups = list(_label_groups(bins, xs, ys, span=70.0))
    assert [(first, last) for first, last, _, _ in groups] == [(1, 7), (8, 8), (9, 9), (10, 10)]
    # Far-apart points keep one label each.
    spread = list(_label_groups(bins, np.arange(10.0) * 10, np.arange(10.0) * 10, span=90.0))
    assert [(first, last) for first, last, _, _ in spread] == [(b, b) for b in range(1, 11)]


@pytest.mark.slow
def test_loss_curves_mark_the_best_epoch_and_an_early_stop(sample, tmp_path):
    plain = write_plots(*sample, HISTORY, tmp_path / "plain")["loss_curves"]
    marked = write_plots(*sample, HISTORY, tmp_path / "marked", best_epoch=1, epochs=50)
    # The marks change the picture (two more lines and their legend entries).
    with open(plain, "rb") as a, open(marked["loss_curves"], "rb") as b:
        assert a.read() != b.read()


def test_pca_projection_is_the_principal_plane():
    """Points on a tilted plane in 5-D: PCA recovers the plane's coordinates
    up to rotation (distances kept), with the first axis along the largest spread."""
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(200, 2)) * [5.0, 1.0]
    basis = np.linalg.qr(rng.normal(size=(5, 2)))[0].T  # orthonormal (2, 5)
    xy = project_2d(plane @ basis + 3.0)
    d_in = np.linalg.norm(plane[:, None] - plane[None], axis=-1)
    d_out = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.testing.assert_allclose(d_out, d_in, atol=1e-9)
    assert xy[:, 0].std() > 3 * xy[:, 1].std()
    with pytest.raises(ValueError, match="`projection` must be 'pca' or 'tsne'"):
        project_2d(plane, "umap")
    with pytest.raises(ValueError, match=r"must be \(n >= 2, d\)"):
        project_2d(np.zeros(4))


def test_embedding_plot_is_written(tmp_path):
    values = np.linspace(0.0, 500.0, 50)
    embeddings = np.stack([np.log1p(values), np.sqrt(values), np.ones(50)], axis=1)
    path = write_embedding_plot(values, embeddings, tmp_path / "plots", title="toy")
    assert path.endswith("embedding.png") and os.path.getsize(path) > 1000
    with pytest.raises(ValueError, match="50 values but 49 embeddings"):
        write_embedding_plot(values, embeddings[:49], tmp_path)
