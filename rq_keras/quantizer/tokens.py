"""The code vocabulary's layout, numpy only.

Token 0 is `<start>`; with the zero code, token 1 is `<zero>` (code -1 at
every level from the first residual below the threshold); then each level's
codes, level-major. The decision rule's boundaries are the midpoints between
sorted centroids. `rq_keras.quantizer.residual` (numpy) and the in-graph layers
(`rq_keras.layers`) both read this module, and it reads neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "START_TOKEN",
    "ZERO_CODE",
    "ZERO_TOKEN",
    "decision_boundaries",
    "special_tokens",
    "token_offsets_for",
]

START_TOKEN = 0
ZERO_TOKEN = 1  # only in a vocabulary with the zero code
ZERO_CODE = -1


def special_tokens(zero_token: bool = False) -> int:
    """How many tokens precede the codes: `<start>`, and `<zero>` if used."""
    return 2 if zero_token else 1


def token_offsets_for(codebook_sizes: Sequence[int], zero_token: bool = False) -> np.ndarray:
    """Global token id of code 0 of each level.

    `<start>` is 0 and, with `zero_token`, `<zero>` is 1; the levels' codes
    follow, level-major.
    """
    first = special_tokens(zero_token)
    return first + np.concatenate([[0], np.cumsum(codebook_sizes)[:-1]]).astype(np.int64)


def decision_boundaries(centroids: np.ndarray) -> np.ndarray:
    """Midpoints between consecutive sorted centroids, shape `(K - 1,)`."""
    c = np.asarray(centroids, dtype=np.float64)
    return c[:-1] + (c[1:] - c[:-1]) / 2.0
