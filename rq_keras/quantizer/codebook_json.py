"""The codebook's JSON file, numpy only: format, checksum, write and read.

A `ResidualQuantizer` (`rq_keras.quantizer.residual`) saves and loads itself
through these functions; they take the quantizer (or its class) as an
argument and use only its public methods, so this module does not import it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from rq_keras.atomic import write_json

__all__ = ["FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "rq_keras.residual_quantizer"
FORMAT_VERSION = 1


def centroids_digest(centroids: list) -> str:
    """sha256 of the centroids' compact JSON (the `centroids_sha256` field)."""
    payload = json.dumps(centroids, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def codebook_to_json_dict(quantizer: Any) -> dict[str, Any]:
    """The JSON document of a fitted quantizer."""
    centroids = [c.tolist() for c in quantizer.require_fitted()]
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": quantizer.get_config(),
        "centroids": centroids,
        "centroids_sha256": centroids_digest(centroids),
        "fit_info": quantizer.fit_info,
    }


def save_codebook(quantizer: Any, path: str | os.PathLike) -> None:
    """Writes `quantizer.to_json_dict()` to `path` atomically, after checking
    that every centroid is finite (`ResidualQuantizer.save`)."""
    path = os.fspath(path)
    for level, c in enumerate(quantizer.require_fitted()):
        if not np.all(np.isfinite(c)):
            raise ValueError(
                f"level {level}: centroids must be finite, got {c.tolist()}; "
                f"nothing written to {path}"
            )
    write_json(path, quantizer.to_json_dict(), indent=1)


def load_codebook(cls: Any, path: str | os.PathLike) -> Any:
    """Reads `path` and builds it with `cls.from_json_dict`; every error is a
    `ValueError` naming the file (`ResidualQuantizer.load`)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid JSON codebook ({e})") from e
    try:
        return cls.from_json_dict(doc)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: {e}") from e


def codebook_from_json_dict(cls: Any, doc: Any) -> Any:
    """A fitted `cls` (built by `cls.from_config`) from a JSON document,
    validating every field (`ResidualQuantizer.from_json_dict`)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise ValueError(f"not an rq_keras codebook (expected format {FORMAT_NAME!r})")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"unsupported codebook format_version {version!r} (this rq_keras reads "
            f"{FORMAT_VERSION})"
        )
    for key in ("config", "centroids", "centroids_sha256"):
        if key not in doc:
            raise ValueError(f"codebook is missing the field {key!r}")
    if not isinstance(doc["config"], dict):
        raise ValueError("codebook field 'config' must be an object")
    quantizer = cls.from_config(doc["config"])
    raw = doc["centroids"]
    if not isinstance(raw, list) or len(raw) != quantizer.num_levels:
        raise ValueError(
            f"codebook field 'centroids' must be a list of {quantizer.num_levels} levels"
        )
    if centroids_digest(raw) != doc["centroids_sha256"]:
        raise ValueError("centroids do not match centroids_sha256: the file is corrupted")
    centroids = []
    for level, values in enumerate(raw):
        if not isinstance(values, list) or not values:
            raise ValueError(f"level {level}: centroids must be a non-empty list")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise ValueError(f"level {level}: centroids must be numbers")
        c = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(c)):
            raise ValueError(f"level {level}: centroids must be finite")
        if np.any(np.diff(c) <= 0):
            raise ValueError(f"level {level}: centroids must be strictly increasing")
        if c.size > quantizer.codebook_size[level]:
            raise ValueError(
                f"level {level}: {c.size} centroids but codebook_size is "
                f"{quantizer.codebook_size[level]}"
            )
        centroids.append(c)
    quantizer.centroids = centroids
    quantizer.fit_info = doc.get("fit_info") or {}
    return quantizer
