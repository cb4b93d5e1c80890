"""The client side of an exported model: requests for its serving signatures.

A service that calls an rq_keras SavedModel (`rq_keras.serving.export`) builds the
inputs from raw feature values and the model's feature spec, which the export
writes beside the graph (`assets.extra/feature_spec.yaml`; read it with
`FeatureSpec.load`). `rest_request` gives the JSON body of a TF Serving REST
`:predict` call: the row form (`instances`) for `serving_default`, base64
`tf.Example`s for `examples`. One `tf.Example` at a time (for gRPC, say) comes
from `rq_keras.data.examples.serialize_example`; rows are checked as it checks
them (`rq_keras.data.examples`, whose docstring gives what a row holds), before
anything is encoded.

`rest_request` for `serving_default` needs only numpy; the `examples` body
imports TensorFlow for its protos.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from rq_keras.data.examples import check_row, make_example
from rq_keras.features.spec import FeatureSpec

__all__ = ["SIGNATURES", "rest_request"]

SIGNATURES = ("serving_default", "examples")


def _json_id(value: int | str | bytes) -> Any:
    """A string tensor element in TF Serving's JSON: bytes go as `{"b64": ...}`."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def _instance(spec: FeatureSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """Checked values -> one `serving_default` instance: every input, lists padded."""
    out: dict[str, Any] = {}
    for f in spec.features:
        value = values[f.name]
        if f.is_list:
            padded = [*value, *[f.pad_value] * (f.max_length - len(value))]
            out[f.name] = [_json_id(v) for v in padded]
        elif value is None:
            out[f.name] = f.default
        elif f.is_numeric:
            # JSON has no NaN or inf, and a number beyond float32 reaches the
            # graph as inf: all are sent as the default the graph replaces them by.
            with np.errstate(over="ignore"):
                finite = bool(np.isfinite(np.float32(value)))
            out[f.name] = value if finite else f.default
        else:
            out[f.name] = _json_id(value)
    return out


def rest_request(
    spec: FeatureSpec,
    rows: Iterable[Mapping[str, Any]],
    signature: str = "serving_default",
) -> dict[str, Any]:
    """The JSON body of a TF Serving REST `:predict` request for `rows`.

    `serving_default` gets the row form, `{"instances": [{feature: value,
    ...}, ...]}` with every input of the signature: a missing scalar as the
    spec default, lists padded to `max_length` with the pad value (`-1` or
    `""`), NaN, `inf` and values beyond float32 in numeric features as the
    default (what the graph makes of them). `examples` gets `{"signature_name":
    "examples", "inputs": {"examples": [{"b64": ...}, ...]}}`, one serialized
    `tf.Example` (`serialize_example`) per row. Bytes ids go as `{"b64": ...}`.

    Args:
        spec: the model's feature spec.
        rows: the rows, each a dict of feature name -> raw value.
        signature: `"serving_default"` or `"examples"`.

    Returns:
        a dict for `json.dumps` (no NaN or inf in it), to POST to
        `http://HOST:8501/v1/models/NAME:predict`.

    Raises:
        ValueError: an unknown signature, no rows, or a bad row (the message
            starts with `rows[i]: ` and names the feature, as in
            `example_from_dict`).
    """
    if signature not in SIGNATURES:
        raise ValueError(f"`signature` must be one of {list(SIGNATURES)}, got {signature!r}")
    if isinstance(rows, (Mapping, str, bytes)):
        raise ValueError(
            f"`rows` must be a sequence of rows (dicts), got a {type(rows).__name__}; "
            "wrap a single row in a list"
        )
    checked = [check_row(spec, row, f"rows[{i}]: ") for i, row in enumerate(rows)]
    if not checked:
        raise ValueError("`rows` is empty: a request needs at least one row")
    if signature == "serving_default":
        return {"instances": [_instance(spec, values) for values in checked]}
    examples = [make_example(spec, values).SerializeToString() for values in checked]
    return {"signature_name": "examples", "inputs": {"examples": [_json_id(e) for e in examples]}}
