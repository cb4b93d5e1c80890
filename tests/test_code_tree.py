"""The code tree's predictive distribution (`RQDecoder.code_tree`).

The reference enumerates every code sequence of a small codebook and scores
each through the decoder's teacher-forcing path (`training=True`,
`sampling_probability=1`: step l reads the true code l - 1), which shares no
code with the tree's branch expansion.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from conftest import small_rq_decoder
from rq_keras.config import PREDICTIONS
from rq_keras.layers.code_tree import atom_quantiles
from rq_keras.layers.decoder import RQDecoder
from rq_keras.quantizer.tokens import token_offsets_for

CENTROIDS = [[0.5, 4.0, 9.0], [-1.0, 1.5], [-0.2, 0.1, 0.3]]
QUANTILES = (0.1, 0.25, 0.9)
THRESHOLDS = (0.0, 3.0, 9.5)


def _decoder(zero_token=False, exact_levels=1, centroids=CENTROIDS, **kwargs):
    options = {"quantiles": QUANTILES, "thresholds": THRESHOLDS, "value_range": (0.0, None)}
    return small_rq_decoder(
        centroids, zero_token=zero_token, exact_levels=exact_levels, **{**options, **kwargs}
    )


def _state(rows=5, width=16):
    return tf.constant(np.random.default_rng(0).normal(size=(rows, width)) * 2, tf.float32)


def _enumerate(decoder, state, levels=None, clip=True):
    """Atoms (values, probabilities) `(rows, paths)` from every code sequence
    of the first `levels` levels (None: all), and the paths. The codes of the
    levels after them are fed as code 0 (or `<zero>` after `<zero>`): an
    earlier level's logits do not read them. `clip`: the values clipped to
    `value_range` (0, None)."""
    zero = decoder.zero_token
    sizes = decoder.codebook_sizes
    offsets = token_offsets_for(sizes, zero)
    levels = len(sizes) if levels is None else levels
    # Level choices: -1 is <zero>; after <zero> every level is <zero>.
    choices = [([-1] if zero else []) + list(range(k)) for k in sizes[:levels]]
    paths = [
        p
        for p in itertools.product(*choices)
        if all(p[i + 1] == -1 for i in range(len(p) - 1) if p[i] == -1)
    ]
    rows = state.shape[0]
    values = np.zeros((rows, len(paths)))
    probs = np.ones((rows, len(paths)))
    for j, path in enumerate(paths):
        tail = -1 if path[-1] == -1 else 0
        full = list(path) + [tail] * (len(sizes) - levels)
        tokens = [1 if c == -1 else offsets[level] + c for level, c in enumerate(full)]
        out = decoder({"state": state, "tokens": tf.constant([tokens] * rows)}, training=True)
        logits = out["logits"].numpy().astype(np.float64)
        for level, code in enumerate(path):
            if level > 0 and path[level - 1] == -1:
                continue  # forced <zero>: probability 1, value 0
            own = logits[:, level, offsets[level] : offsets[level] + sizes[level]]
            if zero:
                own = np.concatenate([logits[:, level, 1:2], own], axis=1)
            own = np.exp(own - own.max(axis=1, keepdims=True))
            own /= own.sum(axis=1, keepdims=True)
            probs[:, j] *= own[:, code + 1 if zero else code]
            if code >= 0:
                values[:, j] += decoder.centroids[level][code]
    if not clip:
        return values, probs, paths
    return np.maximum(values, 0.0), probs  # value_range (0, None)


def _reference(values, probs):
    mean = (values * probs).sum(1) / probs.sum(1)
    order = np.argsort(values, axis=1, kind="stable")
    v = np.take_along_axis(values, order, 1)
    cdf = np.cumsum(np.take_along_axis(probs, order, 1), axis=1)
    quantiles = np.stack(
        [v[np.arange(len(v)), np.argmax(cdf >= q * cdf[:, -1:], axis=1)] for q in QUANTILES], 1
    )
    above = np.stack([(probs * (values > t)).sum(1) for t in THRESHOLDS], 1)
    return mean, quantiles, above


def _positive_mean(values, probs):
    """E[y | y > 0] of the atoms."""
    positive = probs * (values > 0)
    return (positive * values).sum(1) / positive.sum(1)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "transformer"])
@pytest.mark.parametrize("zero_token", [False, True])
def test_tree_is_exact_with_all_but_the_last_level_expanded(zero_token, cell):
    decoder = _decoder(zero_token, exact_levels=2, cell=cell)
    decoder.sampling_probability.assign(1.0)
    state = _state(width=decoder.state_size)
    values, probs = _enumerate(decoder, state)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-9)
    mean, quantiles, above = _reference(values, probs)
    for levels in (2, 3):  # L - 1 levels expanded, or all of them: both exact
        tree = decoder.code_tree(state, exact_levels=levels)
        # float32 softmax and sums against float64: 1e-5 relative.
        np.testing.assert_allclose(tree["mean"].numpy(), mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(tree["exceedance"].numpy(), above, rtol=1e-5, atol=1e-6)
        # Some sequences are clipped to 0 here (0.5 - 1 - 0.2), and <zero> is 0.
        assert np.all(probs[values <= 0].sum() > 0)
        np.testing.assert_allclose(
            tree["positive_mean"].numpy(), _positive_mean(values, probs), rtol=1e-5, atol=1e-6
        )
        # Quantiles are atom values: the same atom, unless a cumulative
        # probability sits within float32 rounding of a level (not here).
        np.testing.assert_allclose(tree["quantiles"].numpy(), quantiles, rtol=1e-6)


@pytest.mark.parametrize("rows", [5, 12])  # below V (x E then W), above it (E W first)
@pytest.mark.parametrize("zero_token", [False, True])
def test_factored_lstm_steps_match_the_cell(zero_token, rows, monkeypatch):
    """The LSTM tree (input projection once per code, `FactoredLstmSteps`)
    against the same decoder stepping its Keras cell on every branch row
    (`CellSteps`), with 0, 1 and 2 levels expanded. Two float32 orders of the
    same sums: 1e-5 relative protects every output down to the atoms' masses."""
    from rq_keras.layers.code_tree import CellSteps, FactoredLstmSteps

    decoder = _decoder(zero_token, exact_levels=2)
    state = _state(rows, width=decoder.state_size)
    table = tf.cast(decoder.code_embeddings, tf.float32)
    steps = decoder._tree_steps(table, rows)
    assert isinstance(steps, FactoredLstmSteps) and steps.through_table == (rows > table.shape[0])
    factored = [decoder.code_tree(state, exact_levels=n) for n in (0, 1, 2)]
    # Traced with an unknown batch (the SavedModel's signature), each step
    # picks the order of `x W` by `tf.cond` at run time: the same tree.
    traced = tf.function(
        lambda s: decoder.code_tree(s, exact_levels=1),
        input_signature=[tf.TensorSpec([None, decoder.state_size], tf.float32)],
    )
    for key, value in traced(state).items():
        np.testing.assert_allclose(value.numpy(), factored[1][key].numpy(), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(
        decoder, "_tree_steps", lambda t, rows: CellSteps(decoder.recurrent_cell, t)
    )
    for n, fast in enumerate(factored):
        slow = decoder.code_tree(state, exact_levels=n)
        for key in ("mean", "median", "positive_mean", "quantiles", "exceedance"):
            np.testing.assert_allclose(fast[key].numpy(), slow[key].numpy(), rtol=1e-5, atol=1e-6)
    # The levels are expanded: the branched means differ from the one pass's.
    assert np.max(np.abs(factored[1]["mean"].numpy() - factored[0]["mean"].numpy())) > 1e-3


def _pass_logits(decoder, state):
    return decoder({"state": state}, training=False)["logits"].numpy().astype(np.float64)


def _level_softmax(decoder, logits, level):
    """(probabilities, values) of level `level`'s own slots (`[<zero>,] codes`)
    from the pass's `logits`, per row."""
    start, size = decoder.token_offsets[level], decoder.codebook_sizes[level]
    own = logits[:, level, start : start + size]
    table = np.asarray(decoder.centroids[level], np.float64)
    if decoder.zero_token:
        own = np.concatenate([logits[:, level, 1:2], own], axis=1)
        table = np.concatenate([[0.0], table])
    p = np.exp(own - own.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True), table


def _pass_shift(decoder, state, level):
    """E[c_level] under the one pass's softmax at `level`, per row."""
    p, table = _level_softmax(decoder, _pass_logits(decoder, state), level)
    return p @ table


@pytest.mark.parametrize("zero_token", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_expanded_level_reads_level_3_from_the_pass(zero_token, cell):
    """L = 3 with level 1 expanded: the atoms are every (level 1, level 2)
    code pair with p(q_1|x) p(q_2|x, q_1) (teacher forcing, enumerated), and
    level 3 adds the one pass's expected value, the same for every branch of
    a row (none after `<zero>`). `deeper="branch"` steps level 3 on every
    branch instead: close to it (level 3's centroids span 0.5)."""
    decoder = _decoder(zero_token, exact_levels=1, cell=cell)
    state = _state(width=decoder.state_size)
    values, probs, paths = _enumerate(decoder, state, levels=2, clip=False)
    open_ = np.array([path[-1] != -1 for path in paths], np.float64)
    values = np.maximum(values + _pass_shift(decoder, state, 2)[:, None] * open_, 0.0)
    mean, quantiles, above = _reference(values, probs)
    tree = decoder.code_tree(state)
    # Two float32 code paths (the branched steps, the teacher-forced pass).
    np.testing.assert_allclose(tree["mean"].numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tree["quantiles"].numpy(), quantiles, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tree["exceedance"].numpy(), above, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        tree["positive_mean"].numpy(), _positive_mean(values, probs), rtol=1e-5, atol=1e-6
    )
    # The layer's own call (its pass's logits handed over) serves the same tree.
    served = decoder({"state": state}, training=False)
    np.testing.assert_allclose(served["mean"].numpy(), mean, rtol=1e-5, atol=1e-6)
    branched = decoder.code_tree(state, deeper="branch")["mean"].numpy()
    assert np.max(np.abs(branched - mean)) < 0.5
    # Two different reads: apart by more than float32 noise on values ~5 (1e-6).
    assert np.max(np.abs(branched - mean)) > 2e-5


def test_one_expanded_level_is_exact_with_two_levels():
    """An L = 2 codebook is exact with one expanded level (no level below
    the atoms), whatever `deeper` says."""
    state = _state()
    two = _decoder(exact_levels=1, centroids=CENTROIDS[:2])
    values, probs = _enumerate(two, state)
    mean, quantiles, above = _reference(values, probs)
    tree = two.code_tree(state)
    np.testing.assert_allclose(
        two.code_tree(state, deeper="branch")["mean"].numpy(), mean, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(tree["mean"].numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tree["quantiles"].numpy(), quantiles, rtol=1e-6)
    np.testing.assert_allclose(tree["exceedance"].numpy(), above, rtol=1e-5, atol=1e-6)


def _one_pass_reference(decoder, state):
    """exact_levels=0 by hand: the autoregressive pass's softmaxes; level 1's
    codes are the atoms, each deeper level adds its expected value (none
    after <zero>)."""
    logits = _pass_logits(decoder, state)
    values, shift = None, 0.0
    for level in range(decoder.num_levels):
        p, table = _level_softmax(decoder, logits, level)
        if level == 0:
            probs, values = p, np.broadcast_to(table, p.shape)
        else:
            shift = shift + p @ table
    open_ = np.ones(values.shape[1])
    if decoder.zero_token:
        open_[0] = 0.0
    atoms = np.maximum(values + shift[:, None] * open_, 0.0)
    return (probs * atoms).sum(1)


@pytest.mark.parametrize("zero_token", [False, True])
def test_no_expanded_level_is_one_pass(zero_token):
    decoder = _decoder(zero_token, exact_levels=0)
    state = _state()
    np.testing.assert_allclose(
        decoder.code_tree(state)["mean"].numpy(),
        _one_pass_reference(decoder, state),
        rtol=1e-5,
        atol=1e-6,
    )


def test_zero_code_with_one_expanded_level():
    """With one expanded level of three and the zero code: the mean is close
    to the exact one, P(y > 0) exact (it depends on level 1's <zero> only).
    That atoms after <zero> take no deeper value is checked exactly by
    `test_one_expanded_level_reads_level_3_from_the_pass`."""
    decoder = _decoder(zero_token=True, exact_levels=1)
    state = _state()
    values, probs = _enumerate(decoder, state)
    mean, _, above = _reference(values, probs)
    tree = decoder.code_tree(state)
    # Level 3 enters by its expectation: close, not equal (centroids span 0.5).
    assert np.max(np.abs(tree["mean"].numpy() - mean)) < 0.5
    # P(y > 0) depends only on <zero> at level 1 (every centroid sum is > 0 here).
    np.testing.assert_allclose(tree["exceedance"].numpy()[:, 0], above[:, 0], rtol=1e-5)


def test_outputs_and_the_served_prediction():
    state = _state()
    for kind in PREDICTIONS:
        decoder = _decoder(prediction=kind)
        out = decoder({"state": state}, training=False)
        assert out["quantiles"].shape == (5, 3) and out["exceedance"].shape == (5, 3)
        np.testing.assert_array_equal(out["prediction"].numpy(), out[kind].numpy())
        q = out["quantiles"].numpy()
        assert np.all(np.diff(q, axis=1) >= 0)
        assert np.all(q[:, 0] <= out["median"].numpy()) and np.all(out["median"].numpy() <= q[:, 2])
        e = out["exceedance"].numpy()
        assert np.all((e >= 0) & (e <= 1 + 1e-6)) and np.all(np.diff(e, axis=1) <= 1e-7)
        # Atoms are >= 0 here (value_range), so E[y] = P(y > 0) E[y | y > 0].
        np.testing.assert_allclose(
            out["mean"].numpy(), e[:, 0] * out["positive_mean"].numpy(), rtol=1e-5
        )
    # Training runs no tree: its prediction is f_reg's (L_reg's y_hat).
    tokens = tf.constant([[1, 4, 6]] * 5)
    out = decoder({"state": state, "tokens": tokens}, training=True)
    assert "mean" not in out
    np.testing.assert_array_equal(out["prediction"].numpy(), out["regressor"].numpy())
    # The layer's one-pass tree reads its own pass's logits instead of running
    # the pass again: the same distribution as code_tree's own pass (two code
    # paths of float32 arithmetic: 1e-6 relative).
    one_pass = _decoder(exact_levels=0)
    served = one_pass({"state": state}, training=False)
    own = one_pass.code_tree(state)
    for key in ("mean", "median", "positive_mean", "quantiles", "exceedance"):
        np.testing.assert_allclose(served[key].numpy(), own[key].numpy(), rtol=1e-6, atol=1e-6)
    # distribution=False (RQRegModel's validation when f_reg is served): no tree.
    assert "mean" not in decoder({"state": state}, training=False, distribution=False)
    # No thresholds: no exceedance output.
    assert "exceedance" not in _decoder(thresholds=())({"state": state}, training=False)


def test_config_round_trip_and_bad_options():
    decoder = _decoder(zero_token=True, prediction="median", exact_levels=2)
    again = RQDecoder.from_config(decoder.get_config())
    assert again.get_config() == decoder.get_config()
    for kwargs, message in (
        ({"prediction": "mode"}, "`prediction` must be one of"),
        ({"quantiles": (0.5, 1.0)}, "`quantiles` must be distinct numbers in"),
        ({"quantiles": (0.5, 0.5)}, "`quantiles` must be distinct numbers in"),
        ({"thresholds": (float("nan"),)}, "`thresholds` must be distinct finite"),
        ({"exact_levels": -1}, "`exact_levels` must be an int >= 0"),
        ({"value_range": (2.0, 1.0)}, "`value_range` must have low <= high"),
    ):
        with pytest.raises(ValueError, match=message):
            _decoder(**kwargs)
    with pytest.raises(ValueError, match="needs `centroids`"):
        RQDecoder([3], prediction="mean")
    # Without centroids (a decoder saved before the code tree): f_reg only.
    plain = RQDecoder([3, 2], units=4, embedding_dim=4, predictor_units=4, regressor_units=4)
    out = plain({"state": tf.zeros([2, 8])}, training=False)
    assert "mean" not in out and "prediction" in out


def test_atom_quantiles_is_the_lower_quantile_of_the_step_cdf():
    values = tf.constant([[3.0, 1.0, 2.0, 10.0]])
    probs = tf.constant([[0.2, 0.3, 0.4, 0.1]])  # sorted: 1 (.3), 2 (.4), 3 (.2), 10 (.1)
    q = atom_quantiles(values, probs, [0.1, 0.3, 0.31, 0.7, 0.9, 0.95]).numpy()
    np.testing.assert_array_equal(q, [[1.0, 1.0, 2.0, 2.0, 3.0, 10.0]])
