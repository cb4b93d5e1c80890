"""Export a trained run for TF Serving: `python export.py --model-dir DIR --export-base BASE`.

Writes `BASE/N/` (a SavedModel with the `serving_default` and `examples`
signatures and TF Serving warm-up requests) atomically, after checking it in
a fresh process without rq_keras. See `--help` and
docs/serving.md.
"""

from __future__ import annotations

import os
import sys

# TensorFlow's C++ start-up chatter (CUDA plugins on a CPU host) off by default.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rq_keras.cli.export import export_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(export_main())
