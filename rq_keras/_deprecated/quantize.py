"""Deprecated stub of `rq_keras.quantize` (rq_keras 0.2), removed in 0.4.

Its names moved: `rq_keras._deprecated.MOVED` gives where.
"""

import sys

from rq_keras._deprecated import module_getattr, warn_command

__getattr__ = module_getattr(__name__)

if __name__ == "__main__":
    from rq_keras.cli.quantize import main

    warn_command("rq_keras.quantize", "rq_keras.cli.quantize")
    sys.exit(main())
