"""The serving graph of an export: the `tf.Module` and its two signatures.

`build_serving_module` wraps a trained model in the `serving_default`
(one input per feature) and `examples` (serialized `tf.Example`s) functions
that `rq_keras.serving.export.export_model` saves, with the outputs they return
(`OUTPUTS`, in these dtypes). `feature_tensors` and `serialize_examples`
turn numpy model-input rows into the inputs of each signature. TensorFlow is
imported by the functions that need it, not when this module loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rq_keras.config.keras_version import import_tensorflow
from rq_keras.serving.errors import ExportError

__all__ = [
    "OUTPUTS",
    "build_serving_module",
    "feature_tensors",
    "serialize_examples",
]

OUTPUTS = (
    "prediction",
    "regressor",
    "mean",
    "median",
    "positive_mean",
    "quantiles",
    "exceedance",
    "level_values",
    "codes",
)
# Output dtypes. A baseline head exports `prediction` (ZILN also `positive_mean`,
# E[y | y > 0], and `quantiles`); an RQ-Reg model saved before the code tree has no distribution
# outputs.
_OUTPUT_DTYPES = {k: "float32" for k in OUTPUTS} | {"codes": "int32"}


# ------------------------------------------------------------ the graph
def build_serving_module(model, spec):
    """A `tf.Module` holding `model` with the two serving functions.

    Args:
        model: an `RQRegModel`, a `rq_keras.models.baselines.BaselineModel`, or any Keras
            model taking the spec's feature dict and returning a dict with
            `prediction` (and optionally `level_values` and `codes`).
        spec: its `FeatureSpec`.

    Returns:
        `(module, signatures)`: pass both to `tf.saved_model.save`.
    """
    tf = import_tensorflow()

    from rq_keras.data.tfrecord import default_non_finite, to_model_inputs

    features = spec.features
    input_signature = spec.input_signature()

    def outputs_of(inputs):
        out = model(inputs, training=False)
        if "prediction" not in out:
            raise ExportError("the model's outputs have no `prediction`")
        result = {"prediction": tf.cast(tf.reshape(out["prediction"], [-1]), tf.float32)}
        for key in OUTPUTS[1:]:
            if key in out:
                result[key] = tf.cast(out[key], _OUTPUT_DTYPES[key])
        return result

    def checked(inputs):
        """Shape checks that run in the graph and name the feature.

        Python callers meet the signature's own checks first; a C++ or TF
        Serving client can feed any shape, and without these the graph would
        compute on it (the optimizer trusts the declared static shapes).
        `tf.ensure_shape` checks rank and list length at run time; an
        assertion checks that all inputs have the same batch.
        """
        out = {
            f.name: tf.ensure_shape(inputs[f.name], (None, *f.shape), name=f"check_{f.name}")
            for f in features
        }
        first = features[0].name
        batch = tf.shape(out[first])[0]
        checks = [
            tf.debugging.Assert(
                tf.equal(tf.shape(out[f.name])[0], batch),
                [
                    f"serving input {f.name}: batch size differs from {first}'s:",
                    tf.shape(out[f.name])[0],
                    batch,
                ],
                name=f"check_batch_{f.name}",
            )
            for f in features[1:]
        ]
        with tf.control_dependencies(checks):
            return {k: tf.identity(v) for k, v in out.items()}

    @tf.function(input_signature=[input_signature])
    def serve_features(inputs):
        return outputs_of(default_non_finite(checked(inputs), spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        rank_ok = tf.debugging.assert_rank(
            examples, 1, message="input 'examples' must be a (batch,) string tensor"
        )
        with tf.control_dependencies([rank_ok]):
            parsed = tf.io.parse_example(examples, spec.parse_spec(with_label=False))
        return outputs_of(default_non_finite(to_model_inputs(parsed, spec), spec))

    module = tf.Module()
    module.model = model
    module.serve_features = serve_features
    module.serve_examples = serve_examples
    signatures = {
        "serving_default": serve_features.get_concrete_function(),
        "examples": serve_examples.get_concrete_function(),
    }
    return module, signatures


# ---------------------------------------------------------- input rows
def serialize_examples(spec, inputs: Mapping[str, np.ndarray]) -> list[bytes]:
    """Model-input rows (lists padded) -> serialized `tf.Example`s.

    The inverse of what the `examples` signature parses: a list's pad values
    are dropped, every scalar is written, NaN included (so nothing falls back
    to a default in the parse: the graph's replacement of non-finite values
    is what the checks exercise). Encoded by `rq_keras.serving.client.make_example`.
    """
    from rq_keras.data.examples import make_example

    n = len(next(iter(inputs.values()))) if inputs else 0
    columns = {f.name: np.asarray(inputs[f.name]) for f in spec.features} if n else {}
    out = []
    for i in range(n):
        row = {}
        for f in spec.features:
            v = columns[f.name][i]
            if f.is_list:
                row[f.name] = [t for t in v.tolist() if t != f.pad_value and t != b""]
            else:
                row[f.name] = v.item() if hasattr(v, "item") else v
        out.append(make_example(spec, row, keep_missing=True).SerializeToString())
    return out


def feature_tensors(spec, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """numpy model-input rows -> tensors of the spec's dtypes."""
    tf = import_tensorflow()

    out = {}
    for f in spec.features:
        v = np.asarray(inputs[f.name])
        if f.dtype == "string":
            v = v.astype(object)
        out[f.name] = tf.constant(v, dtype=tf.as_dtype(f.tf_dtype_name))
    return out
