"""Equal-budget tuning of every head on the VALIDATION split (issue 14, item 4).

    python benchmarks/tune.py            # or: make bench-tune

    python benchmarks/tune.py --stage params   # then: each head's loss parameter

For each dataset and head of `benchmarks/quality.py`, the same number of
trials per head (one seed, quality.py's other settings) is trained and scored
on the validation split; the test split is never read. Stage `lr` tries three
learning rates; stage `params` two values of the head's own loss parameter
at the chosen rate (see `PARAMS`). A head's best trial is the one with the highest
Norm-Gini(+) (the ranking of buyers the issue's goals are about), ties to the
lower MAE. Writes `benchmarks/results/tuning[_params].md` (every trial) and
`benchmarks/results/tuned.json` (`{dataset: {head: {override: value}}}`,
e.g. `{"learning_rate": 0.001, "model.delta": 8.1}`; other datasets' entries
kept), which `quality.py --tuned` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from _machine import cpu_model, write_results
from quality import BASELINE_HEADS, VARIANT_HEADS, base_config, batch_size, run_one, splits

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LEARNING_RATES = (3e-4, 1e-3, 3e-3)
# Stage 2 (`--stage params`): each head's own loss parameter, two more values
# at its stage-1 learning rate. Huber's delta (the `huber` head's, and the
# paper objective's L_reg) in units of the training labels' std, since 2.0 is
# dollars on one dataset and pounds on another; RQ-Reg's L_rnc weight (with
# f_reg behind stop_gradient, L_gen and L_rnc are what train the served code
# distribution; lambda_2 = 0.1 is the paper's). A head with no loss parameter
# of its own gets two more learning rates instead: every head has 5 trials.
# head -> (override, its two values, whether they are in stds of the labels)
PARAMS = {
    "rq_reg": ("model.rnc_weight", (0.0, 1.0), False),
    "kmeans": ("model.rnc_weight", (0.0, 1.0), False),
    "rq_reg_paper": ("model.delta", (0.1, 1.0), True),
    "huber": ("model.delta", (0.1, 1.0), True),
}
MORE_LEARNING_RATES = (1e-4, 1e-2)


def best(trials: list[dict]) -> dict:
    """The trial with the highest Norm-Gini(+), then the lowest MAE."""

    def key(trial):
        gini = trial["normalized_gini_positive"]
        return (-(gini if gini is not None else -1.0), trial["mae"])

    return min(trials, key=key)


def label_std(data: dict) -> float:
    """The std of the training split's labels (the scale of Huber's delta)."""
    import pandas as pd

    from rq_keras.features import FeatureSpec

    label = FeatureSpec.load(data["spec"]).label.name
    return float(pd.read_parquet(data["files"]["train"], columns=[label])[label].std())


def settings(head: str, stage: str, data: dict, chosen: dict | None, rates) -> list[dict]:
    """The trials' overrides: stage `lr`, one per learning rate; stage
    `params`, the stage-1 choice again (so that the choice compares trials of
    one code version) and the two values of `PARAMS` at its learning rate."""
    if stage == "lr":
        return [{"learning_rate": rate} for rate in rates]
    if chosen is None:
        raise SystemExit(f"--stage params: no stage-1 learning rate for {head}; run --stage lr")
    if head not in PARAMS:
        return [dict(chosen)] + [{**chosen, "learning_rate": r} for r in MORE_LEARNING_RATES]
    key, values, in_stds = PARAMS[head]
    if in_stds:
        scale = label_std(data)
        values = [round(scale * v, 4) for v in values]
    return [dict(chosen)] + [{**chosen, key: v} for v in values]


def describe(overrides: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(overrides.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="cdnow,complete_journey")
    p.add_argument("--heads", default=",".join(BASELINE_HEADS))
    p.add_argument(
        "--stage",
        choices=("lr", "params"),
        default="lr",
        help="lr: the learning rates; params: each head's loss parameter at the "
        "learning rate stage lr chose (reads --tuned)",
    )
    p.add_argument("--learning-rates", default=",".join(f"{v:g}" for v in LEARNING_RATES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--batch-size", type=batch_size, default="auto")
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--max-train-rows", type=int, default=30_000)
    p.add_argument("--output", default=None, help="default: results/tuning[_params].md")
    p.add_argument("--tuned", default=os.path.join(HERE, "results", "tuned.json"))
    args = p.parse_args(argv)
    args.evaluate_on, args.set, args.learning_rate = "validation", [], None
    if args.output is None:
        name = "tuning_params.md" if args.stage == "params" else "tuning.md"
        args.output = os.path.join(HERE, "results", name)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, REPO)
    rates = [float(v) for v in args.learning_rates.split(",")]
    datasets = args.datasets.split(",")
    tuned: dict[str, dict] = {}
    if os.path.exists(args.tuned):
        with open(args.tuned, encoding="utf-8") as f:
            tuned = json.load(f)
    # Stage lr replaces the choices of the datasets it runs; other entries are kept.
    previous = tuned
    if args.stage == "lr":
        tuned = {k: v for k, v in tuned.items() if k not in datasets}
    lines = []
    with tempfile.TemporaryDirectory(prefix="rq_keras_tune_") as work:
        for dataset in datasets:
            data = splits(dataset, work, args.max_train_rows)
            lines += [
                f"## {dataset}",
                "",
                "| head | settings | MAE | Norm-Gini(+) | Spearman(+) | mean pred / mean "
                "label | epochs | chosen |",
                "|---|---|---:|---:|---:|---:|---:|---|",
            ]
            for head in args.heads.split(","):
                base, extra = VARIANT_HEADS.get(head, (head, None))
                chosen_before = previous.get(dataset, {}).get(head)
                trials = []
                for index, overrides in enumerate(
                    settings(head, args.stage, data, chosen_before, rates)
                ):
                    args.learning_rate = overrides["learning_rate"]
                    out = os.path.join(work, "runs", dataset, head, str(index))
                    config_extra = {**(extra or {}), **overrides}
                    trial = run_one(base_config(data, args, args.seed, base, config_extra), out)
                    trial["overrides"] = overrides
                    trials.append(trial)
                    print(
                        f"{dataset} {head} {describe(overrides)}: MAE {trial['mae']:.3f}, "
                        f"Norm-Gini(+) {trial['normalized_gini_positive']:.3f}",
                        flush=True,
                    )
                chosen = best(trials)
                tuned.setdefault(dataset, {})[head] = dict(chosen["overrides"])
                for index, trial in enumerate(trials):
                    ratio = trial.get("mean_ratio")
                    again = " (stage lr's choice)" if args.stage == "params" and index == 0 else ""
                    lines.append(
                        f"| {head} | {describe(trial['overrides'])}{again} | {trial['mae']:.4f} | "
                        f"{trial['normalized_gini_positive']:.4f} | "
                        f"{trial['spearman_positive']:.4f} | "
                        f"{'n/a' if ratio is None else f'{ratio:.3f}'} | {trial['epochs']} | "
                        f"{'yes' if trial is chosen else ''} |"
                    )
            lines.append("")
    command = "python benchmarks/tune.py " + " ".join(argv or sys.argv[1:])
    if args.stage == "lr":
        about = (
            f"Stage lr: every head gets the same {len(rates)} trials (learning rates "
            f"{', '.join(f'{r:g}' for r in rates)}); `--stage params` then tries each head's "
            "own loss parameter at the chosen rate."
        )
    else:
        about = (
            "Stage params: at the learning rate stage lr chose (its trial is run again "
            "first, so that the choice compares trials of one code version and machine), two "
            "values of each head's own loss parameter: Huber's delta (`huber`, and "
            "`rq_reg_paper`'s L_reg) at 0.1 and 1 times the std of the training labels "
            "(the default is 2.0 in the labels' unit), RQ-Reg's L_rnc weight lambda_2 at 0 "
            "and 1 (default 0.1); the heads without a loss parameter of their own (ZILN, MSE, "
            f"log-MSE) get learning rates {', '.join(f'{r:g}' for r in MORE_LEARNING_RATES)}"
            " instead. With stage lr's 3 trials, every head gets 5."
        )
    text = "\n".join(
        [
            "# Equal-budget tuning on the validation split",
            "",
            f"Command: `{command.strip()}` (`make bench-tune`). CPU: {cpu_model()}.",
            "",
            about,
            "",
            f"Seed {args.seed}, width {args.units}, batch {args.batch_size}, at most "
            f"{args.epochs} epochs (patience {args.patience}), scored on the validation "
            "split; the test split is never read. Chosen: the highest Norm-Gini(+), ties to "
            "the lower MAE; `tuned.json` holds the choices for `quality.py --tuned`.",
            "",
            *lines,
        ]
    )
    write_results(args.output, text + "\n")
    with open(args.tuned, "w", encoding="utf-8") as f:
        json.dump(tuned, f, indent=2, sort_keys=True)
        f.write("\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
