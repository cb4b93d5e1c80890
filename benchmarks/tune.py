"""Equal-budget tuning of every head on the VALIDATION split (issue 14, item 4).

    python benchmarks/tune.py            # or: make bench-tune

For each dataset and head of `benchmarks/quality.py`, the same grid of
learning rates (the same number of trials per head, one seed, quality.py's
other settings) is trained and scored on the validation split; the test
split is never read. A head's best trial is the one with the highest
Norm-Gini(+) (the ranking of buyers the issue's goals are about), ties to the
lower MAE. Writes `benchmarks/results/tuning.md` (every trial) and
`benchmarks/results/tuned.json` (`{dataset: {head: {"learning_rate": ...}}}`,
other datasets' entries kept), which `quality.py --tuned` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from _machine import cpu_model, write_results
from quality import HEADS, VARIANT_HEADS, base_config, batch_size, run_one, splits

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LEARNING_RATES = (3e-4, 1e-3, 3e-3)


def best(trials: list[dict]) -> dict:
    """The trial with the highest Norm-Gini(+), then the lowest MAE."""

    def key(trial):
        gini = trial["normalized_gini_positive"]
        return (-(gini if gini is not None else -1.0), trial["mae"])

    return min(trials, key=key)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="cdnow,complete_journey")
    p.add_argument("--heads", default=",".join(HEADS))
    p.add_argument("--learning-rates", default=",".join(f"{v:g}" for v in LEARNING_RATES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--batch-size", type=batch_size, default="auto")
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--max-train-rows", type=int, default=30_000)
    p.add_argument("--output", default=os.path.join(HERE, "results", "tuning.md"))
    p.add_argument("--tuned", default=os.path.join(HERE, "results", "tuned.json"))
    args = p.parse_args(argv)
    args.evaluate_on, args.set, args.learning_rate = "validation", [], None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, REPO)
    rates = [float(v) for v in args.learning_rates.split(",")]
    # Other datasets' choices in the file are kept; the datasets run here are replaced.
    tuned: dict[str, dict] = {}
    if os.path.exists(args.tuned):
        with open(args.tuned, encoding="utf-8") as f:
            tuned = {k: v for k, v in json.load(f).items() if k not in args.datasets.split(",")}
    lines = []
    with tempfile.TemporaryDirectory(prefix="rq_keras_tune_") as work:
        for dataset in args.datasets.split(","):
            data = splits(dataset, work, args.max_train_rows)
            lines += [
                f"## {dataset}",
                "",
                "| head | learning rate | MAE | Norm-Gini(+) | Spearman(+) | mean pred / mean "
                "label | epochs | chosen |",
                "|---|---:|---:|---:|---:|---:|---:|---|",
            ]
            for head in args.heads.split(","):
                base, extra = VARIANT_HEADS.get(head, (head, None))
                trials = []
                for rate in rates:
                    args.learning_rate = rate
                    out = os.path.join(work, "runs", dataset, head, f"{rate:g}")
                    trial = run_one(base_config(data, args, args.seed, base, extra), out)
                    trial["learning_rate"] = rate
                    trials.append(trial)
                    print(
                        f"{dataset} {head} lr {rate:g}: MAE {trial['mae']:.3f}, Norm-Gini(+) "
                        f"{trial['normalized_gini_positive']:.3f}",
                        flush=True,
                    )
                chosen = best(trials)
                tuned.setdefault(dataset, {})[head] = {"learning_rate": chosen["learning_rate"]}
                for trial in trials:
                    ratio = trial.get("mean_ratio")
                    lines.append(
                        f"| {head} | {trial['learning_rate']:g} | {trial['mae']:.4f} | "
                        f"{trial['normalized_gini_positive']:.4f} | "
                        f"{trial['spearman_positive']:.4f} | "
                        f"{'n/a' if ratio is None else f'{ratio:.3f}'} | {trial['epochs']} | "
                        f"{'yes' if trial is chosen else ''} |"
                    )
            lines.append("")
    command = "python benchmarks/tune.py " + " ".join(argv or sys.argv[1:])
    text = "\n".join(
        [
            "# Equal-budget tuning on the validation split",
            "",
            f"Command: `{command.strip()}` (`make bench-tune`). CPU: {cpu_model()}.",
            "",
            f"Every head gets the same {len(rates)} trials (learning rates "
            f"{', '.join(f'{r:g}' for r in rates)}), seed {args.seed}, width {args.units}, "
            f"batch {args.batch_size}, at most {args.epochs} epochs (patience "
            f"{args.patience}), scored on the validation split. Chosen: the highest "
            "Norm-Gini(+), ties to the lower MAE; `tuned.json` holds the choices for "
            "`quality.py --tuned`. The heads' own loss parameters (Huber's delta, RQ-Reg's "
            "loss weights) keep their defaults: the budget went to the learning rate.",
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
