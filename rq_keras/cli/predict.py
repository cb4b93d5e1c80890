"""`python predict.py`: flags -> `rq_keras.serving.predict.predict_files`.

Exit status: 0 written; 2 a bad flag, a missing or unreadable input or model,
a missing column, a bad row under `--on-bad-rows fail`, an output suffix that
is neither Parquet nor text, or an existing output without `--overwrite`
(each one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rq_keras.serving.predict import predict_files

__all__ = ["build_predict_parser", "predict_main"]


def _column_list(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",")]
    if not text.strip() or any(not c for c in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def build_predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python predict.py",
        description=(
            "Score files with a trained run (or its export): read them through the model's "
            "feature spec (no label needed), write the id columns and every model output, "
            "one row per input row, to --output (written to a temporary file, then renamed)."
        ),
    )
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-dir", metavar="DIR", help="a finished train.py --output-dir")
    model.add_argument(
        "--saved-model", metavar="DIR", help="an export.py version directory (BASE/N)"
    )
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="FILE",
        help="input files: .csv, .tsv, .txt/.dat, .parquet, .tfrecord[.gz]",
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="the output table: .parquet, .csv, .tsv or .txt/.dat",
    )
    p.add_argument(
        "--id-columns",
        type=_column_list,
        default=[],
        metavar="A,B",
        help="input columns copied to the output before the predictions (ids, say)",
    )
    p.add_argument("--batch-size", type=int, default=1024, help="rows per model call")
    p.add_argument(
        "--on-bad-rows",
        choices=("fail", "skip"),
        default="fail",
        help="a bad row stops the run (fail, naming file and row) or is dropped (skip)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1),
        default=1,
        help="1: progress and a final line on stderr",
    )
    return p


def predict_main(argv: Sequence[str] | None = None) -> int:
    """`python predict.py`: flags -> `predict_files`; returns the exit status."""
    args = build_predict_parser().parse_args(argv)
    from rq_keras.data.reports import MalformedDataError

    try:
        result = predict_files(
            args.input,
            args.output,
            model_dir=args.model_dir,
            saved_model=args.saved_model,
            id_columns=args.id_columns,
            batch_size=args.batch_size,
            on_bad_rows=args.on_bad_rows,
            overwrite=args.overwrite,
            verbose=args.verbose,
        )
    except (ValueError, OSError) as err:
        print(f"predict.py: error: {' '.join(str(err).splitlines())}", file=sys.stderr)
        if isinstance(err, MalformedDataError) and err.row is not None:
            print(
                "predict.py: to drop such rows instead (counted in the final line), pass "
                "--on-bad-rows skip",
                file=sys.stderr,
            )
        return 2
    summary = {
        "output": result.output,
        "rows_written": result.rows_written,
        "rows_skipped": result.rows_skipped,
        "seconds": round(result.seconds, 2),
    }
    print(json.dumps(summary))
    return 0
