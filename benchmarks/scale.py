"""Benchmark: RQ-Reg against the strongest baselines on whole datasets, with a
learning curve and the predictive distributions scored (issue 29).

    python benchmarks/scale.py                       # or: make bench-scale
    python benchmarks/scale.py --datasets complete_journey --heads rq_reg,ziln \\
        --fractions 1 --seeds 0                      # one part of the table

Every cell (dataset, head, share of the training rows, seed) trains in its
own process and, when it finishes, writes its figures as one JSON file into
`--cells-dir` (`benchmarks/results/scale_cells/DATASET/ROW/SHARE/seedS.json`,
committed with the results: a fresh checkout keeps every finished cell); a
cell whose file exists is read, not run again, so the table can be finished
in parts, across sessions and machines (an interrupted run loses its one
unfinished cell; `--fresh` runs everything again). The report is written
from every cell there. `--work-dir` (not committed) holds the prepared
splits, rebuilt from the raw data when missing (`--data-dir` to keep them
elsewhere), and the RQ-Reg and K-means cells' trained runs
(`DATASET/cells/ROW/SHARE/SEED/run/`: the model and the files that load it),
so the served distribution can be studied again without training.

Splits: the dataset's own recipe (seed 0), whole: no row is dropped from
validation or test. The learning curve trains on the first 10% / 30% /
100% of one fixed permutation of the training rows (nested; seed 0).

Heads on the same features and encoder (`rq_keras.training.train`): RQ-Reg,
K-means (RQ-Reg with L = 1), ZILN, OptDist, MSE. Beside them LightGBM with a
tweedie objective on the same columns (`lightgbm`, a benchmark-only package)
and the domain rule where the dataset has one (`RULES`: last period's value;
for flights the route's mean lateness in earlier months). Every head
runs with the same settings (`--units`, epochs, early stopping on its
validation monitor, learning rate 1e-3 for the networks); none is tuned
per head here, which is the same budget for each: zero.

Scores (the test split; `--evaluate-on validation` for tuning runs, with their
own `--cells-dir` and `--work-dir`): the served prediction's ranking and total (as
`rq_keras.evaluation.metrics.evaluate`), E[y | y > 0] where a head has one,
and from each head's predictive quantiles on a grid of levels: CRPS,
pinball loss at 0.1 / 0.5 / 0.9 and the atom-aware quantile calibration
(`rq_keras.evaluation.distribution_scores`); P(y > 0): Brier score and AUC;
for the coded heads every level's test NLL against its marginal.
Writes `benchmarks/results/quality_scale.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

from _machine import cpu_model, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work", "scale")  # prepared splits and kept runs
NETWORK_HEADS = ("rq_reg", "kmeans", "ziln", "optdist", "mse")
HEADS = (*NETWORK_HEADS, "lightgbm", "rule")
# Every network head's training length: at most this many epochs, early
# stopping with this patience (`--epochs`, `--patience`; a cell records both).
DEFAULT_EPOCHS, DEFAULT_PATIENCE = 12, 3
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
# The domain rule a practitioner tries first, a feature used as the prediction:
# last period's value (LTV, GMV), the route's mean lateness so far (flights).
RULES = {
    "cdnow": "calibration_spend",
    "complete_journey": "pair_sales_value",
    "nycflights": "route_prev_mean_lateness",
}
# Quantile levels every distributional head serves: a midpoint grid of 20
# (the CRPS integral) and the three pinball levels.
PINBALL_LEVELS = (0.1, 0.5, 0.9)
CALIBRATION_TOLERANCE = 0.02


def quantile_grid() -> tuple[float, ...]:
    sys.path.insert(0, REPO)
    from rq_keras.evaluation.distribution_scores import midpoint_levels

    return tuple(sorted(set(midpoint_levels(20)) | set(PINBALL_LEVELS)))


# ----------------------------------------------------------------- data
def prepare(name: str, work: str, fractions: list[float]) -> dict:
    """The splits of `name` (built once into `work/NAME/data`) and one
    training file per share of the training rows."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    sys.path.insert(0, REPO)
    from rq_keras import datasets
    from rq_keras.training import DEFAULT_RAW_DIRS

    out = os.path.join(work, name, "data")
    files = {s: os.path.join(out, f"{s}.parquet") for s in ("train", "validation", "test")}
    if not all(os.path.exists(f) for f in files.values()):
        raw = DEFAULT_RAW_DIRS.get(name)
        datasets.make(name, None if raw is None else str(raw), out, seed=0)
    rows = {s: pq.ParquetFile(f).metadata.num_rows for s, f in files.items()}
    train_files = {}
    for share in fractions:
        if share >= 1:
            train_files[share] = files["train"]
            continue
        path = os.path.join(out, f"train_{share:g}.parquet")
        if not os.path.exists(path):
            frame = pd.read_parquet(files["train"])
            order = np.random.default_rng(0).permutation(len(frame))
            keep = np.sort(order[: int(round(len(frame) * share))])
            tmp = path + ".tmp"
            frame.iloc[keep].to_parquet(tmp, index=False)
            os.replace(tmp, path)
        train_files[share] = path
    return {
        "files": files,
        "train_files": train_files,
        "spec": os.path.join(out, "feature_spec.yaml"),
        "rows": rows,
    }


def quantizer_config(data: dict, seed: int = 0):
    """The RQ-Reg cells' `QuantizerConfig` for the prepared splits `data`
    (L = 3, K = 48, the zero code by its `auto` rule): what the analyses that
    need no network (code_information.py, level_value.py) quantize with."""
    from quality import base_config

    settings = argparse.Namespace(
        units=128,
        epochs=1,
        patience=1,
        batch_size="auto",
        learning_rate=1e-3,
        evaluate_on="validation",
        set=[],
    )
    return base_config(data, settings, seed, "rq_reg").quantizer


# ----------------------------------------------------------------- scores
def distribution_scores(frame, levels) -> dict:
    """CRPS, pinball losses, calibration and P(y > 0) scores of a
    predictions table with `quantile_*` columns (and `positive_probability`
    or `p_above_0`)."""
    import numpy as np

    from rq_keras.evaluation.distribution_scores import (
        crps_from_quantiles,
        non_crossing,
        pinball_loss,
        probability_scores,
        quantile_calibration,
    )

    y = frame["label"].to_numpy(np.float64)
    columns = [f"quantile_{t:g}" for t in levels]
    if not all(c in frame for c in columns):
        return {}
    # Quantile curves must not cross; the code tree's and ZILN's never do.
    q = non_crossing(frame[columns].to_numpy(np.float64))
    out = {
        "crps": crps_from_quantiles(y, q, levels),
        "pinball": {f"{t:g}": pinball_loss(y, q[:, levels.index(t)], t) for t in PINBALL_LEVELS},
        "calibration": quantile_calibration(y, q, levels, CALIBRATION_TOLERANCE),
    }
    for column in ("positive_probability", "p_above_0"):
        if column in frame:
            out["positive"] = probability_scores(y, frame[column].to_numpy(np.float64))
            break
    return out


def network_cell(data: dict, head: str, share: float, seed: int, args, out: str) -> dict:
    from quality import base_config

    from rq_keras.training import train

    levels = quantile_grid()
    # quality.py's settings for every head; its training file is the share's.
    view = {"files": {**data["files"], "train": data["train_files"][share]}, "spec": data["spec"]}
    settings = argparse.Namespace(
        units=args.units,
        epochs=args.epochs,
        patience=args.patience,
        batch_size="auto",
        learning_rate=1e-3,
        evaluate_on=args.evaluate_on,
        set=args.set,
    )
    config = base_config(view, settings, seed, head, {"model.quantiles": list(levels)})
    start = time.perf_counter()
    result = train(config, out, verbose=0)
    seconds = time.perf_counter() - start
    import pandas as pd

    test = dict(result.metrics["test"])
    frame = pd.read_parquet(os.path.join(out, "predictions.parquet"))
    cell = {
        "served": {k: test.get(k) for k in METRIC_KEYS},
        "by_prediction": {
            kind: {k: scores.get(k) for k in METRIC_KEYS}
            for kind, scores in test.get("by_prediction", {}).items()
        },
        "distribution": distribution_scores(frame, list(levels)),
        "levels": test.get("codes"),
        "epochs": result.epochs_run,
        # Whose weights were kept: with `epochs` at the cap and this epoch
        # within `patience` of it, the cap (not early stopping) ended training.
        "best_epoch": result.best_epoch,
        "seconds": seconds,
    }
    if head in ("rq_reg", "kmeans"):
        from code_levels import level_scores, prefix_scores, tree_scores

        from rq_keras.features import FeatureSpec
        from rq_keras.quantizer.residual import ResidualQuantizer

        spec = FeatureSpec.load(data["spec"])
        train_labels = pd.read_parquet(data["train_files"][share], columns=[spec.label.name])
        train_labels = train_labels[spec.label.name].to_numpy(float)
        quantizer = ResidualQuantizer.load(os.path.join(out, "codebook.json"))
        if head == "rq_reg":
            # The tree with level 2 reading each level-1 code (exact_levels 1)
            # beside the served one, on the first 10,000 validation rows; and
            # the deeper levels replaced by the level-1 cluster's training
            # labels (`prefix`), there and on the scored split (the served
            # grid; never the test split of a tuning run).
            validation = data["files"]["validation"]
            cell["tree_validation"] = tree_scores(result.model, spec, validation, (0, 1), 10_000)
            cell["prefix_validation"] = prefix_scores(
                result.model, spec, quantizer, train_labels, validation, max_rows=10_000
            )
            cell["prefix_split"] = prefix_scores(
                result.model,
                spec,
                quantizer,
                train_labels,
                data["files"][args.evaluate_on],
                max_rows=10**9,
                grid=levels,
            )
        cell["levels_validation"] = level_scores(
            result.model, spec, quantizer, train_labels, data["files"]["validation"]
        )
    return cell


# The trees' regularization, shared by the LightGBM baseline and
# code_information.py's boosters.
TREE_PARAMS = {
    "num_leaves": 31,
    "min_data_in_leaf": 100,
    "lambda_l2": 10.0,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "cat_smooth": 50,
    "verbose": -1,
}


def tree_table(spec, path: str):
    """A split as LightGBM reads it: the spec's columns (numbers as floats,
    strings as text, lists as their length) and the label clipped at 0."""
    import numpy as np
    import pandas as pd

    frame = pd.read_parquet(path)
    x = pd.DataFrame(index=frame.index)
    for feature in spec.features:
        column = frame[feature.name]
        if feature.kind == "numeric":
            x[feature.name] = pd.to_numeric(column, errors="coerce").astype(np.float64)
        elif feature.kind == "list":
            x[feature.name + "_length"] = (
                column.fillna("").astype(str).str.split(feature.separator).map(len)
            )
        else:
            x[feature.name] = column.astype(str)
    return x, np.clip(frame[spec.label.name].to_numpy(np.float64), 0, None)


def as_categories(spec, x_train, *others) -> None:
    """The categorical columns as pandas categories of the training values
    (in place; an unseen value elsewhere becomes missing)."""
    import pandas as pd

    for c in [f.name for f in spec.features if f.kind in ("categorical", "hashed")]:
        kinds = pd.CategoricalDtype(sorted(x_train[c].unique()))
        for x in (x_train, *others):
            x[c] = x[c].astype(kinds)


def lightgbm_cell(data: dict, share: float, seed: int, args) -> dict:
    """LightGBM, tweedie objective, on the spec's columns (`tree_table`);
    early stopping on validation."""
    import lightgbm as lgb

    from rq_keras.evaluation.metrics import evaluate
    from rq_keras.features import FeatureSpec

    spec = FeatureSpec.load(data["spec"])
    x_train, y_train = tree_table(spec, data["train_files"][share])
    x_val, y_val = tree_table(spec, data["files"]["validation"])
    x_test, y_test = tree_table(spec, data["files"][args.evaluate_on])
    as_categories(spec, x_train, x_val, x_test)
    params = {
        **TREE_PARAMS,
        "objective": "tweedie",
        "tweedie_variance_power": 1.5,
        "learning_rate": 0.05,
        "seed": seed,
        "num_threads": os.cpu_count() or 1,
    }
    start = time.perf_counter()
    booster = lgb.train(
        params,
        lgb.Dataset(x_train, y_train),
        num_boost_round=3000,
        valid_sets=[lgb.Dataset(x_val, y_val)],
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    seconds = time.perf_counter() - start
    prediction = booster.predict(x_test, num_iteration=booster.best_iteration)
    scores = evaluate(y_test, prediction)
    return {
        "served": {k: scores.get(k) for k in METRIC_KEYS},
        "by_prediction": {},
        "distribution": {},
        "levels": None,
        "epochs": booster.best_iteration,
        "seconds": seconds,
    }


def rule_cell(data: dict, name: str, split: str = "test") -> dict | None:
    import numpy as np
    import pandas as pd

    from rq_keras.evaluation.metrics import evaluate
    from rq_keras.features import FeatureSpec

    column = RULES.get(name)
    if column is None:
        return None
    spec = FeatureSpec.load(data["spec"])
    frame = pd.read_parquet(data["files"][split], columns=[column, spec.label.name])
    scores = evaluate(frame[spec.label.name].to_numpy(np.float64), frame[column].to_numpy(float))
    return {
        "served": {k: scores.get(k) for k in METRIC_KEYS},
        "by_prediction": {},
        "distribution": {},
        "levels": None,
        "epochs": 0,
        "seconds": 0.0,
    }


# The heads whose cell keeps its trained run (`run/`, 9-13 MB at width 128).
KEPT_RUNS = ("rq_reg", "kmeans")

METRIC_KEYS = (
    "mae",
    "normalized_gini",
    "spearman",
    "normalized_gini_positive",
    "spearman_positive",
    "mean_ratio",
)


def numeric(value):
    """A `--set` value as its number where YAML 1.1 (PyYAML) left a float
    such as `3e-4` a string; anything else unchanged."""
    if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def row_settings(cell: dict) -> dict:
    """What sets a row apart from the report's settings: its overrides, and
    its epoch cap and patience where they are not the defaults."""
    settings = dict(cell["overrides"])
    if cell["max_epochs"] != DEFAULT_EPOCHS:
        settings["--epochs"] = cell["max_epochs"]
    if cell["patience"] != DEFAULT_PATIENCE:
        settings["--patience"] = cell["patience"]
    return settings


def row_label(head: str, variant: str = "") -> str:
    """A table row's name and its cells' folder: the head, or `HEAD@VARIANT`."""
    return f"{head}@{variant}" if variant else head


def cell_dir(work: str, name: str, head: str, share: float, seed: int, variant: str = "") -> str:
    """A cell's folder in the work directory (its kept run); a variant's
    cells (`--variant`) beside the head's own."""
    return os.path.join(work, name, "cells", row_label(head, variant), f"{share:g}", str(seed))


def cell_file(cells: str, name: str, head: str, share: float, seed: int, variant: str = "") -> str:
    """A finished cell's figures in the cells directory (committed)."""
    return os.path.join(cells, name, row_label(head, variant), f"{share:g}", f"seed{seed}.json")


def head_labels(cells: list[dict]) -> list[str]:
    """The table's rows: each head in `HEADS` order, its variants after it."""
    labels = {c["label"] for c in cells}
    return [
        label
        for head in HEADS
        for label in sorted(labels)
        if label == head or label.startswith(head + "@")
    ]


def run_cell(name: str, head: str, share: float, seed: int, args) -> None:
    """One cell in this process; writes its figures to `cell_file` (atomically)."""
    data = prepare(name, args.data_dir, [share])
    where = cell_dir(args.work_dir, name, head, share, seed, args.variant)
    os.makedirs(where, exist_ok=True)
    if head == "lightgbm":
        cell = lightgbm_cell(data, share, seed, args)
    elif head == "rule":
        cell = rule_cell(data, name, args.evaluate_on)
    else:
        run = os.path.join(where, "run")
        shutil.rmtree(run, ignore_errors=True)  # a run killed half-way
        cell = network_cell(data, head, share, seed, args, run)
        if head in KEPT_RUNS or args.keep_runs:
            # model.keras and the files that load it, for analyses of the
            # served distribution that need no retraining (code_levels.py)
            for part in ("checkpoints", "backup", "logs", "data"):
                shutil.rmtree(os.path.join(run, part), ignore_errors=True)
        else:
            shutil.rmtree(run, ignore_errors=True)  # the figures are in its cell file
    cell.update({"dataset": name, "head": head, "share": share, "seed": seed})
    # What the cell was scored on and its overrides: a work directory holds
    # one split (`load_cells` refuses a mix).
    cell["split"] = args.evaluate_on
    cell["overrides"] = dict(args.set)
    cell["variant"] = args.variant
    if head in NETWORK_HEADS:  # LightGBM and the rule train by their own settings
        cell["max_epochs"], cell["patience"] = args.epochs, args.patience
    cell["rows"] = data["rows"]
    done = cell_file(args.cells_dir, name, head, share, seed, args.variant)
    os.makedirs(os.path.dirname(done), exist_ok=True)
    tmp = done + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(cell, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, done)


# ----------------------------------------------------------------- report
def _ms(values, fmt="{:.4f}") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def _get(cell, path):
    for key in path:
        if not isinstance(cell, dict) or key not in cell:
            return None
        cell = cell[key]
    return cell


MAIN_COLUMNS = (
    ("MAE", ("served", "mae"), "{:.3f}"),
    ("Norm-Gini", ("served", "normalized_gini"), "{:.4f}"),
    ("Norm-Gini(+)", ("served", "normalized_gini_positive"), "{:.4f}"),
    ("Spearman(+)", ("served", "spearman_positive"), "{:.4f}"),
    (
        "E[y|y>0] Norm-Gini(+)",
        ("by_prediction", "positive_mean", "normalized_gini_positive"),
        "{:.4f}",
    ),
    (
        "f_reg Norm-Gini(+)",
        ("by_prediction", "regressor", "normalized_gini_positive"),
        "{:.4f}",
    ),
    ("mean pred / label", ("served", "mean_ratio"), "{:.3f}"),
    ("CRPS", ("distribution", "crps"), "{:.4f}"),
    ("pinball 0.1", ("distribution", "pinball", "0.1"), "{:.4f}"),
    ("pinball 0.5", ("distribution", "pinball", "0.5"), "{:.4f}"),
    ("pinball 0.9", ("distribution", "pinball", "0.9"), "{:.4f}"),
    ("calib. max gap", ("distribution", "calibration", "max_gap"), "{:.3f}"),
    ("P(y>0) Brier", ("distribution", "positive", "brier"), "{:.4f}"),
    ("P(y>0) AUC", ("distribution", "positive", "auc"), "{:.4f}"),
)


def work_dir_text(path: str) -> str:
    """A directory relative to the repository when inside it."""
    relative = os.path.relpath(path, REPO)
    return path if relative.startswith("..") else relative


def level_table(intro: str, cells: list[dict], key: str, columns: dict) -> list[str]:
    """One row per (cell, code level) of `cell[key]`: head, seed, level, then
    each of `columns` (title -> the level dict's cell text)."""
    lines = [
        intro,
        "",
        "| head | seed | level | " + " | ".join(columns) + " |",
        "|---|---:|---:|" + "---:|" * len(columns),
    ]
    for c in sorted(cells, key=lambda c: (c["label"], c["seed"])):
        for lv in c[key]:
            text = " | ".join(cell(lv) for cell in columns.values())
            lines.append(f"| {c['label']} | {c['seed']} | {lv['level']} | {text} |")
    return [*lines, ""]


CURVE_HEADS = ("rq_reg", "ziln", "kmeans")
CURVE_COLUMNS = (
    ("Norm-Gini(+)", ("served", "normalized_gini_positive")),
    ("Spearman(+)", ("served", "spearman_positive")),
    ("CRPS", ("distribution", "crps")),
)


def learning_curve(group: list[dict]) -> list[str]:
    """The learning curve of one dataset: per share of the training rows, the
    mean over seeds of each curve head's scores, and RQ-Reg's margin over ZILN
    (CRPS: ZILN's minus RQ-Reg's, so positive is RQ-Reg ahead everywhere)."""
    shares = sorted({c["share"] for c in group if c["head"] in CURVE_HEADS})
    if len(shares) < 2:
        return []
    curve = [label for label in head_labels(group) if label.split("@")[0] in CURVE_HEADS]
    ours = [label for label in curve if label.split("@")[0] == "rq_reg"]

    def mean_of(label, share, path):
        values = [_get(c, path) for c in group if c["label"] == label and c["share"] == share]
        values = [v for v in values if v is not None]
        return (statistics.mean(values), len(values)) if values else (None, 0)

    titles = [f"{h} {t}" for t, _ in CURVE_COLUMNS for h in curve]
    margins_titles = [
        f"margin {t}" + ("" if o == "rq_reg" else f" ({o})") for t, _ in CURVE_COLUMNS for o in ours
    ]
    lines = [
        "### Learning curve",
        "",
        f"Means over the seeds that finished (n: {' / '.join(curve)}). Margin: "
        "RQ-Reg minus ZILN (CRPS: ZILN minus RQ-Reg); positive means RQ-Reg ahead.",
        "",
        "| share | n | " + " | ".join(titles + margins_titles) + " |",
        "|---:|---|" + "---:|" * (len(titles) + len(margins_titles)),
    ]
    for share in shares:
        values, counts, margins = [], {}, []
        for title, path in CURVE_COLUMNS:
            per_head = {}
            for label in curve:
                per_head[label], counts[label] = mean_of(label, share, path)
                values.append("n/a" if per_head[label] is None else f"{per_head[label]:.4f}")
            for label in ours:
                rq, ziln = per_head[label], per_head.get("ziln")
                if rq is None or ziln is None:
                    margins.append("n/a")
                else:
                    margins.append(f"{(ziln - rq) if title == 'CRPS' else (rq - ziln):+.4f}")
        n = "/".join(str(counts[h]) for h in curve)
        lines.append(f"| {share:.0%} | {n} | " + " | ".join(values + margins) + " |")
    return [*lines, ""]


def prefix_table(cells: list[dict]) -> list[str]:
    """RQ-Reg's served distribution against `prefix` (level 1 from the model,
    the deeper levels replaced by the level-1 cluster's training labels), on
    the first 10,240 validation rows and on every row of the scored split
    (the served grid)."""
    lines = [
        "RQ-Reg's served code tree against `prefix`: level 1 from the model, the deeper "
        "levels replaced by the training labels of the level-1 cluster (nothing of x; "
        "`code_levels.prefix_scores`). First row of each run: the first 10,240 validation "
        "rows; second: every row of the scored split, the served quantile grid.",
        "",
        "| head | seed | split | served CRPS | prefix CRPS | served mean Norm-Gini(+) "
        "| prefix mean Norm-Gini(+) | served mean / label | prefix mean / label |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in sorted(cells, key=lambda c: (c["label"], c["seed"])):
        # The served tree: the run's `exact_levels` (0 unless overridden).
        served_levels = min(int(c["overrides"].get("model.exact_levels", 0)), 1)
        tree = next(t for t in c["tree_validation"] if t["exact_levels"] == served_levels)
        pre = c["prefix_validation"]
        lines.append(
            f"| {c['label']} | {c['seed']} | validation | {tree['crps']:.4f} | {pre['crps']:.4f} "
            f"| {tree['mean_gini_positive']:.4f} | {pre['mean_gini_positive']:.4f} "
            f"| {tree['mean_ratio']:.3f} | {pre['mean_ratio']:.3f} |"
        )
        pre, served = c["prefix_split"], c["served"]
        lines.append(
            f"| {c['label']} | {c['seed']} | {c['split']} | {c['distribution']['crps']:.4f} "
            f"| {pre['crps']:.4f} "
            f"| {served['normalized_gini_positive']:.4f} | {pre['mean_gini_positive']:.4f} "
            f"| {served['mean_ratio']:.3f} | {pre['mean_ratio']:.3f} |"
        )
    return [*lines, ""]


def report(cells: list[dict], args, minutes: float) -> str:
    lines = [
        "# Quality at full scale: RQ-Reg against the baselines (issue 29)",
        "",
        f"Command: `{('python benchmarks/scale.py ' + ' '.join(args.argv)).strip()}` "
        "(`make bench-scale` runs every cell; "
        + (
            "this invocation only wrote the report). The "
            if args.report_only
            else f"this invocation {minutes:.0f} minutes). The "
        )
        + "table is written from every finished cell in "
        f"`{work_dir_text(args.cells_dir)}` (one JSON file a cell, committed): each cell is "
        "`python benchmarks/scale.py --datasets D --heads H --fractions F --seeds S` with the "
        "settings below, whichever invocation ran it; its own time is in the `s` column. "
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU.",
        "",
        f"Every network head: hidden width {args.units}, Adam (lazy) 1e-3, batch auto "
        f"(at most 1,024), at most {DEFAULT_EPOCHS} epochs, early stopping (patience "
        f"{DEFAULT_PATIENCE}, best weights) on `monitor: auto`; RQ-Reg L = 3, K = 48, K-means "
        "L = 1, OptDist 4 sub-distributions; a head's own row is these settings, untuned, "
        "and a row `HEAD@NAME` the head with the overrides listed below (e.g. a setting "
        "chosen on validation; `--epochs`/`--patience` there: another training length). "
        "LightGBM: tweedie (power 1.5), 31 leaves, min 100 rows a leaf, L2 10, learning "
        "rate 0.05, early stopping (50 rounds) on validation. "
        "Quantile scores use "
        f"{len(quantile_grid())} levels (a midpoint grid of 20 and 0.1, 0.5, 0.9); "
        f"calibration tolerance {CALIBRATION_TOLERANCE:g} (observed P(y < q) <= level <= "
        "P(y <= q) within it). Mean ± std over the seeds that finished (n in the table).",
        "",
    ]
    overrides = sorted(
        {
            (c["dataset"], c["label"], json.dumps(row_settings(c), sort_keys=True))
            for c in cells
            if row_settings(c)
        }
    )
    if args.evaluate_on == "validation":
        lines += [
            "**Scored on the validation split** (a tuning run; the test split is not used). "
            "LightGBM stops early on this same split, so its figures here are optimistic.",
            "",
        ]
    if overrides:
        text = "; ".join(f"{name} `{label}`: `{o}`" for name, label, o in overrides)
        lines += [f"Rows with overrides (`--set`) of the settings above: {text}.", ""]
    by_dataset: dict[str, list[dict]] = {}
    for cell in cells:
        by_dataset.setdefault(cell["dataset"], []).append(cell)
    for name, group in by_dataset.items():
        rows = group[0]["rows"]
        lines += [
            f"## {name}",
            "",
            f"Rows: {rows['train']:,} train / {rows['validation']:,} validation / "
            f"{rows['test']:,} test (whole dataset)."
            + (f" `rule`: the feature `{RULES[name]}` as the prediction." if name in RULES else ""),
            "",
        ]
        lines += learning_curve(group)
        shares = sorted({c["share"] for c in group}, reverse=True)
        for share in shares:
            lines += [
                f"### {share:.0%} of the training rows",
                "",
                "| head | n | " + " | ".join(c for c, _, _ in MAIN_COLUMNS) + " | epochs | s |",
                "|---|---:|" + "---:|" * (len(MAIN_COLUMNS) + 2),
            ]
            for head in head_labels(group):
                runs = [c for c in group if c["label"] == head and c["share"] == share]
                if not runs:
                    continue
                cells_text = [
                    _ms([_get(r, path) for r in runs], fmt) for _, path, fmt in MAIN_COLUMNS
                ]
                epochs = "/".join(str(r["epochs"]) for r in runs)
                seconds = statistics.mean(r["seconds"] for r in runs)
                lines.append(
                    f"| {head} | {len(runs)} | "
                    + " | ".join(cells_text)
                    + f" | {epochs} | {seconds:.0f} |"
                )
            lines.append("")
            coded = [c for c in group if c["share"] == share and c.get("levels")]
            if coded:
                lines += level_table(
                    f"Code levels ({args.evaluate_on}): NLL against the training "
                    "marginal's, accuracy against the most frequent code's.",
                    coded,
                    "levels",
                    {
                        "NLL": lambda lv: f"{lv['nll']:.4f}",
                        "marginal NLL": lambda lv: f"{lv['marginal_nll']:.4f}",
                        "accuracy": lambda lv: f"{lv['accuracy']:.4f}",
                        "majority": lambda lv: f"{lv['majority_accuracy']:.4f}",
                    },
                )
            trees = [c for c in coded if c.get("tree_validation")]
            if trees:
                from code_levels import tree_table

                lines += [
                    "RQ-Reg's code tree on the first 10,000 validation rows, as served "
                    "(`exact_levels` 0) and with level 2 reading each level-1 code (1):",
                    "",
                ]
                for c in sorted(trees, key=lambda c: (c["label"], c["seed"])):
                    title = f"{c['label']}, seed {c['seed']}:"
                    lines += [title, "", *tree_table(c["tree_validation"]), ""]
            prefixed = [c for c in coded if c.get("prefix_split")]
            if prefixed:
                lines += prefix_table(prefixed)
            diagnosed = [c for c in coded if c.get("levels_validation")]
            if diagnosed:
                lines += level_table(
                    "Code levels (validation; `benchmarks/code_levels.py`): served NLL against "
                    "the marginal, teacher-forced NLL against the marginal given the true "
                    "earlier codes (negative: the level learned from x).",
                    diagnosed,
                    "levels_validation",
                    {
                        "served": lambda lv: f"{lv['served']:.4f}",
                        "marginal": lambda lv: f"{lv['marginal']:.4f}",
                        "teacher-forced": lambda lv: f"{lv['teacher_forced']:.4f}",
                        "marginal given the prefix": lambda lv: f"{lv['given_prefix']:.4f}",
                        "teacher - given": lambda lv: (
                            f"{lv['teacher_forced'] - lv['given_prefix']:+.4f}"
                        ),
                    },
                )
    return "\n".join(lines) + "\n"


def load_cells(cells_dir: str, split: str = "test") -> list[dict]:
    """Every finished cell under `cells_dir` (its `*.json` files); each must
    have been scored on `split` (a cell written before cells recorded it was
    scored on test)."""
    cells = []
    for root, _, files in os.walk(cells_dir):
        for name in sorted(f for f in files if f.endswith(".json")):
            with open(os.path.join(root, name), encoding="utf-8") as f:
                cell = json.load(f)
            cell.setdefault("split", "test")
            cell["overrides"] = {k: numeric(v) for k, v in cell.get("overrides", {}).items()}
            # Cells before they recorded it ran at the defaults (12, 3); so
            # do LightGBM's and the rule's, as far as their rows go.
            cell.setdefault("max_epochs", DEFAULT_EPOCHS)
            cell.setdefault("patience", DEFAULT_PATIENCE)
            # Before `prefix_split`, cells scored `prefix` on test whatever
            # their split: a tuning cell's is dropped (it read the test rows).
            old_prefix = cell.pop("prefix_test", None)
            if old_prefix is not None and cell["split"] == "test":
                cell["prefix_split"] = old_prefix
            cell["label"] = row_label(cell["head"], cell.get("variant", ""))
            if cell["split"] != split:
                raise SystemExit(
                    f"{os.path.join(root, name)}: a cell scored on {cell['split']!r}, not "
                    f"{split!r}: tuning cells (--evaluate-on validation) need their own "
                    "--cells-dir"
                )
            cells.append(cell)
    variants: dict[tuple, set] = {}
    for cell in cells:
        row = (cell["dataset"], cell["label"])
        variants.setdefault(row, set()).add(json.dumps(row_settings(cell), sort_keys=True))
    mixed = {" ".join(row): sorted(o) for row, o in variants.items() if len(o) > 1}
    if mixed:
        raise SystemExit(
            f"{cells_dir}: cells of one row with different overrides {mixed}: give each setting "
            "its own --variant"
        )
    return sorted(cells, key=lambda c: (c["dataset"], c["label"], -c["share"], c["seed"]))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="complete_journey,nycflights,cdnow")
    p.add_argument("--heads", default=",".join(HEADS))
    p.add_argument("--fractions", default="1,0.3,0.1", help="shares of the training rows")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--patience", type=int, default=DEFAULT_PATIENCE)
    p.add_argument("--units", type=int, default=128)
    p.add_argument(
        "--work-dir",
        default=WORK,
        help="prepared splits and kept runs (not committed)",
    )
    p.add_argument(
        "--data-dir",
        help="where the prepared splits are (DATASET/data/; default: --work-dir)",
    )
    p.add_argument(
        "--cells-dir",
        default=os.path.join(HERE, "results", "scale_cells"),
        help="every finished cell's figures, one JSON file each (committed)",
    )
    p.add_argument("--fresh", action="store_true", help="run finished cells again")
    p.add_argument(
        "--keep-runs",
        action="store_true",
        help="keep every network head's trained run (model.keras, predictions.parquet) in "
        f"its cell's work directory, not only {' and '.join(KEPT_RUNS)}'s",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig override for every network head (model.delta=20)",
    )
    p.add_argument("--report-only", action="store_true", help="write the report, run nothing")
    p.add_argument(
        "--tuned",
        metavar="JSON",
        help="each head's overrides chosen on validation (benchmarks/scale_tuning.py's "
        "scale_tuned.json): cells of the variant `tuned`; heads whose choice was the "
        "untuned setting are not run again",
    )
    p.add_argument(
        "--variant",
        default="",
        help="a name for the cells' --set overrides: its rows are HEAD@NAME, beside the "
        "head's own (needed with --set on the test split)",
    )
    p.add_argument(
        "--evaluate-on",
        choices=("test", "validation"),
        default="test",
        help="the split every cell is scored on (validation: a tuning run, with its own "
        "--cells-dir and --work-dir)",
    )
    p.add_argument(
        "--one", nargs=4, metavar=("DATASET", "HEAD", "SHARE", "SEED"), help=argparse.SUPPRESS
    )
    p.add_argument("--output", default=os.path.join(HERE, "results", "quality_scale.md"))
    args = p.parse_args(argv)
    args.argv = [a for a in argv if a != "--fresh"]
    args.work_dir = os.path.abspath(args.work_dir)
    args.cells_dir = os.path.abspath(args.cells_dir)
    args.data_dir = os.path.abspath(args.data_dir or args.work_dir)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.path.insert(0, REPO)
    from rq_keras.cli.train import parse_key_value

    args.set = [(key, numeric(value)) for key, value in map(parse_key_value, args.set)]
    tuned = None
    if args.tuned:
        if args.set or args.variant:
            p.error(
                "--tuned sets each head's overrides and the variant `tuned`: no --set/--variant"
            )
        with open(args.tuned, encoding="utf-8") as f:
            tuned = json.load(f)
        args.variant = "tuned"
    if args.set and not args.variant and args.evaluate_on == "test":
        p.error("--set on the test split needs --variant NAME (its cells are rows of their own)")
    if args.variant and not args.variant.replace("_", "").replace("-", "").isalnum():
        p.error(f"--variant must be letters, digits, - and _, got {args.variant!r}")
    heads = args.heads.split(",")
    unknown = sorted(set(heads) - set(HEADS))
    if unknown:
        p.error(f"--heads: unknown {unknown}; choose from {HEADS}")
    if args.one:
        name, head, share, seed = args.one
        run_cell(name, head, float(share), int(seed), args)
        return 0
    started = time.perf_counter()
    fractions = [float(f) for f in args.fractions.split(",")]
    if not args.report_only:
        for name in args.datasets.split(","):
            prepare(name, args.data_dir, fractions)
            for share in fractions:
                for head in heads:
                    seeds = [0] if head == "rule" else [int(s) for s in args.seeds.split(",")]
                    if head == "rule" and name not in RULES:
                        continue
                    overrides = list(args.set)
                    if tuned is not None:
                        if head not in tuned.get(name, {}):
                            print(f"{name} {head}: not in {args.tuned}, skipped", flush=True)
                            continue
                        overrides = list(tuned[name][head].items())
                        if not overrides:
                            print(
                                f"{name} {head}: the untuned setting was chosen (its own row)",
                                flush=True,
                            )
                            continue
                    # A tuned choice may carry its training length (row_settings).
                    length = {"--epochs": args.epochs, "--patience": args.patience}
                    length.update((k, v) for k, v in overrides if k in length)
                    overrides = [(k, v) for k, v in overrides if k not in length]
                    for seed in seeds:
                        done = cell_file(args.cells_dir, name, head, share, seed, args.variant)
                        if os.path.exists(done) and not args.fresh:
                            continue
                        cmd = [sys.executable, os.path.abspath(__file__), "--one", name, head]
                        cmd += [f"{share:g}", str(seed), "--work-dir", args.work_dir]
                        cmd += ["--cells-dir", args.cells_dir, "--data-dir", args.data_dir]
                        for flag, value in length.items():
                            cmd += [flag, str(int(value))]
                        cmd += ["--units", str(args.units), "--evaluate-on", args.evaluate_on]
                        cmd += ["--variant", args.variant]
                        if args.keep_runs:
                            cmd.append("--keep-runs")
                        for key, value in overrides:
                            cmd += ["--set", f"{key}={json.dumps(value)}"]
                        start = time.perf_counter()
                        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                        took = time.perf_counter() - start
                        if proc.returncode != 0:
                            print(
                                f"{name} {head} {share:g} seed {seed}: FAILED after "
                                f"{took:.0f} s\n{proc.stderr[-3000:]}",
                                flush=True,
                            )
                            continue
                        with open(done, encoding="utf-8") as f:
                            cell = json.load(f)
                        served = cell["served"]
                        print(
                            f"{name} {head} {share:g} seed {seed}: {took:.0f} s, "
                            f"Norm-Gini(+) {served['normalized_gini_positive']:.4f}, "
                            f"Spearman(+) {served['spearman_positive']:.4f}, "
                            f"CRPS {_get(cell, ('distribution', 'crps')) or float('nan'):.4f}",
                            flush=True,
                        )
    minutes = (time.perf_counter() - started) / 60
    text = report(load_cells(args.cells_dir, args.evaluate_on), args, minutes)
    print(text)
    write_results(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
