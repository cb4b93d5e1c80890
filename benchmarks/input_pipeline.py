"""Benchmark: examples/s through the input pipeline, read to preprocessed features.

    python benchmarks/input_pipeline.py                    # 12.5M rows, 3 runs
    python benchmarks/input_pipeline.py --rows 1000000 --repeats 1

Data: the `synthetic` KuaiRec-like set (`rq_keras.datasets.synthetic`),
`--rows` rows over train/validation/test, generated once per format into
`--cache-dir` (default `out/bench/synthetic-ROWS/FORMAT/`) and reused while
its `summary.json` matches. The pipeline reads every file of the three
splits in order, so a full pass is `--rows` examples. The feature statistics
come from the first train file (500k rows), adapted once and cached in
`features.json`; their size does not change the cost per example.

Stages, each timed in a fresh child process (median of `--repeats` passes,
each pass a new iterator over the same dataset, after one warm-up pass over
`--warmup-rows` rows), `--batch-size` rows per batch:

* `raw`: the file reader and batching only, no conversion or parsing
  (`parquet`: pyarrow `iter_batches` of the columns `make_dataset` reads,
  in Python; `parquet-tfio`: tensorflow-io `from_parquet` with those
  columns, batched; `tfrecord`: `TFRecordDataset` records, batched);
* `read+parse`: `rq_keras.data.make_dataset(files, spec, parquet_reader=...)`,
  the batches in the model's input form (ids, padded lists, float numerics,
  the label);
* `full`: `make_dataset` then `FeaturePreprocessor.build_model()` applied in
  the pipeline, `ds.map(lambda x, y: (features(x), y), AUTOTUNE)`: lookups,
  embeddings, list pooling, log and normalization: the float32
  `(batch, output_dim)` the network consumes;
* `preprocess only`: the same preprocessing model mapped over 256 batches
  held in memory (`cache()`), repeated to `--preprocess-rows` rows: its cost
  without the reader.

Sources: `parquet` (the default reader, pyarrow through `read_chunks`),
`parquet-tfio` (the same files through `parquet_reader="tensorflow-io"`;
skipped when tensorflow-io is not installed) and `tfrecord`.

Every batch reaches Python (`for x, y in ds`). Besides wall-clock examples/s
each stage reports the CPU seconds the process used per 1M examples
(user + system, all threads): other jobs on a shared machine lower the
wall-clock rate but hardly the CPU cost, and `nproc / cpu_s_per_example` is
the rate the stage could reach with every core to itself. The load average
is recorded before and after each stage.

Writes `benchmarks/results/input_pipeline.md` (the command line at the top);
hand-written notes below the marker line in that file are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

from _machine import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
STAGES = ("raw", "read+parse", "full", "preprocess only")
# source -> (file format, make_dataset's parquet_reader)
SOURCES = {
    "parquet": ("parquet", "pyarrow"),
    "parquet-tfio": ("parquet", "tensorflow-io"),
    "tfrecord": ("tfrecord", "pyarrow"),
}
NOTES_MARKER = (
    "<!-- Hand-written notes below this line are kept when the benchmark rewrites the file. -->"
)
CACHED_BATCHES = 256
SEED = 0


# ------------------------------------------------------------------ helpers
def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def shown(path: str) -> str:
    """`path` relative to the repository when inside it."""
    rel = os.path.relpath(os.path.abspath(path), REPO)
    return path if rel.startswith("..") else rel


def data_dir(cache_dir: str, rows: int, fmt: str) -> str:
    return os.path.join(cache_dir, f"synthetic-{rows}", fmt)


def cached_summary(folder: str, rows: int, fmt: str) -> dict | None:
    """The summary of a complete cached data set, or None."""
    path = os.path.join(folder, "summary.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        summary = json.load(fh)
    if (summary.get("rows"), summary.get("format"), summary.get("seed")) != (rows, fmt, SEED):
        return None
    paths = [p for s in summary["splits"].values() for p in s["paths"]]
    return summary if all(os.path.isfile(p) for p in paths) else None


def all_files(summary: dict) -> list[str]:
    return [
        p for split in ("train", "validation", "test") for p in summary["splits"][split]["paths"]
    ]


# ------------------------------------------------------------------ children
def child_generate(folder: str, rows: int, fmt: str) -> dict:
    from rq_keras.datasets import synthetic

    start = time.perf_counter()
    summary = synthetic.make(None, folder, seed=SEED, fmt=fmt, rows=rows)
    seconds = time.perf_counter() - start
    size = sum(os.path.getsize(p) for p in all_files(summary))
    return {"seconds": seconds, "peak_rss_mib": peak_rss_mib(), "bytes": size}


def child_adapt(stats_path: str, train_file: str) -> dict:
    from rq_keras.datasets import synthetic
    from rq_keras.features.preprocessing import FeaturePreprocessor

    start = time.perf_counter()
    pre = FeaturePreprocessor(synthetic.SPEC).adapt([train_file])
    pre.save(stats_path)
    return {"seconds": time.perf_counter() - start, "rows": pre.report.rows_read}


class _ArrowBatches:
    """pyarrow record batches of the columns `make_dataset` reads (no conversion)."""

    def __init__(self, files, spec, batch_size):
        self.files, self.columns, self.batch_size = files, list(spec.columns), batch_size

    def __iter__(self):
        import pyarrow.parquet as pq

        for path in self.files:
            for batch in pq.ParquetFile(path).iter_batches(
                batch_size=self.batch_size, columns=self.columns
            ):
                yield {"y": batch}


def _raw_dataset(files, spec, source, batch_size):
    """The reader and batching of `make_dataset`, without conversion or parsing."""
    import tensorflow as tf

    from rq_keras.data.pipeline import tfio_columns

    if source == "parquet":
        return _ArrowBatches(files, spec, batch_size)
    if source == "tfrecord":
        parts = [tf.data.TFRecordDataset(p) for p in files]
    else:
        import tensorflow_io as tfio

        parts = [tfio.IODataset.from_parquet(p, columns=tfio_columns(p, spec, True)) for p in files]
    ds = parts[0]
    for other in parts[1:]:
        ds = ds.concatenate(other)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _count(ds, limit: int) -> int:
    n = 0
    for batch in ds:
        y = batch[1] if isinstance(batch, tuple) else batch
        y = next(iter(y.values())) if isinstance(y, dict) else y
        n += len(y)
        if limit and n >= limit:
            break
    return n


def child_stage(
    stage, source, folder, stats_path, batch_size, repeats, max_rows, warmup_rows, pre_rows
):
    import tensorflow as tf

    from rq_keras import data
    from rq_keras.datasets import synthetic
    from rq_keras.features.preprocessing import FeaturePreprocessor

    spec = synthetic.SPEC
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as fh:
        files = all_files(json.load(fh))
    features = FeaturePreprocessor.load(spec, stats_path).build_model()
    limit = max_rows
    if stage == "raw":
        ds = _raw_dataset(files, spec, source, batch_size)
    else:
        reader = SOURCES[source][1]
        ds = data.make_dataset(files, spec, batch_size=batch_size, parquet_reader=reader)
    if stage == "full":
        ds = ds.map(lambda x, y: (features(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.prefetch(tf.data.AUTOTUNE)
    if stage == "preprocess only":
        ds = ds.take(CACHED_BATCHES).cache()
        _count(ds, 0)  # fills the cache
        ds = ds.repeat().map(lambda x, y: (features(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.prefetch(tf.data.AUTOTUNE)
        limit = pre_rows
    load_before = os.getloadavg()[0]
    _count(ds, warmup_rows)
    runs = []
    for _ in range(repeats):
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        n = _count(ds, limit)
        seconds = time.perf_counter() - t0
        runs.append({"rows": n, "seconds": seconds, "cpu_s": cpu_seconds() - cpu0})
    return {
        "runs": runs,
        "peak_rss_mib": peak_rss_mib(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "output_dim": int(features.output_shape[-1]),
    }


def run_child(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _tfio_version() -> str | None:
    try:
        import tensorflow_io
    except ImportError:
        return None
    return tensorflow_io.__version__


# --------------------------------------------------------------------- main
def summarize(result: dict) -> dict:
    runs = result["runs"]
    rates = [r["rows"] / r["seconds"] for r in runs]
    cpu = [r["cpu_s"] / r["rows"] * 1e6 for r in runs]
    return {
        "rate": statistics.median(rates),
        "rate_min": min(rates),
        "rate_max": max(rates),
        "rows": runs[0]["rows"],
        "seconds": statistics.median(r["seconds"] for r in runs),
        "cpu_s_per_m": statistics.median(cpu),
        "rss": result["peak_rss_mib"],
        "load": (result["load_before"], result["load_after"]),
    }


def write_report(path: str, lines: list[str]) -> str:
    kept = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        if NOTES_MARKER in old:
            kept = old.split(NOTES_MARKER, 1)[1].lstrip("\n")
    text = "\n".join(lines) + "\n\n" + NOTES_MARKER + "\n\n" + kept
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text.rstrip("\n") + "\n")
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=12_500_000, help="rows over the three splits")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per stage (median)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--sources", default=",".join(SOURCES), help="of " + ", ".join(SOURCES))
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument(
        "--max-rows", type=int, default=0, help="rows per timed pass (0: the whole data set)"
    )
    p.add_argument("--warmup-rows", type=int, default=200_000)
    p.add_argument("--preprocess-rows", type=int, default=2_000_000)
    p.add_argument("--cache-dir", default=os.path.join(REPO, "out", "bench"))
    p.add_argument("--output", default=os.path.join(HERE, "results", "input_pipeline.md"))
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "generate":
            out = child_generate(rest[0], int(rest[1]), rest[2])
        elif kind == "adapt":
            out = child_adapt(rest[0], rest[1])
        else:
            out = child_stage(
                rest[0],
                rest[1],
                rest[2],
                rest[3],
                args.batch_size,
                args.repeats,
                args.max_rows,
                args.warmup_rows,
                args.preprocess_rows,
            )
        print(json.dumps(out))
        return 0

    sources = [f for f in args.sources.split(",") if f]
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(sources) - set(SOURCES)) + sorted(set(stages) - set(STAGES))
    if unknown:
        p.error(f"unknown source(s)/stage(s) {unknown}; sources {SOURCES}, stages {STAGES}")
    if "parquet-tfio" in sources and not _tfio_version():
        print("tensorflow-io is not installed: parquet-tfio skipped", flush=True)
        sources.remove("parquet-tfio")
    formats = sorted({SOURCES[s][0] for s in sources}, key=["parquet", "tfrecord"].index)

    generated = {}
    for fmt in formats:
        folder = data_dir(args.cache_dir, args.rows, fmt)
        if cached_summary(folder, args.rows, fmt) is None:
            print(f"generating {args.rows:,} rows of {fmt} into {folder} ...", flush=True)
            generated[fmt] = run_child("generate", folder, str(args.rows), fmt)
            print(f"  {generated[fmt]['seconds']:.0f} s", flush=True)
    first = data_dir(args.cache_dir, args.rows, formats[0])
    stats_path = os.path.join(os.path.dirname(first), "features.json")
    if not os.path.isfile(stats_path):
        train_file = cached_summary(first, args.rows, formats[0])["splits"]["train"]["paths"][0]
        adapted = run_child("adapt", stats_path, train_file)
        print(f"adapted on {train_file}: {adapted['rows']:,} rows", flush=True)

    results = {}
    for source in sources:
        folder = data_dir(args.cache_dir, args.rows, SOURCES[source][0])
        for stage in stages:
            raw = run_child(
                "stage",
                stage,
                source,
                folder,
                stats_path,
                "--batch-size",
                str(args.batch_size),
                "--repeats",
                str(args.repeats),
                "--max-rows",
                str(args.max_rows),
                "--warmup-rows",
                str(args.warmup_rows),
                "--preprocess-rows",
                str(args.preprocess_rows),
            )
            results[source, stage] = s = summarize(raw)
            s["output_dim"] = raw["output_dim"]
            print(
                f"{source:12s} {stage:16s} {s['rate']:>10,.0f} ex/s  "
                f"{s['cpu_s_per_m']:.1f} CPU-s/1M  load {s['load'][0]:.1f}->{s['load'][1]:.1f}",
                flush=True,
            )

    import numpy
    import pyarrow
    import tensorflow as tf

    cores = os.cpu_count() or 1
    command = "python benchmarks/input_pipeline.py" + "".join(
        f" {shlex.quote(a)}" for a in sys.argv[1:]
    )
    pass_rows = f"the first {args.max_rows:,} rows" if args.max_rows else "the whole data set"
    lines = [
        "# Input-pipeline benchmark",
        "",
        f"Command: `{command}`; median of {args.repeats} timed passes per row, each over "
        f"{pass_rows} (`preprocess only`: {args.preprocess_rows:,} rows), after a warm-up of "
        f"{args.warmup_rows:,} rows.",
        f"Machine: {cores} cores ({cpu_model()}), Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, tensorflow-io {_tfio_version() or 'not installed'}, "
        f"pyarrow {pyarrow.__version__}, numpy {numpy.__version__}.",
        "",
        f"Data: `synthetic`, {args.rows:,} rows (train/validation/test files read in order), "
        f"batches of {args.batch_size}; generated into `{shown(args.cache_dir)}`.",
        "Preprocessing: `FeaturePreprocessor.build_model()` of the synthetic spec (6 lookups + "
        "embeddings of 64, a pooled 4-id list, 3 log-normalized numerics), output "
        f"`(batch, {next(iter(results.values()))['output_dim'] if results else '?'})` float32.",
        "",
        "| source | stage | examples/s (median) | min - max | s per pass | CPU-s per 1M ex "
        f"| {cores}-core ceiling ex/s | peak RSS MiB | load avg before -> after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (source, stage), s in results.items():
        ceiling = cores / s["cpu_s_per_m"] * 1e6 if s["cpu_s_per_m"] else float("inf")
        lines.append(
            f"| {source} | {stage} | {s['rate']:,.0f} "
            f"| {s['rate_min']:,.0f} - {s['rate_max']:,.0f} "
            f"| {s['seconds']:.1f} | {s['cpu_s_per_m']:.1f} | {ceiling:,.0f} | {s['rss']:.0f} "
            f"| {s['load'][0]:.1f} -> {s['load'][1]:.1f} |"
        )
    for fmt, g in generated.items():
        lines.append("")
        lines.append(
            f"Generated {fmt} in this run: {g['seconds']:.0f} s, peak RSS {g['peak_rss_mib']:.0f} "
            f"MiB, {g['bytes'] / 2**20:,.0f} MiB on disk."
        )
    goal = 50_000
    lines += ["", f"Goal: at least {goal:,} examples/s through `full`."]
    for source in sources:
        full, parse = results.get((source, "full")), results.get((source, "read+parse"))
        if full:
            verdict = "met" if full["rate"] >= goal else "NOT met"
            line = f"- {source}: {full['rate']:,.0f} ex/s, {verdict}"
            if parse:
                share = parse["cpu_s_per_m"] / full["cpu_s_per_m"]
                line += f"; read+parse is {share:.0%} of the full path's CPU time"
            lines.append(line + ".")
    arrow, tfio = results.get(("parquet", "full")), results.get(("parquet-tfio", "full"))
    if arrow and tfio:
        ratio = arrow["rate"] / tfio["rate"]
        cpu_ratio = tfio["cpu_s_per_m"] / arrow["cpu_s_per_m"]
        verdict = "met" if ratio >= 1 else "NOT met"
        lines += [
            "",
            "Goal: the pyarrow Parquet reader at least as fast as tensorflow-io's through `full`: "
            f"{verdict}, {ratio:.2f}x the examples/s ({cpu_ratio:.2f}x less CPU per example).",
        ]
    write_report(args.output, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
