"""How much of the value each code level carries, by codebook size K.

    python benchmarks/level_value.py [--datasets complete_journey,nycflights,cdnow]
        [--sizes 8,16,48]

For issue 29, and for choosing K on new data. A deeper level can only move
a prediction by what the levels before it leave over. With the scale
benchmark's K = 48 (the paper's and the default), level 1 alone places
a complete_journey label within 0.10 of its value on average (5% of the
mean): the deeper levels refine inside a cluster the ranking and the CRPS
barely see. A coarser level 1 hands them more. This script measures that
without a network: per dataset and K, the run's own quantizer
(`TrainConfig.quantizer`, L = 3, the zero code by its `auto` rule) is fitted
on the whole training split, and each validation label is compared with the
value of its true codes up to each level (the deeper ones dropped). Seconds
per dataset; no test rows are read.

Reads the splits that `benchmarks/scale.py` prepared (`--work-dir`, built when
missing). Writes `benchmarks/results/level_value.md`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np
from _machine import cpu_model, write_results
from scale import WORK, prepare, quantizer_config

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def value_left(quantizer, y) -> list[float]:
    """Per level l: the labels `y`'s MAE against the value of their codes up
    to l (the deeper levels dropped: -1 decodes to nothing)."""
    codes = quantizer.encode(y)
    levels = codes.shape[1]
    mae = []
    for level in range(levels):
        upto = np.where(np.arange(levels) <= level, codes, -1)
        mae.append(float(np.abs(quantizer.decode(upto) - y).mean()))
    return mae


def level_value(name: str, sizes: list[int], work: str, levels: int = 3) -> list[dict]:
    """Per K: the validation labels' MAE against their true codes' value up
    to each level, and the share of the label mean that MAE is."""
    import pandas as pd

    sys.path.insert(0, REPO)
    from rq_keras.features import FeatureSpec

    data = prepare(name, work, [1.0])
    spec = FeatureSpec.load(data["spec"])
    label = spec.label.name
    y_train = pd.read_parquet(data["files"]["train"], columns=[label])[label].to_numpy(float)
    y_val = pd.read_parquet(data["files"]["validation"], columns=[label])[label].to_numpy(float)
    base = quantizer_config(data)
    rows = []
    for k in sizes:
        config = dataclasses.replace(base, codebook_size=int(k), num_levels=levels)
        quantizer = config.build(spec.label.clip_min, spec.label.clip_max, labels=y_train)
        quantizer.fit(y_train)
        mae = value_left(quantizer, y_val)
        rows.append(
            {
                "dataset": name,
                "k": int(k),
                "sizes": [int(s) for s in quantizer.fitted_codebook_sizes],
                "mae": mae,
                "label_mean": float(y_val.mean()),
            }
        )
        print(f"{name} K={k}: value MAE by level {[round(m, 4) for m in mae]}", flush=True)
    return rows


def report(rows: list[dict], argv: list[str]) -> str:
    levels = len(rows[0]["mae"]) if rows else 0
    lines = [
        "# How much of the value each code level carries, by K (issue 29)",
        "",
        f"Command: `{' '.join(['python benchmarks/level_value.py', *argv])}`. "
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}).",
        "",
        f"The run's quantizer (L = {levels}, the zero code by its `auto` rule) fitted on the "
        "whole training split at each K; `MAE up to level l`: the validation labels against "
        "the value of their true codes up to level l, the deeper ones dropped (what the "
        "levels after l can still move), with its share of the validation label mean.",
        "",
        "| dataset | K | fitted sizes | label mean | "
        + " | ".join(f"MAE up to level {i + 1}" for i in range(levels))
        + " |",
        "|---|---:|---|---:|" + "---:|" * levels,
    ]
    for r in rows:
        cells = [f"{m:.4f} ({m / r['label_mean']:.1%})" for m in r["mae"]]
        lines.append(
            f"| {r['dataset']} | {r['k']} | {r['sizes']} | {r['label_mean']:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="complete_journey,nycflights,cdnow")
    p.add_argument("--sizes", default="8,16,48", help="codebook sizes K to compare")
    p.add_argument("--work-dir", default=WORK, help="scale.py's prepared splits")
    p.add_argument("--output", default=os.path.join(HERE, "results", "level_value.md"))
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    try:
        sizes = [int(k) for k in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes must be integers separated by commas, got {args.sizes!r}")
    if any(k < 1 for k in sizes):
        p.error(f"--sizes must be >= 1, got {sizes}")
    rows = []
    for name in args.datasets.split(","):
        rows += level_value(name, sizes, os.path.abspath(args.work_dir))
    text = report(rows, argv)
    print(text)
    write_results(args.output, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
