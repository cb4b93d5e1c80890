"""From a feature spec to Keras preprocessing and embedding layers.

`FeaturePreprocessor.adapt` makes one pass over the training split and keeps,
per feature, what its layers need: the vocabulary (values seen at least
`min_count` times, most frequent first, ties in value order, at most
`max_size`), the mean and variance of a normalized numeric (after its
transform; merged chunk by chunk with Chan's formula), or the quantile
boundaries of a bucketized numeric (exact, from all its training values;
repeated quantiles of zero-inflated data collapse, so a feature can end with
fewer buckets than `num_buckets`). Missing cells count as their default.

`build_model` then returns a Keras 2 functional model (`build_keras3_model`
the same in Keras 3): raw feature values in
(`spec.keras_inputs()`), the concatenated feature vector out. Its layers are
Keras preprocessing layers (`StringLookup`, `IntegerLookup`, `Hashing`,
`Normalization`, `Discretization`) built with the adapted values as
constants, so the vocabularies and statistics travel inside the saved model
and the exported model takes raw values.

Ids: values outside the vocabulary go to `num_oov_buckets` OOV ids (hashed
among them); a list's pad value maps to id 0, which `ListPooling` ignores.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from rq_keras.atomic import write_json
from rq_keras.config.keras_version import require_keras2
from rq_keras.config.seeds import sub_seed
from rq_keras.features.spec import Feature, FeatureSpec

__all__ = ["FeaturePreprocessor"]

FORMAT_NAME = "rq_keras.feature_statistics"
FORMAT_VERSION = 1
_INT_OOV_TOKEN = int(np.iinfo(np.int64).min)


def _read_vocabulary_file(feature: Feature) -> list:
    path = feature.vocabulary_file
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such vocabulary file (feature {feature.name!r})")
    with open(path, encoding="utf-8") as fh:
        values = [line.rstrip("\n\r") for line in fh]
    values = [v for v in values if v.strip()]
    if feature.dtype == "int64":
        try:
            values = [int(v) for v in values]
        except ValueError as e:
            raise ValueError(f"{path}: feature {feature.name!r} needs integer ids ({e})") from e
    if len(set(values)) != len(values):
        raise ValueError(f"{path}: the vocabulary of feature {feature.name!r} repeats a value")
    if not values:
        raise ValueError(f"{path}: the vocabulary of feature {feature.name!r} is empty")
    return values


def _check_finite(statistics: Mapping[str, Any]) -> None:
    """Raises if a mean, variance or boundary of a feature is NaN or infinite."""
    for name, entry in statistics.get("features", {}).items():
        for key in ("mean", "variance", "boundaries"):
            if key not in entry:
                continue
            values = np.asarray(entry[key], dtype=np.float64)
            if not np.isfinite(values).all():
                raise ValueError(
                    f"feature {name!r}: the adapted {key} is not finite ({entry[key]!r}); "
                    "its training values overflow or are not finite"
                )


class _Moments:
    """Count, mean and sum of squared deviations, merged chunk by chunk."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        with np.errstate(over="ignore", invalid="ignore"):  # checked after adapt
            n_b, mean_b = x.size, float(x.mean())
            m2_b = float(((x - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    @property
    def variance(self) -> float:
        return self.m2 / self.n if self.n else 1.0


class FeaturePreprocessor:
    """Adapts a feature spec on the training split and builds its Keras layers.

    Args:
        spec: the feature spec.
        statistics: adapted statistics (from `adapt`, `statistics`, or a
            saved file through `load`); None until adapted.

    Example:
        ```python
        pre = FeaturePreprocessor(spec).adapt(["train.parquet"])
        pre.save("features.json")
        features = pre.build_model()      # raw inputs -> (batch, output_dim)
        ```
    """

    def __init__(self, spec: FeatureSpec, statistics: Mapping[str, Any] | None = None):
        self.spec = spec
        self.statistics = None if statistics is None else self._validated(statistics)

    # ------------------------------------------------------------- adapting
    def adapt(self, data: Any, *, on_bad_rows: str = "fail", chunk_rows: int = 65_536):
        """Computes the statistics from the training split, in one pass.

        Args:
            data: training files (paths, read with `rq_keras.data.read_chunks`)
                or an iterable of chunks (dicts of feature name -> numpy
                array in the model's input form).
            on_bad_rows: the bad-row policy for files.
            chunk_rows: rows per read chunk for files.

        Returns:
            self, adapted. `self.report` holds the `DataReport` of the files
            (None for chunks).

        Raises:
            ValueError: an adapted mean, variance or boundary is not finite
                (the message names the feature); from files, a bad row under
                `on_bad_rows="fail"` (`rq_keras.data.MalformedDataError`).
        """
        from rq_keras import data as data_lib

        self.report = None
        if isinstance(data, (str, os.PathLike)) or (
            isinstance(data, (list, tuple)) and data and isinstance(data[0], (str, os.PathLike))
        ):
            self.report = data_lib.DataReport()
            data = data_lib.iter_files(
                data,
                self.spec,
                report=self.report,
                on_bad_rows=on_bad_rows,
                with_label=False,
                chunk_rows=chunk_rows,
            )
        self.statistics = self._statistics(data)
        return self

    def _statistics(self, chunks: Iterable[Mapping[str, np.ndarray]]) -> dict[str, Any]:
        from rq_keras.layers.feature_math import signed_log

        features = [f for f in self.spec.features if f.needs_statistics]
        counts = {f.name: Counter() for f in features if f.has_learned_vocabulary}
        moments = {
            f.name: _Moments() for f in features if f.is_numeric and f.encoding == "normalize"
        }
        samples = {f.name: [] for f in features if f.is_numeric and f.encoding == "bucketize"}
        rows = 0
        for chunk in chunks:
            n = None
            for f in features:
                if f.name not in chunk:
                    raise ValueError(f"a chunk lacks feature {f.name!r}")
                values = np.asarray(chunk[f.name])
                n = values.shape[0]
                if f.name in counts:
                    if f.is_list:
                        values = values[values != f.pad_value]
                    uniq, cnt = np.unique(values.astype(object), return_counts=True)
                    counts[f.name].update(dict(zip(uniq.tolist(), cnt.tolist())))
                    continue
                x = values.astype(np.float64)
                if f.transform == "log":
                    x = signed_log(x)
                if f.name in moments:
                    moments[f.name].update(x)
                else:
                    samples[f.name].append(x)
            rows += n or 0
        if rows == 0 and features:
            raise ValueError("no training rows to adapt the preprocessing on")
        stats: dict[str, Any] = {}
        for f in self.spec.features:
            entry: dict[str, Any] = {}
            if f.name in counts:
                kept = [(v, c) for v, c in counts[f.name].items() if c >= f.min_count]
                kept.sort(key=lambda vc: (-vc[1], vc[0]))
                if f.max_size is not None:
                    kept = kept[: f.max_size]
                if f.dtype == "string":
                    vocab = [v.decode() if isinstance(v, bytes) else str(v) for v, _ in kept]
                else:
                    vocab = [int(v) for v, _ in kept]
                entry = {
                    "vocabulary": vocab,
                    "distinct_values": len(counts[f.name]),
                    "values_seen": int(sum(counts[f.name].values())),
                }
            elif f.name in moments:
                m = moments[f.name]
                entry = {"mean": m.mean, "variance": m.variance, "count": m.n}
            elif f.name in samples:
                x = np.concatenate(samples[f.name]) if samples[f.name] else np.zeros(1)
                qs = np.arange(1, f.num_buckets) / f.num_buckets
                bounds = np.unique(np.quantile(x, qs))
                entry = {"boundaries": [float(b) for b in bounds], "count": int(x.size)}
            if entry:
                stats[f.name] = entry
        out = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "rows": rows,
            "features": stats,
        }
        _check_finite(out)
        return out

    # ------------------------------------------------------------ save/load
    def _validated(self, statistics: Mapping[str, Any]) -> dict[str, Any]:
        if statistics.get("format") != FORMAT_NAME:
            found = statistics.get("format")
            raise ValueError(f"not rq_keras feature statistics (format {found!r})")
        if statistics.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"unknown feature-statistics version {statistics.get('format_version')!r}"
            )
        per_feature = statistics.get("features", {})
        for f in self.spec.features:
            if f.needs_statistics and f.name not in per_feature:
                raise ValueError(f"the statistics lack feature {f.name!r} of {self.spec.name!r}")
        _check_finite(statistics)
        return dict(statistics)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the statistics as JSON (atomically)."""
        self._require_adapted()
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_json(path, self.statistics, indent=None)

    @classmethod
    def load(cls, spec: FeatureSpec, path: str | os.PathLike) -> FeaturePreprocessor:
        """Reads statistics saved by `save`; checks they cover `spec`."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as fh:
                statistics = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not readable feature statistics ({e})") from e
        try:
            return cls(spec, statistics)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    def _require_adapted(self) -> None:
        if self.statistics is None:
            raise RuntimeError("the preprocessor is not adapted: call `adapt` or `load` first")

    # ------------------------------------------------------------- building
    def vocabulary(self, name: str) -> list | None:
        """The vocabulary of id feature `name` (None for hashed/numeric)."""
        f = self.spec.feature(name)
        if f.vocabulary_file is not None:
            return _read_vocabulary_file(f)
        if f.has_learned_vocabulary:
            self._require_adapted()
            return list(self.statistics["features"][name]["vocabulary"])
        return None

    def boundaries(self, name: str) -> list[float] | None:
        f = self.spec.feature(name)
        if not (f.is_numeric and f.encoding == "bucketize"):
            return None
        if f.boundaries is not None:
            return list(f.boundaries)
        self._require_adapted()
        return list(self.statistics["features"][name]["boundaries"])

    def id_count(self, name: str) -> int:
        """Rows of feature `name`'s embedding table: vocabulary + OOV (+ pad)."""
        f = self.spec.feature(name)
        if f.is_hashed:
            return f.num_bins
        pad = 0 if f.pad_value is None else 1
        return len(self.vocabulary(name)) + f.num_oov_buckets + pad

    def _id_layer(self, f: Feature, keras):
        """The layer mapping raw ids to [0, id_count), from `keras` (either)."""
        mask = f.pad_value  # None for scalars
        if f.is_hashed:
            return keras.layers.Hashing(
                num_bins=f.num_bins, mask_value=mask, name=f"{f.name}_hashing"
            )
        vocab = self.vocabulary(f.name)
        if not vocab:
            # Every training value was below `min_count`: all ids are OOV ids,
            # laid out as a lookup would (pad 0, then the OOV ids).
            pad = 0 if mask is None else 1
            return keras.layers.Hashing(
                num_bins=f.num_oov_buckets + pad, mask_value=mask, name=f"{f.name}_hashing"
            )
        if f.dtype == "string":
            return keras.layers.StringLookup(
                vocabulary=vocab,
                num_oov_indices=f.num_oov_buckets,
                mask_token=mask,
                name=f"{f.name}_lookup",
            )
        # IntegerLookup's own OOV token is -1, the spec's default for missing
        # int ids (a real vocabulary entry); move it out of the id range used.
        return keras.layers.IntegerLookup(
            vocabulary=vocab,
            num_oov_indices=f.num_oov_buckets,
            mask_token=mask,
            oov_token=_INT_OOV_TOKEN,
            name=f"{f.name}_lookup",
        )

    def output_dims(self) -> dict[str, int]:
        """Width of each feature's slice of the concatenated vector."""
        return {f.name: (f.embedding_dim if f.embedding_dim else 1) for f in self.spec.features}

    @property
    def output_dim(self) -> int:
        return sum(self.output_dims().values())

    def build_model(self, *, seed: int = 0, name: str = "features"):
        """The Keras 2 model: raw feature dict -> float32 `(batch, output_dim)`.

        Args:
            seed: the run seed; the i-th feature's embedding initializer uses
                `sub_seed(seed, "feature_embedding", i)`.
            name: the model's name.
        """
        require_keras2("rq_keras's feature preprocessing layers")
        import tf_keras as keras

        from rq_keras.layers.list_pooling import ListPooling
        from rq_keras.layers.signed_log import SignedLog

        return self._build(keras, ListPooling, SignedLog, seed, name)

    def build_keras3_model(self, *, seed: int = 0, name: str = "features"):
        """The same tower as a Keras 3 model (`keras`, TensorFlow backend): the
        same layers, vocabularies and statistics, so with the same embedding
        weights it gives the Keras 2 model's vector (`tests/test_keras3.py`).
        A Keras 3 program puts `rq_keras.layers.keras3.RQRegHead` on it.
        The initial embeddings come from Keras 3's generator (same seeds,
        other draws than Keras 2's)."""
        import keras

        from rq_keras.layers.keras3 import ListPooling, SignedLog

        return self._build(keras, ListPooling, SignedLog, seed, name)

    def _build(self, keras, list_pooling, signed_log, seed: int, name: str):
        """The functional tower in `keras` (either version's module), with its
        `ListPooling` and `SignedLog` layers."""
        self._require_adapted()
        inputs = {
            f.name: keras.Input(shape=f.shape, dtype=f.tf_dtype_name, name=f.name)
            for f in self.spec.features
        }
        parts = []
        for i, f in enumerate(self.spec.features):
            x = inputs[f.name]
            init = keras.initializers.RandomUniform(
                -0.05, 0.05, seed=sub_seed(seed, "feature_embedding", i)
            )
            if f.is_numeric:
                if f.transform == "log":
                    x = signed_log(name=f"{f.name}_log")(x)
                if f.encoding == "normalize":
                    s = self.statistics["features"][f.name]
                    variance = s["variance"] if s["variance"] > 0 else 1.0
                    x = keras.layers.Normalization(
                        axis=None, mean=s["mean"], variance=variance, name=f"{f.name}_norm"
                    )(x)
                if f.encoding == "bucketize":
                    bounds = self.boundaries(f.name)
                    ids = keras.layers.Discretization(
                        bin_boundaries=bounds, name=f"{f.name}_buckets"
                    )(x)
                    x = keras.layers.Embedding(
                        len(bounds) + 1,
                        f.embedding_dim,
                        embeddings_initializer=init,
                        name=f"{f.name}_embedding",
                    )(ids)
                else:
                    x = keras.layers.Reshape((1,), name=f"{f.name}_column")(x)
                parts.append(x)
                continue
            ids = self._id_layer(f, keras)(x)
            x = keras.layers.Embedding(
                self.id_count(f.name),
                f.embedding_dim,
                embeddings_initializer=init,
                name=f"{f.name}_embedding",
            )(ids)
            if f.is_list:
                x = list_pooling(f.pooling, name=f"{f.name}_pooling")([x, ids])
            parts.append(x)
        out = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="concat")(parts)
        return keras.Model(inputs, out, name=name)

    def describe(self) -> list[dict[str, Any]]:
        """One dict per feature: kind, ids (vocabulary + OOV + pad) and width."""
        self._require_adapted()
        rows = []
        dims = self.output_dims()
        for f in self.spec.features:
            row: dict[str, Any] = {"name": f.name, "kind": f.kind, "width": dims[f.name]}
            if not f.is_numeric:
                row["ids"] = self.id_count(f.name)
            elif f.encoding == "bucketize":
                row["buckets"] = len(self.boundaries(f.name)) + 1
            rows.append(row)
        return rows
