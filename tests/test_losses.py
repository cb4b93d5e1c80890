import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from rq_keras.losses import (
    RQRegLoss,
    code_nll,
    expected_level_values,
    global_batch_mean,
    huber_terms,
    rank_n_contrast,
    rank_n_contrast_factored,
)
from rq_keras.losses.rnc import _running_sum
from rq_keras.losses.terms import atom_crps


def slow_rnc(embeddings, labels, temperature):
    """Eq. 15 transcribed literally: loops over i, j, k, float64."""
    e = np.asarray(embeddings, np.float64).reshape(len(labels), -1)
    y = np.asarray(labels, np.float64)
    n = len(y)
    out = np.zeros(n)
    for i in range(n):
        total = 0.0
        for j in range(n):
            if j == i:
                continue
            s_ij = -np.linalg.norm(e[i] - e[j]) / temperature
            denominator = 0.0
            for k in range(n):
                if k != i and abs(y[i] - y[k]) >= abs(y[i] - y[j]):
                    denominator += math.exp(-np.linalg.norm(e[i] - e[k]) / temperature)
            total += s_ij - math.log(denominator)
        out[i] = -total / (n - 1)
    return out


def dense_rnc(embeddings, labels, temperature, epsilon=1e-12):
    """Eq. 15 with a (B, B, B) mask and a (B, B, F) difference, in TF."""
    e = tf.reshape(embeddings, [len(labels), -1])
    y = tf.constant(labels, tf.float64)
    n = len(labels)
    sq = tf.reduce_sum(tf.square(e[:, None, :] - e[None, :, :]), axis=-1)
    s = -tf.sqrt(tf.maximum(sq, epsilon)) / temperature
    d = tf.abs(y[:, None] - y[None, :])
    not_i = ~tf.eye(n, dtype=tf.bool)
    in_set = not_i[:, None, :] & (d[:, None, :] >= d[:, :, None])  # [i, j, k]
    log_den = tf.reduce_logsumexp(
        tf.where(in_set, tf.broadcast_to(s[:, None, :], [n, n, n]), -np.inf), axis=-1
    )
    terms = tf.where(not_i, s - log_den, 0.0)
    return -tf.reduce_sum(terms, axis=1) / (n - 1)


def decoder_batch(batch=8, levels=3, vocabulary=13, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 6, batch).astype(np.float32)
    outputs = {
        "prediction": rng.normal(size=batch).astype(np.float32) + label,
        "level_values": rng.normal(size=(batch, levels)).astype(np.float32),
        "logits": rng.normal(size=(batch, levels, vocabulary)).astype(np.float32),
        "expected_embeddings": rng.normal(size=(batch, levels, dim)).astype(np.float32),
    }
    targets = {
        "label": label,
        "tokens": rng.integers(1, vocabulary, (batch, levels)).astype(np.int32),
        "level_values": rng.normal(size=(batch, levels)).astype(np.float32),
    }
    return outputs, targets


# ---------------------------------------------------------------- L_gen


def test_code_nll_golden():
    # softmax of log([1, 2, 3, 4]) is [0.1, 0.2, 0.3, 0.4].
    row = np.log([1.0, 2.0, 3.0, 4.0])
    logits = np.stack([np.stack([row, row[::-1]]), np.stack([row, row])]).astype(np.float32)
    tokens = np.array([[3, 3], [0, 1]])
    got = code_nll(tokens, logits).numpy()
    want = [-math.log(0.4) - math.log(0.1), -math.log(0.1) - math.log(0.2)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.shape == (2,) and got.dtype == np.float32
    # Eq. 11: the mean over examples of the sum over levels.
    terms = RQRegLoss(reg_weight=0.0, rnc_weight=0.0)(
        {"logits": logits}, {"label": np.zeros(2), "tokens": tokens}
    )
    np.testing.assert_allclose(terms["gen"].numpy(), np.mean(want), rtol=1e-6)
    np.testing.assert_allclose(terms["loss"].numpy(), np.mean(want), rtol=1e-6)


# ---------------------------------------------------------------- L_reg


def test_huber_terms_golden_both_sides_of_delta():
    delta = 2.0
    y = np.array([1.0, 10.0, 0.0])
    y_hat = np.array([[2.0], [7.0], [2.0]])  # errors 1 (inside), 3 (outside), 2 (= delta)
    q = np.array([[0.5, 0.0], [4.0, 1.0], [0.0, 0.0]])
    q_hat = np.array([[0.5, 0.0], [-1.0, 1.5], [0.0, -0.1]])  # errors 0, 0; 5, 0.5; 0, 0.1
    got = huber_terms(y, y_hat, q, q_hat, delta).numpy()
    want = [
        0.5 * 1.0**2,
        (2.0 * 3.0 - 0.5 * 4.0) + (2.0 * 5.0 - 0.5 * 4.0) + 0.5 * 0.5**2,
        0.5 * 2.0**2 + 0.5 * 0.1**2,
    ]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_huber_gradient_is_clipped_at_delta():
    y_hat = tf.Variable([0.0, 0.0, 0.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(huber_terms([1.0, 5.0, -9.0], y_hat, [[0.0]] * 3, [[0.0]] * 3, 2.0))
    np.testing.assert_allclose(tape.gradient(loss, y_hat).numpy(), [-1.0, -2.0, 2.0])


# ---------------------------------------------------------------- L_rnc


@pytest.mark.parametrize("seed", range(6))
def test_rank_n_contrast_matches_slow_transcription(seed):
    rng = np.random.default_rng(seed)
    batch = 7 + seed
    embeddings = rng.normal(size=(batch, 3, 4)).astype(np.float32)
    # Integer labels: many ties in label distance, on both sides of the anchor.
    labels = rng.integers(0, 4, batch)
    got = rank_n_contrast(embeddings, labels, temperature=2.0).numpy()
    np.testing.assert_allclose(got, slow_rnc(embeddings, labels, 2.0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5]),  # equidistant: ties on both sides
        np.full(9, 3.0),  # all equal: every S_ij is the whole batch without i
        np.random.default_rng(1).lognormal(size=9),  # continuous, no ties
    ],
)
def test_rank_n_contrast_special_label_layouts(labels):
    embeddings = np.random.default_rng(2).normal(size=(9, 6)).astype(np.float32) * 3.0
    got = rank_n_contrast(embeddings, labels, temperature=0.5).numpy()
    np.testing.assert_allclose(got, slow_rnc(embeddings, labels, 0.5), rtol=1e-5, atol=1e-5)


def test_rank_n_contrast_gradient_matches_dense_transcription():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 11)
    e = tf.Variable(rng.normal(size=(11, 8)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        fast = tf.reduce_mean(rank_n_contrast(e, labels, 2.0))
        dense = tf.reduce_mean(dense_rnc(e, labels, 2.0))
    np.testing.assert_allclose(fast.numpy(), dense.numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        tape.gradient(fast, e).numpy(), tape.gradient(dense, e).numpy(), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("all_equal", [False, True])
def test_rank_n_contrast_gradient_finite_when_embeddings_coincide(all_equal):
    rng = np.random.default_rng(4)
    values = rng.normal(size=(8, 5)).astype(np.float32)
    values[5] = values[2]
    if all_equal:
        values[:] = values[0]
    labels = rng.integers(0, 3, 8)
    e = tf.Variable(values)
    with tf.GradientTape() as tape:
        per_anchor = rank_n_contrast(e, labels, 2.0)
        loss = tf.reduce_mean(per_anchor)
    grad = tape.gradient(loss, e).numpy()
    assert np.isfinite(grad).all()
    # A zero distance is sqrt(epsilon) = 1e-6 here: the values barely move.
    np.testing.assert_allclose(per_anchor.numpy(), slow_rnc(values, labels, 2.0), atol=1e-5)


def test_rank_n_contrast_shapes_and_small_batches():
    rng = np.random.default_rng(5)
    e3 = rng.normal(size=(6, 3, 4)).astype(np.float32)
    y = rng.normal(size=(6, 1))
    flat = rank_n_contrast(e3.reshape(6, 12), y[:, 0], 2.0)
    assert flat.shape == (6,) and flat.dtype == tf.float32
    np.testing.assert_allclose(rank_n_contrast(e3, y, 2.0).numpy(), flat.numpy())
    np.testing.assert_array_equal(rank_n_contrast(e3[:1], y[:1], 2.0).numpy(), [0.0])
    # B = 2: one positive, alone in its denominator.
    np.testing.assert_allclose(rank_n_contrast(e3[:2], y[:2], 2.0).numpy(), [0.0, 0.0], atol=1e-6)


def log_space_rnc(embeddings, labels, temperature):
    """Eq. 15 with each denominator a float64 log-sum-exp: exact at any distance."""
    e = np.asarray(embeddings, np.float64).reshape(len(labels), -1)
    y = np.asarray(labels, np.float64)
    s = -np.linalg.norm(e[:, None] - e[None, :], axis=-1) / temperature
    d = np.abs(y[:, None] - y[None, :])
    n = len(y)
    out = np.zeros(n)
    for i in range(n):
        others = np.arange(n) != i
        for j in np.flatnonzero(others):
            members = others & (d[i] >= d[i, j])
            out[i] -= s[i, j] - np.logaddexp.reduce(s[i, members])
        out[i] /= n - 1
    return out


@pytest.mark.parametrize("gap,grad_atol", [(1.0, 1e-6), (60.0, 2e-5), (150.0, 1e-4), (600.0, 3e-3)])
def test_rank_n_contrast_exact_at_every_similarity_spread(gap, grad_atol):
    # gap in units of tau: float32 sums up to a spread of 80, float64 beyond.
    rng = np.random.default_rng(7)
    e = np.concatenate([rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) + [gap * 2.0, 0, 0]])
    labels = rng.integers(0, 4, 10)
    variable, exact = tf.Variable(e.astype(np.float32)), tf.Variable(e)
    with tf.GradientTape(persistent=True) as tape:
        per_anchor = rank_n_contrast(variable, labels, 2.0)
        fast, dense = tf.reduce_mean(per_anchor), tf.reduce_mean(dense_rnc(exact, labels, 2.0))
    # The squared distances are float32 (|a|^2 + |b|^2 - 2 a.b): ~1e-5 of a
    # similarity of 600, and their gradient's error grows with |e| the same way.
    np.testing.assert_allclose(
        per_anchor.numpy(), log_space_rnc(e, labels, 2.0), rtol=5e-5, atol=1e-5
    )
    # The written-out gradient against float64 autodiff of a log-sum-exp
    # transcription.
    np.testing.assert_allclose(
        tape.gradient(fast, variable).numpy(), tape.gradient(dense, exact).numpy(), atol=grad_atol
    )


def test_rank_n_contrast_far_apart_embeddings_stay_finite():
    # Distance gaps of ~1e4 tau: exp underflows even in float64.
    e = tf.Variable([[0.0], [1.0], [2e4], [4e4]])
    labels = [0.0, 1.0, 2.0, 3.0]
    with tf.GradientTape() as tape:
        per_anchor = rank_n_contrast(e, labels, 2.0)
        loss = tf.reduce_mean(per_anchor)
    assert np.isfinite(loss.numpy()) and np.isfinite(tape.gradient(loss, e).numpy()).all()
    got, want = per_anchor.numpy(), log_space_rnc(e.numpy(), labels, 2.0)
    # Anchor 1's pair with e = 2e4 is 1e4 below its denominator's largest
    # term (e = 0, at the same label distance): ~3,333 per anchor, to the
    # float32 squared distances' rounding (their magnitude is 4e8).
    np.testing.assert_allclose(got[:3], want[:3], rtol=1e-3)
    # Anchor 3's pairs with e = 1 and e = 0 are 1e4 below the row's largest
    # (e = 2e4): their denominators underflow and each counts as its own
    # (log-probability 0; exactly, -log(1 + e^-0.5) = -0.474 for e = 1).
    assert got[3] == 0.0 and want[3] == pytest.approx(0.474 / 3, rel=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 31, 32, 33, 100])
def test_running_sum_is_a_cumulative_sum(n, dtype):
    x = np.random.default_rng(n).random((3, n)).astype(dtype)
    got = _running_sum(tf.constant(x))
    assert got.dtype == dtype and got.shape == (3, n)
    np.testing.assert_allclose(got.numpy(), np.cumsum(x, axis=1), rtol=1e-6)
    from_right = _running_sum(tf.constant(x), reverse=True).numpy()
    np.testing.assert_allclose(from_right, np.cumsum(x[:, ::-1], axis=1)[:, ::-1], rtol=1e-6)


def test_rank_n_contrast_dynamic_batch_in_tf_function():
    fn = tf.function(
        lambda e, y: rank_n_contrast(e, y, 2.0),
        input_signature=[
            tf.TensorSpec([None, None, 4], tf.float32),
            tf.TensorSpec([None], tf.int64),
        ],
    )
    rng = np.random.default_rng(6)
    for batch in (1, 5, 9):
        e = rng.normal(size=(batch, 2, 4)).astype(np.float32)
        y = rng.integers(0, 3, batch)
        np.testing.assert_allclose(
            fn(e, y).numpy(), rank_n_contrast(e, y, 2.0).numpy(), rtol=1e-6, atol=1e-7
        )


def test_rank_n_contrast_memory_no_batch_batch_feature_tensor():
    batch, features = 1024, 1536
    e = tf.Variable(tf.random.stateless_normal([batch, features], seed=[0, 1]))
    y = tf.random.stateless_uniform([batch], seed=[0, 2], maxval=50, dtype=tf.int32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(rank_n_contrast(e, y, 2.0))
        return loss, tape.gradient(loss, e)

    graph = step.get_concrete_function().graph
    sizes = []
    for op in graph.get_operations():
        for out in op.outputs:
            n = out.shape.num_elements() if out.shape.rank is not None else None
            if n is not None:
                sizes.append(n)
    assert batch * batch in sizes  # shapes are known: the B x B matrices are there
    assert max(sizes) <= batch * max(batch, features)
    loss, grad = step()
    assert np.isfinite(loss.numpy()) and np.isfinite(grad.numpy()).all()


# ---------------------------------------------------------------- w/o f_reg


def test_expected_level_values_golden_renormalised_per_level():
    centroids = [[1.0, 3.0], [-1.0, 0.0, 2.0]]  # tokens: <start>=0, level 0: 1-2, level 1: 3-5
    logits = np.full((1, 2, 6), -50.0, np.float32)
    logits[0, 0, 1:3] = np.log([1.0, 3.0])  # p = [0.25, 0.75]
    logits[0, 1, 3:6] = np.log([1.0, 1.0, 2.0])  # p = [0.25, 0.25, 0.5]
    logits[0, 0, 4] = 100.0  # another level's token: ignored at level 0
    logits[0, 1, 0] = 100.0  # <start>: ignored
    got = expected_level_values(logits, centroids).numpy()
    np.testing.assert_allclose(got, [[0.25 + 2.25, -0.25 + 1.0]], rtol=1e-6)
    # Explicit offsets (a vocabulary with one more special token first).
    shifted = np.concatenate([np.zeros((1, 2, 1), np.float32), logits], axis=-1)
    np.testing.assert_allclose(
        expected_level_values(shifted, centroids, token_offsets=[2, 4]).numpy(), got, rtol=1e-6
    )


def test_expected_level_values_errors_and_gradient():
    with pytest.raises(ValueError, match="`logits` vocabulary is 4, the codes need 5 tokens"):
        expected_level_values(np.zeros((1, 2, 4), np.float32), [[1.0, 2.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="`token_offsets` must have one entry per level"):
        expected_level_values(np.zeros((1, 2, 5), np.float32), [[1.0], [2.0]], [1])
    with pytest.raises(ValueError, match="`centroids` level 1 is empty"):
        expected_level_values(np.zeros((1, 2, 5), np.float32), [[1.0], []])
    z = tf.Variable(np.random.default_rng(7).normal(size=(4, 2, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        values = expected_level_values(z, [[1.0, 2.0], [0.0, 1.0]])
        total = tf.reduce_sum(values)
    grad = tape.gradient(total, z).numpy()
    assert values.shape == (4, 2) and np.isfinite(grad).all()
    assert np.all(grad[:, :, 0] == 0.0)  # <start> takes no part


# ---------------------------------------------------------------- RQRegLoss


def test_rq_reg_loss_total_matches_terms_and_eq16():
    outputs, targets = decoder_batch()
    loss_fn = RQRegLoss(gen_weight=1.0, reg_weight=0.7, rnc_weight=0.3, temperature=1.5, delta=1.0)
    terms = loss_fn(outputs, targets)
    assert set(terms) == {"loss", "gen", "reg", "rnc", "crps"}
    assert all(v.shape == () and v.dtype == tf.float32 for v in terms.values())
    gen = code_nll(targets["tokens"], outputs["logits"]).numpy().mean()
    reg = huber_terms(
        targets["label"],
        outputs["prediction"],
        targets["level_values"],
        outputs["level_values"],
        1.0,
    )
    rnc = slow_rnc(outputs["expected_embeddings"], targets["label"], 1.5).mean()
    np.testing.assert_allclose(terms["gen"].numpy(), gen, rtol=1e-6)
    np.testing.assert_allclose(terms["reg"].numpy(), reg.numpy().mean(), rtol=1e-6)
    np.testing.assert_allclose(terms["rnc"].numpy(), rnc, rtol=1e-5)
    np.testing.assert_allclose(
        terms["loss"].numpy(), gen + 0.7 * reg.numpy().mean() + 0.3 * rnc, rtol=1e-5
    )


def test_rq_reg_loss_reductions_and_sample_weight():
    outputs, targets = decoder_batch(seed=1)
    weight = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 1.0, 0.0, 3.0], np.float32)
    per_example = RQRegLoss(reduction="none")(outputs, targets, sample_weight=weight)
    unweighted = RQRegLoss(reduction="none")(outputs, targets)
    summed = RQRegLoss(reduction="sum")(outputs, targets, sample_weight=weight[:, None])
    mean = RQRegLoss()(outputs, targets, sample_weight=weight)
    for key in ("loss", "gen", "reg", "rnc", "crps"):
        assert per_example[key].shape == (8,)
        np.testing.assert_allclose(per_example[key].numpy(), unweighted[key].numpy() * weight)
        np.testing.assert_allclose(summed[key].numpy(), per_example[key].numpy().sum(), rtol=1e-6)
        np.testing.assert_allclose(mean[key].numpy(), per_example[key].numpy().sum() / 8, rtol=1e-6)


def test_ablation_switches_zero_the_terms_and_skip_their_inputs():
    outputs, targets = decoder_batch(seed=2)
    full = RQRegLoss()(outputs, targets)
    assert all(full[k].numpy() > 0 for k in ("gen", "reg", "rnc"))
    no_gen = RQRegLoss(gen_weight=0.0)(
        {k: v for k, v in outputs.items() if k != "logits"},
        {k: v for k, v in targets.items() if k != "tokens"},
    )
    assert no_gen["gen"].numpy() == 0.0
    np.testing.assert_allclose(no_gen["loss"].numpy(), full["loss"].numpy() - full["gen"].numpy())
    no_rnc = RQRegLoss(rnc_weight=0.0)(
        {k: v for k, v in outputs.items() if k != "expected_embeddings"}, targets
    )
    assert no_rnc["rnc"].numpy() == 0.0
    np.testing.assert_allclose(
        no_rnc["loss"].numpy(), full["loss"].numpy() - 0.1 * full["rnc"].numpy(), rtol=1e-6
    )
    with pytest.raises(ValueError, match="`outputs` has no 'expected_embeddings' entry"):
        RQRegLoss()({k: v for k, v in outputs.items() if k != "expected_embeddings"}, targets)


def test_mixed_precision_inputs_computed_in_float32():
    outputs, targets = decoder_batch(seed=3)
    half = {k: tf.cast(v, tf.float16) for k, v in outputs.items()}
    terms = RQRegLoss()(half, targets)
    reference = RQRegLoss()({k: tf.cast(v, tf.float32) for k, v in half.items()}, targets)
    for key, value in terms.items():
        assert value.dtype == tf.float32
        np.testing.assert_allclose(value.numpy(), reference[key].numpy(), rtol=1e-6)


def test_rq_reg_loss_under_tf_function():
    outputs, targets = decoder_batch(seed=4)
    loss_fn = RQRegLoss()
    eager = loss_fn(outputs, targets)
    graph = tf.function(loss_fn)(outputs, targets)
    for key in eager:
        np.testing.assert_allclose(graph[key].numpy(), eager[key].numpy(), rtol=1e-6, atol=1e-7)


def _mirrored_terms(strategy, outputs, targets, batch, **loss_kwargs):
    """Per-replica scaled terms and expected-embedding gradients of a global batch."""
    dataset = tf.data.Dataset.from_tensor_slices((outputs, targets)).batch(batch)
    local_outputs, local_targets = next(iter(strategy.experimental_distribute_dataset(dataset)))
    loss_fn = RQRegLoss(reduction="none", **loss_kwargs)

    def replica_step(out, tgt):
        embeddings = out["expected_embeddings"]
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            terms = loss_fn({**out, "expected_embeddings": embeddings}, tgt)
            scaled = {k: global_batch_mean(v) for k, v in terms.items()}
        return scaled, tape.gradient(scaled["loss"], embeddings)

    scaled, grads = strategy.run(replica_step, args=(local_outputs, local_targets))
    totals = {k: strategy.reduce("SUM", v, axis=None).numpy() for k, v in scaled.items()}
    grads = np.concatenate([g.numpy() for g in strategy.experimental_local_results(grads)])
    return totals, grads, local_outputs, local_targets


@pytest.mark.parametrize("batch", [8, 7])
def test_mirrored_strategy_matches_one_device(batch, mirrored):
    """Cross-replica RnC: every term and gradient equals one device's on the global batch."""
    strategy = mirrored
    outputs, targets = decoder_batch(batch=batch, seed=5)
    totals, grads, _, local_targets = _mirrored_terms(strategy, outputs, targets, batch)
    sizes = [len(y) for y in strategy.experimental_local_results(local_targets["label"])]
    assert sum(sizes) == batch and len(sizes) == 2  # 7 rows: uneven local batches

    embeddings = tf.convert_to_tensor(outputs["expected_embeddings"])
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        full = RQRegLoss()({**outputs, "expected_embeddings": embeddings}, targets)
    full_grads = tape.gradient(full["loss"], embeddings).numpy()
    for key in ("loss", "gen", "reg", "rnc"):
        np.testing.assert_allclose(totals[key], full[key].numpy(), rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(
        totals["rnc"],
        slow_rnc(outputs["expected_embeddings"], targets["label"], 2.0).mean(),
        rtol=1e-5,
    )
    np.testing.assert_allclose(grads, full_grads, rtol=1e-4, atol=1e-7)


def test_mirrored_strategy_factored_rnc_matches_one_device(mirrored):
    """The factored RnC (vocabulary < dim) gathers the code distributions."""
    strategy = mirrored
    rng = np.random.default_rng(9)
    probabilities = tf.nn.softmax(rng.normal(size=(7, 3, 5)).astype(np.float32)).numpy()
    table = rng.normal(size=(5, 16)).astype(np.float32)
    labels = rng.integers(0, 4, 7).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((probabilities, labels)).batch(7)

    def replica_step(p, y):
        with tf.GradientTape() as tape:
            tape.watch(p)
            loss = global_batch_mean(rank_n_contrast_factored(p, table, y))
        return loss, tape.gradient(loss, p)

    loss, grads = strategy.run(
        replica_step, args=next(iter(strategy.experimental_distribute_dataset(dataset)))
    )
    p = tf.convert_to_tensor(probabilities)
    with tf.GradientTape() as tape:
        tape.watch(p)
        full = tf.reduce_mean(rank_n_contrast_factored(p, table, labels))
    np.testing.assert_allclose(strategy.reduce("SUM", loss, axis=None), full.numpy(), rtol=1e-5)
    got = np.concatenate([g.numpy() for g in strategy.experimental_local_results(grads)])
    np.testing.assert_allclose(got, tape.gradient(full, p).numpy(), rtol=1e-4, atol=1e-7)


def test_mirrored_strategy_per_replica_rnc(mirrored):
    """`rnc_cross_replica=False`: each replica contrasts its local batch only."""
    strategy = mirrored
    outputs, targets = decoder_batch(batch=8, seed=5)
    totals, grads, local_outputs, local_targets = _mirrored_terms(
        strategy, outputs, targets, 8, rnc_cross_replica=False
    )
    full = RQRegLoss()(outputs, targets)
    np.testing.assert_allclose(totals["gen"], full["gen"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(totals["reg"], full["reg"].numpy(), rtol=1e-6)
    per_replica = [
        slow_rnc(e.numpy(), y.numpy(), 2.0).mean()
        for e, y in zip(
            strategy.experimental_local_results(local_outputs["expected_embeddings"]),
            strategy.experimental_local_results(local_targets["label"]),
        )
    ]
    assert [len(y) for y in strategy.experimental_local_results(local_targets["label"])] == [4, 4]
    np.testing.assert_allclose(totals["rnc"], np.mean(per_replica), rtol=1e-5)
    assert not np.isclose(totals["rnc"], full["rnc"].numpy(), rtol=1e-3)
    assert np.isfinite(grads).all()


def test_get_config_round_trip():
    loss_fn = RQRegLoss(
        gen_weight=0.0,
        reg_weight=2.0,
        rnc_weight=0.5,
        temperature=1.0,
        delta=10.0,
        reduction="none",
        name="ablation",
        cumulative_huber=True,
        rnc_cross_replica=False,
        label_scale=3.5,
        crps_weight=0.25,
        crps_tokens=[1, 2, 3],
        crps_values=[0.0, 1.5, 4.0],
    )
    config = loss_fn.get_config()
    assert config == {
        "gen_weight": 0.0,
        "reg_weight": 2.0,
        "rnc_weight": 0.5,
        "temperature": 1.0,
        "delta": 10.0,
        "reduction": "none",
        "name": "ablation",
        "cumulative_huber": True,
        "rnc_cross_replica": False,
        "label_scale": 3.5,
        "crps_weight": 0.25,
        "crps_tokens": [1, 2, 3],
        "crps_values": [0.0, 1.5, 4.0],
    }
    assert RQRegLoss.from_config(config).get_config() == config
    serialized = keras.utils.serialize_keras_object(loss_fn)
    assert serialized["registered_name"] == "rq_keras>RQRegLoss"
    restored = keras.utils.deserialize_keras_object(serialized)
    assert isinstance(restored, RQRegLoss) and restored.get_config() == config
    assert keras.utils.get_registered_object("rq_keras>code_nll") is code_nll


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, "`temperature` must be a finite number > 0, got 0.0"),
        ({"delta": -1.0}, "`delta` must be a finite number > 0, got -1.0"),
        ({"gen_weight": -0.5}, "`gen_weight` must be a finite number >= 0, got -0.5"),
        ({"rnc_weight": float("nan")}, "`rnc_weight` must be a finite number >= 0, got nan"),
        ({"reduction": "mean"}, "`reduction` must be one of"),
        ({"label_scale": 0.0}, "`label_scale` must be a finite number > 0, got 0.0"),
        ({"crps_weight": -1.0}, "`crps_weight` must be a finite number >= 0, got -1.0"),
        ({"crps_weight": 1.0}, "`crps_weight > 0` needs `crps_tokens` and `crps_values`"),
        (
            {"crps_weight": 1.0, "crps_tokens": [1, 2], "crps_values": [0.0]},
            "`crps_tokens` and `crps_values` must be non-empty and of one length, got 2 and 1",
        ),
        (
            {"crps_weight": 1.0, "crps_tokens": [1], "crps_values": [float("inf")]},
            "`crps_values` must be finite",
        ),
    ],
)
def test_validation_messages(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RQRegLoss(**kwargs)


def test_factored_rnc_equals_rnc_of_the_expected_embeddings():
    from rq_keras.losses import rank_n_contrast_factored

    rng = np.random.default_rng(11)
    batch, levels, vocab, dim = 33, 3, 10, 24
    logits = tf.Variable(rng.normal(size=(batch, levels, vocab)).astype(np.float32))
    table = tf.Variable(rng.normal(size=(vocab, dim)).astype(np.float32))
    labels = tf.constant(rng.integers(0, 6, batch).astype(np.float64))  # with ties
    with tf.GradientTape(persistent=True) as tape:
        probs = tf.nn.softmax(logits, axis=-1)
        direct = rank_n_contrast(tf.einsum("blv,vd->bld", probs, table), labels, 2.0)
        factored = rank_n_contrast_factored(probs, table, labels, 2.0)
    np.testing.assert_allclose(factored.numpy(), direct.numpy(), rtol=1e-4, atol=1e-5)
    for var in (logits, table):
        np.testing.assert_allclose(
            tape.gradient(factored, var).numpy(),
            tape.gradient(direct, var).numpy(),
            rtol=1e-3,
            atol=1e-5,
        )


def test_loss_uses_the_factored_form_only_when_cheaper():
    from rq_keras.losses import rank_n_contrast_factored

    rng = np.random.default_rng(12)
    batch, levels, vocab = 16, 2, 5
    logits = tf.constant(rng.normal(size=(batch, levels, vocab)).astype(np.float32))
    probs = tf.nn.softmax(logits, axis=-1)
    labels = tf.constant(rng.normal(size=batch))
    loss = RQRegLoss(gen_weight=0.0, reg_weight=0.0, rnc_weight=1.0, reduction="none")
    # `expected_embeddings` deliberately unrelated to the logits, so the two
    # paths give different values and show which one ran.
    other = tf.constant(rng.normal(size=(batch, 7)).astype(np.float32))
    outputs = {"logits": logits, "expected_embeddings": other}
    direct = rank_n_contrast(other, labels).numpy()
    for dim, factored in ((3, False), (8, True)):  # V=5 > D=3, V=5 < D=8
        table = tf.constant(rng.normal(size=(vocab, dim)).astype(np.float32))
        got = loss(outputs, {"label": labels}, code_embeddings=table)["rnc"].numpy()
        want = rank_n_contrast_factored(probs, table, labels).numpy() if factored else direct
        np.testing.assert_allclose(got, want, rtol=1e-5)
        if factored:
            assert not np.allclose(got, direct)
    np.testing.assert_allclose(loss(outputs, {"label": labels})["rnc"].numpy(), direct, rtol=1e-6)


def test_cumulative_huber_golden_values_and_detached_earlier_levels():
    y = tf.constant([10.0])
    q = tf.constant([[8.0, 1.5, 0.25]])
    pred = tf.Variable([[7.0, 1.0, 0.5]])
    with tf.GradientTape() as tape:
        loss = huber_terms(y, tf.reduce_sum(pred, axis=1), q, pred, delta=1.0, cumulative=True)
    # total: |10 - 8.5| = 1.5 -> 1.0; running sums 8 / 9.5 / 9.75 against
    # 7 / 8 / 8.5: errors 1, 1.5, 1.25 -> 0.5 + 1.0 + 0.75
    np.testing.assert_allclose(loss.numpy(), [1.0 + 0.5 + 1.0 + 0.75], rtol=1e-6)
    # d/d pred_l = -1 (total term, clipped at delta) - 1 (level l's own term):
    # the earlier levels inside later running sums are detached (else -2, -3)
    np.testing.assert_allclose(tape.gradient(loss, pred).numpy(), [[-2.0, -2.0, -2.0]])
    plain = huber_terms(y, tf.reduce_sum(pred, axis=1), q, pred, delta=1.0)
    # Eq. 13: level errors 1, 0.5, -0.25 -> 0.5 + 0.125 + 0.03125
    np.testing.assert_allclose(plain.numpy(), [1.0 + 0.5 + 0.125 + 0.03125], rtol=1e-6)


def test_residual_output_adds_its_huber_term_to_l_reg():
    loss = RQRegLoss(gen_weight=0.0, rnc_weight=0.0, delta=1.0, reduction="none")
    outputs = {"prediction": tf.constant([3.0]), "level_values": tf.constant([[2.0, 1.0]])}
    targets = {"label": tf.constant([3.0]), "level_values": tf.constant([[2.0, 1.0]])}
    assert loss(outputs, targets)["reg"].numpy().tolist() == [0.0]
    with_residual = {**outputs, "residual": tf.constant([0.5])}
    got = loss(with_residual, {**targets, "residual": tf.constant([-1.5])})["reg"].numpy()
    np.testing.assert_allclose(got, [1.0 * 2.0 - 0.5])  # huber(-2, delta 1) = 1.5
    with pytest.raises(ValueError, match="no 'residual' entry"):
        loss(with_residual, targets)


@pytest.mark.parametrize("cumulative", [False, True])
def test_label_scale_is_l_reg_in_units_of_the_scale(cumulative):
    """Huber_delta(r / s) = Huber_{delta s}(r) / s^2: with label_scale s, L_reg
    is the label-unit L_reg at threshold delta * s, divided by s^2; L_gen and
    L_rnc do not change."""
    outputs, targets = decoder_batch()
    outputs = {**outputs, "prediction": outputs["prediction"] * 40.0}  # errors on both sides
    targets = {**targets, "label": targets["label"] * 40.0}
    s, delta = 25.0, 0.3
    scaled = RQRegLoss(delta=delta, label_scale=s, cumulative_huber=cumulative)(outputs, targets)
    plain = RQRegLoss(delta=delta * s, cumulative_huber=cumulative)(outputs, targets)
    np.testing.assert_allclose(scaled["reg"].numpy(), plain["reg"].numpy() / s**2, rtol=1e-5)
    for term in ("gen", "rnc"):
        np.testing.assert_allclose(scaled[term].numpy(), plain[term].numpy(), rtol=1e-6)
    # Some errors are beyond delta * s and some within (both Huber branches).
    error = np.abs(np.asarray(targets["label"]) - np.asarray(outputs["prediction"]))
    assert (error > delta * s).any() and (error < delta * s).any()


# ---------------------------------------------------------------- L_crps


def numeric_crps(probabilities, values, y, low=-30.0, high=30.0, steps=600_001):
    """CRPS by the integral's definition on a fine grid (float64)."""
    t = np.linspace(low, high, steps)
    cdf = (probabilities[None, :] * (np.asarray(values)[None, :] <= t[:, None])).sum(axis=1)
    return float(np.sum((cdf - (t >= y)) ** 2) * (t[1] - t[0]))


def test_atom_crps_is_the_crps_integral_inside_and_outside_the_atoms():
    rng = np.random.default_rng(3)
    values = [3.0, 0.0, 1.0, 7.5, 2.0]  # unsorted on purpose
    logits = rng.normal(size=(7, 5)).astype(np.float32)
    y = np.array([-1.0, 0.0, 0.5, 2.2, 8.0, 7.5, 3.0], np.float32)
    got = atom_crps(logits, values, y).numpy()
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    want = [numeric_crps(p[i], values, y[i]) for i in range(len(y))]
    # The grid integral is exact to about its step (1e-4) times the jumps.
    np.testing.assert_allclose(got, want, atol=2e-4)
    # A point mass on the label's atom: 0; on a neighbour: the distance.
    sure = np.full((2, 5), -50.0, np.float32)
    sure[0, 2], sure[1, 4] = 50.0, 50.0  # 1.0 and 2.0
    np.testing.assert_allclose(atom_crps(sure, values, [1.0, 1.0]).numpy(), [0.0, 1.0], atol=1e-5)


def test_atom_crps_gradient_and_one_atom():
    z = tf.Variable(np.random.default_rng(4).normal(size=(4, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(atom_crps(z, [0.0, 1.0, 5.0], [0.0, 2.0, 9.0, 0.7]))
    grad = tape.gradient(total, z).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    # One atom: the distance to it, whatever the logits.
    np.testing.assert_allclose(atom_crps(np.zeros((2, 1)), [2.0], [0.5, 4.0]).numpy(), [1.5, 2.0])
    with pytest.raises(ValueError, match="`values` must be a non-empty list of finite numbers"):
        atom_crps(np.zeros((1, 1)), [float("nan")], [0.0])


def test_rq_reg_loss_crps_term_reads_level_one_in_label_scale_units():
    outputs, targets = decoder_batch(seed=5)
    tokens, values = [1, 4, 5, 6], [0.0, 1.0, 2.5, 6.0]
    loss_fn = RQRegLoss(crps_weight=0.5, crps_tokens=tokens, crps_values=values, label_scale=2.0)
    terms = loss_fn(outputs, targets)
    level_one = np.asarray(outputs["logits"])[:, 0, tokens]
    want = atom_crps(level_one, np.array(values) / 2.0, targets["label"] / 2.0).numpy()
    np.testing.assert_allclose(terms["crps"].numpy(), want.mean(), rtol=1e-6)
    without = RQRegLoss(label_scale=2.0)(outputs, targets)
    assert without["crps"].numpy() == 0.0
    np.testing.assert_allclose(
        terms["loss"].numpy(), without["loss"].numpy() + 0.5 * want.mean(), rtol=1e-6
    )
