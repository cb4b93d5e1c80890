"""The heads and the trainable models (TensorFlow Recommenders, Keras 2).

A head is the part of a model between the features tower and the
prediction, with its objective: a TFRS task that takes the tower's output.

* `rq_reg`: `RQRegTask`, the RQ-Reg head (in-graph label encoder, f_enc, the
  RQ decoder, Eq. 16): the one place where a `ModelConfig` and a codebook
  become the head; `HeadTask`, what every head shares;
* `baselines`: `BaselineTask`, the baseline heads (MSE, log-MSE, Huber,
  ZILN) on the same encoder;
* `ranking_model`: `RankingModel`, a `tfrs.Model` of a features tower and a
  head, and `build_model` / `build_baseline_model`, which assemble one from a
  feature spec.
"""

from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.models")  # before TensorFlow loads

from rq_keras.layers import register_keras2_layers  # noqa: E402

# A saved model names the layers it holds: register them all before any loads.
register_keras2_layers()
