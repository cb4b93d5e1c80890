"""Rows as `tf.train.Example`s: the one encoder, and the check of a caller's row.

`make_example` writes a row the way the readers and the exported `examples`
signature parse it; `rq_keras.data.write_tfrecord`, the export's check rows and
the client requests of `rq_keras.serving.client` all call it. `example_from_dict`
and `serialize_example` check a caller's row first (`check_row`): a value of the
wrong type, a list for a scalar, a list longer than `max_length` or holding the
pad value, or a name that is not a feature raises `ValueError` naming the
feature and what it expects. (The readers cut a longer list of the training
data; a caller's list is refused instead, so no id is dropped unseen.)

A row is a dict of feature name -> raw value:

* numeric features: an int or a float (NaN and `inf` are accepted: the
  graph replaces them by the spec default, as it does a missing value);
* `int64` ids: an int in the int64 range (a float, even `3.0`, is refused);
* `string` ids: a str (UTF-8 encoded) or bytes;
* list features: a list (or tuple, or 1-D array) of at most `max_length`
  ids of the feature's dtype; None or a missing key is the empty list;
* a missing scalar feature (or None) takes the spec default: it is left out
  of the `tf.Example`, so parsing gives the default.

Nothing here imports TensorFlow at load time; the encoders import it for its
protos (`tf.train.Example`), which is all they use of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from rq_keras.config.keras_version import import_tensorflow
from rq_keras.features.spec import Feature, FeatureSpec

__all__ = ["check_row", "example_from_dict", "make_example", "serialize_example"]

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


def check_row(spec: FeatureSpec, row: Any, where: str = "") -> dict[str, Any]:
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
    (`rq_keras.serving.export.serialize_examples`) all call it. It converts, it does
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
    tf = import_tensorflow()

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
    return make_example(spec, check_row(spec, row))


def serialize_example(spec: FeatureSpec, row: Mapping[str, Any]) -> bytes:
    """`example_from_dict(spec, row)` serialized: one element of the `examples` input."""
    return example_from_dict(spec, row).SerializeToString()
