"""Where a head's CRPS comes from: its parts by quantile level and by label band.

The CRPS that `scale.py` reports is the midpoint rule over a grid of
quantile levels: `2 * sum_j w_j * pinball_j`, `w_j` each level's share of
(0, 1). This script splits that sum of each trained run (a `train` output
directory with `predictions.parquet`, e.g. a `scale.py` cell's `run/`, kept
for baselines with `--keep-runs`) two ways, on the same scored rows:

* by level band: which part of the predictive distribution costs what
  (the lower levels sit on the atom at zero for most rows);
* by label band: rows with y = 0, then the positive rows by quartile of y
  (where an upper tail that is too thin or too wide shows).

Every part is a share of the one CRPS (the parts sum to it), so two heads'
rows read side by side; the last column is each part's difference from the
first run's.

    python benchmarks/crps_breakdown.py --run rq_reg=RUN_A --run ziln=RUN_B \\
        --output benchmarks/results/crps_breakdown.md
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

LEVEL_BANDS = ((0.0, 0.5), (0.5, 0.8), (0.8, 0.9), (0.9, 1.0))


def load_run(run_dir: str):
    """The label and the quantile grid `(levels, quantiles (n, M))` of a run's
    predictions table; quantile curves made non-crossing, as `scale.py` does."""
    from _runs import read_predictions

    from rq_keras.evaluation.distribution_scores import non_crossing

    path, frame = read_predictions(run_dir)
    columns = sorted(
        (c for c in frame.columns if c.startswith("quantile_")),
        key=lambda c: float(c.split("_", 1)[1]),
    )
    if "label" not in frame or len(columns) < 2:
        raise SystemExit(f"{path}: needs `label` and at least two `quantile_*` columns")
    levels = np.array([float(c.split("_", 1)[1]) for c in columns])
    q = non_crossing(frame[columns].to_numpy(np.float64))
    return frame["label"].to_numpy(np.float64), levels, q


def label_bands(y) -> list[tuple[str, np.ndarray]]:
    """Rows with y = 0, then the positive rows by quartile of y."""
    bands = [("y = 0", y == 0)]
    positive = y[y > 0]
    if positive.size:
        edges = np.quantile(positive, [0.25, 0.5, 0.75])
        low = 0.0
        for i, high in enumerate([*edges, np.inf]):
            inside = (y > low) & (y <= high)
            label = f"y > 0, quartile {i + 1} ({low:.3g}, {high:.3g}]"
            bands.append((label, inside))
            low = high
    return bands


def breakdown(runs: dict[str, str]) -> str:
    """The Markdown tables for the named runs (the first is the reference)."""
    from _runs import check_same_rows

    from rq_keras.evaluation.distribution_scores import crps_parts

    if not runs:
        raise SystemExit("give at least one --run NAME=DIR")
    loaded = {name: load_run(path) for name, path in runs.items()}
    (first, (y, levels, _)), *rest = loaded.items()
    check_same_rows({name: run[0] for name, run in loaded.items()})
    for name, (_, levels_other, _) in rest:
        if levels_other.shape != levels.shape or not np.allclose(levels_other, levels):
            raise SystemExit(f"{name}: another quantile grid than {first}")
    parts = {name: crps_parts(yy, q, lv) for name, (yy, lv, q) in loaded.items()}
    lines = [f"Rows: {y.size}; {len(levels)} levels; reference `{first}`.", ""]
    header = "| part | " + " | ".join(f"`{n}`" for n in parts)
    header += "".join(f" | `{n}` minus `{first}`" for n in list(parts)[1:]) + " |"
    rule = "|---|" + "---:|" * (2 * len(parts) - 1)

    def table(title, rows):
        out = [f"### {title}", "", header, rule]
        for label, select in rows:
            values = [float(p[select].sum() / y.size) for p in parts.values()]
            cells = [f"{v:.4f}" for v in values]
            cells += [f"{v - values[0]:+.4f}" for v in values[1:]]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        return out + [""]

    everything = (slice(None), slice(None))
    by_level = [
        (f"levels in ({lo:g}, {hi:g}]", (slice(None), (levels > lo) & (levels <= hi)))
        for lo, hi in LEVEL_BANDS
    ]
    lines += table("By quantile level", [*by_level, ("CRPS", everything)])
    by_label = [(label, (mask, slice(None))) for label, mask in label_bands(y)]
    lines += table("By label band", [*by_label, ("CRPS", everything)])
    return "\n".join(lines)


def main(argv=None) -> int:
    from _runs import compare_runs_main

    return compare_runs_main(argv, __doc__, "crps_breakdown.py", "CRPS by part", breakdown)


if __name__ == "__main__":
    raise SystemExit(main())
