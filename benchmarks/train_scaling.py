"""Benchmark: end-to-end training throughput against the bare training step.

    python benchmarks/train_scaling.py          # or: make bench-train-scaling

Synthetic KuaiRec-like data (`rq_keras.datasets.synthetic`, Parquet) and the
paper's model (LSTM 512, L=3, K=48, D=512, all three losses, scheduled
sampling on) at a global batch of 1,024. Three kinds of child process, each
fresh:

* `bare`: the training step alone. The first `8 x batch` training rows are
  read once and held in memory (cached, repeated), and one `model.fit` runs
  on them with only the epoch timer as callback: the model benchmark's
  figure, on this data.
* `loop`: `rq_keras.training.train`, what `train.py` runs: the Parquet
  input pipeline (shuffle, parse, batch, prefetch) and the Keras loop with
  every callback (scheduled sampling, NaN stop, history, TensorBoard,
  BackupAndRestore), no validation, under TF's default strategy.
* `loop_mirrored`: the same under MirroredStrategy on two logical CPU devices
  (the two replicas share this machine's cores: a check that the distributed
  path works and what it costs, not a speed-up).

Each loop run trains `--epochs` epochs of `--steps` steps; its rate is the
median of the epochs after the first (which traces). The kinds run one after
another in each of `--rounds` rounds, so each round's ratios are side by side;
the table reports medians over rounds. Goal (issue 5): `loop` keeps at least
80% of `bare`. Writes `benchmarks/results/train_scaling.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

from _machine import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KINDS = ("bare", "loop", "loop_mirrored")
NOTES_MARKER = (
    "<!-- Hand-written notes below this line are kept when the benchmark rewrites the file. -->"
)


def child(kind: str, data_dir: str, batch: int, steps: int, epochs: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    sys.path.insert(0, REPO)
    import tensorflow as tf

    if kind == "loop_mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )

    from rq_keras.config import config_from_dict
    from rq_keras.training import train

    train_files = sorted(
        os.path.join(data_dir, f) for f in os.listdir(data_dir) if f.startswith("train")
    )
    spec = os.path.join(data_dir, "feature_spec.yaml")
    config = config_from_dict(
        {
            "train_files": train_files,
            "feature_spec": spec,
            "epochs": epochs,
            "batch_size": batch,
            "steps_per_epoch": steps,
            "model": {"sampling_probability": 0.5},
        }
    )
    out = tempfile.mkdtemp(prefix="rq_bench_run_")
    if kind == "bare":
        import numpy as np

        from rq_keras.data import make_dataset, read_column
        from rq_keras.features import FeatureSpec
        from rq_keras.features.preprocessing import FeaturePreprocessor
        from rq_keras.models.rq_reg import build_model
        from rq_keras.quantizer.residual import ResidualQuantizer
        from rq_keras.training.callbacks import EpochTimer
        from rq_keras.training.optimizers import make_optimizer

        spec_obj = FeatureSpec.load(spec)
        pre = FeaturePreprocessor(spec_obj).adapt(train_files)
        y = np.concatenate([read_column(f, spec_obj.label.name) for f in train_files])
        quantizer = ResidualQuantizer(num_levels=3, codebook_size=48, clip_min=0).fit(y)
        ds = make_dataset(train_files[0], spec_obj, batch_size=batch).take(8).cache().repeat()
        model = build_model(spec_obj, pre, quantizer, config.model)
        model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate))
        # One fit with the loop's epoch timer: both kinds time the same span.
        timer = EpochTimer()
        model.fit(ds, steps_per_epoch=steps, epochs=epochs, verbose=0, callbacks=[timer])
        seconds = timer.seconds
    else:
        strategy = None
        if kind == "loop_mirrored":
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        result = train(config, out, strategy=strategy, verbose=0)
        seconds = result.epoch_seconds
    rates = [steps * batch / s for s in seconds[1:]]
    return {
        "kind": kind,
        "examples_per_s": statistics.median(rates),
        "epochs": [round(r, 1) for r in rates],
        "first_epoch_s": round(seconds[0], 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def run_child(args, kind: str) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        kind,
        "--data-dir",
        args.data_dir,
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--epochs",
        str(args.epochs),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_results(path: str, text: str) -> None:
    notes = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER) + len(NOTES_MARKER) :]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n" + NOTES_MARKER + (notes or "\n"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=150_000, help="synthetic rows (70%% train)")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=15, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=4, help="epochs per run (the first traces)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--data-dir", help="existing synthetic splits (made if absent)")
    p.add_argument("--output", default=os.path.join(HERE, "results", "train_scaling.md"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.data_dir, args.batch, args.steps, args.epochs)))
        return 0

    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        p.error(f"unknown kinds {unknown}; kinds are {KINDS}")
    if not args.data_dir:
        args.data_dir = tempfile.mkdtemp(prefix="rq_bench_synthetic_")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "rq_keras.datasets",
                "synthetic",
                "--out-dir",
                args.data_dir,
                "--rows",
                str(args.rows),
            ],
            check=True,
            cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            stdout=subprocess.DEVNULL,
        )
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds:
            res = run_child(args, kind)
            results[kind].append(res)
            print(
                f"round {r + 1} {kind:<14} {res['examples_per_s']:8.0f} ex/s "
                f"(epochs {res['epochs']}, first {res['first_epoch_s']} s, "
                f"peak {res['peak_rss_mib']:.0f} MiB)",
                flush=True,
            )

    def ratio_runs(kind):
        return [
            a["examples_per_s"] / b["examples_per_s"]
            for a, b in zip(results[kind], results.get("bare", []))
        ]

    lines = [
        "# End-to-end training throughput",
        "",
        "Command: `python benchmarks/train_scaling.py` (`make bench-train-scaling`).",
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU.",
        "",
        f"Synthetic KuaiRec-like data, {args.rows:,} rows (70% train, Parquet); the paper's "
        f"model; global batch {args.batch:,}; {args.epochs} epochs of {args.steps} steps per "
        "run, rate = median of the epochs after the first; one fresh process per run; "
        f"{args.rounds} rounds, each running the kinds one after another.",
        "",
        "| kind | examples/s (median of rounds) | rounds | vs. bare (median of rounds) "
        "| peak RSS MiB |",
        "|---|---:|---|---:|---:|",
    ]
    for kind in kinds:
        rates = [r["examples_per_s"] for r in results[kind]]
        ratios = ratio_runs(kind) if "bare" in results and kind != "bare" else []
        lines.append(
            f"| {kind} | {statistics.median(rates):,.0f} | "
            f"{', '.join(f'{x:,.0f}' for x in rates)} | "
            f"{f'{statistics.median(ratios):.0%}' if ratios else '-'} | "
            f"{max(r['peak_rss_mib'] for r in results[kind]):,.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    write_results(args.output, text)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
