"""Benchmark: the training step's FLOP rate against a float32 GEMM's, in one process.

    python benchmarks/roofline.py            # or: make bench-roofline

Absolute rates on a shared machine drift from run to run (repeats of the same
step cluster at two levels), so the figure is a ratio taken in one process:
the step's floating-point operations per second over those of a dense matrix
product of the LSTM step's shape (`[batch, D + units] x [D + units, 4 units]`),
timed alternately, `--repeats` times each.

Per row, in a fresh child process (the dtype policy is global):

1. the step's FLOPs per example, counted from its graph traced with static
   shapes (forward, loss and gradients; the optimizer's update on its own
   line), with the FLOP statistics TensorFlow registers per op type
   (`count_flops`; ops without one, such as gathers, count 0);
2. alternately, inside one `model.fit` (the compiled train function,
   in-memory batches; `_fit_timing.timed_blocks`): blocks of `--steps`
   training steps, each followed by `--gemms` products in one
   `tf.function`, run from a callback between steps; ratio = (step FLOPs x
   steps/s) / (GEMM FLOPs x GEMMs/s);
3. `RnC share`: Rank-N-Contrast's forward and backward alone (the variant
   the loss uses, on the step's shapes and the batch's labels), timed after
   the steps, as a share of the median step time: the largest part of the
   step that is not a matrix product.

Rows: the paper's sizes (`benchmarks/train_step.py`: LSTM 512, D 512, L=3,
K=48, CIKM16-shaped input) at batch 256 and 1,024, and the quality
benchmark's width (128) at batch 256; float32, and mixed_bfloat16 where the
CPU has AVX512_BF16. Prints a Markdown table and writes it to
`benchmarks/results/roofline.md`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from _fit_timing import timed_blocks
from _machine import cpu_model, write_results

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (ModelConfig overrides, batch); the paper's sizes are ModelConfig's defaults.
ROWS = {
    "paper-256": ({}, 256),
    "paper-1024": ({}, 1024),
    "width128-256": (
        {
            "units": 128,
            "code_embedding_dim": 128,
            "encoder_units": 128,
            "predictor_units": 128,
        },
        256,
    ),
}


def count_flops(fn, *specs) -> collections.Counter:
    """Float operations of `fn` traced with the fully static `specs`, by op
    type: the FLOP statistic TensorFlow registers for each op (a MatMul of
    `[m, k] x [k, n]` counts `2 m k n`), summed over the traced graph and the
    functions it calls. Ops without a statistic count 0."""
    import tensorflow as tf
    from tensorflow.python.framework import ops

    graph = tf.function(fn).get_concrete_function(*specs).graph
    counts: collections.Counter = collections.Counter()

    def walk(g):
        for op in g.get_operations():
            try:
                value = ops.get_stats_for_node_def(g, op.node_def, "flops").value
            except ValueError:  # a shape the statistic cannot read
                value = None
            if value:
                counts[op.type] += int(value)
        for function in getattr(g, "_functions", {}).values():
            inner = getattr(function, "graph", None)
            if inner is not None:
                walk(inner)

    walk(graph)
    return counts


def rnc_milliseconds(model, labels, temperature: float, repeats: int) -> float:
    """Median milliseconds of Rank-N-Contrast's forward and backward alone, on
    the step's shapes: the variant the loss picks (`factored_is_cheaper`) on
    seeded code probabilities or expected embeddings and the batch's labels."""
    import tensorflow as tf

    from rq_keras.losses.rnc import factored_is_cheaper, rank_n_contrast, rank_n_contrast_factored

    decoder = model.decoder
    table = decoder.code_embeddings
    batch, levels = int(labels.shape[0]), decoder.num_levels
    if factored_is_cheaper(table):
        shape = [batch, levels, decoder.vocabulary_size]
        x = tf.Variable(tf.nn.softmax(tf.random.stateless_normal(shape, seed=[5, 6]), axis=-1))

        def loss():
            return rank_n_contrast_factored(x, table, labels, temperature)

        sources = [x, table]
    else:
        shape = [batch, levels, decoder.embedding_dim]
        x = tf.Variable(tf.random.stateless_normal(shape, seed=[5, 6]))

        def loss():
            return rank_n_contrast(x, labels, temperature)

        sources = [x]

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(loss())
        return tape.gradient(value, sources)

    forward_backward()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            tf.nest.map_structure(lambda t: t.numpy(), forward_backward())
        times.append((time.perf_counter() - start) * 100.0)  # ms per call
    return statistics.median(times)


def has_avx512_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return "avx512_bf16" in f.read()
    except OSError:
        return False


def child(
    name: str, precision: str, optimizer: str, steps: int, gemms: int, repeats: int, warmup: int
) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras as keras
    from train_step import cikm16_model

    if precision != "float32":
        keras.mixed_precision.set_global_policy(precision)
    from rq_keras.config.configs import ModelConfig
    from rq_keras.training.optimizers import make_optimizer

    overrides, batch = ROWS[name]
    config = ModelConfig(sampling_probability=0.5, **overrides)
    _, model, features, y = cikm16_model(batch * 8, config)
    model.compile(optimizer=make_optimizer(optimizer, 5e-4))
    ds = tf.data.Dataset.from_tensor_slices((features, y)).batch(batch).cache().repeat()
    x, label = next(iter(ds))
    specs = (
        tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), x),
        tf.TensorSpec(label.shape, label.dtype),
    )

    def forward_backward(x, y):
        with tf.GradientTape() as tape:
            loss = model.compute_loss((x, y), training=True)
        return loss, tape.gradient(loss, model.trainable_variables)

    step_counts = count_flops(forward_backward, *specs)
    _, grads = tf.function(forward_backward)(x, label)
    model.optimizer.build(model.trainable_variables)

    def update(grads):
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))

    update_counts = count_flops(update, [tf.type_spec_from_value(g) for g in grads])
    step_flops = sum(step_counts.values()) / batch  # per example

    # The LSTM step's product: [batch, D + units] x [D + units, 4 units].
    inner = config.code_embedding_dim + config.units
    a = tf.random.stateless_normal([batch, inner], seed=[1, 2])
    b = tf.random.stateless_normal([inner, 4 * config.units], seed=[3, 4])
    gemm_flops = 2.0 * batch * inner * 4 * config.units

    @tf.function
    def products(a, b):
        total = tf.constant(0.0)
        for _ in tf.range(gemms):
            total += tf.reduce_sum(tf.matmul(a, b))
            a = a + 1e-7  # a new product each time, nothing to hoist
        return total

    products(a, b).numpy()
    gemm_rates = []

    def gemm_block():
        begin = time.perf_counter()
        products(a, b).numpy()
        gemm_rates.append(gemms * gemm_flops / (time.perf_counter() - begin))

    seconds, _ = timed_blocks(model, ds, warmup, steps, repeats, between=gemm_block)
    step_rates = [steps * batch * step_flops / s for s in seconds]
    rnc_ms = rnc_milliseconds(model, label, config.temperature, repeats)
    ratios = [s / g for s, g in zip(step_rates, gemm_rates)]
    return {
        "row": name,
        "batch": batch,
        "precision": precision,
        "optimizer": optimizer,
        "gemm_shape": f"{batch}x{inner} @ {inner}x{4 * config.units}",
        "step_mflop_per_example": step_flops / 1e6,
        "matmul_share": step_counts["MatMul"] / max(1, sum(step_counts.values())),
        "update_mflop_per_step": sum(update_counts.values()) / 1e6,
        "examples_per_s": statistics.median(r / step_flops for r in step_rates),
        "step_gflops": [round(r / 1e9, 1) for r in step_rates],
        "gemm_gflops": [round(r / 1e9, 1) for r in gemm_rates],
        "ratios": [round(r, 3) for r in ratios],
        "ratio": statistics.median(ratios),
        "rnc_share": rnc_ms / (1000.0 * statistics.median(seconds) / steps),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "top_ops": {k: round(v / batch / 1e6, 3) for k, v in step_counts.most_common(5)},
    }


def run_child(args, name: str, precision: str, optimizer: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--precision", precision]
    cmd += ["--optimizer", optimizer]
    for flag in ("steps", "gemms", "repeats", "warmup"):
        cmd += [f"--{flag}", str(getattr(args, flag))]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed for {name} {precision}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    lines = [
        "| row | batch | precision | optimizer | GEMM | step MFLOP/example (MatMul share) "
        "| update MFLOP/step | examples/s | ratio (median) | ratios | RnC share | peak RSS MiB |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['row']} | {r['batch']} | {r['precision']} | {r['optimizer']} "
            f"| {r['gemm_shape']} "
            f"| {r['step_mflop_per_example']:.2f} ({100 * r['matmul_share']:.1f}%) "
            f"| {r['update_mflop_per_step']:.1f} | {r['examples_per_s']:,.0f} "
            f"| {r['ratio']:.3f} | {', '.join(map(str, r['ratios']))} "
            f"| {100 * r['rnc_share']:.0f}% | {r['peak_rss_mib']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help="of " + ", ".join(ROWS))
    p.add_argument("--steps", type=int, default=20, help="timed training steps per repeat")
    p.add_argument("--gemms", type=int, default=50, help="timed products per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps (tracing) first")
    p.add_argument("--output", default=os.path.join(HERE, "results", "roofline.md"))
    p.add_argument(
        "--optimizers",
        default="lazy_adam",
        help="comma-separated, of lazy_adam (training's default), adam; one row each",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--optimizer", default="lazy_adam", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:  # one row, in this process
        row = (args.child, args.precision, args.optimizer)
        row += (args.steps, args.gemms, args.repeats, args.warmup)
        print(json.dumps(child(*row)))
        return 0
    precisions = ["float32"] + (["mixed_bfloat16"] if has_avx512_bf16() else [])
    results = []
    for name in args.rows.split(","):
        for precision in precisions:
            for optimizer in args.optimizers.split(","):
                results.append(run_child(args, name, precision, optimizer))
                print(json.dumps(results[-1]), flush=True)
    body = table(results)
    notes = (
        f"Machine: {cpu_model()}; AVX512_BF16: {'yes' if has_avx512_bf16() else 'no'} "
        f"(mixed_bfloat16 rows only where it is). {args.repeats} repeats of {args.steps} "
        f"steps and {args.gemms} products each, alternating. Top ops by FLOPs per example "
        "(MFLOP): "
        + "; ".join(
            f"{r['row']} {r['precision']} {r['optimizer']}: {r['top_ops']}" for r in results
        )
    )
    flags = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/roofline.py " + " ".join(flags)
    text = "\n".join(
        [
            "# Roofline: the training step's FLOP rate over a same-process GEMM's",
            "",
            f"Command: `{command.strip()}` (`make bench-roofline`).",
            "",
            body,
            "",
            notes,
            "",
        ]
    )
    print(text)
    write_results(args.output, text)  # hand-written notes survive a re-run
    return 0


if __name__ == "__main__":
    sys.exit(main())
