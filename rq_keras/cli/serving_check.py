"""`python -m rq_keras.cli.serving_check`: serve rows of a data file through
TensorFlow's C++ SavedModel loader (`rq_keras.serving.cpp_check`)."""

from __future__ import annotations

import json
import os
import pathlib
import sys

import numpy as np

from rq_keras.serving.cpp_check import ServingCheckError, run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """`python -m rq_keras.cli.serving_check`: serve rows of a file from C++.

    Reads rows (features and label) from a data file, writes them as
    `tf.Example`s, runs the `examples` signature of an exported version
    through the C++ loader and prints each row's label and prediction; the
    last line is a JSON summary. Exit 1 when serving fails, 2 on bad input.
    """
    import argparse

    # TensorFlow's C++ start-up chatter off (the rows are read with TensorFlow).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    p = argparse.ArgumentParser(
        prog="python -m rq_keras.cli.serving_check",
        description="Serve rows of a data file through TensorFlow's C++ SavedModel loader.",
    )
    p.add_argument("--export-base", required=True, help="export.py's --export-base")
    p.add_argument("--version", type=int, help="the version to serve (default: the latest)")
    p.add_argument("--rows-from", required=True, help="a data file with the spec's columns")
    p.add_argument("--rows", type=int, default=1, help="how many rows to serve")
    args = p.parse_args(argv)
    from rq_keras.data.readers import read_chunks
    from rq_keras.features.spec import FeatureSpec
    from rq_keras.serving.export import SPEC_FILE, latest_version
    from rq_keras.serving.signatures import serialize_examples

    try:
        if args.rows < 1:
            raise ValueError("--rows must be >= 1")
        base = pathlib.Path(args.export_base)
        version = args.version or latest_version(base)
        if version is None:
            raise FileNotFoundError(f"{base} holds no exported version (no integer directory)")
        export_dir = base / str(version)
        spec_path = export_dir / "assets.extra" / SPEC_FILE
        if not spec_path.is_file():
            raise FileNotFoundError(f"{spec_path} is missing: not an rq_keras export")
        spec = FeatureSpec.load(spec_path)
        chunk = next(read_chunks(args.rows_from, spec, chunk_rows=args.rows))
        examples = np.array(serialize_examples(spec, chunk), dtype=object)
    except (ValueError, FileNotFoundError, OSError, StopIteration) as err:
        print(f"serving_check: error: {err or 'no rows'}", file=sys.stderr)
        return 2
    try:
        result = run(export_dir, "examples", {"examples": examples}, repeat=1)
    except (ServingCheckError, RuntimeError) as err:
        print(f"serving_check: {err}", file=sys.stderr)
        return 1
    out = result.outputs
    labels = chunk[spec.label.name]
    print(f"served by the C++ SavedModel loader: {export_dir} (signature 'examples')")
    for i in range(len(examples)):
        codes = " ".join(str(c) for c in out["codes"][i])
        print(
            f"  row {i + 1}: prediction {out['prediction'][i]:.4f}  "
            f"label {labels[i]:.4f}  codes [{codes}]"
        )
    print(
        json.dumps(
            {
                "export_dir": os.fspath(export_dir),
                "rows": len(examples),
                "predictions": [float(v) for v in out["prediction"]],
                "labels": [float(v) for v in labels],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
