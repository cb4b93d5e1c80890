"""Benchmark: the test figures of LazyAdam and Keras' Adam on CDNOW, several seeds.

    python benchmarks/optimizer_quality.py            # or: make bench-optimizer

Runs `train.py --dataset cdnow --epochs 20 --seed S --optimizer O` (the
demo's run, `make demo`) for every optimizer and seed, each in a fresh
process, and compares the served mean's test figures: the question is
whether the default `lazy_adam` trains to the same model quality as `adam`
within the seeds' spread, and how much faster its epochs are. A cell whose
run directory already holds `metrics.json` is read, not run again, so an
interrupted benchmark goes on where it stopped (`--fresh` runs all again).
Prints a Markdown table and writes it to
`benchmarks/results/optimizer_quality.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _machine import cpu_model, write_results
from _seed_table import seed_table

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# (label, key of the served prediction's test figures in metrics.json, format,
# offset added to the value: the total's ratio is shown as its excess)
FIGURES = (
    ("MAE", "mae", "{:.3f}", 0.0),
    ("Norm-Gini", "normalized_gini", "{:.4f}", 0.0),
    ("Norm-Gini(+)", "normalized_gini_positive", "{:.4f}", 0.0),
    ("Spearman(+)", "spearman_positive", "{:.4f}", 0.0),
    ("total vs label", "mean_ratio", "{:+.1%}", -1.0),
)


def run_cell(out: str, optimizer: str, seed: int, epochs: int) -> dict:
    """Trains one cell unless its directory holds a finished run; its figures."""
    metrics_path = os.path.join(out, "metrics.json")
    if not os.path.exists(metrics_path):
        cmd = [sys.executable, os.path.join(REPO, "train.py"), "--dataset", "cdnow"]
        cmd += ["--output-dir", out, "--epochs", str(epochs), "--seed", str(seed)]
        cmd += ["--optimizer", optimizer, "--verbose", "0", "--overwrite"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
        print(f"{optimizer} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    with open(metrics_path) as f:
        test = json.load(f)["test"]
    with open(os.path.join(out, "trained.json")) as f:
        trained = json.load(f)
    row = {"optimizer": optimizer, "seed": seed}
    for label, key, _, offset in FIGURES:
        row[label] = test[key] + offset
    row["levels NLL - marginal"] = [c["nll"] - c["marginal_nll"] for c in test["codes"]]
    row["epochs (best)"] = f"{trained['epochs_run']} ({trained['best_epoch']})"
    # The first epoch includes tracing.
    row["s per epoch"] = statistics.median(trained["epoch_train_seconds"][1:] or [0.0])
    return row


def table(rows: list[dict], optimizers: list[str]) -> str:
    return seed_table(rows, "optimizer", optimizers, FIGURES, ("s per epoch", "{:.1f}"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--optimizers", default="lazy_adam,adam")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=20, help="at most (early stopping), as make demo")
    p.add_argument("--work-dir", default=os.path.join(REPO, "out", "bench", "optimizer_quality"))
    p.add_argument("--fresh", action="store_true", help="train every cell again")
    p.add_argument("--output", default=os.path.join(HERE, "results", "optimizer_quality.md"))
    args = p.parse_args(argv)
    optimizers = args.optimizers.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:  # seed-major: a partial run has both optimizers per seed
        for opt in optimizers:
            out = os.path.join(args.work_dir, f"{opt}-seed{seed}")
            if args.fresh and os.path.exists(os.path.join(out, "metrics.json")):
                os.remove(os.path.join(out, "metrics.json"))
            rows.append(run_cell(out, opt, seed, args.epochs))
    rows.sort(key=lambda r: (optimizers.index(r["optimizer"]), r["seed"]))
    flags = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python benchmarks/optimizer_quality.py", *flags])
    text = "\n".join(
        [
            "# LazyAdam against Keras' Adam on CDNOW",
            "",
            f"Command: `{command}` (`make bench-optimizer`).",
            f"Machine: {cpu_model()}. Each cell: `python train.py --dataset cdnow "
            f"--epochs {args.epochs} --seed S --optimizer O` in a fresh process (early "
            "stopping on `val_gen`); test figures of the served mean; `levels NLL - "
            "marginal`: each code level's test NLL minus its training marginal's (below "
            "0: the level learned); `s per epoch`: median training seconds of the epochs "
            "after the first.",
            "",
            table(rows, optimizers),
            "",
        ]
    )
    print(text)
    write_results(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
