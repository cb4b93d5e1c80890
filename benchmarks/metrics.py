"""Benchmark: the evaluation metrics of rq_keras.evaluation.metrics on 1M rows.

    python benchmarks/metrics.py [--rows 1000000] [--repeats 5]

Two inputs of `--rows` rows, seed 0:

* `continuous`: zero-inflated lognormal labels (40% exact zeros, the rest
  lognormal(2, 1.5)) and predictions ``0.5 * y * lognormal(0, 1) + uniform``;
  almost no ties apart from the zeros;
* `tied`: the same labels rounded to integers and predictions rounded to one
  decimal (watch-time seconds, a coarse model): many ties in both.

Each metric (and `evaluate`, all of them at once) is timed `--repeats` times;
the table gives the median and the slowest run in seconds. The spec asks for
under 5 s per metric at 1M rows.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from rq_keras.evaluation import metrics  # noqa: E402

FUNCTIONS = (
    "mae",
    "xauc",
    "xauc_tie_aware",
    "normalized_gini",
    "spearman",
    "normalized_gini_positive",
    "spearman_positive",
    "evaluate",
)


def make_inputs(kind: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.lognormal(2.0, 1.5, n) * (rng.random(n) >= 0.4)
    p = 0.5 * y * rng.lognormal(0.0, 1.0, n) + rng.random(n)
    if kind == "tied":
        y, p = np.round(y), np.round(p, 1)
    return y, p


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    lines = [
        f"# Metrics benchmark: {args.rows:,} rows, median (max) of {args.repeats} runs, seconds",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}.",
        "",
        "| metric | continuous | tied |",
        "|---|---:|---:|",
    ]
    inputs = {kind: make_inputs(kind, args.rows) for kind in ("continuous", "tied")}
    for kind, (y, p) in inputs.items():
        ties = args.rows - np.unique(y).size, args.rows - np.unique(p).size
        print(f"{kind}: {ties[0]:,} tied labels, {ties[1]:,} tied predictions", flush=True)
    for name in FUNCTIONS:
        fn = getattr(metrics, name)
        cells = []
        for y, p in inputs.values():
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn(y, p)
                times.append(time.perf_counter() - start)
            cells.append(f"{statistics.median(times):.3f} ({max(times):.3f})")
        lines.append(f"| {name} | {' | '.join(cells)} |")
        print(lines[-1], flush=True)
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
