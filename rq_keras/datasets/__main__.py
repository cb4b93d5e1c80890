"""`python -m rq_keras.datasets`: the dataset command line (`rq_keras.cli.datasets`)."""

import sys

from rq_keras.cli.datasets import main

if __name__ == "__main__":
    sys.exit(main())
