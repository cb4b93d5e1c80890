"""Train an RQ-Reg model: `python train.py --dataset cdnow --output-dir out/run`.

Flags -> `TrainConfig` -> `rq_keras.training.train`. See `--help`, and the
manual's docs/training.md.
"""

from __future__ import annotations

import os
import sys

# TensorFlow's C++ start-up chatter (CUDA plugins on a CPU host) off by default.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rq_keras.cli.train import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main())
