"""Does x say anything about a deeper code level? An independent learner's answer.

    python benchmarks/code_information.py [--datasets complete_journey,nycflights]

For issue 29. On whole datasets RQ-Reg's deeper code levels (2 and 3) score
no better than the training marginal given the true earlier codes
(`quality_scale_059184e.md`, "teacher - given" near 0 or above): the network
takes nothing from x about the finer residual once the coarse code is known.
Either x holds nothing about it on this data (then the deeper levels cannot
earn their place, and fewer levels is the right model for it), or the
network fails to use what is there (a method problem to fix).

LightGBM answers which, with no network involved: per level, a multiclass
booster predicts the level's code from the spec's columns (`scale.tree_table`)
and the true earlier codes (as categories), early stopping on a held-out
tenth of the training rows; scored on the VALIDATION split by its NLL against
the training marginal given the true prefix (`code_levels.marginal_tables`,
the same baseline as the network's "teacher-forced" column). Rows whose
earlier code is the zero code have a fixed deeper code and are left out of a
deeper level (both models give them the same probability); the `all rows`
column puts them back with the conditional marginal's NLL for both, the
network's scale. The codebook is the run's own (`TrainConfig.quantizer`, the
scale benchmark's L = 3, K = 48), fitted on the training labels.

Reads the splits that `benchmarks/scale.py` prepared (`--work-dir`, built when
missing). Writes `benchmarks/results/code_information.md`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import level_value
import numpy as np
from _machine import cpu_model, write_results
from code_levels import code_slots, marginal_tables
from scale import TREE_PARAMS, WORK, as_categories, prepare, quantizer_config, tree_table

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def level_information(
    x_train, x_val, slots_train, slots_val, given, sizes, level, args, features=True
):
    """LightGBM's validation NLL of `level` (0-based) given x and the true
    earlier codes (`code_slots`; `features=False`: the earlier codes alone,
    the control), against `given`, each validation row's NLL under the
    training marginal given its true prefix."""
    import lightgbm as lgb
    import pandas as pd

    zero = np.array(sizes)
    keep_train = ~np.any(slots_train[:, :level] == zero[:level], axis=1)
    keep_val = ~np.any(slots_val[:, :level] == zero[:level], axis=1)

    def with_prefix(x, slots, keep):
        x = x.loc[keep].copy() if features else pd.DataFrame(index=x.index[keep])
        for i in range(level):
            x[f"code_{i + 1}"] = slots[keep, i]
        return x

    xt, xv = with_prefix(x_train, slots_train, keep_train), with_prefix(x_val, slots_val, keep_val)
    yt, yv = slots_train[keep_train, level], slots_val[keep_val, level]
    for i in range(level):
        kinds = pd.CategoricalDtype(list(range(sizes[i] + 1)))
        xt[f"code_{i + 1}"] = xt[f"code_{i + 1}"].astype(kinds)
        xv[f"code_{i + 1}"] = xv[f"code_{i + 1}"].astype(kinds)
    # A held-out tenth for early stopping; at most `max_train_rows` of the
    # rest to fit (a fixed random subset, the same for every level's rows).
    order = np.random.default_rng(args.seed).permutation(len(xt))
    held = np.zeros(len(xt), bool)
    held[order[: len(xt) // 10]] = True
    fit = np.zeros(len(xt), bool)
    fit[order[len(xt) // 10 :][: args.max_train_rows]] = True
    params = {
        **TREE_PARAMS,
        "objective": "multiclass",
        "num_class": sizes[level] + 1,
        "learning_rate": 0.1,
        "seed": args.seed,
        "num_threads": args.threads,
    }
    start = time.perf_counter()
    booster = lgb.train(
        params,
        lgb.Dataset(xt.loc[fit], yt[fit]),
        num_boost_round=500,
        valid_sets=[lgb.Dataset(xt.loc[held], yt[held])],
        callbacks=[lgb.early_stopping(20, verbose=False)],
    )
    seconds = time.perf_counter() - start
    p = booster.predict(xv, num_iteration=booster.best_iteration)
    nll = -np.log(np.clip(p[np.arange(len(yv)), yv], 1e-12, None))
    rows = len(slots_val)
    return {
        "level": level + 1,
        "rows": int(keep_val.sum()),
        "train_rows": int(fit.sum()),
        "lightgbm": float(nll.mean()),
        "given_prefix": float(given[keep_val].mean()),
        "lightgbm_all": float((nll.sum() + given[~keep_val].sum()) / rows),
        "given_prefix_all": float(given.mean()),
        "rounds": int(booster.best_iteration),
        "seconds": seconds,
    }


def dataset_information(name: str, args) -> list[dict]:
    sys.path.insert(0, REPO)
    from rq_keras.features import FeatureSpec

    data = prepare(name, args.work_dir, [1.0])
    spec = FeatureSpec.load(data["spec"])
    x_train, y_train = tree_table(spec, data["files"]["train"])
    x_val, y_val = tree_table(spec, data["files"]["validation"])
    as_categories(spec, x_train, x_val)
    quantizer = (
        quantizer_config(data, args.seed)
        .build(spec.label.clip_min, spec.label.clip_max, labels=y_train)
        .fit(y_train)
    )
    sizes = list(quantizer.fitted_codebook_sizes)
    codes_train, codes_val = quantizer.encode(y_train), quantizer.encode(y_val)
    # Counted once: the marginals given each prefix (training codes), and
    # both splits' codes as slots.
    _, conditional = marginal_tables(codes_train, sizes)
    slots_train, slots_val = code_slots(codes_train, sizes), code_slots(codes_val, sizes)
    value_left = level_value.value_left(quantizer, y_val)
    results = []
    for level in range(len(sizes)):
        given = -conditional(level, list(slots_val.T))
        parts = (x_train, x_val, slots_train, slots_val, given, sizes, level, args)
        result = level_information(*parts)
        result["dataset"] = name
        # What the levels up to this one leave of the value: the validation
        # labels' MAE against the true codes' value, deeper levels dropped
        # (-1 contributes 0), and the labels' mean for scale.
        result["value_mae"] = value_left[level]
        result["label_mean"] = float(y_val.mean())
        result["prefix_only"] = None
        if level:
            # The control: the same booster on the earlier codes alone, so a
            # gain over the counted marginal that is only smoothing shows.
            control = level_information(*parts, features=False)
            result["prefix_only"] = control["lightgbm"]
        print(
            f"{name} level {result['level']}: LightGBM {result['lightgbm']:.4f} against "
            f"{result['given_prefix']:.4f} given the prefix, {_fmt(result['prefix_only'])} "
            f"LightGBM on the prefix alone ({result['rows']:,} rows, "
            f"{result['rounds']} rounds, {result['seconds']:.0f} s)",
            flush=True,
        )
        results.append(result)
    return results


def _fmt(control, value=None) -> str:
    """A control figure (or `value` minus it); `n/a` at level 1 (no prefix)."""
    if control is None:
        return "n/a"
    return f"{control:.4f}" if value is None else f"{value - control:+.4f}"


def report(results: list[dict], argv: list[str], args) -> str:
    lines = [
        "# Is there anything in x about a deeper code level? (issue 29)",
        "",
        f"Command: `{' '.join(['python benchmarks/code_information.py', *argv])}`. "
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), LightGBM on {args.threads} "
        "thread(s).",
        "",
        "Per code level of the scale benchmark's codebook (L = 3, K = 48, fitted on the whole "
        "training split): a LightGBM multiclass booster (31 leaves, min 100 rows a leaf, "
        "L2 10, learning rate 0.1, early stopping after 20 rounds on a held-out tenth of the "
        f"training rows, fitted on at most {args.max_train_rows:,} of the rest: `fit rows`) "
        "predicts the level's code from the spec's columns and the true "
        "earlier codes; NLL on the validation split against the training marginal given "
        "the same true prefix. Level 1 has no prefix (the plain marginal). `rows`: "
        "validation rows whose earlier codes are not the zero code (the others have a "
        "fixed deeper code); `all rows` adds those back with the conditional marginal's NLL "
        "for both, the scale of the network's teacher-forced column in "
        "`quality_scale_059184e.md`. `prefix only`: the same booster on the earlier codes "
        "alone, the control (what a booster gains over the counted marginal without x). "
        "Negative `LightGBM - prefix only`: x tells the level something beyond its prefix. "
        "`value MAE`: the validation labels against the value of their true codes up to "
        "this level (the deeper ones dropped), what the levels below it can still move; "
        "beside the labels' mean.",
        "",
        "| dataset | level | fit rows | rows | LightGBM | given prefix | prefix only "
        "| LightGBM - given | LightGBM - prefix only | all rows: LightGBM | all rows: given "
        "| value MAE | label mean | rounds | s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['dataset']} | {r['level']} | {r['train_rows']:,} | {r['rows']:,} "
            f"| {r['lightgbm']:.4f} | {r['given_prefix']:.4f} | {_fmt(r['prefix_only'])} "
            f"| {r['lightgbm'] - r['given_prefix']:+.4f} "
            f"| {_fmt(r['prefix_only'], r['lightgbm'])} "
            f"| {r['lightgbm_all']:.4f} | {r['given_prefix_all']:.4f} | {r['value_mae']:.4f} "
            f"| {r['label_mean']:.3f} | {r['rounds']} "
            f"| {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="complete_journey,nycflights")
    p.add_argument("--work-dir", default=WORK, help="scale.py's prepared splits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--max-train-rows", type=int, default=100_000)
    p.add_argument("--output", default=os.path.join(HERE, "results", "code_information.md"))
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    args.work_dir = os.path.abspath(args.work_dir)
    results = []
    for name in args.datasets.split(","):
        results += dataset_information(name, args)
    text = report(results, argv, args)
    print(text)
    write_results(args.output, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
