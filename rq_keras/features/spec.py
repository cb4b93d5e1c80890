"""Feature specs: one declarative description of a dataset's columns.

A feature spec (``feature_specs/NAME.yaml``) names the label and every input
feature with its kind, dtype, vocabulary source, embedding size and missing
value default. Everything else is derived from it: the `tf.io` parse spec for
serialized `tf.Example`, the model's `keras.Input`s, the serving signature,
the column checks of the readers (`rq_keras.data`) and the preprocessing
layers (`rq_keras.features.preprocessing`). How a spec's YAML is checked is
`rq_keras.features.validation`.

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
from typing import Any

from rq_keras.atomic import atomic_path
from rq_keras.features.validation import FIELDS_BY_KIND, FeatureSpecError, validate_spec

__all__ = ["Feature", "LabelSpec", "FeatureSpec"]


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
        fields = FIELDS_BY_KIND[self.kind]
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
        values = validate_spec(raw, source)
        return cls(
            name=values["name"],
            label=LabelSpec(**values["label"]),
            features=tuple(Feature(**f) for f in values["features"]),
            embedding_dim=values["embedding_dim"],
            description=values["description"],
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
