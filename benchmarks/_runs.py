"""What the run-comparing scripts share (`crps_breakdown.py`,
`mean_factors.py`): repeated `--run NAME=DIR` (trained runs' directories,
the first the reference) and `--output`, reading each run's predictions
table, checking the runs scored the same rows, and writing their Markdown."""

from __future__ import annotations

import argparse
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a trained run's output directory (repeatable; the first is the reference)",
    )
    parser.add_argument("--output", help="also write the tables to this Markdown file")


def named_runs(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, str]:
    """`{NAME: DIR}` in the given order; a malformed or repeated NAME is a
    usage error."""
    runs: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--run takes NAME=DIR, got {item!r}")
        if name in runs:
            parser.error(f"--run {name!r} given twice")
        runs[name] = path
    return runs


def read_predictions(run_dir: str):
    """`(path, frame)` of a run's `predictions.parquet`; a directory without
    one is refused."""
    import pandas as pd

    path = os.path.join(run_dir, "predictions.parquet")
    if not os.path.isfile(path):
        raise SystemExit(f"{run_dir}: no predictions.parquet (a `train` output directory?)")
    return path, pd.read_parquet(path)


def check_same_rows(labels: dict) -> None:
    """Every run's labels (`{NAME: array}`, in order) equal the first's."""
    import numpy as np

    (first, y), *rest = labels.items()
    for name, other in rest:
        if not np.array_equal(other, y):
            raise SystemExit(f"{name}: scored other rows than {first} (labels differ)")


def emit(text: str, output: str | None) -> None:
    """Prints `text` and, with `output`, writes it there (keeping the
    hand-written notes below the marker, as every benchmark does)."""
    from _machine import write_results

    print(text)
    if output:
        write_results(output, text if text.endswith("\n") else text + "\n")


def compare_runs_main(argv, doc: str, script: str, title: str, build) -> int:
    """The `main` of a run-comparing script: `build({NAME: DIR})` makes the
    Markdown body, headed by `title` and the command that made it."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    runs = named_runs(parser, args.run)
    body = build(runs)
    command = f"python benchmarks/{script} " + " ".join(
        f"--run {n}={os.path.relpath(path, REPO)}" for n, path in runs.items()
    )
    emit(f"# {title}\n\nCommand: `{command}` (each run's directory).\n\n{body}\n", args.output)
    return 0
