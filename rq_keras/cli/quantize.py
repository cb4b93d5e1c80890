"""Command line: fit a residual-quantization codebook on one column of a file.

    python -m rq_keras.cli.quantize --input FILE --column NAME \
        --levels 3 --codebook-size 48 --output codebook.json

Reads CSV/TSV/whitespace text, Parquet or `.npy`; writes the codebook JSON, its
report (`<output stem>.report.json`) and plot (`<output stem>.png`) next to it;
prints a per-level table and, as its last line, a one-line JSON summary.
Exit status 2 with a message on stderr for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from rq_keras.data.readers import read_column
from rq_keras.features.labels import as_label_array
from rq_keras.quantizer.residual import INITS, METHODS, ResidualQuantizer


def _codebook_sizes(text: str) -> int | list[int]:
    parts = [p for p in text.split(",") if p.strip()]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an int or a comma list of ints, got {text!r}"
        ) from None
    if not sizes:
        raise argparse.ArgumentTypeError("empty --codebook-size")
    return sizes[0] if len(sizes) == 1 else sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rq_keras.cli.quantize",
        description="Fit an RQ K-means codebook (RQ-Reg, Algorithm 1) on one column.",
    )
    p.add_argument("--input", required=True, help=".csv, .tsv, .txt/.dat, .parquet or .npy")
    p.add_argument("--column", help="label column (ignored for .npy)")
    p.add_argument("--weight-column", help="optional sample-weight column (text/Parquet)")
    p.add_argument(
        "--delimiter",
        default="auto",
        help="text delimiter; 'auto' picks it from the suffix, 'whitespace' for runs of blanks",
    )
    p.add_argument("--levels", type=int, default=3, help="L, codes per value (default 3)")
    p.add_argument(
        "--codebook-size",
        type=_codebook_sizes,
        default=48,
        help="K per level: an int or a comma list, one per level (default 48)",
    )
    p.add_argument(
        "--method",
        default="kmeans",
        help=f"one of {METHODS}, or a comma list, one per level (default kmeans)",
    )
    p.add_argument("--clip-min", type=float, default=None)
    p.add_argument("--clip-max", type=float, default=None)
    p.add_argument(
        "--zero-threshold",
        type=float,
        default=None,
        help="give residuals below this in absolute value the zero code (authors' code: 0.005)",
    )
    p.add_argument("--init", choices=INITS, default="optimal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help="codebook JSON path")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    return p


def run(args: argparse.Namespace) -> dict:
    """Fits, writes the codebook, report and plot; returns the summary."""
    delimiter = None if args.delimiter == "whitespace" else args.delimiter
    raw = read_column(args.input, args.column, delimiter)
    y = as_label_array(raw, name=f"column {args.column!r}" if args.column else "values")
    weights = None
    if args.weight_column:
        weights = as_label_array(
            read_column(args.input, args.weight_column, delimiter),
            name=f"column {args.weight_column!r}",
        )
    methods = args.method.split(",")
    quantizer = ResidualQuantizer(
        num_levels=args.levels,
        codebook_size=args.codebook_size,
        method=methods[0] if len(methods) == 1 else methods,
        clip_min=args.clip_min,
        clip_max=args.clip_max,
        zero_threshold=args.zero_threshold,
        init=args.init,
        seed=args.seed,
    )
    start = time.perf_counter()
    quantizer.fit(y, sample_weight=weights)
    fit_seconds = time.perf_counter() - start

    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(args.output)[0]
    quantizer.save(args.output)
    report = quantizer.report(y)
    report_path = f"{stem}.report.json"
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    plot_path = None
    if not args.no_plot:
        plot_path = f"{stem}.png"
        quantizer.plot(y, plot_path, report=report)
    return {
        "n": report["n"],
        "levels": quantizer.num_levels,
        "codebook_sizes": quantizer.fitted_codebook_sizes,
        "fit_seconds": round(fit_seconds, 4),
        "reconstruction_mae": report["reconstruction_mae"],
        "max_abs_error": report["max_abs_error"],
        "relative_error": report["relative_error"],
        "codebook": args.output,
        "report": report_path,
        "plot": plot_path,
        "_levels": report["levels"],
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    levels = summary.pop("_levels")
    zero = args.zero_threshold is not None
    print(
        f"{'level':>5} {'method':>9} {'K':>4} {'codes used':>10}"
        + (f" {'zero rows':>10}" if zero else "")
        + f" {'MAE':>12} {'max |err|':>12}"
    )
    for entry in levels:
        print(
            f"{entry['level'] + 1:>5} {entry['method']:>9} {entry['codebook_size']:>4} "
            f"{entry['codes_used']:>10}"
            + (f" {entry['zero_rows']:>10}" if zero else "")
            + f" {entry['mae']:>12.6g} {entry['max_abs_error']:>12.6g}"
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
