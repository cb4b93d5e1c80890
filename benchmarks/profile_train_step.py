"""Profile: where the time of one RQ-Reg training step goes (TensorBoard trace).

    python benchmarks/profile_train_step.py      # or: make bench-profile

The model and batches of `benchmarks/train_step.py` (the paper's
configuration on CIKM16-shaped input, all three loss terms, scheduled
sampling at p=0.5). After `--warmup` steps (tracing), the TensorFlow profiler
records `--steps` steps of `model.fit` into `--logdir` (open it with
`tensorboard --logdir DIR`, Profile tab). This script then reads the trace
(`*.xplane.pb`) and sums the time of every TensorFlow op executed on the
host, grouped by op type and by the part of the model the op belongs to (from
its name scope: features, encoder, decoder, loss, optimizer). Prints Markdown
tables and writes them to `benchmarks/results/train_step_profile.md`.

Op times are summed over the executor's threads, so on 2 cores they add up
to more than the wall time; the shares are shares of the summed op time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import time

from _machine import cpu_model, write_results
from train_step import paper_model

HERE = os.path.dirname(os.path.abspath(__file__))

# Name-scope fragments -> the part of the model they belong to, first match wins.
PARTS = (
    ("Adam", "optimizer (Adam update)"),
    ("gradient_tape", "backward pass"),
    ("gradients", "backward pass"),
    ("rq_reg_loss", "loss forward (code NLL, Huber terms, Rank-N-Contrast)"),
    ("label_encoder", "label encoder"),
    ("decoder", "decoder (LSTM steps, f_pred, f_reg)"),
    ("encoder", "encoder (f_enc)"),
    ("features", "features (lookups, embeddings)"),
)


def part_of(op_name: str) -> str:
    for fragment, part in PARTS:
        if fragment in op_name:
            return part
    return "other (metrics, gradient sums, input)"


def read_ops(logdir: str) -> tuple[dict, dict, int]:
    """(ms by op type, ms by part, op count) from the host plane of the trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    if not paths:
        raise RuntimeError(f"no *.xplane.pb under {logdir}: did the profiler record?")
    space = xplane_pb2.XSpace()
    with open(max(paths, key=os.path.getmtime), "rb") as fh:
        space.ParseFromString(fh.read())
    by_type: dict[str, float] = collections.defaultdict(float)
    by_part: dict[str, float] = collections.defaultdict(float)
    count = 0
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # TensorFlow op events are named "op_name:OpType" (oneDNN kernels
                # as "_Mkl..." types); the rest are framework events
                # ("ExecutorState::Process", "Iterator::...", allocations),
                # several of which enclose the op events.
                if ":" not in name or "::" in name:
                    continue
                op_name, _, op_type = name.rpartition(":")
                if not op_name or not op_type.lstrip("_")[:1].isupper() or " " in op_type:
                    continue
                if op_name == "EagerLocalExecute":  # the whole train function call
                    continue
                ms = event.duration_ps / 1e9
                by_type[op_type] += ms
                by_part[part_of(op_name)] += ms
                count += 1
    return dict(by_type), dict(by_part), count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10, help="profiled steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps (tracing) first")
    p.add_argument("--precision", default="float32")
    p.add_argument("--logdir", default=os.path.join("out", "profile", "train_step"))
    p.add_argument("--top", type=int, default=15, help="op types listed")
    p.add_argument("--output", default=os.path.join(HERE, "results", "train_step_profile.md"))
    args = p.parse_args(argv)
    model, ds = paper_model(args.batch, args.precision)
    import tensorflow as tf

    model.fit(ds, steps_per_epoch=args.warmup, epochs=1, verbose=0)
    tf.profiler.experimental.start(args.logdir)
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    by_type, by_part, count = read_ops(args.logdir)
    total = sum(by_type.values())
    command = "python benchmarks/profile_train_step.py " + " ".join(argv or sys.argv[1:])
    lines = [
        "# Where a training step's time goes",
        "",
        f"Command: `{command.strip()}` (`make bench-profile`); trace in `{args.logdir}` "
        "(`tensorboard --logdir` it, Profile tab).",
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU.",
        "",
        f"The step of `benchmarks/train_step.py` at batch {args.batch:,} ({args.precision}): "
        f"{args.steps} profiled steps took {wall:.2f} s of wall time "
        f"({args.steps * args.batch / wall:,.0f} examples/s while profiling), "
        f"{count:,} op executions, {total / 1000:.2f} s of op time summed over threads.",
        "",
        "## By part of the model",
        "",
        "| part | op time ms per step | share |",
        "|---|---:|---:|",
    ]
    for part, ms in sorted(by_part.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {part} | {ms / args.steps:,.1f} | {ms / total:.1%} |")
    lines += [
        "",
        f"## Top {args.top} op types",
        "",
        "| op type | op time ms per step | share |",
        "|---|---:|---:|",
    ]
    for op_type, ms in sorted(by_type.items(), key=lambda kv: -kv[1])[: args.top]:
        lines.append(f"| {op_type} | {ms / args.steps:,.1f} | {ms / total:.1%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_results(args.output, text)  # hand-written notes survive a re-run
    return 0


if __name__ == "__main__":
    sys.exit(main())
