"""`python -m rq_keras.quantize`: the codebook command line (`rq_keras.cli.quantize`)."""

import sys

from rq_keras.cli.quantize import build_parser, main, run

__all__ = ["build_parser", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
