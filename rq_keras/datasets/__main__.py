"""`python -m rq_keras.datasets` of rq_keras 0.2: deprecated, removed in 0.4.

The command is `python -m rq_keras.cli.datasets`.
"""

import sys

from rq_keras._deprecated import warn_command
from rq_keras.cli.datasets import main

if __name__ == "__main__":
    warn_command("rq_keras.datasets", "rq_keras.cli.datasets")
    sys.exit(main())
