"""Checking a feature spec's parsed YAML: every key, type and value.

`validate_spec` turns the mapping `FeatureSpec.from_dict` is given into the
checked fields of the spec, its label and each feature (defaults filled in,
a relative `vocabulary_file` resolved against the spec file), from which
`rq_keras.features.spec` builds its dataclasses; what cannot be used raises
`FeatureSpecError`, naming the file, the feature and the field. A leaf:
imports nothing of rq_keras, nor TensorFlow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["FeatureSpecError"]

KINDS = ("categorical", "hashed", "list", "numeric")
ID_DTYPES = ("string", "int64")
POOLINGS = ("mean", "sum")
TRANSFORMS = ("none", "log")
ENCODINGS = ("normalize", "bucketize", "raw")


class FeatureSpecError(ValueError):
    """A feature spec that cannot be used; the message names file, feature and field."""


def _where(source: str | None, feature: str | None, field: str | None) -> str:
    parts = [source or "<feature spec>"]
    if feature is not None:
        parts.append(f"feature {feature!r}")
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join(parts)


def _fail(source, feature, field, message):
    raise FeatureSpecError(f"{_where(source, feature, field)}: {message}")


def _check_type(value, types, source, feature, field, what):
    # bool is an int subclass; a YAML `yes` must not pass as a count.
    if isinstance(value, bool) and bool not in types:
        _fail(source, feature, field, f"must be {what}, got {value!r}")
    if not isinstance(value, types):
        _fail(source, feature, field, f"must be {what}, got {value!r}")
    return value


_COMMON_FIELDS = {"name", "kind", "dtype", "embedding_dim", "default"}
FIELDS_BY_KIND = {
    "categorical": ("min_count", "max_size", "num_oov_buckets", "vocabulary_file"),
    "hashed": ("num_bins",),
    "list": (
        "min_count",
        "max_size",
        "num_oov_buckets",
        "vocabulary_file",
        "num_bins",
        "max_length",
        "pooling",
        "separator",
    ),
    "numeric": ("transform", "encoding", "num_buckets", "boundaries"),
}
_TOP_FIELDS = {"name", "description", "label", "embedding_dim", "features"}
_LABEL_FIELDS = {"name", "clip_min", "clip_max"}


def validate_feature(raw: Any, index: int, default_dim: int, source: str | None) -> dict[str, Any]:
    """The checked `Feature` fields of `features[index]`.

    `default_dim` is the spec's `embedding_dim`; raises FeatureSpecError.
    """
    if not isinstance(raw, Mapping):
        _fail(source, None, f"features[{index}]", f"must be a mapping, got {raw!r}")
    name = raw.get("name")
    if name is None:
        _fail(source, None, f"features[{index}].name", "is required")
    _check_type(name, (str,), source, None, f"features[{index}].name", "a string")
    if not name or name.strip() != name:
        _fail(source, name, "name", "must be non-empty without surrounding blanks")
    kind = raw.get("kind")
    if kind is None:
        _fail(source, name, "kind", f"is required (one of {list(KINDS)})")
    if kind not in KINDS:
        _fail(source, name, "kind", f"must be one of {list(KINDS)}, got {kind!r}")
    allowed = _COMMON_FIELDS | set(FIELDS_BY_KIND[kind])
    unknown = sorted(set(raw) - allowed)
    if unknown:
        _fail(
            source,
            name,
            unknown[0],
            f"unknown for kind {kind!r}; allowed fields are {sorted(allowed)}",
        )

    def get(field, types, what, default=None):
        if field not in raw or raw[field] is None:
            return default
        return _check_type(raw[field], types, source, name, field, what)

    def positive(field, default=None, minimum=1):
        value = get(field, (int,), "an integer", default)
        if value is not None and value < minimum:
            _fail(source, name, field, f"must be >= {minimum}, got {value}")
        return value

    def one_of(field, options):
        value = get(field, (str,), "a string", options[0])
        if value not in options:
            _fail(source, name, field, f"must be one of {list(options)}, got {value!r}")
        return value

    kwargs: dict[str, Any] = {"name": name, "kind": kind}
    if kind == "numeric":
        if "dtype" in raw and raw["dtype"] not in ("float32", "float", None):
            _fail(source, name, "dtype", f"numeric features are float32, got {raw['dtype']!r}")
        kwargs["dtype"] = "float32"
        transform = one_of("transform", TRANSFORMS)
        encoding = one_of("encoding", ENCODINGS)
        num_buckets = positive("num_buckets", minimum=2)
        boundaries = get("boundaries", (list,), "a list of numbers")
        if boundaries is not None:
            if not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b)
                for b in boundaries
            ):
                _fail(source, name, "boundaries", f"must be finite numbers, got {boundaries!r}")
            boundaries = tuple(float(b) for b in boundaries)
            if not boundaries or any(b <= a for a, b in zip(boundaries, boundaries[1:])):
                _fail(source, name, "boundaries", "must be a non-empty, strictly increasing list")
        if encoding == "bucketize":
            if (num_buckets is None) == (boundaries is None):
                _fail(
                    source,
                    name,
                    "num_buckets",
                    "bucketize needs exactly one of `num_buckets` and `boundaries`",
                )
        elif num_buckets is not None or boundaries is not None:
            field = "num_buckets" if num_buckets is not None else "boundaries"
            _fail(source, name, field, f"only applies to `encoding: bucketize`, not {encoding!r}")
        dim_default = default_dim if encoding == "bucketize" else 0
        embedding_dim = positive("embedding_dim", dim_default, minimum=0)
        if encoding == "bucketize" and embedding_dim < 1:
            _fail(source, name, "embedding_dim", "must be >= 1 for `encoding: bucketize`")
        if encoding != "bucketize" and embedding_dim != 0:
            _fail(source, name, "embedding_dim", f"only applies to bucketize, not {encoding!r}")
        default = get("default", (int, float), "a number", 0.0)
        if not math.isfinite(default):
            _fail(source, name, "default", f"must be finite, got {default!r}")
        kwargs.update(
            transform=transform,
            encoding=encoding,
            num_buckets=num_buckets,
            boundaries=boundaries,
            embedding_dim=embedding_dim,
            default=float(default),
        )
        return kwargs

    dtype = raw.get("dtype")
    if dtype is None:
        _fail(source, name, "dtype", f"is required for kind {kind!r} (one of {list(ID_DTYPES)})")
    if dtype not in ID_DTYPES:
        _fail(source, name, "dtype", f"must be one of {list(ID_DTYPES)}, got {dtype!r}")
    kwargs["dtype"] = dtype
    kwargs["embedding_dim"] = positive("embedding_dim", default_dim)
    num_bins = positive("num_bins")
    if kind == "hashed" and num_bins is None:
        _fail(source, name, "num_bins", "is required for kind 'hashed'")
    kwargs["num_bins"] = num_bins
    if kind == "list":
        max_length = positive("max_length")
        if max_length is None:
            _fail(source, name, "max_length", "is required for kind 'list'")
        pooling = one_of("pooling", POOLINGS)
        separator = get("separator", (str,), "a string", "|")
        if not separator:
            _fail(source, name, "separator", "must be non-empty")
        kwargs.update(max_length=max_length, pooling=pooling, separator=separator)
    if kind in ("categorical", "list"):
        vocabulary_file = get("vocabulary_file", (str,), "a path string")
        if num_bins is not None and vocabulary_file is not None:
            _fail(source, name, "num_bins", "a list is hashed or has a vocabulary file, not both")
        if (
            vocabulary_file is not None
            and source is not None
            and not os.path.isabs(vocabulary_file)
        ):
            base = os.path.dirname(os.path.abspath(source))
            vocabulary_file = os.path.join(base, vocabulary_file)
        kwargs.update(
            min_count=positive("min_count", 1),
            max_size=positive("max_size"),
            num_oov_buckets=positive("num_oov_buckets", 1),
            vocabulary_file=vocabulary_file,
        )
    if kind == "list":
        if raw.get("default") is not None:
            _fail(source, name, "default", "a missing list is an empty list; leave it unset")
        kwargs["default"] = None
    else:
        types = (str,) if dtype == "string" else (int,)
        default = get("default", types, "a string" if dtype == "string" else "an integer")
        kwargs["default"] = ("" if dtype == "string" else -1) if default is None else default
    return kwargs


def validate_spec(raw: Any, source: str | None = None) -> dict[str, Any]:
    """The checked fields of a parsed YAML spec: `name`, `description`,
    `embedding_dim`, `label` (the `LabelSpec` fields) and `features` (the
    `Feature` fields of each, in order).

    Raises:
        FeatureSpecError: unknown keys, wrong types, missing required
            fields, duplicate names; the message names the file, the
            feature and the field.
    """
    if not isinstance(raw, Mapping):
        _fail(source, None, None, f"must be a YAML mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _TOP_FIELDS)
    if unknown:
        _fail(source, None, unknown[0], f"unknown; allowed fields are {sorted(_TOP_FIELDS)}")
    name = raw.get("name")
    if name is None:
        _fail(source, None, "name", "is required")
    _check_type(name, (str,), source, None, "name", "a string")
    description = raw.get("description") or ""
    _check_type(description, (str,), source, None, "description", "a string")
    embedding_dim = raw.get("embedding_dim", 64)
    _check_type(embedding_dim, (int,), source, None, "embedding_dim", "an integer")
    if embedding_dim < 1:
        _fail(source, None, "embedding_dim", f"must be >= 1, got {embedding_dim}")

    label_raw = raw.get("label")
    if label_raw is None:
        _fail(source, None, "label", "is required")
    if isinstance(label_raw, str):
        label_raw = {"name": label_raw}
    if not isinstance(label_raw, Mapping):
        _fail(source, None, "label", f"must be a column name or a mapping, got {label_raw!r}")
    unknown = sorted(set(label_raw) - _LABEL_FIELDS)
    if unknown:
        _fail(source, None, f"label.{unknown[0]}", f"unknown; allowed {sorted(_LABEL_FIELDS)}")
    if label_raw.get("name") is None:
        _fail(source, None, "label.name", "is required")
    _check_type(label_raw["name"], (str,), source, None, "label.name", "a string")
    clips = {}
    for key in ("clip_min", "clip_max"):
        value = label_raw.get(key)
        if value is not None:
            _check_type(value, (int, float), source, None, f"label.{key}", "a number")
            if not math.isfinite(value):
                _fail(source, None, f"label.{key}", f"must be finite, got {value!r}")
            value = float(value)
        clips[key] = value
    if (
        clips["clip_min"] is not None
        and clips["clip_max"] is not None
        and clips["clip_min"] > clips["clip_max"]
    ):
        _fail(source, None, "label.clip_min", "must be <= label.clip_max")
    label = {"name": label_raw["name"], **clips}

    features_raw = raw.get("features")
    if features_raw is None:
        _fail(source, None, "features", "is required")
    if not isinstance(features_raw, list) or not features_raw:
        _fail(source, None, "features", "must be a non-empty list")
    features = [validate_feature(f, i, embedding_dim, source) for i, f in enumerate(features_raw)]
    seen = set()
    for f in features:
        if f["name"] in seen:
            _fail(source, f["name"], "name", "is used by two features")
        if f["name"] == label["name"]:
            _fail(source, f["name"], "name", "is also the label column")
        seen.add(f["name"])
    return {
        "name": name,
        "label": label,
        "features": features,
        "embedding_dim": embedding_dim,
        "description": description,
    }
