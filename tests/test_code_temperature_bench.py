"""benchmarks/code_temperature.py: dividing every step's logits by T serves
the trained distribution at T = 1, collapses each row's to one atom as
T -> 0, flattens every row's towards the same uniform mixture for T > 1, and
leaves the decoder as it was."""

import argparse
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, small_rq_decoder

sys.path.insert(0, str(REPO / "benchmarks"))
from code_temperature import logit_temperature, parse_temperatures  # noqa: E402

CENTROIDS = [[0.5, 4.0, 9.0], [-1.0, 1.5], [-0.2, 0.1, 0.3]]
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@pytest.fixture(scope="module")
def decoder():
    return small_rq_decoder(
        CENTROIDS, zero_token=True, exact_levels=1, quantiles=QUANTILES, value_range=(0.0, None)
    )


def _serve(decoder):
    state = tf.constant(np.random.default_rng(0).normal(size=(64, 16)) * 2, tf.float32)
    out = decoder({"state": state}, training=False)
    return {k: out[k].numpy() for k in ("mean", "quantiles", "logits")}


def test_temperature_one_serves_the_trained_distribution_and_the_decoder_is_restored(decoder):
    own = decoder.predictor
    before = _serve(decoder)
    with logit_temperature(decoder) as temperature:
        at_one = _serve(decoder)
        temperature.assign(2.0)
        halved = _serve(decoder)
    assert decoder.predictor is own
    after = _serve(decoder)
    for key in before:
        # a division by 1.0 is exact: the same float32 values
        np.testing.assert_array_equal(at_one[key], before[key])
        np.testing.assert_array_equal(after[key], before[key])
    np.testing.assert_allclose(halved["logits"][:, 0], before["logits"][:, 0] / 2, rtol=1e-6)


def test_a_low_temperature_collapses_each_row_and_a_high_one_flattens_them(decoder):
    spread, between_rows = {}, {}
    # the untrained layer's logits differ by as little as 1e-3: T = 1e-5
    # puts their gaps at 100 and more, every level's softmax one-hot
    for t in (1e-5, 1.0, 4.0):
        with logit_temperature(decoder, t):
            out = _serve(decoder)
        spread[t] = out["quantiles"][:, -1] - out["quantiles"][:, 0]
        between_rows[t] = out["mean"].std()
    # all the mass on one atom: every quantile of a row equal
    np.testing.assert_allclose(spread[1e-5], 0.0, atol=1e-5)
    assert spread[1.0].mean() > 0.1
    # towards every level uniform: the rows' means move together
    assert between_rows[4.0] < 0.5 * between_rows[1.0]


def test_bad_temperatures_and_layers_are_refused(decoder):
    with pytest.raises(ValueError, match="> 0"):
        with logit_temperature(decoder, 0.0):
            pass
    with pytest.raises(TypeError, match="not an RQ decoder"):
        with logit_temperature(tf.keras.layers.Dense(2)):
            pass
    assert parse_temperatures("0.9, 1,1.1") == [0.9, 1.0, 1.1]
    for text in ("", "1,a", "1,-2", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_temperatures(text)
