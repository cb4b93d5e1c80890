"""Residual quantization of a continuous target (paper section 3.2, Algorithm 1).

A :class:`ResidualQuantizer` turns each target value ``y`` into ``L`` ordered
codes: level 1 clusters the labels, level ``l`` clusters the residuals left by
levels ``1..l-1`` (Eq. 1-4), and ``y ~ sum_l c[l, code_l]`` (Eq. 5).

The values are one-dimensional, and this module uses that:

* the labels are sorted once and compressed to distinct values with their
  (weighted) counts, and prefix sums over them give the cost of any contiguous
  cluster in O(1) (k-means) or O(log n) (k-medians);
* in 1-D the optimal clusters are contiguous runs of the sorted values, so the
  default initialisation is an exact dynamic programme over cluster boundaries.
  It is exact (the global optimum) when a level has at most ``num_candidates``
  distinct values; above that the boundaries are restricted to a candidate grid
  (weighted quantiles, an even grid over the value range, and a geometric grid
  towards the tail) and Lloyd iterations on the full data refine the result;
* a Lloyd iteration is a ``searchsorted`` of the ``K - 1`` decision boundaries
  into the sorted values plus prefix-sum look-ups: O(K log n), not O(n K).

Decision rule. Level ``l`` stores its sorted centroids ``c`` and the decision
boundaries ``b[k] = c[k] + (c[k+1] - c[k]) / 2``. A residual ``r`` gets code
``k = #{j : b[j] < r}``: the nearest centroid, and on an exact midpoint the
lower one. The numpy encoder and the in-graph encoder
(:class:`rq_keras.layers.ResidualCodeEncoder`) apply the same rule to the same
float64 boundaries, so their codes are bit-identical.

Vocabulary (`rq_keras.quantizer.tokens`): token 0 is ``<start>``; level ``l``'s
code ``k`` is token ``1 + sum(K[:l]) + k`` (levels are 0-based in the API).

Zero code (optional, ``zero_threshold``; the authors' released code uses
5e-3). Once a residual is smaller than the threshold in absolute value, the
level and every later level get the code ``-1``, which stands for the value 0
and is the token ``<zero>``. A label below the threshold (a zero of a
zero-inflated target) is ``<zero>`` at every level, so level 1 says "zero or
not" outright. Rows coded ``<zero>`` at a level are left out of that level's
K-means, which spends the centroids on the non-zero residuals. With the zero
code the vocabulary is ``<start>`` = 0, ``<zero>`` = 1, and level ``l``'s code
``k`` is token ``2 + sum(K[:l]) + k``; without it, the layout above.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from rq_keras.features.labels import as_label_array, as_weights, first_rows
from rq_keras.quantizer.codebook_json import (  # noqa: F401 (the format's names stay importable from here)
    FORMAT_NAME,
    FORMAT_VERSION,
    codebook_from_json_dict,
    codebook_to_json_dict,
    load_codebook,
    save_codebook,
)
from rq_keras.quantizer.codebook_report import plot_codebook, reconstruction_report
from rq_keras.quantizer.residual_fit import fit_levels

# The token layout lives in a leaf module; its names stay importable from here.
from rq_keras.quantizer.tokens import (  # noqa: F401
    START_TOKEN,
    ZERO_CODE,
    ZERO_TOKEN,
    decision_boundaries,
    special_tokens,
    token_offsets_for,
)

__all__ = ["INITS", "METHODS", "ResidualQuantizer"]

# "quantile": the dynamic-quantile discretization the paper compares against
# (Table 5): equal-count bins, no Lloyd iterations (see
# `rq_keras.quantizer.clustering1d.quantile_partition`).
METHODS = ("kmeans", "kmedians", "quantile")
INITS = ("optimal", "kmeans++")


def _per_level(value, num_levels: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != num_levels:
            raise ValueError(f"`{name}` has {len(value)} entries but `num_levels` is {num_levels}")
        return list(value)
    return [value] * num_levels


class ResidualQuantizer:
    """RQ K-means codebook: L ordered codes per continuous value (Algorithm 1).

    Args:
        num_levels: L, the number of levels (codes per value), >= 1.
        codebook_size: K, centroids per level: an int, or one int per level.
            A level whose residuals have fewer distinct values than K gets one
            centroid per distinct value (exact at that level) and a
            `UserWarning`; `fitted_codebook_sizes` reports what was fitted and
            the vocabulary follows the fitted sizes.
        method: `"kmeans"` (squared error, centroid = weighted mean),
            `"kmedians"` (absolute error, centroid = weighted median; the
            paper's online system uses it at level 1) or `"quantile"` (the
            dynamic-quantile discretization of the paper's Table 5: K bins of
            equal count, rebalanced after a heavy tie, centroid = the bin's
            mean, no Lloyd iterations); one string or one per level. Codes
            are the nearest centroid for every method (the codebook's one
            decision rule), so a quantile bin's edge values can take the
            neighbouring bin's code; that only lowers the reconstruction
            error.
        clip_min: labels below are clipped to it before fitting and encoding.
        clip_max: labels above are clipped to it before fitting and encoding.
        init: `"optimal"` (default): dynamic programme over cluster boundaries,
            the global optimum when a level has at most `num_candidates`
            distinct values; `"kmeans++"`: seeded weighted k-means++ start.
            Both are refined by Lloyd iterations on the full data.
        seed: seed of the `"kmeans++"` initialisation.
        max_iter: maximum Lloyd iterations per level.
        num_candidates: size of the boundary grid of the `"optimal"` init.
        zero_threshold: None (default, the paper) or a positive number (the
            authors' released code: 5e-3): a residual with absolute value
            below it gets the zero code (-1, value 0, token `<zero>`) at its
            level and every later one, and is left out of those levels'
            K-means. A level left with no non-zero residual gets the single
            centroid 0 and a `UserWarning`.

    Attributes (after `fit` or `load`):
        centroids: list of L sorted float64 arrays, level l of shape `(K_l,)`.
        fitted_codebook_sizes: list of the K_l actually fitted.
        vocabulary_size: `<start>`, `<zero>` if `zero_threshold` is set, and
            every level's codes: `1 + sum(K_l)` or `2 + sum(K_l)`.
        fit_info: dict with sizes, per-level cost and iterations, seconds.
    """

    def __init__(
        self,
        num_levels: int = 3,
        codebook_size: int | Sequence[int] = 48,
        method: str | Sequence[str] = "kmeans",
        clip_min: float | None = None,
        clip_max: float | None = None,
        init: str = "optimal",
        seed: int = 0,
        max_iter: int = 300,
        num_candidates: int = 1024,
        zero_threshold: float | None = None,
    ):
        if isinstance(num_levels, bool) or not isinstance(num_levels, (int, np.integer)):
            raise TypeError(f"`num_levels` must be an int, got {num_levels!r}")
        if num_levels < 1:
            raise ValueError(f"`num_levels` must be >= 1, got {num_levels}")
        sizes = _per_level(codebook_size, num_levels, "codebook_size")
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
                raise ValueError(f"`codebook_size` must be an int >= 1 per level, got {size!r}")
        methods = _per_level(method, num_levels, "method")
        for m in methods:
            if m not in METHODS:
                raise ValueError(f"`method` must be one of {METHODS}, got {m!r}")
        for name, bound in (("clip_min", clip_min), ("clip_max", clip_max)):
            if bound is not None and not math.isfinite(float(bound)):
                raise ValueError(f"`{name}` must be a finite number or None, got {bound!r}")
        if clip_min is not None and clip_max is not None and clip_min > clip_max:
            raise ValueError(f"`clip_min` ({clip_min}) must be <= `clip_max` ({clip_max})")
        if init not in INITS:
            raise ValueError(f"`init` must be one of {INITS}, got {init!r}")
        if max_iter < 0:
            raise ValueError(f"`max_iter` must be >= 0, got {max_iter}")
        if num_candidates < 2:
            raise ValueError(f"`num_candidates` must be >= 2, got {num_candidates}")
        if zero_threshold is not None:
            if isinstance(zero_threshold, bool) or not isinstance(
                zero_threshold, (int, float, np.integer, np.floating)
            ):
                raise TypeError(
                    f"`zero_threshold` must be a number or None, got {zero_threshold!r}"
                )
            if not (math.isfinite(zero_threshold) and zero_threshold > 0):
                raise ValueError(
                    f"`zero_threshold` must be a finite number > 0 or None, got {zero_threshold!r}"
                )
        self.num_levels = int(num_levels)
        self.codebook_size = [int(s) for s in sizes]
        self.method = list(methods)
        self.clip_min = None if clip_min is None else float(clip_min)
        self.clip_max = None if clip_max is None else float(clip_max)
        self.init = init
        self.seed = int(seed)
        self.max_iter = int(max_iter)
        self.num_candidates = int(num_candidates)
        self.zero_threshold = None if zero_threshold is None else float(zero_threshold)
        self.centroids: list[np.ndarray] | None = None
        self.fit_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """Every constructor argument, JSON-serializable."""
        return {
            "num_levels": self.num_levels,
            "codebook_size": list(self.codebook_size),
            "method": list(self.method),
            "clip_min": self.clip_min,
            "clip_max": self.clip_max,
            "init": self.init,
            "seed": self.seed,
            "max_iter": self.max_iter,
            "num_candidates": self.num_candidates,
            "zero_threshold": self.zero_threshold,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ResidualQuantizer:
        return cls(**config)

    # --------------------------------------------------------------------- fit
    def clip(self, y: np.ndarray) -> np.ndarray:
        """Labels clipped to `[clip_min, clip_max]`, as `fit` and `encode` see them."""
        if self.clip_min is None and self.clip_max is None:
            return y
        return np.clip(y, self.clip_min, self.clip_max)

    def fit(self, y: Any, sample_weight: Any = None) -> ResidualQuantizer:
        """Fits the L codebooks on labels `y` (Algorithm 1).

        Args:
            y: labels, shape `(n,)`; any finite float, negatives included.
            sample_weight: optional non-negative weights, shape `(n,)`.

        Returns:
            self.

        Raises:
            ValueError: bad labels or weights, or labels so large (near the
                float64 limits) that their squared deviations overflow; the
                message names the label range. Nothing is fitted then.
        """
        start = time.perf_counter()
        y = self.clip(as_label_array(y))
        w = as_weights(sample_weight, y.size)
        centroids, levels = fit_levels(self, y, w)
        self.centroids = centroids
        mean = float(np.average(y, weights=w))
        self.fit_info = {
            "n": int(y.size),
            "total_weight": float(y.size if w is None else w.sum()),
            # The (clipped, weighted) labels' std: the unit of L_reg with
            # ModelConfig.label_scale="std".
            "label_std": math.sqrt(float(np.average(np.square(y - mean), weights=w))),
            "levels": levels,
            "fit_seconds": time.perf_counter() - start,
        }
        return self

    @property
    def label_std(self) -> float:
        """The std of the labels the codebook was fitted on (clipped,
        weighted); 1.0 when they are all equal.

        Raises:
            RuntimeError: not fitted.
            ValueError: a codebook saved by an rq_keras without the field.
        """
        self.require_fitted()
        value = self.fit_info.get("label_std")
        if value is None:
            raise ValueError(
                "the codebook has no label_std (saved by an older rq_keras): fit it again"
            )
        value = float(value)
        return value if value > 0 else 1.0

    # ------------------------------------------------------------ vocabulary
    def require_fitted(self) -> list[np.ndarray]:
        if self.centroids is None:
            raise RuntimeError("the ResidualQuantizer is not fitted: call fit() or load() first")
        return self.centroids

    @property
    def fitted_codebook_sizes(self) -> list[int]:
        return [int(c.size) for c in self.require_fitted()]

    @property
    def zero_token(self) -> bool:
        """True when the vocabulary has the `<zero>` token (`zero_threshold`)."""
        return self.zero_threshold is not None

    @property
    def token_offsets(self) -> np.ndarray:
        """Global token id of code 0 of each level, shape `(L,)`."""
        return token_offsets_for(self.fitted_codebook_sizes, self.zero_token)

    @property
    def vocabulary_size(self) -> int:
        return special_tokens(self.zero_token) + sum(self.fitted_codebook_sizes)

    @property
    def boundaries(self) -> list[np.ndarray]:
        """Decision boundaries per level, level l of shape `(K_l - 1,)`."""
        return [decision_boundaries(c) for c in self.require_fitted()]

    def token_id(self, level: int, code: int) -> int:
        """Global token id of `code` at 0-based `level` (-1 is `<zero>`)."""
        sizes = self.fitted_codebook_sizes
        if not 0 <= level < len(sizes):
            raise ValueError(f"`level` must be in [0, {len(sizes)}), got {level}")
        if code == ZERO_CODE and self.zero_token:
            return ZERO_TOKEN
        low = ZERO_CODE if self.zero_token else 0
        if not low <= code < sizes[level]:
            raise ValueError(
                f"`code` must be in [{low}, {sizes[level]}) at level {level}, got {code}"
            )
        return int(self.token_offsets[level] + code)

    def level_and_code(self, token: int) -> tuple[int, int]:
        """Inverse of `token_id` for a level's code token.

        The special tokens (`<start>`, and `<zero>`, which every level shares)
        have no level and are rejected.
        """
        first = special_tokens(self.zero_token)
        if not first <= token < self.vocabulary_size:
            named = "0 is <start>, 1 is <zero>" if self.zero_token else "0 is <start>"
            raise ValueError(
                f"`token` must be in [{first}, {self.vocabulary_size}) ({named}), got {token}"
            )
        offsets = self.token_offsets
        level = int(np.searchsorted(offsets, token, side="right") - 1)
        return level, int(token - offsets[level])

    def codes_to_tokens(self, codes: Any) -> np.ndarray:
        """Codes `(n, L)` -> global token ids `(n, L)` (code -1 -> `<zero>`)."""
        codes = self._check_codes(codes)
        tokens = codes + self.token_offsets[None, :]
        if self.zero_token:
            tokens[codes == ZERO_CODE] = ZERO_TOKEN
        return tokens

    def tokens_to_codes(self, tokens: Any) -> np.ndarray:
        """Global token ids `(n, L)` (level l in column l) -> codes `(n, L)`."""
        tokens = np.asarray(tokens)
        if tokens.dtype.kind not in "iu":
            raise ValueError(f"`tokens` must be integers, got dtype {tokens.dtype}")
        tokens = tokens.astype(np.int64)
        if tokens.ndim != 2 or tokens.shape[1] != self.num_levels:
            raise ValueError(f"`tokens` must have shape (n, {self.num_levels}), got {tokens.shape}")
        codes = tokens - self.token_offsets[None, :]
        if self.zero_token:
            # <zero> would otherwise land below the level's range; marking it as
            # the zero code keeps the range check for every other token.
            codes[tokens == ZERO_TOKEN] = ZERO_CODE
        return self._check_codes(codes, what="tokens")

    def _check_codes(self, codes: Any, what: str = "codes") -> np.ndarray:
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise ValueError(f"`{what}` must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64)
        sizes = np.asarray(self.fitted_codebook_sizes)
        if codes.ndim != 2 or codes.shape[1] != sizes.size:
            raise ValueError(f"`{what}` must have shape (n, {sizes.size}), got {codes.shape}")
        low = ZERO_CODE if self.zero_token else 0
        bad = (codes < low) | (codes >= sizes[None, :])
        if bad.any():
            raise ValueError(f"`{what}` out of range: {first_rows(bad.any(axis=1))}")
        return codes

    # ------------------------------------------------------ encode / decode
    def encode(self, y: Any) -> np.ndarray:
        """Codes of labels `y`: int64 array `(n, L)` (Eq. 2-4)."""
        return self._encode(y)[0]

    def quantized(self, y: Any) -> np.ndarray:
        """Per-level quantized values q_l of labels `y`: float64 `(n, L)`."""
        return self._encode(y)[1]

    def _encode(self, y: Any) -> tuple[np.ndarray, np.ndarray]:
        centroids = self.require_fitted()
        r = self.clip(as_label_array(y))
        codes = np.empty((r.size, self.num_levels), dtype=np.int64)
        values = np.empty((r.size, self.num_levels), dtype=np.float64)
        for level, c in enumerate(centroids):
            code = np.searchsorted(decision_boundaries(c), r, side="left")
            value = c[code]
            if self.zero_token:
                zero = np.abs(r) < self.zero_threshold
                code[zero] = ZERO_CODE
                value[zero] = 0.0
            codes[:, level] = code
            values[:, level] = value
            r = r - value
        return codes, values

    def decode(self, codes: Any) -> np.ndarray:
        """Reconstructed values sum_l c[l, code_l]: float64 `(n,)` (Eq. 5).

        The zero code (-1) contributes 0.
        """
        codes = self._check_codes(codes)
        out = np.zeros(codes.shape[0], dtype=np.float64)
        for level, c in enumerate(self.require_fitted()):
            code = codes[:, level]
            out += np.where(code == ZERO_CODE, 0.0, c[np.maximum(code, 0)])
        return out

    # ------------------------------------------------------------ save / load
    def to_json_dict(self) -> dict[str, Any]:
        return codebook_to_json_dict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the codebook as JSON (atomically: temp file then rename).

        Raises:
            ValueError: a centroid is NaN or infinite; nothing is written and
                an existing file at `path` is left as it was.
        """
        save_codebook(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ResidualQuantizer:
        """Reads a codebook written by `save`, validating every field.

        Raises:
            ValueError: the file is not valid JSON, not an rq_keras codebook,
                of an unknown format version, or its centroids are malformed
                or do not match their checksum. The message names the file.
        """
        return load_codebook(cls, path)

    @classmethod
    def from_json_dict(cls, doc: Any) -> ResidualQuantizer:
        return codebook_from_json_dict(cls, doc)

    # ---------------------------------------------------------------- report
    def report(self, y: Any) -> dict[str, Any]:
        """Reconstruction quality of the codebook on labels `y`.

        Returns:
            dict with `n`, `reconstruction_mae` (mean |y - y~| after all L
            levels, against the unclipped labels), `max_abs_error`,
            `relative_error` (MAE / mean |y|), `clipped_rows`, and `levels`: per
            level the fitted size, `codes_used` (distinct codes taken by `y`,
            the zero code not counted), `zero_rows` (rows with the zero code
            there; 0 without `zero_threshold`), and the MAE and max error of
            the reconstruction up to that level.
        """
        y = as_label_array(y)
        return reconstruction_report(self, y, *self._encode(y))

    def plot(self, y: Any, path: str | os.PathLike, report: dict | None = None) -> None:
        """Writes a PNG: label histogram (log axis) with the level-1 centroids,
        and the reconstruction error after each level.

        Args:
            y: the labels the report is about.
            path: where the PNG goes.
            report: `self.report(y)` if the caller has it already (saves an
                encoding pass); computed when None.
        """
        plot_codebook(self, y, path, report)
