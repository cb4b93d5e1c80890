"""The zero code (`zero_threshold`): quantizer, in-graph encoder, decoder, losses."""

import json
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from rq_keras import ResidualQuantizer
from rq_keras.layers import ResidualCodeEncoder
from rq_keras.layers.decoder import RQDecoder
from rq_keras.losses import code_nll, expected_level_values
from rq_keras.quantizer.tokens import ZERO_CODE, ZERO_TOKEN, token_offsets_for

THRESHOLD = 5e-3


def _zero_inflated(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.lognormal(3.0, 1.2, n)
    y[rng.random(n) < 0.6] = 0.0
    y[:50] = rng.uniform(-THRESHOLD, THRESHOLD, 50)  # tiny values, both signs
    return y


def test_golden_codes_vocabulary_and_decode():
    y = np.array([0.0, 0.001, 1.0, 2.0, 10.0, 12.0])
    q = ResidualQuantizer(num_levels=2, codebook_size=2, zero_threshold=THRESHOLD).fit(y)
    # Level 1 clusters the four non-zero labels only; level 2 their residuals.
    np.testing.assert_allclose(q.centroids[0], [1.5, 11.0])
    np.testing.assert_allclose(q.centroids[1], [-0.75, 0.75])
    codes = q.encode(y)
    np.testing.assert_array_equal(codes, [[-1, -1], [-1, -1], [0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_allclose(q.decode(codes), [0, 0, 0.75, 2.25, 10.25, 11.75])
    assert q.vocabulary_size == 2 + 2 + 2
    np.testing.assert_array_equal(q.token_offsets, [2, 4])
    tokens = q.codes_to_tokens(codes)
    np.testing.assert_array_equal(tokens, [[1, 1], [1, 1], [2, 4], [2, 5], [3, 4], [3, 5]])
    np.testing.assert_array_equal(q.tokens_to_codes(tokens), codes)
    assert q.fit_info["levels"][0]["zero_weight"] == 2.0


def test_without_threshold_the_layout_is_unchanged():
    y = np.array([0.0, 0.001, 1.0, 2.0, 10.0, 12.0])
    q = ResidualQuantizer(num_levels=2, codebook_size=2).fit(y)
    assert not q.zero_token and q.vocabulary_size == 5
    np.testing.assert_array_equal(q.token_offsets, token_offsets_for([2, 2]))
    assert (q.encode(y) >= 0).all()
    with pytest.raises(ValueError, match="out of range"):
        q.decode([[-1, 0]])


def test_zero_rows_are_left_out_of_the_kmeans():
    y = _zero_inflated()
    q = ResidualQuantizer(num_levels=3, codebook_size=16, zero_threshold=THRESHOLD).fit(y)
    # Level 1 equals a plain fit on the labels at or above the threshold.
    big = y[np.abs(y) >= THRESHOLD]
    plain = ResidualQuantizer(num_levels=1, codebook_size=16).fit(big)
    np.testing.assert_allclose(q.centroids[0], plain.centroids[0], rtol=0, atol=1e-9)
    # Weights on rows that get the zero code change nothing.
    w = np.ones_like(y)
    w[np.abs(y) < THRESHOLD] = 100.0
    weighted = ResidualQuantizer(num_levels=3, codebook_size=16, zero_threshold=THRESHOLD)
    weighted.fit(y, sample_weight=w)
    for a, b in zip(q.centroids, weighted.centroids):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_encoding_invariants_on_zero_inflated_labels():
    y = _zero_inflated()
    q = ResidualQuantizer(num_levels=3, codebook_size=16, zero_threshold=THRESHOLD).fit(y)
    codes, values = q.encode(y), q.quantized(y)
    small = np.abs(y) < THRESHOLD
    assert (codes[small] == ZERO_CODE).all()
    assert (codes[~small, 0] >= 0).all()
    # Once zero, zero for good; the zero code is worth 0.
    for level in range(1, 3):
        assert (codes[codes[:, level - 1] == ZERO_CODE, level] == ZERO_CODE).all()
    assert (values[codes == ZERO_CODE] == 0).all()
    np.testing.assert_array_equal(q.decode(codes), values.sum(1))
    # A row is coded zero exactly when its residual before the level is small.
    residual = y.copy()
    for level in range(3):
        np.testing.assert_array_equal(codes[:, level] == ZERO_CODE, np.abs(residual) < THRESHOLD)
        residual = residual - values[:, level]
    report = q.report(y)
    assert report["levels"][0]["zero_rows"] == int(small.sum())
    assert report["levels"][2]["zero_rows"] == int((codes[:, 2] == ZERO_CODE).sum())
    assert report["levels"][0]["codes_used"] == 16
    # The zero labels are reconstructed exactly and the codebook stays as good
    # as the plain one on this data.
    assert np.all(q.decode(codes)[small] == 0)
    plain = ResidualQuantizer(num_levels=3, codebook_size=16).fit(y)
    assert report["reconstruction_mae"] <= plain.report(y)["reconstruction_mae"] * 1.05


def test_a_level_with_no_nonzero_residual_gets_centroid_zero():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q = ResidualQuantizer(num_levels=2, codebook_size=4, zero_threshold=1e-3)
        q.fit(np.zeros(10))
    assert [c.tolist() for c in q.centroids] == [[0.0], [0.0]]
    assert any("level 0: every residual is below zero_threshold" in str(w.message) for w in caught)
    np.testing.assert_array_equal(q.encode([0.0, 5.0]), [[-1, -1], [0, 0]])
    # Level 1 is exact on three values; nothing is left for levels 2 and 3.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q = ResidualQuantizer(num_levels=3, codebook_size=3, zero_threshold=1e-3)
        q.fit([0.0, 1.0, 2.0, 3.0])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and all("every residual is below" in m for m in messages)
    assert messages[0].startswith("level 1") and messages[1].startswith("level 2")
    assert (q.encode([1.0, 2.0, 3.0])[:, 1:] == ZERO_CODE).all()


@pytest.mark.parametrize(
    "bad, error",
    [
        (0.0, ValueError),
        (-1e-3, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("0.005", TypeError),
        (True, TypeError),
    ],
)
def test_bad_thresholds_are_rejected(bad, error):
    with pytest.raises(error, match="zero_threshold"):
        ResidualQuantizer(zero_threshold=bad)


def test_vocabulary_helpers_with_the_zero_code():
    q = ResidualQuantizer(num_levels=2, codebook_size=3, zero_threshold=THRESHOLD)
    q.fit(np.concatenate([np.zeros(5), np.arange(1.0, 30.0)]))
    assert q.token_id(0, -1) == ZERO_TOKEN == q.token_id(1, -1)
    assert q.token_id(0, 0) == 2 and q.token_id(1, 0) == 5
    assert q.level_and_code(5) == (1, 0)
    for bad_token in (0, 1, q.vocabulary_size):
        with pytest.raises(ValueError, match="1 is <zero>"):
            q.level_and_code(bad_token)
    with pytest.raises(ValueError, match=r"in \[-1, 3\)"):
        q.token_id(0, -2)
    with pytest.raises(ValueError, match="out of range"):
        q.decode([[-2, 0]])
    with pytest.raises(ValueError, match="out of range"):
        q.tokens_to_codes([[0, 5]])  # <start> is no code
    with pytest.raises(ValueError, match="shape"):
        q.tokens_to_codes([[2, 5, 5]])


def test_save_load_round_trip_and_older_files(tmp_path):
    y = _zero_inflated(2000)
    q = ResidualQuantizer(num_levels=2, codebook_size=8, zero_threshold=THRESHOLD).fit(y)
    q.save(tmp_path / "cb.json")
    again = ResidualQuantizer.load(tmp_path / "cb.json")
    assert again.zero_threshold == THRESHOLD
    np.testing.assert_array_equal(again.encode(y), q.encode(y))
    # A codebook written before the option existed has no such key: no zero code.
    plain = ResidualQuantizer(num_levels=2, codebook_size=8).fit(y)
    doc = plain.to_json_dict()
    del doc["config"]["zero_threshold"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    old = ResidualQuantizer.load(tmp_path / "old.json")
    assert old.zero_threshold is None
    np.testing.assert_array_equal(old.encode(y), plain.encode(y))


def test_in_graph_encoder_is_bit_identical():
    y = _zero_inflated(5000)
    q = ResidualQuantizer(num_levels=3, codebook_size=8, zero_threshold=THRESHOLD).fit(y)
    # Values at the threshold and one ulp either side, both signs, plus the
    # level-1 midpoints.
    edges = np.array([THRESHOLD, -THRESHOLD])
    probes = np.concatenate(
        [y, edges, np.nextafter(edges, 0), np.nextafter(edges, 1), q.boundaries[0]]
    )
    layer = ResidualCodeEncoder.from_quantizer(q)
    out = layer(tf.constant(probes))
    np.testing.assert_array_equal(out["codes"].numpy(), q.encode(probes))
    np.testing.assert_array_equal(out["tokens"].numpy(), q.codes_to_tokens(q.encode(probes)))
    np.testing.assert_allclose(
        out["level_values"].numpy(), q.quantized(probes).astype(np.float32), rtol=0, atol=0
    )
    clone = ResidualCodeEncoder.from_config(layer.get_config())
    assert clone.zero_threshold == THRESHOLD and clone.vocabulary_size == q.vocabulary_size
    np.testing.assert_array_equal(clone(tf.constant(probes))["codes"].numpy(), q.encode(probes))
    with pytest.raises(ValueError, match="zero_threshold"):
        ResidualCodeEncoder([[0.0, 1.0]], zero_threshold=0.0)


def _decoder(use_regressor=True, zero_token=True):
    dec = RQDecoder(
        [3, 2],
        units=4,
        embedding_dim=4,
        predictor_units=4,
        regressor_units=4,
        use_regressor=use_regressor,
        centroids=[[1.0, 2.0, 3.0], [-0.5, 0.5]],
        zero_token=zero_token,
        seed=0,
    )
    dec({"state": tf.zeros([2, 8])})
    return dec


def _force(dec, tokens):
    """Makes the predictor's logits a large bonus on `tokens` (one per step)."""
    kernel, bias = dec.predictor.layers[-1].weights
    kernel.assign(tf.zeros_like(kernel))
    b = np.zeros(bias.shape, np.float32)
    b[list(tokens)] = 50.0
    bias.assign(b)


def test_decoder_vocabulary_and_codes_with_the_zero_token():
    dec = _decoder()
    assert dec.vocabulary_size == 2 + 3 + 2 and dec.token_offsets == [2, 5]
    out = dec({"state": tf.zeros([2, 8])})
    assert out["logits"].shape == (2, 2, 7)
    _force(dec, [ZERO_TOKEN])
    out = dec({"state": tf.zeros([2, 8])})
    np.testing.assert_array_equal(out["codes"].numpy(), [[-1, -1], [-1, -1]])
    _force(dec, [4, 6])  # level 1 code 2, level 2 code 1
    out = dec({"state": tf.zeros([2, 8])})
    np.testing.assert_array_equal(out["codes"].numpy(), [[2, 1], [2, 1]])
    assert RQDecoder.from_config(dec.get_config()).zero_token


def test_without_f_reg_the_zero_token_is_worth_zero():
    dec = _decoder(use_regressor=False)
    _force(dec, [ZERO_TOKEN])
    out = dec({"state": tf.zeros([2, 8])})
    np.testing.assert_allclose(out["level_values"].numpy(), 0.0, atol=1e-6)
    _force(dec, [4, 6])
    out = dec({"state": tf.zeros([2, 8])})
    np.testing.assert_allclose(out["level_values"].numpy(), [[3.0, 0.5]] * 2, atol=1e-5)
    # The loss module's expectation agrees with the decoder's.
    values = expected_level_values(out["logits"], [[1.0, 2.0, 3.0], [-0.5, 0.5]], zero_token=True)
    np.testing.assert_allclose(values.numpy(), out["level_values"].numpy(), atol=1e-6)


def test_expected_level_values_golden_with_zero_token():
    # Vocabulary: <start>, <zero>, level 1 codes (2), level 2 codes (1).
    logits = np.full((1, 2, 5), -np.inf, np.float32)
    logits[0, 0, [1, 2, 3]] = np.log([0.5, 0.25, 0.25])  # p(zero)=.5, codes .25/.25
    logits[0, 1, [0, 1, 4]] = np.log([0.9, 0.05, 0.05])  # <start> has no value
    values = expected_level_values(
        tf.constant(logits), [[2.0, 6.0], [1.0]], zero_token=True
    ).numpy()
    # Level 1: .5*0 + .25*2 + .25*6 = 2; level 2 renormalised over <zero>, code 0.
    np.testing.assert_allclose(values, [[2.0, 0.5]], rtol=1e-6)


def test_teacher_forcing_reads_the_zero_token_embedding():
    dec = _decoder()
    tokens = tf.constant([[ZERO_TOKEN, ZERO_TOKEN], [3, 5]])
    dec.sampling_probability.assign(1.0)
    state = tf.random.stateless_normal([2, 8], seed=[1, 2])
    forced = dec({"state": state, "tokens": tokens}, training=True)
    nll = code_nll(tokens, forced["logits"]).numpy()
    assert np.all(np.isfinite(nll)) and nll.shape == (2,)
    # With p = 1, step 2 of row 0 reads e(<zero>): moving that row of the
    # table moves row 0's second logits and nothing of row 1.
    changed = dec.code_embeddings.numpy().copy()
    changed[ZERO_TOKEN] += 1.0
    dec.code_embeddings.assign(changed)
    again = dec({"state": state, "tokens": tokens}, training=True)
    # Row 0's second step moved with e(<zero>); row 1's did not.
    assert not np.allclose(again["logits"][0, 1], forced["logits"][0, 1])
    np.testing.assert_allclose(again["logits"][1], forced["logits"][1], rtol=1e-6, atol=1e-7)


def test_in_graph_encoder_round_trip_in_a_model(tmp_path):
    y = _zero_inflated(2000)
    q = ResidualQuantizer(num_levels=2, codebook_size=8, zero_threshold=THRESHOLD).fit(y)
    inp = keras.Input(shape=(), dtype=tf.float64)
    model = keras.Model(inp, ResidualCodeEncoder.from_quantizer(q)(inp)["codes"])
    model.save(tmp_path / "enc.keras")
    again = keras.models.load_model(tmp_path / "enc.keras")
    np.testing.assert_array_equal(again(tf.constant(y)).numpy(), q.encode(y))
