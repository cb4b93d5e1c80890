"""Validation of labels and sample weights, numpy only.

`as_label_array` turns labels into a finite 1-D float64 array and
`as_weights` checks sample weights; their errors count the bad rows and list
the first ones (`first_rows`). `rq_keras.quantizer.residual` uses them and
re-exports `as_label_array`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_label_array", "auto_zero_threshold"]

# How many bad rows an error message lists.
_MAX_LISTED = 5


def first_rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    listed = ", ".join(str(int(i)) for i in rows[:_MAX_LISTED])
    more = ", ..." if rows.size > _MAX_LISTED else ""
    return f"{rows.size} row(s), first row indices (0-based): [{listed}{more}]"


def as_label_array(values: Any, name: str = "`y`") -> np.ndarray:
    """Converts labels to a finite 1-D float64 array or raises a clear error.

    Args:
        values: array-like of shape `(n,)` or `(n, 1)`.
        name: how error messages name the values.

    Returns:
        float64 array of shape `(n,)`.

    Raises:
        ValueError: empty input, wrong shape, non-numeric, NaN or infinite
            entries; the message counts the bad rows and lists the first ones.
    """
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,) or (n, 1), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: at least one value is needed")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        out = np.empty(arr.shape, dtype=np.float64)
        bad = np.zeros(arr.shape, dtype=bool)
        for i, v in enumerate(arr.tolist()):
            try:
                if isinstance(v, (bool, np.bool_)) or v is None:
                    raise TypeError
                out[i] = float(v)
            except (TypeError, ValueError):
                bad[i] = True
        if bad.any():
            examples = [repr(arr[i]) for i in np.flatnonzero(bad)[:_MAX_LISTED]]
            raise ValueError(
                f"{name} has non-numeric values: {first_rows(bad)}, e.g. {', '.join(examples)}"
            )
        arr = out
    arr = arr.astype(np.float64, copy=False)
    nan = np.isnan(arr)
    if nan.any():
        raise ValueError(f"{name} has NaN values: {first_rows(nan)}")
    inf = np.isinf(arr)
    if inf.any():
        raise ValueError(f"{name} has infinite values: {first_rows(inf)}")
    return arr


def as_weights(sample_weight: Any, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n,):
        raise ValueError(f"`sample_weight` must have shape ({n},), got {w.shape}")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        raise ValueError(f"`sample_weight` must be finite and >= 0: {first_rows(bad)}")
    if not w.sum() > 0:
        raise ValueError("`sample_weight` sums to 0: no value carries weight")
    return w


# `zero_threshold="auto"`: a zero code when this share of the labels is 0.
AUTO_ZERO_SHARE = 0.01
AUTO_ZERO_THRESHOLD = 5e-3


def auto_zero_threshold(labels) -> float | None:
    """The zero code's threshold for these training labels (`QuantizerConfig`'s
    `zero_threshold="auto"`): when at least `AUTO_ZERO_SHARE` of them are exactly
    0 (and not all), `min(AUTO_ZERO_THRESHOLD, half the smallest non-zero
    |label|)`; otherwise None (no zero code)."""
    y = np.abs(np.asarray(labels, dtype=np.float64).reshape(-1))
    zeros = y == 0
    if y.size == 0 or zeros.mean() < AUTO_ZERO_SHARE or zeros.all():
        return None
    return min(AUTO_ZERO_THRESHOLD, 0.5 * float(y[~zeros].min()))
