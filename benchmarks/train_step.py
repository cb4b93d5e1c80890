"""Benchmark: examples/s and peak memory of one full RQ-Reg training step.

    python benchmarks/train_step.py            # or: make bench-train-step

The paper's configuration (one LSTM layer of 512 units, L=3, K=48, code
embedding D=512, feature embedding 64, LazyAdam 5e-4 (training's default),
all three loss terms, scheduled sampling on at p=0.5) on CIKM16-shaped
input: two small categorical features and two lists of 10 ids (query tokens
from a vocabulary of 9,778, items from 116,883), as
`rq_keras.datasets.cikm16` builds them. Seeded
synthetic batches are held in memory, so the figure is the bare training
step (the input pipeline is measured by `benchmarks/input_pipeline.py`).

For each batch size and dtype policy (`float32`, and `mixed_bfloat16`,
which pays on CPUs with AVX512_BF16), a fresh child process builds the model, runs
`--warmup` steps (tracing), then times `--repeats` blocks of `--steps` steps
inside one `model.fit` (the compiled train function; `_fit_timing`);
examples/s is the median over repeats, and the peak resident memory is the
child's. Prints a Markdown
table and writes it to `benchmarks/results/train_step.md`.
"""

from __future__ import annotations

import argparse
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
REPO = os.path.dirname(HERE)
TOKENS, ITEMS = 9_778, 116_883


def spec_dict() -> dict:
    return {
        "name": "cikm16_shaped",
        "label": {"name": "duration", "clip_min": 0},
        "embedding_dim": 64,
        "features": [
            {"name": "category", "kind": "categorical", "dtype": "int64"},
            {"name": "hour", "kind": "categorical", "dtype": "int64"},
            {"name": "tokens", "kind": "list", "dtype": "int64", "max_length": 10},
            {"name": "items", "kind": "list", "dtype": "int64", "max_length": 10},
        ],
    }


def paper_model(batch: int, precision: str = "float32", threads: int = 0):
    """(compiled model, repeating in-memory dataset) of the benchmark's step.

    Sets the dtype policy and thread pools, so call it first in a process.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # Keras 2 as tf.keras, before TF loads
    sys.path.insert(0, REPO)
    import tensorflow as tf
    import tf_keras as keras

    if precision != "float32":
        keras.mixed_precision.set_global_policy(precision)
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from rq_keras.config.configs import ModelConfig
    from rq_keras.training.optimizers import make_optimizer

    _, model, features, y = cikm16_model(batch * 8, ModelConfig(sampling_probability=0.5))
    ds = tf.data.Dataset.from_tensor_slices((features, y)).batch(batch).cache().repeat()
    model.compile(optimizer=make_optimizer("lazy_adam", 5e-4))  # training's default
    return model, ds


def cikm16_model(n: int, config):
    """(spec, built model, `n` seeded raw feature rows, their labels): the
    paper's model (`config`) on CIKM16-shaped input, vocabularies of the
    CIKM16 sizes, the codebook fitted on the `n` synthetic labels."""
    import numpy as np

    from rq_keras.features import FeatureSpec
    from rq_keras.features.preprocessing import FeaturePreprocessor
    from rq_keras.models.rq_reg import build_model
    from rq_keras.quantizer.residual import ResidualQuantizer

    spec = FeatureSpec.from_dict(spec_dict())
    rng = np.random.default_rng(0)
    # Vocabularies of the CIKM16 sizes (learned from a "training split").
    stats = {
        "format": "rq_keras.feature_statistics",
        "format_version": 1,
        "rows": 0,
        "features": {
            "category": {"vocabulary": list(range(1, 1001))},
            "hour": {"vocabulary": list(range(24))},
            "tokens": {"vocabulary": list(range(TOKENS))},
            "items": {"vocabulary": list(range(ITEMS))},
        },
    }
    pre = FeaturePreprocessor(spec, stats)
    y = rng.lognormal(3.0, 1.2, n) * (rng.random(n) > 0.1)
    quantizer = ResidualQuantizer(num_levels=3, codebook_size=48, clip_min=0).fit(y)

    def lists(vocab):
        ids = rng.integers(0, vocab, (n, 10))
        lengths = rng.integers(1, 11, n)
        ids[np.arange(10)[None, :] >= lengths[:, None]] = -1
        return ids

    features = {
        "category": rng.integers(1, 1001, n),
        "hour": rng.integers(0, 24, n),
        "tokens": lists(TOKENS),
        "items": lists(ITEMS),
    }
    return spec, build_model(spec, pre, quantizer, config), features, y


def child(batch: int, steps: int, warmup: int, repeats: int, threads: int, precision: str) -> dict:
    import numpy as np

    model, ds = paper_model(batch, precision, threads)
    params = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    warmup_s = time.perf_counter() - start
    seconds, history = timed_blocks(model, ds, 0, steps, repeats)
    rates = [steps * batch / s for s in seconds]
    return {
        "batch": batch,
        "precision": precision,
        "examples_per_s": statistics.median(rates),
        "runs": [round(r, 1) for r in rates],
        "warmup_s": warmup_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "params": params,
        "loss": float(history.history["loss"][-1]),
    }


def run_child(args, batch: int, precision: str) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        str(batch),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
        "--precisions",
        precision,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed for batch {batch}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", default="256,1024")
    p.add_argument("--steps", type=int, default=40, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps (tracing) first")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="TF thread pools (0: TF default)")
    p.add_argument(
        "--precisions",
        default="float32,mixed_bfloat16",
        help="Keras dtype policies to compare (the CPU needs AVX512_BF16 for bf16 to pay)",
    )
    p.add_argument("--output", default=os.path.join(HERE, "results", "train_step.md"))
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        result = child(
            args.child, args.steps, args.warmup, args.repeats, args.threads, args.precisions
        )
        print(json.dumps(result))
        return 0
    rows = [
        run_child(args, int(b), precision)
        for b in args.batch_sizes.split(",")
        for precision in args.precisions.split(",")
    ]
    command = "python benchmarks/train_step.py " + " ".join(argv or sys.argv[1:])
    lines = [
        "# Training step throughput",
        "",
        f"Command: `{command.strip()}` (`make bench-train-step`).",
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU.",
        "",
        "Paper configuration (LSTM 512, L=3, K=48, D=512, feature embedding 64, LazyAdam 5e-4, "
        "L_gen + L_reg + 0.1 L_rnc, scheduled sampling at p=0.5) on CIKM16-shaped input "
        "(2 categorical features, 2 lists of 10 ids from vocabularies of 9,778 and 116,883); "
        f"batches in memory. Median of {args.repeats} blocks of {args.steps} steps timed inside "
        f"one `fit` after {args.warmup} warm-up steps, one fresh process per row, the rows "
        "run one after another in one invocation (so their ratios are side by side).",
        "",
        "| batch | precision | examples/s (median) | runs | peak RSS MiB | params | warm-up s |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']:,} | {r['precision']} | {r['examples_per_s']:,.0f} "
            f"| {', '.join(map(str, r['runs']))} "
            f"| {r['peak_rss_mib']:,.0f} | {r['params']:,} | {r['warmup_s']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_results(args.output, text)  # hand-written notes survive a re-run
    return 0


if __name__ == "__main__":
    sys.exit(main())
