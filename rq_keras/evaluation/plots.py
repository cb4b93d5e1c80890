"""The figures of a run's evaluation report, written as PNGs with matplotlib.

Each writer draws numbers it is given (the tables of :mod:`rq_keras.evaluation.calibration`,
the loss-curve panels of a history, the exceedance report, embeddings) with
matplotlib's object-oriented :class:`~matplotlib.figure.Figure` on the Agg
canvas, never ``pyplot``, so no display is needed and no global figure state
is touched. matplotlib is imported only when a figure is drawn, and each PNG
is written next to its path and renamed into place. Also here:
:func:`project_2d`, the 2-D projection of the embedding plot.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from rq_keras.atomic import atomic_path

__all__ = [
    "plot_calibration",
    "plot_distribution",
    "plot_gain",
    "plot_loss_curves",
    "project_2d",
    "write_embedding_plot",
    "write_reliability_plot",
]

# The gain curves are piecewise linear: this many points draw them faithfully.
_MAX_CURVE_POINTS = 2001
_DPI = 100


def _signed_log1p(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.log1p(np.abs(v))


def _signed_expm1(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.expm1(np.abs(x))


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


def plot_distribution(y: np.ndarray, p: np.ndarray, path: str, title: str) -> None:
    """Histograms of labels `y` and predictions `p` on a signed log1p axis."""
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


def plot_calibration(bins: list[dict], path: str, title: str) -> None:
    """Mean label against mean prediction per group of a calibration table."""
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


def plot_gain(gain: dict[str, Any], path: str, title: str) -> None:
    """The cumulative-gain curves of a gain table, with the diagonal."""
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


def plot_loss_curves(
    panels: list[tuple[str, np.ndarray | None, np.ndarray | None]],
    path: str,
    title: str,
    best_epoch: int | None = None,
    epochs: int | None = None,
) -> None:
    """One panel per `(metric, train values, val values)`, or "no history"."""
    from matplotlib.ticker import MaxNLocator

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
    shown = _signed_log1p(v)
    points = ax.scatter(xy[:, 0], xy[:, 1], c=shown, cmap="coolwarm", s=14)
    bar = fig.colorbar(points, ax=ax)
    bar.set_label("target value (sign(v) log(1 + |v|))")
    ax.set_xlabel(f"{projection.upper()} 1")
    ax.set_ylabel(f"{projection.upper()} 2")
    ax.set_title(_with_title("code-sequence embeddings of target values", title))
    fig.tight_layout()
    _save(fig, path)
    return path
