"""Benchmark: the RQ-Reg head's CDNOW test figures through Keras 2 and Keras 3.

    python benchmarks/keras_versions.py            # or: make bench-keras-versions

The same model two ways, 3 seeds each, each cell a fresh process:

* Keras 2: `train.py --dataset cdnow --epochs 20 --seed S` (the demo's run:
  the spec's tower, `RQRegTask`, LazyAdam, scheduled sampling, early
  stopping on `val_gen`);
* Keras 3: `examples/keras_rs_cdnow.py --tower features --epochs 20 --seed S
  --devices 1`: the spec's Keras 3 tower (`build_keras3_model`) under
  `rq_keras.layers.keras3.RQRegHead` in an `RQRegRanker`, with the same
  `TrainConfig` (codebook, widths, batch, learning rate, schedule, early
  stopping), Keras 3's Adam (LazyAdam and Adam train CDNOW to the same
  figures: `results/optimizer_quality.md`).

The question (issue 30): are the test figures the same within the seeds'
spread? A cell whose directory holds its result is read, not run again
(`--fresh` runs all again). Prints a Markdown table and writes it to
`benchmarks/results/keras_versions.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _machine import cpu_model, write_results
from _seed_table import seed_table

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VERSIONS = ("keras2", "keras3")

# (label, key of the served prediction's test figures, format, offset: the
# total's ratio is shown as its excess)
FIGURES = (
    ("MAE", "mae", "{:.3f}", 0.0),
    ("Norm-Gini", "normalized_gini", "{:.4f}", 0.0),
    ("Norm-Gini(+)", "normalized_gini_positive", "{:.4f}", 0.0),
    ("Spearman(+)", "spearman_positive", "{:.4f}", 0.0),
    ("total vs label", "mean_ratio", "{:+.1%}", -1.0),
)


def _command(version: str, out: str, seed: int, epochs: int) -> list[str]:
    if version == "keras2":
        cmd = [sys.executable, os.path.join(REPO, "train.py"), "--dataset", "cdnow"]
        return cmd + ["--output-dir", out, "--epochs", str(epochs), "--seed", str(seed),
                      "--verbose", "0", "--overwrite"]  # fmt: skip
    cmd = [sys.executable, os.path.join(REPO, "examples", "keras_rs_cdnow.py")]
    return cmd + ["--output-dir", out, "--epochs", str(epochs), "--seed", str(seed),
                  "--tower", "features", "--devices", "1", "--verbose", "0"]  # fmt: skip


def _result_file(version: str, out: str) -> str:
    return os.path.join(out, "metrics.json" if version == "keras2" else "summary.json")


def run_cell(out: str, version: str, seed: int, epochs: int) -> dict:
    """Trains one cell unless its directory holds its result; its figures."""
    result_path = _result_file(version, out)
    if not os.path.exists(result_path):
        cmd = _command(version, out, seed, epochs)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        env.pop("TF_USE_LEGACY_KERAS", None)  # each command line chooses its Keras
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
        print(f"{version} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    with open(result_path) as f:
        result = json.load(f)
    if version == "keras2":
        test = result["test"]
        codes = test["codes"]
        with open(os.path.join(out, "trained.json")) as f:
            trained = json.load(f)
        epochs_text = f"{trained['epochs_run']} ({trained['best_epoch']})"
        seconds = trained["train_seconds"]
    else:
        test = result["test"]["prediction"]
        codes = result["test"]["codes"]
        epochs_text = f"{result['epochs_run']} ({result['best_epoch']})"
        seconds = result["train_seconds"]
    row = {"Keras": version, "seed": seed}
    for label, key, _, offset in FIGURES:
        row[label] = test[key] + offset
    row["levels NLL - marginal"] = [c["nll"] - c["marginal_nll"] for c in codes]
    row["epochs (best)"] = epochs_text
    row["train s"] = seconds
    return row


def table(rows: list[dict]) -> str:
    return seed_table(rows, "Keras", VERSIONS, FIGURES, ("train s", "{:.0f}"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=20, help="at most (early stopping), as make demo")
    p.add_argument("--work-dir", default=os.path.join(REPO, "out", "bench", "keras_versions"))
    p.add_argument("--fresh", action="store_true", help="train every cell again")
    p.add_argument("--output", default=os.path.join(HERE, "results", "keras_versions.md"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:  # seed-major: a partial run has both versions per seed
        for version in VERSIONS:
            out = os.path.join(args.work_dir, f"{version}-seed{seed}")
            if args.fresh and os.path.exists(_result_file(version, out)):
                os.remove(_result_file(version, out))
            rows.append(run_cell(out, version, seed, args.epochs))
    rows.sort(key=lambda r: (VERSIONS.index(r["Keras"]), r["seed"]))
    flags = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python benchmarks/keras_versions.py", *flags])
    text = "\n".join(
        [
            "# The RQ-Reg head on CDNOW through Keras 2 and Keras 3",
            "",
            f"Command: `{command}` (`make bench-keras-versions`).",
            f"Machine: {cpu_model()}. Keras 2: `python train.py --dataset cdnow --epochs "
            f"{args.epochs} --seed S`; Keras 3: `python examples/keras_rs_cdnow.py --tower "
            f"features --epochs {args.epochs} --seed S --devices 1` (the same `TrainConfig`, "
            "the spec's tower in Keras 3, `RQRegRanker`, Adam). Each in a fresh process, "
            "early stopping on `val_gen` with the best epoch's weights; test figures of the "
            "served mean; `levels NLL - marginal`: each code level's test NLL minus its "
            "training marginal's (below 0: the level learned); `train s`: wall seconds of "
            "`fit` (validation and tracing included) in both.",
            "",
            table(rows),
            "",
        ]
    )
    print(text)
    write_results(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
