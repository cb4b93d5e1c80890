"""Diagnostic: does each code level of a trained RQ-Reg run generalize, and
where is it lost: in what the level learned, or in how it is served?

    python benchmarks/code_levels.py            # after `make demo`: out/demo/cdnow
    python benchmarks/code_levels.py --run-dir RUN [--split test]

Scores the true code of every level of the split's rows (NLL under the
softmax over the whole vocabulary, as L_gen and the code report read it) in
two passes of the decoder, beside two baselines from the training codes:

* served: the inference pass, each deeper level reading the model's own
  expected embedding of the level before (what `CodeReport` in metrics.json
  scores and what the code tree serves); against the level's marginal.
* teacher-forced: each deeper level reading the true code of the level
  before (the training pass at sampling probability 1); against the level's
  marginal given the true codes before it, p(q_l | q_1..q_l-1) counted on
  the training codes (add-half smoothing), which knows as much about the
  prefix and nothing about x.

A level whose teacher-forced NLL is below the parent-conditional marginal
learned something from x; if its served NLL is above the marginal all the
same, the loss is in serving (the free-running pass), not in learning.
Then the served distribution itself with the code tree's `exact_levels` 0
(the default) and 1. Prints Markdown tables and writes them to `--output`
(`benchmarks/results/code_levels.md`). The validation split by default: what
this finds may change the method, and the test split stays unseen.
"""

from __future__ import annotations

import argparse
import os
import sys

from _machine import cpu_model, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _log_softmax(z):
    import numpy as np

    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def code_slots(codes, sizes):
    """Codes `(n, L)` as slots `(n, L)`: code k is k, the zero code (-1) is
    K_l (the last of level l's K_l + 1 slots)."""
    import numpy as np

    return np.where(codes < 0, np.asarray(sizes)[None, :], codes)


def marginal_tables(train_codes, sizes):
    """Per level: the log marginal over its K_l (+ zero) slots, and a function
    of a level and the slots of all levels before it that gives the log
    marginal of that level given that whole true prefix (counted on the
    training codes, add-half smoothing; a prefix never seen in training gets
    the plain marginal)."""
    import numpy as np

    slots = [k + 1 for k in sizes]  # the zero code (-1) takes the last slot
    idx = list(code_slots(train_codes, sizes).T)
    plain, given = [], [None]
    for level, n in enumerate(slots):
        counts = np.bincount(idx[level], minlength=n) + 0.5
        plain.append(np.log(counts / counts.sum()))
        if level:
            prefix = prefix_ids(idx[:level], slots)
            table = {}
            for key in np.unique(prefix):
                c = np.bincount(idx[level][prefix == key], minlength=n) + 0.5
                table[int(key)] = np.log(c / c.sum())
            given.append(table)

    def conditional(level, prefix_slots):
        if level == 0:
            return plain[0][prefix_slots[0]]
        keys = prefix_ids(prefix_slots[:level], slots)
        out = np.empty(keys.shape[0])
        for row, key in enumerate(keys):
            row_table = given[level].get(int(key), plain[level])
            out[row] = row_table[prefix_slots[level][row]]
        return out

    return plain, conditional


def prefix_ids(columns, slots):
    """One integer per row for the tuple of slots in `columns` (levels 1..l)."""
    import numpy as np

    key = np.zeros(columns[0].shape[0], dtype=np.int64)
    for level, column in enumerate(columns):
        key = key * slots[level] + column
    return key


def level_scores(model, spec, quantizer, train_labels, path, max_rows=100_000) -> list[dict]:
    """Per level of an RQ-Reg `model`: the mean NLL of the true code in the
    served pass (`served`) and teacher-forced (`teacher_forced`), the
    training codes' `marginal` and their marginal given the true earlier
    codes (`given_prefix`), over the first `max_rows` rows of the Parquet
    file `path`; `rows` scored."""
    import numpy as np

    from rq_keras.data.pipeline import make_dataset

    sizes = [int(k) for k in quantizer.fitted_codebook_sizes]
    offsets = np.asarray(quantizer.token_offsets)
    plain, conditional = marginal_tables(quantizer.encode(train_labels), sizes)
    task = model.task
    task.decoder.sampling_probability.assign(1.0)
    sums = {k: np.zeros(len(sizes)) for k in ("served", "teacher", "plain", "given")}
    rows = 0
    for features, label in make_dataset([path], spec, batch_size=2048):
        tower = model.features(features, training=False)
        served = model(features, training=False)["logits"].numpy()
        forced = task.predict(tower, labels=label, training=True)["logits"].numpy()
        codes = quantizer.encode(label.numpy().astype(np.float64))
        slot = list(code_slots(codes, sizes).T)
        tokens = np.where(codes < 0, 1, codes + offsets[None, :])
        n = codes.shape[0]
        for level in range(len(sizes)):
            pick = (np.arange(n), tokens[:, level])
            sums["served"][level] -= _log_softmax(served[:, level])[pick].sum()
            sums["teacher"][level] -= _log_softmax(forced[:, level])[pick].sum()
            sums["plain"][level] -= plain[level][slot[level]].sum()
            sums["given"][level] -= conditional(level, slot).sum()
        rows += n
        if rows >= max_rows:
            break
    return [
        {
            "level": level + 1,
            "rows": rows,
            "served": float(sums["served"][level] / rows),
            "marginal": float(sums["plain"][level] / rows),
            "teacher_forced": float(sums["teacher"][level] / rows),
            "given_prefix": float(sums["given"][level] / rows),
        }
        for level in range(len(sizes))
    ]


def distribution_summary(labels, quantiles, means, positive, grid) -> dict:
    """The scores of a served distribution from its per-batch arrays: `rows`,
    `crps` and calibration `max_gap` on the quantile `grid`, Norm-Gini(+),
    Spearman(+), Norm-Gini over all rows (`mean_gini`) and total of the mean,
    Norm-Gini(+) of E[y | y > 0]."""
    import numpy as np

    from rq_keras.evaluation.distribution_scores import crps_from_quantiles, quantile_calibration
    from rq_keras.evaluation.metrics import evaluate

    y = np.concatenate(labels).astype(np.float64)
    q = np.concatenate(quantiles).astype(np.float64)
    mean_scores = evaluate(y, np.concatenate(means))
    return {
        "mean_gini": mean_scores["normalized_gini"],
        "rows": int(y.size),
        "crps": crps_from_quantiles(y, q, grid),
        "max_gap": quantile_calibration(y, q, grid)["max_gap"],
        "mean_gini_positive": mean_scores["normalized_gini_positive"],
        "mean_spearman_positive": mean_scores["spearman_positive"],
        "mean_ratio": mean_scores["mean_ratio"],
        "positive_mean_gini_positive": evaluate(y, np.concatenate(positive))[
            "normalized_gini_positive"
        ],
    }


def served_summary(serve, spec, path, grid, max_rows, batch_size=1024) -> dict:
    """`distribution_summary` of `serve(features)` (a dict with `quantiles`
    on `grid`, `mean` and `positive_mean`) over the first `max_rows` rows of
    the Parquet file `path` (whole batches: at most one batch more)."""
    from rq_keras.data.pipeline import make_dataset

    labels, quantiles, means, positive = [], [], [], []
    rows = 0
    for features, label in make_dataset([path], spec, batch_size=batch_size):
        out = serve(features)
        labels.append(label.numpy())
        quantiles.append(out["quantiles"].numpy())
        means.append(out["mean"].numpy())
        positive.append(out["positive_mean"].numpy())
        rows += int(label.shape[0])
        if rows >= max_rows:
            break
    return distribution_summary(labels, quantiles, means, positive, grid)


def tree_scores(
    model, spec, path, exact_levels=(0, 1), max_rows=100_000, deeper=("pass",)
) -> list[dict]:
    """The code tree's served distribution per `exact_levels` value (0: one
    free-running pass, a deeper level does not know which code came before;
    1: a branch per level-1 code, level 2 reading that code), and with
    branches per `deeper` read of the levels below the atoms (`"pass"`, the
    served one, or `"branch"`: `RQDecoder.code_tree`), over the first
    `max_rows` rows of `path`: `crps` and calibration `max_gap` from 20
    midpoint quantile levels, Norm-Gini(+) and total of the `mean`,
    Norm-Gini(+) of `positive_mean`, `seconds_per_1000` rows."""
    import time

    from rq_keras.evaluation.distribution_scores import midpoint_levels

    grid = list(midpoint_levels(20))
    decoder = model.task.decoder
    kept = decoder.quantiles
    decoder.quantiles = grid
    results = []
    modes = [(e, d) for e in exact_levels for d in (deeper if e else deeper[:1])]
    try:
        for exact, read in modes:

            def serve(features, exact=exact, read=read):
                state = model.task.encoder(model.features(features, training=False))
                return decoder.code_tree(state, exact_levels=exact, deeper=read)

            start = time.perf_counter()
            summary = served_summary(serve, spec, path, grid, max_rows)
            seconds = time.perf_counter() - start
            results.append(
                {
                    "exact_levels": f"{exact} (deeper: {read})"
                    if len(deeper) > 1 and exact
                    else exact,
                    **summary,
                    "seconds_per_1000": 1000 * seconds / summary["rows"],
                }
            )
    finally:
        decoder.quantiles = kept
    return results


def cluster_atoms(train_labels, train_codes, sizes, atoms: int):
    """Per level-1 slot (its K_1 codes, then the zero code), what the training
    rows of that cluster hold: `table` `(K_1 + 1, atoms)`, their labels as
    `atoms` equal-mass atoms (midpoint quantiles), and `(K_1 + 1,)` arrays of
    the exact `mean`, the share above 0 (`positive_share`) and the mean above
    0 (`positive_mean`). A slot with no training row: zeros."""
    import numpy as np

    k1 = sizes[0]
    slot = np.where(train_codes[:, 0] < 0, k1, train_codes[:, 0])
    levels = (np.arange(atoms) + 0.5) / atoms
    table = np.zeros((k1 + 1, atoms))
    stats = {k: np.zeros(k1 + 1) for k in ("mean", "positive_share", "positive_mean")}
    for k in range(k1 + 1):
        members = train_labels[slot == k]
        if members.size:
            table[k] = np.quantile(members, levels)
            stats["mean"][k] = members.mean()
            positive = members[members > 0]
            stats["positive_share"][k] = positive.size / members.size
            stats["positive_mean"][k] = positive.mean() if positive.size else 0.0
    return table, stats


def mixture_quantiles(probabilities, values, grid):
    """Quantiles at `grid` of per-row mixtures of shared atoms: `probabilities`
    `(rows, atoms)` over the atoms `values` `(atoms,)` (the same for every
    row); the lower quantile of the step CDF, as `atom_quantiles`."""
    import numpy as np

    order = np.argsort(values, kind="stable")
    cdf = np.cumsum(probabilities[:, order], axis=1)
    cdf /= cdf[:, -1:]
    out = np.empty((probabilities.shape[0], len(grid)))
    for j, level in enumerate(grid):
        index = np.minimum((cdf < level - 1e-12).sum(axis=1), len(values) - 1)
        out[:, j] = values[order][index]
    return out


def prefix_scores(
    model,
    spec,
    quantizer,
    train_labels,
    path,
    atoms: int = 32,
    max_rows: int = 100_000,
    grid=None,
) -> dict:
    """The served distribution with every level below 1 replaced by what the
    training rows of the predicted level-1 cluster hold: P(code 1 | x) from
    the model, then within each cluster the training labels' distribution
    (`atoms` equal-mass atoms for the quantiles, the exact cluster means for
    the mean and E[y | y > 0]; nothing of x). What the deeper levels add
    to the served distribution is the difference from the code tree's
    (`tree_scores`); a deeper level that learned nothing from x cannot beat
    this. Same scores as `tree_scores`, on the quantile levels `grid` (20
    midpoint levels by default)."""
    import numpy as np

    from rq_keras.data.pipeline import make_dataset
    from rq_keras.evaluation.distribution_scores import midpoint_levels
    from rq_keras.quantizer.tokens import ZERO_TOKEN

    grid = list(midpoint_levels(20) if grid is None else grid)
    sizes = [int(k) for k in quantizer.fitted_codebook_sizes]
    start = int(quantizer.token_offsets[0])
    table, stats = cluster_atoms(train_labels, quantizer.encode(train_labels), sizes, atoms)
    values = table.reshape(-1)
    positive_mass = stats["positive_share"] * stats["positive_mean"]
    labels, quantiles, means, positive = [], [], [], []
    rows = 0
    for features, label in make_dataset([path], spec, batch_size=2048):
        logits = model(features, training=False)["logits"].numpy()[:, 0]
        own = logits[:, start : start + sizes[0]]
        if quantizer.zero_token:
            own = np.concatenate([own, logits[:, ZERO_TOKEN : ZERO_TOKEN + 1]], axis=1)
        else:
            own = np.concatenate([own, np.full((own.shape[0], 1), -np.inf)], axis=1)
        p = np.exp(own - own.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        mass = np.repeat(p / atoms, atoms, axis=1)
        labels.append(label.numpy())
        quantiles.append(mixture_quantiles(mass, values, grid))
        means.append(p @ stats["mean"])
        positive.append((p @ positive_mass) / np.maximum(p @ stats["positive_share"], 1e-12))
        rows += int(label.shape[0])
        if rows >= max_rows:
            break
    return distribution_summary(labels, quantiles, means, positive, grid)


def _fmt(value, fmt="{:.4f}") -> str:
    return "n/a" if value is None else fmt.format(value)


SUMMARY_HEADER = (
    "CRPS | calibration max gap | mean: Norm-Gini(+) | mean: Spearman(+) | mean / label "
    "| positive_mean: Norm-Gini(+)"
)


def summary_cells(r: dict) -> str:
    """The `SUMMARY_HEADER` cells of one `distribution_summary`."""
    return (
        f"{r['crps']:.4f} | {r['max_gap']:.3f} | {r['mean_gini_positive']:.4f} "
        f"| {_fmt(r.get('mean_spearman_positive'))} | {r['mean_ratio']:.3f} "
        f"| {r['positive_mean_gini_positive']:.4f}"
    )


def tree_table(results: list[dict]) -> list[str]:
    lines = [
        f"| exact_levels | rows | {SUMMARY_HEADER} | s per 1,000 rows |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['exact_levels']} | {r['rows']:,} | {summary_cells(r)} "
            f"| {_fmt(r.get('seconds_per_1000'), '{:.2f}')} |"
        )
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", default=os.path.join(REPO, "out", "demo", "cdnow"))
    p.add_argument("--split", default="validation", choices=("train", "validation", "test"))
    p.add_argument("--max-rows", type=int, default=100_000)
    p.add_argument(
        "--data-dir",
        default=None,
        help="the split files (train/validation/test.parquet); default RUN/data",
    )
    p.add_argument("--output", default=os.path.join(HERE, "results", "code_levels.md"))
    p.add_argument(
        "--exact-levels",
        type=lambda t: [int(v) for v in t.split(",")],
        default=[0, 1],
        help="the code tree's expanded levels to compare (comma-separated)",
    )
    p.add_argument(
        "--deeper",
        type=lambda t: t.split(","),
        default=["pass"],
        help="with branches, how the levels below the atoms are read: pass (served), "
        "branch, or both (comma-separated)",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, REPO)
    import numpy as np
    import pandas as pd
    import tf_keras as keras

    from rq_keras.features import FeatureSpec
    from rq_keras.quantizer.residual import ResidualQuantizer

    run = args.run_dir
    spec = FeatureSpec.load(os.path.join(run, "feature_spec.yaml"))
    quantizer = ResidualQuantizer.load(os.path.join(run, "codebook.json"))
    model = keras.models.load_model(os.path.join(run, "model.keras"), compile=False)
    data_dir = args.data_dir or os.path.join(run, "data")
    train_y = pd.read_parquet(os.path.join(data_dir, "train.parquet"), columns=[spec.label.name])
    path = os.path.join(data_dir, f"{args.split}.parquet")
    train_labels = train_y[spec.label.name].to_numpy(np.float64)
    scores = level_scores(model, spec, quantizer, train_labels, path, args.max_rows)
    rows = scores[0]["rows"]
    prefix = prefix_scores(model, spec, quantizer, train_labels, path, max_rows=args.max_rows)
    tree_lines = [
        "Served distribution (the code tree) by `exact_levels`, and (`prefix`) level 1 "
        "from the model with the deeper levels replaced by the training labels of the "
        "level-1 cluster (`prefix_scores`); CRPS and the largest quantile calibration gap "
        "from 20 midpoint levels:",
        "",
        *tree_table(
            [
                *tree_scores(model, spec, path, args.exact_levels, args.max_rows, args.deeper),
                {**prefix, "exact_levels": "prefix"},
            ]
        ),
    ]
    command = "python benchmarks/code_levels.py " + " ".join(argv or sys.argv[1:])
    lines = [
        "# Code levels: learned, and served",
        "",
        f"Command: `{command.strip()}`; run `{os.path.relpath(run, REPO)}`, split "
        f"`{args.split}`, {rows:,} rows. Machine: {os.cpu_count()} CPU cores ({cpu_model()}).",
        "",
        "NLL of the true code (nats) in the served pass and teacher-forced, beside the "
        "training codes' marginal and their marginal given the true earlier codes:",
        "",
        "| level | served | marginal | served - marginal | teacher-forced "
        "| marginal given the true prefix | teacher - conditional marginal |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level, row in enumerate(scores):
        s, m, t, g = (row[k] for k in ("served", "marginal", "teacher_forced", "given_prefix"))
        lines.append(
            f"| {level + 1} | {s:.4f} | {m:.4f} | {s - m:+.4f} | {t:.4f} | {g:.4f} | {t - g:+.4f} |"
        )
    text = "\n".join(lines + [""] + tree_lines) + "\n"
    print(text)
    write_results(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
