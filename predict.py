"""Score files with a trained run: `python predict.py --model-dir RUN --input FILE --output OUT`.

Flags -> `rq_keras.serving.predict.predict_files`. See `--help`, and
docs/scoring.md.
"""

from __future__ import annotations

import os
import sys

# TensorFlow's C++ start-up chatter (CUDA plugins on a CPU host) off by default.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rq_keras.cli.predict import predict_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(predict_main())
