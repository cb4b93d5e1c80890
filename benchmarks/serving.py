"""Benchmark: serving latency of the exported SavedModel, C++ loader and Python.

    python benchmarks/serving.py            # or: make bench-serving

Two models, each exported with `rq_keras.serving.export.export_model`:

* `cdnow`: the CDNOW model of `make demo` (the paper's model on CDNOW's 11
  features), trained for `--cdnow-epochs` epochs by `rq_keras.training.train`
  (latency does not depend on how well it is trained);
* `paper_cikm16`: the paper's model on CIKM16-shaped input (2 categorical
  features, 2 lists of 10 ids from vocabularies of 9,778 and 116,883, as
  `benchmarks/train_step.py` builds it), untrained.

For batch 1, 64 and 1,024, the `examples` signature (serialized `tf.Example`
in, so the parse is timed too) runs in `rq_keras/serving/cpp/serving_check.cc`
(TensorFlow's C++ `LoadSavedModel` + `Session::Run`, TF Serving's path, `--warmup` untimed runs
first) and in Python (`tf.saved_model.load(...).signatures["examples"]`, the
outputs read back with `.numpy()`). Each round times C++ then Python at one
batch size, one round after another; the figures are medians over the
`--rounds` rounds of each round's p50 and p99. Prints a Markdown table and
writes it to `benchmarks/results/serving.md`.

`--set KEY=VALUE` changes the cdnow model's config (e.g. K = 16 with level 1
branched: `--set quantizer.codebook_size=16 --set model.exact_levels=1`);
`--cell-steps` also exports the same weights with the decoder stepping the
Keras cell on every row and branch (the decoder before `FactoredLstmSteps`)
and times the two in turn within each round; `--deeper-branch` does the same
with the code tree stepping the levels below its atoms on every branch (what
the tree did before it read them from the decoder's pass), `--one-pass` with the
tree as one pass (`exact_levels` 0); `--no-cikm16` skips
`paper_cikm16`.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time

from _machine import cpu_model, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BATCHES = (1, 64, 1024)


def cdnow_model(work: str, epochs: int, overrides=()):
    """(model, spec, rows) of a CDNOW run trained with the paper's config
    (and the `--set` overrides)."""
    from rq_keras.config import TrainConfig, apply_overrides, config_from_dict
    from rq_keras.features import FeatureSpec
    from rq_keras.serving.export_checks import read_rows
    from rq_keras.training import train

    run = os.path.join(work, "cdnow_run")
    values = TrainConfig(dataset="cdnow", epochs=epochs, patience=None).to_dict()
    config = config_from_dict(apply_overrides(values, dict(overrides)))
    result = train(config, run, verbose=0)
    spec = FeatureSpec.load(os.path.join(run, "feature_spec.yaml"))
    rows = read_rows([os.path.join(run, "data", "test.parquet")], spec, max(BATCHES))
    return result.model, spec, rows


def cikm16_model():
    """(model, spec, rows): the paper's model on CIKM16-shaped input, untrained."""
    from train_step import cikm16_model as build

    from rq_keras.config.configs import ModelConfig

    spec, model, rows, _ = build(max(BATCHES), ModelConfig())
    return model, spec, rows


def python_latency(fn, examples, runs: int, warmup: int) -> list[float]:
    import tensorflow as tf

    batch = tf.constant(examples)
    for _ in range(warmup):
        fn(examples=batch)["prediction"].numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn(examples=batch)
        out["prediction"].numpy()
        out["codes"].numpy()
        out["level_values"].numpy()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _cell_steps(decoder):
    """The decoder stepping the Keras cell on every row and branch
    (`CellSteps`: the decoder before its factored LSTM)."""
    from rq_keras.layers.code_tree import CellSteps

    decoder._tree_steps = lambda table, rows: CellSteps(decoder.recurrent_cell, table)


def _code_tree_with(**options):
    """A patch serving the code tree with `options` of `RQDecoder.code_tree`."""

    def patch(decoder):
        decoder.code_tree = functools.partial(decoder.code_tree, **options)

    return patch


# --flag: (model name suffix, patch of the decoder, the instance attribute it sets)
VARIANTS = {
    "cell_steps": ("cell steps", _cell_steps, "_tree_steps"),
    # the levels below the atoms stepped on every branch (the tree before it
    # read them from the pass)
    "deeper_branch": ("level 3 per branch", _code_tree_with(deeper="branch"), "code_tree"),
    # the same weights with no branch
    "one_pass": ("one pass", _code_tree_with(exact_levels=0), "code_tree"),
}


def export_variants(name, model, spec, rows, base, variants=()) -> dict:
    """{model name: ExportResult}: the model as it exports, and per name in
    `variants` (keys of `VARIANTS`) the same weights exported with that
    patch of the decoder, so they are timed side by side."""
    import numpy as np

    from rq_keras.serving.export import export_model

    check = {k: np.asarray(v)[:256] for k, v in rows.items()}
    out = {name: export_model(model, spec, os.path.join(base, name), check_rows=check)}
    decoder = model.decoder
    for variant in variants:
        suffix, patch, attribute = VARIANTS[variant]
        patch(decoder)
        try:
            out[f"{name} ({suffix})"] = export_model(
                model, spec, os.path.join(base, f"{name}_{variant}"), check_rows=check
            )
        finally:
            delattr(decoder, attribute)
    return out


def measure(name, model, spec, rows, base, args, variants=()) -> list[dict]:
    """Rows of the table for `model` (and its `variants` exports): each
    batch size, `--rounds` rounds, each round timing every export in turn
    (C++ then Python), so ratios are measured side by side."""
    import numpy as np
    import tensorflow as tf

    from rq_keras.serving import cpp_check as serving_check
    from rq_keras.serving.signatures import serialize_examples

    exports = export_variants(name, model, spec, rows, base, variants)
    functions = {
        label: tf.saved_model.load(r.export_dir).signatures["examples"]
        for label, r in exports.items()
    }
    examples = serialize_examples(spec, rows)
    binary = serving_check.build()
    out = []
    for batch in BATCHES:
        runs = args.runs if batch < 1024 else max(10, args.runs // 10)
        keys = ("cpp_p50", "cpp_p99", "py_p50", "py_p99")
        per_round = {label: {k: [] for k in keys} for label in exports}
        for _ in range(args.rounds):
            for label, result in exports.items():
                cpp = serving_check.run(
                    result.export_dir,
                    "examples",
                    {"examples": np.array(examples[:batch], dtype=object)},
                    repeat=runs,
                    warmup=args.warmup,
                    binary=binary,
                ).latency_ms
                times = per_round[label]
                times["cpp_p50"].append(cpp["p50"])
                times["cpp_p99"].append(cpp["p99"])
                py = python_latency(functions[label], examples[:batch], runs, args.warmup)
                times["py_p50"].append(float(np.percentile(py, 50)))
                times["py_p99"].append(float(np.percentile(py, 99)))
        for label, times in per_round.items():
            row = {k: statistics.median(v) for k, v in times.items()}
            row.update(
                rounds_cpp_p50=times["cpp_p50"],
                model=label,
                batch=batch,
                runs=runs,
                size_mib=exports[label].size_bytes / 2**20,
                cpp_ex_s=batch / row["cpp_p50"] * 1000.0,
                py_ex_s=batch / row["py_p50"] * 1000.0,
            )
            print(
                f"{label} batch {batch}: C++ p50 {row['cpp_p50']:.2f} ms, "
                f"Python p50 {row['py_p50']:.2f} ms",
                flush=True,
            )
            out.append(row)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=200, help="timed calls per round (batch 1,024: /10)")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cdnow-epochs", type=int, default=1)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for the cdnow model (repeatable), e.g. model.exact_levels=1",
    )
    p.add_argument(
        "--cell-steps",
        action="store_true",
        help="also export the cdnow model with the decoder stepping the Keras cell on every "
        "row and branch (no factored LSTM) and time the two side by side",
    )
    p.add_argument(
        "--deeper-branch",
        action="store_true",
        help="also export the cdnow model with the code tree stepping the levels below its "
        "atoms on every branch (before they were read from the pass) and time it alongside",
    )
    p.add_argument(
        "--one-pass",
        action="store_true",
        help="also export the cdnow model with its code tree as one pass (exact_levels 0) "
        "and time it alongside",
    )
    p.add_argument(
        "--no-cikm16", action="store_true", help="time the cdnow model only (no paper_cikm16)"
    )
    p.add_argument("--output", default=os.path.join(HERE, "results", "serving.md"))
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, REPO)
    from rq_keras.config.keras_version import prefer_keras2

    prefer_keras2()  # Keras 2 as tf.keras, before TensorFlow loads
    from rq_keras.cli.train import parse_key_value

    overrides = [parse_key_value(item) for item in args.set]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rq_keras_bench_serving_") as work:
        model, spec, data = cdnow_model(work, args.cdnow_epochs, overrides)
        serving = os.path.join(work, "serving")
        variants = [v for v in VARIANTS if getattr(args, v)]
        rows += measure("cdnow", model, spec, data, serving, args, variants)
        if not args.no_cikm16:
            model, spec, data = cikm16_model()
            rows += measure("paper_cikm16", model, spec, data, serving, args)
    command = "python benchmarks/serving.py " + " ".join(argv or sys.argv[1:])
    lines = [
        "# Serving latency",
        "",
        f"Command: `{command.strip()}` (`make bench-serving`).",
        f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}), no GPU; TensorFlow's default "
        "thread pools on both sides.",
        "",
        "The `examples` signature (serialized `tf.Example` in: parsing, preprocessing, encoder, "
        "3 decoder steps). C++ = `rq_keras/serving/cpp/serving_check.cc` (`LoadSavedModel` + "
        "`Session::Run`, TF Serving's path, without its RPC layer); "
        "Python = `tf.saved_model.load` signatures. "
        f"{args.warmup} warm-up calls, then {args.runs} timed calls per round "
        f"({max(10, args.runs // 10)} at batch 1,024); medians over {args.rounds} rounds of each "
        "round's p50 / p99; examples/s = batch / p50. Models: `cdnow` = the paper's model on "
        f"CDNOW's features ({args.cdnow_epochs} epoch(s) of training"
        + (f"; {', '.join(f'{k}={v}' for k, v in overrides)}" if overrides else "")
        + ")"
        + (
            "; `cdnow (cell steps)` = the same weights with the decoder stepping the Keras "
            "cell on every row and branch (no factored LSTM)"
            if args.cell_steps
            else ""
        )
        + (
            "; `cdnow (level 3 per branch)` = the same weights with the code tree stepping "
            'the levels below its atoms on every branch (`code_tree(deeper="branch")`)'
            if args.deeper_branch
            else ""
        )
        + (
            "; `cdnow (one pass)` = the same weights with the code tree as one pass "
            "(`exact_levels` 0)"
            if args.one_pass
            else ""
        )
        + (
            ""
            if args.no_cikm16
            else "; `paper_cikm16` = the paper's model on CIKM16-shaped input (vocabularies "
            "of 9,778 and 116,883 ids), untrained"
        )
        + ".",
        "",
        "| model | SavedModel MiB | batch | C++ p50 ms | C++ p99 ms | C++ examples/s "
        "| Python p50 ms | Python p99 ms | Python examples/s | C++ p50 per round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size_mib']:.1f} | {r['batch']:,} | {r['cpp_p50']:.2f} "
            f"| {r['cpp_p99']:.2f} | {r['cpp_ex_s']:,.0f} | {r['py_p50']:.2f} "
            f"| {r['py_p99']:.2f} | {r['py_ex_s']:,.0f} "
            f"| {', '.join(f'{v:.2f}' for v in r['rounds_cpp_p50'])} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_results(args.output, text)  # hand-written notes survive a re-run
    return 0


if __name__ == "__main__":
    sys.exit(main())
