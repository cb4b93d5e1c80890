"""Every configuration of rq_keras, importable without TensorFlow.

* `configs`: the frozen dataclasses `ModelConfig`, `QuantizerConfig` and
  `TrainConfig`, the choices their fields take, `config_from_dict` and
  `load_config`;
* `loading`: a config's plain-value (YAML) form: type checks, `key=value`
  overrides (`apply_overrides`);
* `seeds`: the one table of named sub-seeds (`sub_seed`) that every seeded
  part of a model draws from its run seed;
* `keras_version`: which Keras `tf.keras` is in the process; the Keras 2
  parts choose it before TensorFlow loads or raise `KerasVersionError`.

The names below are imported from `rq_keras.config`, each loaded on first
use: importing the package (which `keras_version` needs, for the data
readers and the serving client too) loads none of its modules.
"""

import importlib

__all__ = [
    "CELLS",
    "HEAD_CHOICES",
    "LABEL_SCALES",
    "MONITORS",
    "PREDICTIONS",
    "REGRESSOR_INPUTS",
    "SEEDED_KEYS",
    "STRATEGIES",
    "ModelConfig",
    "QuantizerConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
]
# name -> the module that defines it.
_EXPORTS = {
    name: "rq_keras.config.loading" if name == "apply_overrides" else "rq_keras.config.configs"
    for name in __all__
}


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup skips __getattr__
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})
