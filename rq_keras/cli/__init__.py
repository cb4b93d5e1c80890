"""Every command line of rq_keras, one module each.

* `train`: `python train.py` (flags -> `TrainConfig` -> `rq_keras.training.train`);
* `export`: `python export.py` (`rq_keras.serving.export.export_run`);
* `predict`: `python predict.py` (`rq_keras.serving.predict.predict_files`);
* `quantize`: `python -m rq_keras.cli.quantize` (a codebook for one column);
* `datasets`: `python -m rq_keras.cli.datasets` (a dataset's splits and spec);
* `serving_check`: `python -m rq_keras.cli.serving_check` (rows served by the
  C++ loader).

`train.py`, `export.py` and `predict.py` at the top of the repository only
call these. Each module's docstring gives its exit statuses.

A command line is a process of its own: it selects Keras 2 for `tf.keras`
(`TF_USE_LEGACY_KERAS=1`, unless the environment chose already) before
anything loads TensorFlow.
"""

from rq_keras.config.keras_version import prefer_keras2

prefer_keras2()


def __getattr__(name):
    """A name this package had in rq_keras 0.2 (it warns), or AttributeError."""
    from rq_keras._deprecated import module_getattr

    return module_getattr(__name__, stacklevel=3)(name)
