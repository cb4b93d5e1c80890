"""`python export.py`: `rq_keras.serving.export.export_run`.

Exit status: 0 written and checked; 1 the export failed its checks (nothing
was left under the export base); 2 a bad flag, a model directory that is not
a finished run, or an existing version; 4 another export writes into the
export base (the message names it), or a lock file left there by another host.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["build_export_parser", "export_main"]


def build_export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python export.py",
        description=(
            "Export a finished train.py run as a SavedModel for TF Serving: BASE/N/, written "
            "to a temporary directory, checked in a fresh process without rq_keras, renamed."
        ),
    )
    p.add_argument("--model-dir", required=True, help="a finished train.py --output-dir")
    p.add_argument("--export-base", required=True, help="the directory TF Serving watches")
    p.add_argument("--version", type=int, help="N (default: the next integer in BASE)")
    p.add_argument(
        "--check-files",
        nargs="+",
        metavar="FILE",
        help="held-out rows for the checks (default: the run's test split)",
    )
    p.add_argument("--check-rows", type=int, default=256, help="rows used by the checks")
    return p


def export_main(argv: Sequence[str] | None = None) -> int:
    args = build_export_parser().parse_args(argv)
    from rq_keras.atomic import DirectoryInUseError
    from rq_keras.serving.errors import ExportCheckError, ExportError
    from rq_keras.serving.export import export_run

    if args.check_rows < 1:
        print("export.py: error: --check-rows must be >= 1", file=sys.stderr)
        return 2
    try:
        result = export_run(
            args.model_dir,
            args.export_base,
            version=args.version,
            check_files=args.check_files,
            check_rows=args.check_rows,
        )
    except DirectoryInUseError as err:
        print(f"export.py: {err}", file=sys.stderr)
        return 4
    except ExportCheckError as err:
        print(f"export.py: check failed: {err}", file=sys.stderr)
        return 1
    except (ExportError, ValueError, FileNotFoundError, OSError) as err:
        print(f"export.py: error: {err}", file=sys.stderr)
        return 2
    checks = result.checks
    print(f"exported {result.export_dir} ({result.size_bytes / 2**20:.1f} MiB)")
    for key in sorted(checks):
        if key.endswith("_max_abs_diff") or key.endswith("_mismatched"):
            print(f"  check {key:<42} {checks[key]}")
    summary = {
        "export_dir": result.export_dir,
        "version": result.version,
        "size_bytes": result.size_bytes,
        "check_rows": checks.get("rows"),
        "seconds": round(result.seconds, 2),
    }
    print(json.dumps(summary))
    return 0
