"""Every command line of rq_keras, one module each.

* `train`: `python train.py` (flags -> `TrainConfig` -> `rq_keras.training.train`);
* `export`: `python export.py` (`rq_keras.export.export_run`);
* `predict`: `python predict.py` (`rq_keras.predict.predict_files`);
* `quantize`: `python -m rq_keras.quantize` (a codebook for one column);
* `datasets`: `python -m rq_keras.datasets` (a dataset's splits and spec);
* `serving_check`: `python -m rq_keras.serving_check` (rows served by the C++ loader).

`train.py`, `export.py` and `predict.py` at the top of the repository and the
`python -m` modules only call these. Each module's docstring gives its exit
statuses.
"""

from rq_keras.cli.export import build_export_parser, export_main
from rq_keras.cli.predict import build_predict_parser, predict_main
from rq_keras.cli.train import build_train_parser, format_metrics, parse_key_value, train_main

__all__ = [
    "build_export_parser",
    "build_predict_parser",
    "build_train_parser",
    "export_main",
    "format_metrics",
    "parse_key_value",
    "predict_main",
    "train_main",
]
