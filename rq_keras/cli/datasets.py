"""python -m rq_keras.cli.datasets NAME --raw-dir DIR --out-dir DIR

Writes train/validation/test splits, `feature_spec.yaml` and `summary.json`
into DIR and prints the summary as JSON. `--write-specs DIR` instead writes
every dataset's feature spec to DIR/NAME.yaml (how `feature_specs/` is made).
Exit status 2 with a message on stderr for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from rq_keras import datasets
from rq_keras.datasets._common import FORMATS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rq_keras.cli.datasets",
        description="Build a dataset's splits and feature spec from its raw files.",
    )
    p.add_argument("name", nargs="?", choices=sorted(datasets.DATASETS))
    p.add_argument("--raw-dir", help="folder (or file) holding the raw data")
    p.add_argument("--out-dir", help="where the splits, spec and summary go")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--format", default="parquet", choices=sorted(FORMATS))
    p.add_argument("--rows", type=int, help="synthetic: rows to generate")
    p.add_argument("--write-specs", metavar="DIR", help="write every dataset's spec to DIR")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.write_specs:
            os.makedirs(args.write_specs, exist_ok=True)
            for name in sorted(datasets.DATASETS):
                path = os.path.join(args.write_specs, f"{name}.yaml")
                datasets.get(name).INFO.spec.save(path)
                print(path)
            return 0
        if not args.name or not args.out_dir:
            print("error: NAME and --out-dir are needed (or --write-specs DIR)", file=sys.stderr)
            return 2
        options = {} if args.rows is None else {"rows": args.rows}
        summary = datasets.make(
            args.name, args.raw_dir, args.out_dir, seed=args.seed, fmt=args.format, **options
        )
    except (OSError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
