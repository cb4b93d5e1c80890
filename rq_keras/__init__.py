"""rq_keras: RQ-Reg, residual-quantization sequence regression, for TF/Keras.

`import rq_keras` changes nothing in the process: it sets no environment
variable and imports neither TensorFlow nor Keras. The names below load on
first use, and the numpy parts (the quantizer, the feature spec, the configs)
never load TensorFlow. The head, its layers, losses and training are Keras 2
(`tf_keras`, on TensorFlow Recommenders): the first of them used before
TensorFlow loads selects Keras 2 for `tf.keras` (`TF_USE_LEGACY_KERAS=1`)
unless the process chose already; used where `tf.keras` is already Keras 3,
they raise `KerasVersionError`, saying what to do (`rq_keras.config.keras_version`).

    import rq_keras
    rq_keras.train(rq_keras.TrainConfig(dataset="cdnow"), "out/cdnow")
"""

import os

from rq_keras.config.exports import lazy_namespace

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
    "KerasVersionError": "rq_keras.config.keras_version",
}

__all__ = [*sorted(_EXPORTS), "__version__"]

__getattr__, __dir__ = lazy_namespace(globals(), _EXPORTS, deprecated=True)
