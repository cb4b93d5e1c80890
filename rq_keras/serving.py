"""The client side of an exported model: requests for its serving signatures.

A service that calls an rq_keras SavedModel (`rq_keras.export`) builds the
inputs from raw feature values and the model's feature spec, which the export
writes beside the graph (`assets.extra/feature_spec.yaml`; read it with
`FeatureSpec.load`):

* `example_from_dict` / `serialize_example`: one row as the `tf.Example` the
  `examples` signature parses, encoded by `make_example`, the one
  `tf.Example` encoder of rq_keras (`rq_keras.data.write_tfrecord` and the
  export's checks use it too);
* `rest_request`: the JSON body of a TF Serving REST `:predict` call, the row
  form (`instances`) for `serving_default`, base64 `tf.Example`s for
  `examples`.

A row is a dict of feature name -> raw value:

* numeric features: an int or a float (NaN and `inf` are accepted: the
  graph replaces them by the spec default, as it does a missing value);
* `int64` ids: an int in the int64 range (a float, even `3.0`, is refused);
* `string` ids: a str (UTF-8 encoded) or bytes;
* list features: a list (or tuple, or 1-D array) of at most `max_length`
  ids of the feature's dtype; None or a missing key is the empty list;
* a missing scalar feature (or None) takes the spec default: it is left out
  of the `tf.Example` (the signature parses it as the default) and sent as the
  default in `serving_default` instances.

Rows are checked before anything is encoded: a value of the wrong type, a
list for a scalar, a list longer than `max_length` or holding the pad value,
or a name that is not a feature raises `ValueError` naming the feature and
what it expects. (The readers cut a longer list of the training data; a
client's list is refused instead, so no id is dropped unseen.)

Nothing here builds a model or imports Keras: `rest_request` for
`serving_default` needs only numpy; the `tf.Example` functions import
TensorFlow for its protos (`tf.train.Example`), which is all they use of it.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from rq_keras.features import Feature, FeatureSpec

__all__ = [
    "SIGNATURES",
    "example_from_dict",
    "make_example",
    "rest_request",
    "serialize_example",
]

SIGNATURES = ("serving_default", "examples")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SHOWN_CHARS = 60


def _show(value: Any) -> str:
    """A value for an error message: its type and a short repr."""
    text = repr(value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return f"{type(value).__name__} {text}"


def _what(f: Feature) -> str:
    """The feature as an error message names it: name, kind and dtype."""
    if f.is_numeric:
        return f"feature {f.name!r} (numeric)"
    if f.is_list:
        return f"feature {f.name!r} (list of {f.dtype} ids, max_length {f.max_length})"
    return f"feature {f.name!r} ({f.kind}, {f.dtype})"


def _plain(value: Any) -> Any:
    """numpy scalars and 0-d arrays -> the Python value; anything else as is."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_id(f: Feature, value: Any, where: str, expects: str, at: str = "") -> Any:
    """One id of an id feature, checked against its dtype; `at` places it in a list."""
    value = _plain(value)
    if f.dtype == "int64":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}{_what(f)} expects {expects}, got {_show(value)}{at}")
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{where}{_what(f)}: id {value}{at} is outside the int64 range")
        return value
    if not isinstance(value, (str, bytes)):
        raise ValueError(f"{where}{_what(f)} expects {expects}, got {_show(value)}{at}")
    return value


def _check_scalar(f: Feature, value: Any, where: str) -> float | int | str | bytes:
    if not f.is_numeric:
        expects = "one integer id" if f.dtype == "int64" else "one str (or bytes) id"
        return _check_id(f, value, where, expects)
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{where}{_what(f)} expects one number (an int or a float), got {_show(value)}"
        )
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{where}{_what(f)}: {value} is beyond the float range") from None


def _check_list(f: Feature, value: Any, where: str) -> list:
    ids_of = "integer ids" if f.dtype == "int64" else "str (or bytes) ids"
    if value is None:
        return []
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = list(value)
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"{where}{_what(f)} expects a list of at most {f.max_length} {ids_of} "
            f"(or None), got {_show(value)}"
        )
    if len(value) > f.max_length:
        raise ValueError(
            f"{where}{_what(f)} holds {len(value)} ids; it takes at most {f.max_length}"
        )
    ids = []
    for position, item in enumerate(value):
        at = f" at position {position}"
        item = _check_id(f, item, where, ids_of, at)
        if item == f.pad_value or item == b"":
            raise ValueError(
                f"{where}{_what(f)}: {item!r}{at} is the pad value, never an id; leave it out"
            )
        ids.append(item)
    return ids


def _check_row(spec: FeatureSpec, row: Any, where: str = "") -> dict[str, Any]:
    """A caller's row -> feature name -> checked value (None: missing scalar)."""
    if not isinstance(row, Mapping):
        raise ValueError(
            f"{where}a row is a mapping of feature name to value, got {type(row).__name__}"
        )
    names = spec.feature_names
    for key in row:
        if key in names:
            continue
        if key == spec.label.name:
            raise ValueError(
                f"{where}{key!r} is the label, not a model input; the features are {list(names)}"
            )
        raise ValueError(f"{where}unknown feature {key!r}; the features are {list(names)}")
    out: dict[str, Any] = {}
    for f in spec.features:
        value = row.get(f.name)
        if f.is_list:
            out[f.name] = _check_list(f, value, where)
        else:
            out[f.name] = None if value is None else _check_scalar(f, value, where)
    return out


def make_example(
    spec: FeatureSpec, values, label: float | None = None, *, keep_missing: bool = False
):
    """One row as a `tf.train.Example`, the way the readers and the `examples` signature parse it.

    The one `tf.Example` encoder of rq_keras: `example_from_dict`,
    `rq_keras.data.write_tfrecord` and the export's check rows
    (`rq_keras.export.serialize_examples`) all call it. It converts, it does
    not check types (`example_from_dict` checks a caller's row first).

    Args:
        spec: the feature spec; its dtypes pick the `tf.train.Feature` kind:
            strings a `BytesList`, int64 ids an `Int64List`, numerics a
            `FloatList`.
        values: feature name -> value. A scalar feature's value, or None
            (or NaN) when missing: left out, so parsing gives the spec
            default; a feature absent from `values` is missing too. A list
            feature's ids as a sequence (None: empty), without pad values.
        label: written as a float list when given and not NaN.
        keep_missing: write every scalar feature as it is, None and NaN
            included, instead of leaving a missing one out: the export's
            checks send NaN on purpose, to test the graph's replacement.

    Returns:
        a `tf.train.Example` (`.SerializeToString()` gives the record).
    """
    import tensorflow as tf

    train = tf.train
    feature = {}
    for f in spec.features:
        v = values.get(f.name)
        if f.is_list:
            ids = [] if v is None else list(v)
        elif not keep_missing and (
            v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))
        ):
            continue  # missing: the parser gives the spec default
        else:
            ids = [v]
        if f.dtype == "string":
            data = [t if isinstance(t, bytes) else str(t).encode() for t in ids]
            feature[f.name] = train.Feature(bytes_list=train.BytesList(value=data))
        elif f.dtype == "int64":
            data = [int(t) for t in ids]
            feature[f.name] = train.Feature(int64_list=train.Int64List(value=data))
        else:
            data = [float(t) for t in ids]
            feature[f.name] = train.Feature(float_list=train.FloatList(value=data))
    if label is not None and not math.isnan(label):
        feature[spec.label.name] = train.Feature(float_list=train.FloatList(value=[label]))
    return train.Example(features=train.Features(feature=feature))


def example_from_dict(spec: FeatureSpec, row: Mapping[str, Any]):
    """One row of raw feature values as the `tf.Example` the `examples` signature parses.

    Args:
        spec: the model's feature spec (`assets.extra/feature_spec.yaml` of
            the export).
        row: feature name -> raw value (see the module docstring); missing
            scalars are left out and take the spec default in the signature.

    Returns:
        a `tf.train.Example`: numerics as float lists, int64 ids as int64
        lists, strings as bytes lists, lists without padding.

    Raises:
        ValueError: a value of the wrong type, a list for a scalar feature, a
            list longer than `max_length` or with the pad value, or a name
            that is not a feature; the message names the feature and what it
            expects.
    """
    return make_example(spec, _check_row(spec, row))


def serialize_example(spec: FeatureSpec, row: Mapping[str, Any]) -> bytes:
    """`example_from_dict(spec, row)` serialized: one element of the `examples` input."""
    return example_from_dict(spec, row).SerializeToString()


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
    checked = [_check_row(spec, row, f"rows[{i}]: ") for i, row in enumerate(rows)]
    if not checked:
        raise ValueError("`rows` is empty: a request needs at least one row")
    if signature == "serving_default":
        return {"instances": [_instance(spec, values) for values in checked]}
    examples = [make_example(spec, values).SerializeToString() for values in checked]
    return {"signature_name": "examples", "inputs": {"examples": [_json_id(e) for e in examples]}}
