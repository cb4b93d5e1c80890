"""Which factor of a head's served mean ranks the buyers: P(y > 0) or E[y | y > 0]?

A distributional head's mean is `P(y > 0 | x) * E[y | x, y > 0]`. Among the
buyers (the rows Norm-Gini(+) and Spearman(+) rank) the first factor says
nothing about how much each one buys, so two heads whose E[y | y > 0] rank
the buyers alike can still differ in their mean's Norm-Gini(+), by how much
their P(y > 0) varies among the buyers. This script reads trained runs'
predictions tables (a `train` output directory with `predictions.parquet`,
e.g. a `scale.py` cell's `run/`, kept for baselines with `--keep-runs`), all
scored on the same rows, and prints per run:

* Norm-Gini of the mean over all rows (ranking everyone), and Norm-Gini(+)
  of the mean, of `P * E+` (the product of the two outputs: the mean, for
  these heads) and of `E+` alone;
* P(y > 0)'s own Norm-Gini(+) (does it rise with what a buyer buys?), its
  ROC AUC (buyers against the rest) and the standard deviation of its logit
  among the buyers (how much it moves the buyers' mean);

then, for every ordered pair of runs (A, B), the Norm-Gini(+) of
`P_A * E+_B`: A's P(y > 0) with B's E[y | y > 0], which tells which factor a
difference between the means' Norm-Gini(+) comes from.

    python benchmarks/mean_factors.py --run rq_reg=RUN_A --run ziln=RUN_B \\
        --output benchmarks/results/mean_factors.md
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PROBABILITY = ("p_above_0", "positive_probability")
MEAN = ("mean", "prediction")


def load_factors(run_dir: str) -> dict[str, np.ndarray]:
    """`label`, `mean`, `probability` (P(y > 0)) and `positive_mean` of a
    run's predictions table."""
    from _runs import read_predictions

    path, frame = read_predictions(run_dir)

    def first(names, what):
        for name in names:
            if name in frame:
                return frame[name].to_numpy(np.float64)
        raise SystemExit(f"{path}: no {what} column (one of {', '.join(names)})")

    out = {
        "label": first(("label",), "label"),
        "mean": first(MEAN, "mean"),
        "probability": first(PROBABILITY, "P(y > 0)"),
        "positive_mean": first(("positive_mean",), "E[y | y > 0]"),
    }
    for name, values in out.items():
        if not np.all(np.isfinite(values)):
            raise SystemExit(f"{path}: `{name}` has NaN or infinite values")
    if np.any((out["probability"] < 0) | (out["probability"] > 1)):
        raise SystemExit(f"{path}: P(y > 0) outside [0, 1]")
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def run_scores(f: dict[str, np.ndarray]) -> dict[str, float | None]:
    from rq_keras.evaluation.distribution_scores import probability_scores
    from rq_keras.evaluation.metrics import normalized_gini, normalized_gini_positive

    y = f["label"]
    buyers = y > 0
    return {
        "gini_all": normalized_gini(y, f["mean"]),
        "gini_mean": normalized_gini_positive(y, f["mean"]),
        "gini_product": normalized_gini_positive(y, f["probability"] * f["positive_mean"]),
        "gini_positive_mean": normalized_gini_positive(y, f["positive_mean"]),
        "gini_probability": normalized_gini_positive(y, f["probability"]),
        "auc": probability_scores(y, f["probability"])["auc"],
        "logit_std_buyers": float(_logit(f["probability"][buyers]).std()) if buyers.any() else None,
    }


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def report(runs: dict[str, str]) -> str:
    """The Markdown tables for the named runs (at least two: the swaps)."""
    from _runs import check_same_rows

    from rq_keras.evaluation.metrics import normalized_gini_positive

    if len(runs) < 2:
        raise SystemExit("give at least two --run NAME=DIR (the factors are swapped between runs)")
    loaded = {name: load_factors(path) for name, path in runs.items()}
    check_same_rows({name: f["label"] for name, f in loaded.items()})
    y = next(iter(loaded.values()))["label"]
    scores = {name: run_scores(f) for name, f in loaded.items()}
    columns = [
        ("mean: Norm-Gini (all rows)", "gini_all"),
        ("mean: Norm-Gini(+)", "gini_mean"),
        ("P * E+: Norm-Gini(+)", "gini_product"),
        ("E+: Norm-Gini(+)", "gini_positive_mean"),
        ("P(y > 0): Norm-Gini(+)", "gini_probability"),
        ("P(y > 0): AUC", "auc"),
        ("P(y > 0): logit std among buyers", "logit_std_buyers"),
    ]
    lines = [
        f"Rows: {y.size:,}, buyers (y > 0): {int((y > 0).sum()):,}.",
        "",
        "| run | " + " | ".join(title for title, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, s in scores.items():
        lines.append(f"| `{name}` | " + " | ".join(_fmt(s[key]) for _, key in columns) + " |")
    lines += [
        "",
        "Norm-Gini(+) of one run's P(y > 0) times another's E[y | y > 0] (the diagonal: "
        "each run's own product):",
        "",
        "| P(y > 0) of | " + " | ".join(f"E+ of `{n}`" for n in loaded) + " |",
        "|---|" + "---:|" * len(loaded),
    ]
    for a in loaded:
        cells = [
            normalized_gini_positive(y, loaded[a]["probability"] * loaded[b]["positive_mean"])
            for b in loaded
        ]
        lines.append(f"| `{a}` | " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from _runs import compare_runs_main

    return compare_runs_main(
        argv, __doc__, "mean_factors.py", "The served mean's two factors", report
    )


if __name__ == "__main__":
    raise SystemExit(main())
