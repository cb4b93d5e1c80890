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

The names below are imported from `rq_keras.config`.
"""

from rq_keras.config.configs import (
    CELLS,
    HEAD_CHOICES,
    LABEL_SCALES,
    MONITORS,
    PREDICTIONS,
    REGRESSOR_INPUTS,
    SEEDED_KEYS,
    STRATEGIES,
    ModelConfig,
    QuantizerConfig,
    TrainConfig,
    config_from_dict,
    load_config,
)
from rq_keras.config.loading import apply_overrides

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
