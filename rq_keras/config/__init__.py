"""Every configuration of rq_keras, importable without TensorFlow.

* `configs`: the frozen dataclasses `ModelConfig`, `QuantizerConfig` and
  `TrainConfig`, the choices their fields take, `config_from_dict` and
  `load_config`;
* `choices`: the decoder's choices (`CELLS`, `PREDICTIONS`,
  `REGRESSOR_INPUTS`) and `check_distribution_options`, read by the configs
  and by the decoder's shared math;
* `exports`: `lazy_namespace`, the packages' names loaded on first use;
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

from rq_keras.config.exports import lazy_namespace

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
_EXPORTS = {name: "rq_keras.config.configs" for name in __all__}
_EXPORTS.update(
    apply_overrides="rq_keras.config.loading",
    **{name: "rq_keras.config.choices" for name in ("CELLS", "PREDICTIONS", "REGRESSOR_INPUTS")},
)

__getattr__, __dir__ = lazy_namespace(globals(), _EXPORTS)
