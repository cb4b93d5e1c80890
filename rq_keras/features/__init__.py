"""The feature spec and what is built from it, up to the model's input vector.

* `spec`: `FeatureSpec`, `Feature`, `LabelSpec`: the YAML feature spec, the
  `tf.Example` parse spec and the Keras inputs it defines;
* `validation`: a spec's fields checked (`FeatureSpecError`);
* `labels`: labels and sample weights checked (`as_label_array`);
* `preprocessing`: `FeaturePreprocessor`, one pass of statistics over the
  training files, then Keras preprocessing layers and embeddings (TensorFlow;
  import it from `rq_keras.features.preprocessing` or as
  `rq_keras.FeaturePreprocessor`).

The names below are imported from `rq_keras.features` without TensorFlow.
"""

from rq_keras.features.labels import as_label_array, auto_zero_threshold
from rq_keras.features.spec import Feature, FeatureSpec, LabelSpec
from rq_keras.features.validation import FeatureSpecError

__all__ = [
    "Feature",
    "FeatureSpec",
    "FeatureSpecError",
    "LabelSpec",
    "as_label_array",
    "auto_zero_threshold",
]
