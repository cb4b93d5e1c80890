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

# The module paths of rq_keras 0.2 (`rq_keras.quantization`, ...) still import,
# from deprecation stubs (rq_keras/_deprecated), for one release.
__path__.append(os.path.join(os.path.dirname(__file__), "_deprecated"))

__version__ = "0.2.0"

# name -> the module that defines it.
_EXPORTS = {
    "ResidualQuantizer": "rq_keras.quantizer.residual",
    "FeatureSpec": "rq_keras.features.spec",
    "ModelConfig": "rq_keras.config.configs",
    "TrainConfig": "rq_keras.config.configs",
    "QuantizerConfig": "rq_keras.config.configs",
    "load_config": "rq_keras.config.configs",
    "train": "rq_keras.training",
    "FeaturePreprocessor": "rq_keras.features.preprocessing",
    "ResidualCodeEncoder": "rq_keras.layers.code_encoder",
    "RQRegTask": "rq_keras.models.rq_reg",
    "BaselineTask": "rq_keras.models.baselines",
    "RQRegModel": "rq_keras.models.rq_reg",
    "build_model": "rq_keras.models.rq_reg",
    "build_baseline_model": "rq_keras.models.baselines",
    "make_dataset": "rq_keras.data",
    "export_run": "rq_keras.serving.export",
    "predict_files": "rq_keras.serving.predict",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        from rq_keras._deprecated import module_getattr

        # A 0.2 name (it warns), or AttributeError.
        return module_getattr(__name__, stacklevel=3)(name)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup skips __getattr__
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})
