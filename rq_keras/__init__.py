"""rq_keras: RQ-Reg, residual-quantization sequence regression, for TF/Keras.

Importing the package selects the Keras 2 API (`tf_keras`) for TensorFlow by
setting `TF_USE_LEGACY_KERAS=1` before TensorFlow is first imported, so that
`tf.keras`, `tf_keras` and TensorFlow Recommenders all agree. The names below
load on first use: `import rq_keras` imports neither TensorFlow nor Keras,
and the numpy parts (the quantizer, the feature spec, the configs) never do.

    import rq_keras
    rq_keras.train(rq_keras.TrainConfig(dataset="cdnow"), "out/cdnow")
"""

import importlib
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

__version__ = "0.2.0"

# name -> the module that defines it.
_EXPORTS = {
    "ResidualQuantizer": "rq_keras.quantization",
    "FeatureSpec": "rq_keras.features",
    "ModelConfig": "rq_keras.config",
    "TrainConfig": "rq_keras.config",
    "QuantizerConfig": "rq_keras.config",
    "load_config": "rq_keras.config",
    "train": "rq_keras.training",
    "FeaturePreprocessor": "rq_keras.preprocessing",
    "ResidualCodeEncoder": "rq_keras.layers.code_encoder",
    "RQRegTask": "rq_keras.task",
    "BaselineTask": "rq_keras.heads",
    "RQRegModel": "rq_keras.model",
    "build_model": "rq_keras.model",
    "build_head_model": "rq_keras.heads",
    "make_dataset": "rq_keras.data",
    "export_run": "rq_keras.export",
    "predict_files": "rq_keras.predict",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rq_keras' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup skips __getattr__
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})
