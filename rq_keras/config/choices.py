"""The choices of the decoder's settings, and their check, in a module that
imports nothing of rq_keras: the decoder's shared math
(`rq_keras.layers.decoding`) and the configs (`configs`) both read them.
"""

from __future__ import annotations

import math

__all__ = ["CELLS", "PREDICTIONS", "REGRESSOR_INPUTS", "check_distribution_options"]

# Decoder cells (Table 4): recurrent, or a causal Transformer stepped per level.
CELLS = ("lstm", "gru", "rnn", "transformer")
# What f_reg reads (see `RQDecoder`): the logits as they are, or behind stop_gradient.
REGRESSOR_INPUTS = ("logits", "stopped")
# What the `prediction` output is (see `RQDecoder`): f_reg's sum (the paper), or
# the mean, the median or the mean given y > 0 of the predictive distribution
# over the code tree. Each is also an output of its own.
PREDICTIONS = ("regressor", "mean", "median", "positive_mean")


def check_distribution_options(quantiles, thresholds, exact_levels) -> None:
    """Raises ValueError for quantile levels outside (0, 1), repeated or
    non-finite thresholds, or `exact_levels` < 0."""
    levels = [float(q) for q in quantiles]
    if any(not 0.0 < q < 1.0 for q in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"`quantiles` must be distinct numbers in (0, 1), got {list(quantiles)}")
    values = [float(t) for t in thresholds]
    if any(not math.isfinite(t) for t in values) or len(set(values)) != len(values):
        raise ValueError(f"`thresholds` must be distinct finite numbers, got {list(thresholds)}")
    if isinstance(exact_levels, bool) or int(exact_levels) != exact_levels or exact_levels < 0:
        raise ValueError(f"`exact_levels` must be an int >= 0, got {exact_levels!r}")
