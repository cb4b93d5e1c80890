"""Feature specs: one declarative description of a dataset's columns.

A feature spec (``feature_specs/NAME.yaml``) names the label and every input
feature with its kind, dtype, vocabulary source, embedding size and missing
value default. Everything else is derived from it: the `tf.io` parse spec for
serialized `tf.Example`, the model's `keras.Input`s, the serving signature,
the column checks of the readers (`rq_keras.data`) and the preprocessing
layers (`rq_keras.preprocessing`).

Kinds:

* ``categorical``: one id per row (``dtype: string`` or ``int64``), looked up
  in a vocabulary learned from the training split (``min_count``,
  ``max_size``, ``num_oov_buckets``) or read from a file (one value a line),
  then embedded.
* ``hashed``: one id per row hashed into ``num_bins`` buckets, then embedded.
* ``list``: up to ``max_length`` ids per row (longer lists keep their first
  ``max_length`` ids), looked up like ``categorical`` or hashed when
  ``num_bins`` is set, embedded and pooled by ``mean`` or ``sum`` over the
  ids present. In CSV and Parquet a list is one text cell with the ids joined
  by ``separator``; in `tf.Example` it is a repeated feature.
* ``numeric``: a float, optionally ``transform: log`` (``sign(x) *
  log(1 + |x|)``), then ``encoding: normalize`` (mean and variance of the
  training split), ``bucketize`` (``num_buckets`` quantile buckets of the
  training split, or given ``boundaries``, then embedded) or ``raw``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from rq_keras.atomic import atomic_path

__all__ = ["Feature", "LabelSpec", "FeatureSpec", "FeatureSpecError"]

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


@dataclasses.dataclass(frozen=True)
class Feature:
    """One input feature of a spec.

    Attributes:
        name: column name in the data and input name of the model.
        kind: `"categorical"`, `"hashed"`, `"list"` or `"numeric"`.
        dtype: `"string"` or `"int64"` for ids; `"float32"` for numeric.
        embedding_dim: embedding size (ids and bucketized numerics); 0 for
            features fed as one float (normalized or raw numerics).
        default: the value a missing cell or `tf.Example` feature takes.
        min_count: learned vocabulary keeps values seen at least this often.
        max_size: learned vocabulary keeps at most this many (most frequent).
        num_oov_buckets: ids for values outside the vocabulary.
        vocabulary_file: a given vocabulary (one value a line) instead of a
            learned one; resolved relative to the spec file.
        num_bins: hash buckets (`hashed`, or a hashed `list`).
        max_length: ids kept per row (`list`).
        pooling: `"mean"` or `"sum"` over the ids of a row (`list`).
        separator: joins list ids inside one CSV or Parquet cell (`list`).
        transform: `"none"` or `"log"` (numeric).
        encoding: `"normalize"`, `"bucketize"` or `"raw"` (numeric).
        num_buckets: quantile buckets learned from the training split.
        boundaries: given bucket boundaries (instead of `num_buckets`).
    """

    name: str
    kind: str
    dtype: str
    embedding_dim: int
    default: Any
    min_count: int = 1
    max_size: int | None = None
    num_oov_buckets: int = 1
    vocabulary_file: str | None = None
    num_bins: int | None = None
    max_length: int | None = None
    pooling: str = "mean"
    separator: str = "|"
    transform: str = "none"
    encoding: str = "normalize"
    num_buckets: int | None = None
    boundaries: tuple[float, ...] | None = None

    @property
    def is_list(self) -> bool:
        return self.kind == "list"

    @property
    def is_numeric(self) -> bool:
        return self.kind == "numeric"

    @property
    def is_hashed(self) -> bool:
        return self.kind == "hashed" or (self.kind == "list" and self.num_bins is not None)

    @property
    def has_learned_vocabulary(self) -> bool:
        """True when the vocabulary comes from the training split."""
        return (
            self.kind in ("categorical", "list")
            and not self.is_hashed
            and (self.vocabulary_file is None)
        )

    @property
    def needs_statistics(self) -> bool:
        """True when `adapt` must see the training split for this feature."""
        if self.is_numeric:
            return self.encoding == "normalize" or (
                self.encoding == "bucketize" and self.boundaries is None
            )
        return self.has_learned_vocabulary

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-example shape of the model input: `()` or `(max_length,)`."""
        return (self.max_length,) if self.is_list else ()

    @property
    def tf_dtype_name(self) -> str:
        return {"string": "string", "int64": "int64", "float32": "float32"}[self.dtype]

    @property
    def pad_value(self):
        """The value that fills a list up to `max_length` (never a real id)."""
        if not self.is_list:
            return None
        return "" if self.dtype == "string" else -1

    def to_dict(self) -> dict[str, Any]:
        """The YAML form: only what differs from the derived defaults."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if not self.is_numeric:
            out["dtype"] = self.dtype
        fields = _FIELDS_BY_KIND[self.kind]
        for key in fields:
            value = getattr(self, key)
            if key == "boundaries" and value is not None:
                value = list(value)
            if value is None:
                continue
            out[key] = value
        out["embedding_dim"] = self.embedding_dim
        if self.default is not None:
            out["default"] = self.default
        return out


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """The regression target.

    Attributes:
        name: column name of the label.
        clip_min: labels below are clipped to it before the codebook fit and
            encoding (None: no lower clip).
        clip_max: labels above are clipped to it (None: no upper clip).
    """

    name: str
    clip_min: float | None = None
    clip_max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.clip_min is not None:
            out["clip_min"] = self.clip_min
        if self.clip_max is not None:
            out["clip_max"] = self.clip_max
        return out


_COMMON_FIELDS = {"name", "kind", "dtype", "embedding_dim", "default"}
_FIELDS_BY_KIND = {
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


def _parse_feature(raw: Any, index: int, default_dim: int, source: str | None) -> Feature:
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
    allowed = _COMMON_FIELDS | set(_FIELDS_BY_KIND[kind])
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
        return Feature(**kwargs)

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
    return Feature(**kwargs)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """A dataset's label and input features, loaded from YAML.

    Attributes:
        name: the dataset or spec name.
        label: the regression target.
        features: the input features, in input order.
        embedding_dim: default embedding size of id features.
        description: free text.
        source: the file the spec was read from (None when built in code).
    """

    name: str
    label: LabelSpec
    features: tuple[Feature, ...]
    embedding_dim: int = 64
    description: str = ""
    source: str | None = dataclasses.field(default=None, compare=False)

    # ------------------------------------------------------------------ load
    @classmethod
    def from_dict(cls, raw: Any, source: str | None = None) -> FeatureSpec:
        """Validates a parsed YAML mapping.

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
        label = LabelSpec(name=label_raw["name"], **clips)

        features_raw = raw.get("features")
        if features_raw is None:
            _fail(source, None, "features", "is required")
        if not isinstance(features_raw, list) or not features_raw:
            _fail(source, None, "features", "must be a non-empty list")
        features = tuple(
            _parse_feature(f, i, embedding_dim, source) for i, f in enumerate(features_raw)
        )
        seen = set()
        for f in features:
            if f.name in seen:
                _fail(source, f.name, "name", "is used by two features")
            if f.name == label.name:
                _fail(source, f.name, "name", "is also the label column")
            seen.add(f.name)
        return cls(
            name=name,
            label=label,
            features=features,
            embedding_dim=embedding_dim,
            description=description,
            source=source,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureSpec:
        """Reads a YAML spec with `yaml.safe_load` and validates it."""
        import yaml

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such feature spec")
        with open(path, encoding="utf-8") as fh:
            try:
                raw = yaml.safe_load(fh)
            except yaml.YAMLError as e:
                raise FeatureSpecError(f"{path}: not valid YAML ({e})") from e
        return cls.from_dict(raw, source=path)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["label"] = self.label.to_dict()
        out["embedding_dim"] = self.embedding_dim
        out["features"] = [f.to_dict() for f in self.features]
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Writes the spec as YAML (round-trips through `load`).

        Atomic: written to a temporary file in the same directory and renamed
        over `path`, so a failed write leaves an existing spec intact.
        """
        import yaml

        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False, allow_unicode=True)

    # --------------------------------------------------------------- derived
    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the readers need: the features, then the label."""
        return (*self.feature_names, self.label.name)

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"{self.name}: no feature {name!r}; features are {list(self.feature_names)}")

    def parse_spec(self, with_label: bool = True) -> dict[str, Any]:
        """The `tf.io.parse_example` spec for serialized `tf.Example`.

        Scalars are `FixedLenFeature`s with the spec default; lists are
        `RaggedFeature`s (padded by `rq_keras.data.to_model_inputs`). The label
        defaults to NaN, so a missing label is a bad row, not a zero.
        """
        import tensorflow as tf

        out: dict[str, Any] = {}
        for f in self.features:
            dtype = tf.as_dtype(f.tf_dtype_name)
            if f.is_list:
                out[f.name] = tf.io.RaggedFeature(dtype=dtype, row_splits_dtype=tf.int64)
            else:
                out[f.name] = tf.io.FixedLenFeature([], dtype, default_value=f.default)
        if with_label:
            out[self.label.name] = tf.io.FixedLenFeature([], tf.float32, default_value=math.nan)
        return out

    def input_signature(self) -> dict[str, Any]:
        """`tf.TensorSpec` per feature: the model's (and serving's) raw inputs."""
        import tensorflow as tf

        return {
            f.name: tf.TensorSpec((None, *f.shape), tf.as_dtype(f.tf_dtype_name), name=f.name)
            for f in self.features
        }

    def keras_inputs(self) -> dict[str, Any]:
        """One `keras.Input` per feature, named like the feature."""
        import tf_keras as keras

        return {
            f.name: keras.Input(shape=f.shape, dtype=f.tf_dtype_name, name=f.name)
            for f in self.features
        }

    def with_features(self, names: Sequence[str]) -> FeatureSpec:
        """A copy that keeps only the named features (in the given order)."""
        return dataclasses.replace(self, features=tuple(self.feature(n) for n in names))
