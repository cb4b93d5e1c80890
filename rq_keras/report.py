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
  Gini is the one of :func:`rq_keras.metrics.normalized_gini`.
* :func:`write_plots`: four PNGs (label/prediction distributions, calibration,
  gain curves, loss curves). Plots use matplotlib's object-oriented
  :class:`~matplotlib.figure.Figure` with the Agg canvas, never ``pyplot``, so no
  display is needed and no global figure state is touched.

The three functions validate ``y_true`` and ``y_pred`` the same way: any shape,
flattened to 1-D float64; equal lengths; at least one row; finite values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rq_keras.atomic import atomic_path

__all__ = [
    "cumulative_gain",
    "decile_calibration",
    "project_2d",
    "write_embedding_plot",
    "write_plots",
    "write_reliability_plot",
]

PLOT_FILES = {
    "distribution": "distribution.png",
    "calibration": "calibration.png",
    "gain": "gain.png",
    "loss_curves": "loss_curves.png",
}

# History entries that are schedules, not metrics: no loss-curve panel.
_NOT_METRICS = frozenset({"sampling_probability", "lr", "learning_rate"})
# Panel order of the loss-curve figure; other metrics follow in history order.
_KNOWN_METRICS = ("loss", "gen", "reg", "rnc", "mae")
# The gain curves are piecewise linear: this many points draw them faithfully.
_MAX_CURVE_POINTS = 2001
_DPI = 100


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
    :func:`rq_keras.metrics.normalized_gini` (which uses the closed form of the
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


def _signed_log1p(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.log1p(np.abs(v))


def _signed_expm1(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.expm1(np.abs(x))


def _history_series(history: Any) -> list[tuple[str, np.ndarray | None, np.ndarray | None]]:
    """The loss-curve panels of a history: ``(metric, train values, val values)``.

    `history` is a mapping of metric name to per-epoch values (a Keras
    ``History`` object is read through its ``history`` attribute), or None.
    Values become float64 arrays with NaN in place of non-finite entries (and of
    None), so they plot as gaps. Schedules (`sampling_probability`, `lr`,
    `learning_rate`) get no panel. The known metrics come first, in the order
    `loss`, `gen`, `reg`, `rnc`, `mae`; the others follow in history order.

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


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> None:
    """Writes the figure as a PNG next to `path`, then renames it into place."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=_DPI)
    finally:
        fig.clear()


def _with_title(text: str, title: str) -> str:
    return f"{title}: {text}" if title else text


def _set_original_unit_ticks(ax, lo: float, hi: float) -> None:
    """Labels a signed-log1p x axis in original units, at 0 and powers of ten when 3 fit."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    decades = 10.0 ** np.arange(0, 16)
    candidates = np.concatenate([-decades[::-1], [0.0], decades])
    pos = _signed_log1p(candidates)
    keep = (pos >= lo) & (pos <= hi)
    digits = 3
    if keep.sum() >= 3:
        ax.xaxis.set_major_locator(FixedLocator(pos[keep]))
        digits = 6
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: f"{float(_signed_expm1(np.float64(x))):.{digits}g}")
    )


def _plot_distribution(y: np.ndarray, p: np.ndarray, path: str, title: str) -> None:
    ty, tp = _signed_log1p(y), _signed_log1p(p)
    edges = np.histogram_bin_edges(np.concatenate([ty, tp]), bins=60)
    weights = np.full(y.size, 1.0 / y.size)
    fig = _new_figure(8.0, 4.5)
    ax = fig.add_subplot()
    for values, raw, name, color in (
        (ty, y, "true labels", "#4c72b0"),
        (tp, p, "predictions", "#dd8452"),
    ):
        zero = float(np.mean(raw == 0.0))
        ax.hist(
            values,
            bins=edges,
            weights=weights,
            histtype="stepfilled",
            alpha=0.45,
            color=color,
            edgecolor=color,
            label=f"{name} (zero: {zero:.1%})",
        )
    ax.set_yscale("log")
    ax.set_xlim(edges[0], edges[-1])
    _set_original_unit_ticks(ax, edges[0], edges[-1])
    ax.set_xlabel("value (axis: sign(v) log(1 + |v|))")
    ax.set_ylabel("share of rows (log scale)")
    ax.set_title(_with_title(f"labels and predictions, {y.size:,} rows", title))
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def _label_groups(bins, xs, ys, span: float, share: float = 0.04):
    """Neighbouring calibration points closer than `share` of the axis span
    share one label (`"1-6"`, at the group's last point), so the many
    near-zero deciles of a zero-inflated target do not print over each other.

    Yields `(first bin, last bin, x, y)` per label.
    """
    gap = share * (span if span > 0 else 1.0)
    group = None
    for b, x, v in zip(bins, xs, ys):
        if group is not None and math.hypot(x - group[2], v - group[3]) < gap:
            group = (group[0], b["bin"], x, v)
            continue
        if group is not None:
            yield group
        group = (b["bin"], b["bin"], x, v)
    if group is not None:
        yield group


def _plot_calibration(y: np.ndarray, p: np.ndarray, path: str, title: str) -> None:
    bins = decile_calibration(y, p)
    mp = np.array([b["mean_prediction"] for b in bins])
    ml = np.array([b["mean_label"] for b in bins])
    lo = float(min(mp.min(), ml.min()))
    hi = float(max(mp.max(), ml.max()))
    fig = _new_figure(5.5, 5.0)
    ax = fig.add_subplot()
    ax.plot([lo, hi], [lo, hi], color="0.6", linestyle="--", linewidth=1, label="y = x")
    ax.plot(mp, ml, "o-", color="#4c72b0", label=f"{len(bins)} groups by prediction")
    for first, last, x, v in _label_groups(bins, mp, ml, hi - lo):
        text = str(first) if first == last else f"{first}-{last}"
        ax.annotate(text, (x, v), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("mean prediction")
    ax.set_ylabel("mean label")
    ax.set_title(_with_title("calibration", title))
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def _plot_gain(y: np.ndarray, p: np.ndarray, path: str, title: str) -> None:
    gain = cumulative_gain(y, p)
    share = gain["share_of_rows"]
    idx = np.unique(np.linspace(0, share.size - 1, min(share.size, _MAX_CURVE_POINTS)).round())
    idx = idx.astype(np.int64)
    ng = gain["normalized_gini"]
    ng_text = "n/a" if ng is None else f"{ng:.4f}"
    fig = _new_figure(5.5, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="random")
    ax.plot(share[idx], gain["perfect"][idx], color="#55a868", label="perfect")
    ax.plot(share[idx], gain["model"][idx], color="#4c72b0", label=f"model (norm. Gini {ng_text})")
    if gain["gini"] is None:
        ax.text(0.5, 0.5, "labels sum to 0: no gain", ha="center", transform=ax.transAxes)
    ax.set_xlabel("share of rows, highest prediction first")
    ax.set_ylabel("share of the total label")
    ax.set_title(_with_title("cumulative gain", title))
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def _plot_history(
    history: Any, path: str, title: str, best_epoch: int | None = None, epochs: int | None = None
) -> None:
    from matplotlib.ticker import MaxNLocator

    panels = _history_series(history)
    if not panels:
        fig = _new_figure(5.0, 3.0)
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no history", ha="center", va="center", fontsize=14)
        ax.set_title(_with_title("loss curves", title))
        _save(fig, path)
        return
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(4.2 * ncols, 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    for ax, (name, train, val) in zip(axes, panels):
        for values, label, style in ((train, "train", "o-"), (val, "validation", "s--")):
            if values is not None:
                ax.plot(np.arange(1, values.size + 1), values, style, markersize=3, label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="#55a868", linestyle=":", label=f"best epoch {best_epoch}")
        ran = max((v.size for v in (train, val) if v is not None), default=0)
        if epochs is not None and 0 < ran < epochs:
            ax.axvline(ran, color="#c44e52", linestyle="-.", label=f"early stop ({ran}/{epochs})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


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
      `loss`, `gen`, `reg`, `rnc`, `mae`, first), training and `val_` curves
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
    _history_series(history)
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(os.fspath(out_dir), f) for name, f in PLOT_FILES.items()}
    _plot_distribution(y, p, paths["distribution"], title)
    _plot_calibration(y, p, paths["calibration"], title)
    _plot_gain(y, p, paths["gain"], title)
    _plot_history(history, paths["loss_curves"], title, best_epoch, epochs)
    return paths


def write_reliability_plot(
    exceedance: dict[str, Any], out_dir: str | os.PathLike, *, title: str = ""
) -> str:
    """`reliability.png`: predicted P(y > t) against the observed share.

    Args:
        exceedance: `distribution_report(...)["exceedance"]`: per threshold
            its reliability table (bins of the predicted probability).
        out_dir: the folder the PNG goes to (created if missing).
        title: prefix of the figure title.

    Returns:
        the PNG's path. One line per threshold (the points sized by their
        rows), the diagonal, and each threshold's Brier score against the
        base rate's in the legend.
    """
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(os.fspath(out_dir), "reliability.png")
    fig = _new_figure(5.5, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", label="calibrated")
    for t, entry in exceedance.items():
        table = entry["reliability"]
        rows = np.array([b["rows"] for b in table], dtype=np.float64)
        ax.plot(
            [b["mean_predicted"] for b in table],
            [b["observed"] for b in table],
            marker="o",
            label=(
                f"P(y > {t}): Brier {entry['brier']:.4f} "
                f"(base rate {entry['brier_base_rate']:.4f})"
            ),
        )
        ax.scatter(
            [b["mean_predicted"] for b in table],
            [b["observed"] for b in table],
            s=10 + 90 * rows / max(rows.max(), 1.0),
            alpha=0.3,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability (bin mean)")
    ax.set_ylabel("observed share")
    ax.set_title(_with_title("reliability of P(y > t)", title))
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    _save(fig, path)
    return path


def project_2d(points: Any, projection: str = "pca", seed: int = 0) -> np.ndarray:
    """`(n, d)` points -> `(n, 2)`: the first two principal components
    (`"pca"`, numpy only; signs fixed so the largest loading is positive) or a
    t-SNE map (`"tsne"`, needs scikit-learn)."""
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"`points` must be (n >= 2, d), got shape {x.shape}")
    if projection == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise ValueError(
                "projection 'tsne' needs scikit-learn (pip install scikit-learn)"
            ) from None
        perplexity = min(30.0, max(2.0, (x.shape[0] - 1) / 3))
        return TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x)
    if projection != "pca":
        raise ValueError(f"`projection` must be 'pca' or 'tsne', got {projection!r}")
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    largest = axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)]
    axes = axes * np.where(largest < 0, -1.0, 1.0)[:, None]
    out = centred @ axes.T
    return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def write_embedding_plot(
    values: Any,
    embeddings: Any,
    out_dir: str | os.PathLike,
    *,
    title: str = "",
    projection: str = "pca",
) -> str:
    """`embedding.png`: the learned code-sequence embeddings
    `[e(q_1); ...; e(q_L)]` of target values, projected to 2-D and coloured
    by the value (the paper's Figure 3).

    Args:
        values: `(n,)` target values (e.g. quantiles of the training labels).
        embeddings: `(n, L * D)` their code sequences' embeddings.
        out_dir: the folder the PNG goes to (created if missing).
        title: prefix of the figure title.
        projection: `"pca"` (default) or `"tsne"` (scikit-learn).

    Returns:
        the PNG's path.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    xy = project_2d(embeddings, projection)
    if v.size != xy.shape[0]:
        raise ValueError(f"{v.size} values but {xy.shape[0]} embeddings")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(os.fspath(out_dir), "embedding.png")
    fig = _new_figure(6.0, 5.0)
    ax = fig.add_subplot()
    # Coloured on a signed log scale: on a linear one a long tail puts every
    # point but a few at one end of the colour map.
    shown = np.sign(v) * np.log1p(np.abs(v))
    points = ax.scatter(xy[:, 0], xy[:, 1], c=shown, cmap="coolwarm", s=14)
    bar = fig.colorbar(points, ax=ax)
    bar.set_label("target value (sign(v) log(1 + |v|))")
    ax.set_xlabel(f"{projection.upper()} 1")
    ax.set_ylabel(f"{projection.upper()} 2")
    ax.set_title(_with_title("code-sequence embeddings of target values", title))
    fig.tight_layout()
    _save(fig, path)
    return path
