"""Evaluation report of a training run: decile calibration, cumulative gain and PNG plots.

Everything here is computed from the test split's true labels and the model's
predictions (plus the Keras training history for the loss curves), with numpy
and matplotlib only: the module does not import TensorFlow, so a report can be
rebuilt from saved predictions on any machine.

* :func:`decile_calibration`: rows sorted by prediction and cut into groups of
  near-equal size; per group the mean prediction, the mean label and the
  group's share of the total label.
* :func:`cumulative_gain`: the gain curves of the model's ranking and of the
  perfect ranking, with the (normalized) Gini of the curves; the normalized
  Gini is the one of :func:`rq_keras.evaluation.metrics.normalized_gini`.
* :func:`write_plots`: four PNGs (label/prediction distributions, calibration,
  gain curves, loss curves). The figures are drawn by :mod:`rq_keras.evaluation.plots`
  with matplotlib's object-oriented :class:`~matplotlib.figure.Figure` and the
  Agg canvas, never ``pyplot``, so no display is needed and no global figure
  state is touched. :func:`write_reliability_plot`,
  :func:`write_embedding_plot` and :func:`project_2d` live there too and are
  re-exported here.

The three functions validate ``y_true`` and ``y_pred`` the same way: any shape,
flattened to 1-D float64; equal lengths; at least one row; finite values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rq_keras.evaluation.plots import (
    plot_calibration,
    plot_distribution,
    plot_gain,
    plot_loss_curves,
)

__all__ = ["cumulative_gain", "decile_calibration", "write_plots"]

PLOT_FILES = {
    "distribution": "distribution.png",
    "calibration": "calibration.png",
    "gain": "gain.png",
    "loss_curves": "loss_curves.png",
}

# History entries that are schedules, not metrics: no loss-curve panel.
_NOT_METRICS = frozenset({"sampling_probability", "lr", "learning_rate"})
# Panel order of the loss-curve figure; other metrics follow in history order.
_KNOWN_METRICS = ("loss", "gen", "reg", "rnc", "crps", "mae")


# ------------------------------------------------------------------ validation


def _as_values(values: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} is not numeric: {err}") from None


def _validate(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64 of shape `(n,)`, or a ValueError naming the problem."""
    y = _as_values(y_true, "`y_true`")
    p = _as_values(y_pred, "`y_pred`")
    if y.size != p.size:
        raise ValueError(f"`y_true` and `y_pred` differ in length: {y.size} vs {p.size}")
    if y.size == 0:
        raise ValueError("`y_true` and `y_pred` have no rows: at least 1 is needed")
    for name, arr in (("`y_true`", y), ("`y_pred`", p)):
        bad = ~np.isfinite(arr)
        if bad.any():
            count = int(bad.sum())
            noun = "value" if count == 1 else "values"
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} has {count} non-finite {noun} (first at row {first})")
    return y, p


def _check_num_bins(num_bins: Any) -> int:
    if isinstance(num_bins, (bool, np.bool_)) or not isinstance(num_bins, (int, np.integer)):
        raise ValueError(f"`num_bins` must be an int >= 1, got {num_bins!r}")
    if num_bins < 1:
        raise ValueError(f"`num_bins` must be an int >= 1, got {num_bins}")
    return int(num_bins)


# ----------------------------------------------------------------- the numbers


def decile_calibration(y_true: Any, y_pred: Any, num_bins: int = 10) -> list[dict]:
    """Mean label against mean prediction in groups of rows ranked by prediction.

    The rows are sorted by prediction, ascending, with a stable sort (tied
    predictions keep their input order), and the sorted order is cut into
    ``num_bins`` groups whose sizes differ by at most one (the first groups get
    the extra rows, as ``np.array_split``). With fewer rows than bins, each row
    is its own group.

    Args:
        y_true: labels, any shape, `n` values in all.
        y_pred: predictions, `n` values.
        num_bins: number of groups (10: deciles), an int >= 1.

    Returns:
        One dict per group, from the lowest predictions to the highest, with
        `bin` (1-based), `rows`, `mean_prediction`, `mean_label` and
        `label_share` (the group's label sum over the total label sum; None when
        the labels sum to 0).

    Raises:
        ValueError: bad `y_true`/`y_pred` (see the module docstring) or
            `num_bins`.
    """
    num_bins = _check_num_bins(num_bins)
    y, p = _validate(y_true, y_pred)
    order = np.argsort(p, kind="stable")
    total = float(np.sum(y))
    rows = []
    for i, idx in enumerate(np.array_split(order, min(num_bins, y.size)), start=1):
        label_sum = float(np.sum(y[idx]))
        rows.append(
            {
                "bin": i,
                "rows": int(idx.size),
                "mean_prediction": float(np.mean(p[idx])),
                "mean_label": float(np.mean(y[idx])),
                "label_share": None if total == 0.0 else label_sum / total,
            }
        )
    return rows


def _gini_of_curve(curve: np.ndarray) -> float:
    """Twice the signed area between a gain curve on an even grid and the diagonal."""
    n = curve.size - 1
    area = float(np.sum(curve[1:] + curve[:-1])) / (2.0 * n)
    return 2.0 * area - 1.0


def cumulative_gain(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Cumulative-gain curves of the model's ranking and of the perfect one.

    The model ranks the rows by prediction, highest first (a stable sort on
    ``-y_pred``, so tied predictions keep their input order); the perfect
    ranking orders them by the label itself. Point ``k`` of a curve is the
    share of the total label held by the first ``k`` rows of its ranking.

    The Gini of a curve is twice the area between it and the diagonal, the
    area taken with trapezoids, and the normalized Gini is the model's Gini over
    the perfect one's: the same value as
    :func:`rq_keras.evaluation.metrics.normalized_gini` (which uses the closed form of the
    same trapezoid area). Meant for non-negative labels.

    When the labels sum to 0 there is no gain to share: both curves are all
    zeros and `gini` and `normalized_gini` are None. When every label is equal
    (and not 0), every ranking gives the diagonal: both Ginis are 0 and
    `normalized_gini` is None.

    Args:
        y_true: labels, any shape, `n` values in all.
        y_pred: predictions, `n` values.

    Returns:
        dict with numpy arrays of shape `(n + 1,)`, each starting at 0:
        `share_of_rows` (``0, 1/n, ..., 1``), `model` and `perfect`; and floats
        `gini` (the model's) and `normalized_gini`, or None as above.

    Raises:
        ValueError: bad `y_true`/`y_pred` (see the module docstring).
    """
    y, p = _validate(y_true, y_pred)
    n = y.size
    total = float(np.sum(y))
    share = np.arange(n + 1, dtype=np.float64) / n
    model = np.zeros(n + 1)
    perfect = np.zeros(n + 1)
    if total == 0.0:
        return {
            "share_of_rows": share,
            "model": model,
            "perfect": perfect,
            "gini": None,
            "normalized_gini": None,
        }
    model[1:] = np.cumsum(y[np.argsort(-p, kind="stable")]) / total
    perfect[1:] = np.cumsum(np.sort(y)[::-1]) / total
    if y.min() == y.max():
        # The curves are the diagonal up to rounding: say so exactly.
        gini = perfect_gini = 0.0
    else:
        gini = _gini_of_curve(model)
        perfect_gini = _gini_of_curve(perfect)
    return {
        "share_of_rows": share,
        "model": model,
        "perfect": perfect,
        "gini": gini,
        "normalized_gini": None if perfect_gini == 0.0 else gini / perfect_gini,
    }


# ------------------------------------------------------------------- the plots


def _history_series(history: Any) -> list[tuple[str, np.ndarray | None, np.ndarray | None]]:
    """The loss-curve panels of a history: ``(metric, train values, val values)``.

    `history` is a mapping of metric name to per-epoch values (a Keras
    ``History`` object is read through its ``history`` attribute), or None.
    Values become float64 arrays with NaN in place of non-finite entries (and of
    None), so they plot as gaps. Schedules (`sampling_probability`, `lr`,
    `learning_rate`) get no panel. The known metrics come first, in the order
    `loss`, `gen`, `reg`, `rnc`, `crps`, `mae`; the others follow in history order.

    Raises:
        ValueError: `history` is not a mapping, or a value is not numeric.
    """
    history = getattr(history, "history", history)
    if history is None:
        return []
    if not isinstance(history, Mapping):
        raise ValueError(
            f"`history` must be a dict of metric name -> per-epoch values, "
            f"got {type(history).__name__}"
        )
    series: dict[str, dict[str, np.ndarray]] = {}
    for key, values in history.items():
        key = str(key)
        split = "val" if key.startswith("val_") else "train"
        base = key[4:] if split == "val" else key
        if base in _NOT_METRICS:
            continue
        arr = _as_values(values, f"history {key!r}")
        series.setdefault(base, {})[split] = np.where(np.isfinite(arr), arr, math.nan)
    names = [m for m in _KNOWN_METRICS if m in series]
    names += [m for m in series if m not in _KNOWN_METRICS]
    return [(m, series[m].get("train"), series[m].get("val")) for m in names]


def write_plots(
    y_true: Any,
    y_pred: Any,
    history: Any,
    out_dir: str | os.PathLike,
    *,
    title: str = "",
    best_epoch: int | None = None,
    epochs: int | None = None,
) -> dict[str, str]:
    """Writes the report's four PNGs into `out_dir` (created if missing).

    * `distribution.png`: histograms of the labels and the predictions on a
      signed log1p axis (``sign(v) log(1 + |v|)``, ticks in original units),
      log-scale shares of rows, each one's share of zeros in the legend.
    * `calibration.png`: mean label against mean prediction per decile
      (:func:`decile_calibration`), with the diagonal; deciles whose points
      nearly coincide share one label (`1-6`).
    * `gain.png`: cumulative-gain curves of the model, the perfect ranking and
      a random one (:func:`cumulative_gain`), the normalized Gini in the legend.
    * `loss_curves.png`: one panel per metric of `history` (the known ones,
      `loss`, `gen`, `reg`, `rnc`, `crps`, `mae`, first), training and `val_` curves
      together against the 1-based epoch; `sampling_probability`, `lr` and
      `learning_rate` are left out. NaN and infinite values are gaps; an empty
      or None history gives a figure that says "no history". The best epoch
      and an early stop are marked when given.

    Each file is written to ``<path>.tmp`` in `out_dir` and renamed into place,
    so a reader never sees a partial PNG.

    Args:
        y_true: labels of the test split, any shape, `n` values in all.
        y_pred: predictions for the same rows, `n` values.
        history: Keras ``History.history`` (dict of metric name -> list of
            per-epoch floats), a ``History`` object, or None.
        out_dir: the folder the PNGs go to.
        title: prefix of the figure titles (e.g. the run's name); none when "".
        best_epoch: marked on every loss-curve panel (the weights kept).
        epochs: the run's epoch budget; when the history is shorter, where
            early stopping ended is marked too.

    Returns:
        dict of plot name (`distribution`, `calibration`, `gain`,
        `loss_curves`) -> path of the PNG written.

    Raises:
        ValueError: bad `y_true`/`y_pred` (see the module docstring) or a
            history that is not a dict of numeric lists; checked before
            anything is written.
    """
    y, p = _validate(y_true, y_pred)
    panels = _history_series(history)
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(os.fspath(out_dir), f) for name, f in PLOT_FILES.items()}
    plot_distribution(y, p, paths["distribution"], title)
    plot_calibration(decile_calibration(y, p), paths["calibration"], title)
    plot_gain(cumulative_gain(y, p), paths["gain"], title)
    plot_loss_curves(panels, paths["loss_curves"], title, best_epoch, epochs)
    return paths
