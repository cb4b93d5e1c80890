"""Rank-N-Contrast (L_rnc, Eq. 14-15) on the expected code embeddings.

`rank_n_contrast` over embeddings `(batch, D)` in O(B^2) memory, and
`rank_n_contrast_factored`, the same loss from the code probabilities and the
embedding table (`sum_l P_l (E E^T) P_l^T`), cheaper when the vocabulary is
smaller than D (`factored_is_cheaper`). Under a distribution strategy each
replica's anchors are contrasted with the global batch (`cross_replica`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rq_keras.losses.terms import check_positive

__all__ = ["factored_is_cheaper", "rank_n_contrast", "rank_n_contrast_factored"]


@tf.custom_gradient
def _gram(e):
    """`e @ e^T` whose gradient takes one matmul, `(G + G^T) e`, instead of two."""

    def grad(upstream):
        return tf.matmul(upstream + tf.transpose(upstream), e)

    return tf.matmul(e, e, transpose_b=True), grad


def _global_batch(tensors, cross_replica: bool):
    """Every replica's rows of `tensors`, and where this replica's rows start.

    Returns `(tensors, None)` unchanged outside a multi-replica strategy or
    with `cross_replica=False`; otherwise the tensors all-gathered along axis
    0 in replica order (local batches may differ in size) and the offset of
    this replica's first row in them.
    """
    context = tf.distribute.get_replica_context()
    if not cross_replica or context is None or context.num_replicas_in_sync == 1:
        return tensors, None
    sizes = context.all_gather(tf.shape(tensors[0])[:1], axis=0)
    offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
    # One gather per tensor: a gather of a nest packs its dtypes into one.
    return [context.all_gather(t, axis=0) for t in tensors], offset


def rank_n_contrast(
    embeddings,
    labels,
    temperature: float = 2.0,
    epsilon: float = 1e-12,
    cross_replica: bool = True,
):
    """Per-anchor Rank-N-Contrast loss (Eq. 15) over one batch.

    For anchor i, with similarity `s_ij = -||e_i - e_j||_2 / temperature` and
    label distance `d_ij = |y_i - y_j|`::

        l_i = -1 / (B - 1) * sum_{j != i} [s_ij - log sum_{k in S_ij} exp(s_ik)]
        S_ij = {k != i : d_ik >= d_ij}

    so a k at the same label distance as j (a tie) is in the denominator.

    Cost: O(B^2 F) time for the distances, O(B^2 log B) for the sort and O(B^2)
    memory. Each anchor's row is sorted by decreasing label distance with the
    anchor itself last (one `top_k`, which also gives the sorted distances); a
    running sum of `exp(s_ik)` along the row (shifted by the row's largest
    similarity; `_running_sum`) gives, at the last position of each group of
    equal label distances, the denominator of every j in that group. No
    `(B, B, F)` or `(B, B, B)` tensor is built.

    Precision: the sums are float32 while every shifted term of the batch is
    above exp(-80) (every similarity within 80 of its row's largest, a
    distance gap of 80 tau), float64 otherwise. The shifted terms are at most
    1 and a row holds B of them, so the float32 sums are exact to about
    `B * 6e-8` relative. Expected code embeddings (`e_l = P_l E`) lie in the
    hull of the table's rows, so their distances are at most
    `sqrt(L) * diameter(E)`: at L = 3 and tau = 2 the float32 sums serve
    while the table's rows stay within 92 of each other. In float64 a term
    underflows 708 below the row's largest; where every term of a
    denominator does, the pair counts as its own denominator (a
    log-probability of 0, finite gradient).

    Squared distances come from `|a|^2 + |b|^2 - 2 a.b` on the batch-centred
    embeddings (centring leaves distances unchanged and reduces cancellation);
    the distance is `sqrt(max(d^2, epsilon))`, so its gradient is finite (zero)
    where two embeddings coincide.

    Args:
        embeddings: float `(batch, features)`, or `(batch, levels, dim)` which
            is flattened to the concatenation `[e_1; ...; e_L]`.
        labels: `(batch,)` or `(batch, 1)` numeric labels; their distances are
            compared in float64, so equal distances are found exactly.
        temperature: tau, > 0.
        epsilon: floor of the squared distance, > 0.
        cross_replica: under a multi-replica strategy, contrast this
            replica's anchors with the global batch (see the module
            docstring); no effect on one device.

    Returns:
        float32 `(batch,)`, the loss l_i of each anchor; zeros for a batch of
        one example. L_rnc is its mean.
    """
    temperature = check_positive("temperature", temperature)
    epsilon = check_positive("epsilon", epsilon)
    e = tf.cast(embeddings, tf.float32)
    e = tf.reshape(e, [tf.shape(e)[0], -1])
    y = tf.reshape(tf.cast(labels, tf.float64), [-1])
    (e_all, y_all), offset = _global_batch((e, y), cross_replica)
    centre = tf.reduce_mean(e_all, axis=0, keepdims=True)
    if offset is None:
        e = e - centre
        norms = tf.reduce_sum(tf.square(e), axis=1)
        sq = norms[:, None] + norms[None, :] - 2.0 * _gram(e)
    else:
        e, e_all = e - centre, e_all - centre
        sq = (
            tf.reduce_sum(tf.square(e), axis=1)[:, None]
            + tf.reduce_sum(tf.square(e_all), axis=1)[None, :]
            - 2.0 * tf.matmul(e, e_all, transpose_b=True)
        )
    return _rank_n_contrast_from_squared_distances(sq, y, temperature, epsilon, y_all, offset)


def rank_n_contrast_factored(
    probabilities,
    table,
    labels,
    temperature: float = 2.0,
    epsilon: float = 1e-12,
    cross_replica: bool = True,
):
    """`rank_n_contrast` of `[P_1 E; ...; P_L E]`, computed through `E E^T`.

    The expected embeddings of Eq. 14 are `e_l = P_l E` (`P_l` the code
    probabilities of step l, `E` the code embedding table), so their Gram
    matrix is `sum_l P_l (E E^T) P_l^T`: with a vocabulary V smaller than the
    embedding size D (the paper: V = 145, D = 512) that is about D / V times
    fewer multiply-adds than forming the `(batch, L * D)` embeddings, and the
    same loss (up to float rounding; tested against `rank_n_contrast`).

    Args:
        probabilities: float `(batch, levels, vocabulary)`, each row a
            distribution (softmax of the decoder's logits).
        table: float `(vocabulary, dim)`, the code embedding table `E`.
        labels, temperature, epsilon, cross_replica: as `rank_n_contrast`.

    Returns:
        float32 `(batch,)`, as `rank_n_contrast`.
    """
    temperature = check_positive("temperature", temperature)
    epsilon = check_positive("epsilon", epsilon)
    p = tf.cast(probabilities, tf.float32)
    y = tf.reshape(tf.cast(labels, tf.float64), [-1])
    (p_all, y_all), offset = _global_batch((p, y), cross_replica)
    e = tf.cast(table, tf.float32)
    metric = tf.matmul(e, e, transpose_b=True)  # (V, V)

    def centred(q):
        # Centring P centres every e_l = P_l E (it is linear), as above.
        q = q - tf.reduce_mean(p_all, axis=0, keepdims=True)
        rows = tf.shape(q)[0]
        return tf.reshape(tf.einsum("blv,vw->blw", q, metric), [rows, -1]), tf.reshape(
            q, [rows, -1]
        )

    pg, flat = centred(p)
    norms = tf.reduce_sum(pg * flat, axis=1)
    if offset is None:
        gram = tf.matmul(pg, flat, transpose_b=True)
        sq = norms[:, None] + norms[None, :] - (gram + tf.transpose(gram))
    else:
        pg_all, flat_all = centred(p_all)
        norms_all = tf.reduce_sum(pg_all * flat_all, axis=1)
        cross = tf.matmul(pg, flat_all, transpose_b=True) + tf.matmul(
            flat, pg_all, transpose_b=True
        )
        sq = norms[:, None] + norms_all[None, :] - cross
    return _rank_n_contrast_from_squared_distances(sq, y, temperature, epsilon, y_all, offset)


def _rank_n_contrast_from_squared_distances(
    sq, labels, temperature, epsilon, all_labels=None, offset=None
):
    """Eq. 15 from the squared distances of the embeddings.

    `sq` is `(batch, batch)`, or with `offset` `(batch, global_batch)`: the
    anchors' rows against the global batch `all_labels`, anchor i being
    column `offset + i`.
    """
    y = tf.reshape(tf.cast(labels, tf.float64), [-1])
    if offset is None:
        all_labels = y
        batch = tf.shape(sq)[0]
        is_self = tf.cast(tf.eye(batch), tf.bool)
    else:
        batch = tf.shape(sq)[1]
        is_self = tf.one_hot(offset + tf.range(tf.shape(sq)[0]), batch, True, False, dtype=tf.bool)
    sq = tf.where(is_self, tf.zeros_like(sq), sq)
    sim = -tf.sqrt(tf.maximum(tf.cast(sq, tf.float32), epsilon)) / temperature

    # Label distance, the anchor itself at -1: last in decreasing order. One
    # top_k gives the order and the sorted distances (an argsort would need
    # another (B, B) gather for them).
    dist = tf.where(
        is_self, tf.constant(-1.0, tf.float64), tf.abs(y[:, None] - all_labels[None, :])
    )
    sorted_dist, order = tf.math.top_k(dist, k=batch, sorted=True)
    neg_dist = -sorted_dist  # increasing along each row
    sim_sorted = tf.gather(sim, order, batch_dims=1)
    pairs = tf.maximum(batch - 1, 1)
    # The sums run over exp(s - m), m the row's largest s over k != i.
    row_max = tf.stop_gradient(tf.reduce_max(sim_sorted[:, :pairs], axis=1, keepdims=True))
    shifted = sim_sorted - row_max
    # The first and the last position of each position's tie group.
    group_start = tf.searchsorted(neg_dist, neg_dist, side="left", out_type=tf.int32)
    group_end = tf.searchsorted(neg_dist, neg_dist, side="right", out_type=tf.int32) - 1
    log_prob = _log_probabilities(shifted, group_start, group_end)
    return -tf.reduce_sum(log_prob, axis=1) / tf.cast(pairs, tf.float32)


# exp(-80) is a normal float32 (its smallest is about exp(-87.3)).
_FLOAT32_SPREAD = 80.0


def _log_probabilities(shifted, group_start, group_end):
    """`log(exp(s_ij) / sum_{k in S_ij} exp(s_ik))` of every pair but the anchor's own.

    `shifted` float32 `(rows, n)` is each row's similarities in decreasing
    label distance order minus the row's largest over k != i (the anchor
    itself last); `group_start` and `group_end` the first and last position
    of each position's tie group. Returns float32 `(rows, n - 1)`.

    The running sums are float32 while every term is above exp(-80), float64
    otherwise (one `tf.cond` in each direction). The gradient is written out,
    so the branches keep no intermediates for the tape: with `d_r` the
    denominator of position r and `u_r` the upstream gradient of its
    log-probability, `d/dx_k = u_k - exp(x_k) sum_{r in groups from k's on}
    u_r / d_r` (a reverse running sum read at each group's start).
    """

    def branches(fn, *args):
        wide = tf.reduce_min(shifted[:, :-1]) < -_FLOAT32_SPREAD
        return tf.cond(
            wide, lambda: fn(*args, dtype=tf.float64), lambda: fn(*args, dtype=tf.float32)
        )

    @tf.custom_gradient
    def log_probabilities(x):
        log_prob = branches(_forward, x, group_end)

        def grad(upstream):
            return branches(_backward, x, group_start, group_end, upstream)

        return log_prob, grad

    return log_probabilities(shifted)


def _denominators(x, group_end):
    """`(terms, log denominators, pairs whose denominator is their own)` in x's dtype."""
    # Only the anchor's own term (the last column, read by no other pair) can
    # be above 0; capped, it cannot overflow into inf, which the running
    # sum's products would spread over its block as NaN.
    terms = tf.exp(tf.minimum(x, 0.0))
    denominator = tf.gather(_running_sum(terms), group_end, batch_dims=1)
    # The sum for j holds exp(s_ij - m) itself, so it is below exp(x_j) only
    # by rounding or where it underflowed: then the pair is its own
    # denominator (a log-probability of 0, and no gradient).
    own = denominator <= tf.exp(x)
    safe = tf.where(own, tf.ones_like(denominator), denominator)
    return terms, tf.where(own, x, tf.math.log(safe)), own


def _forward(x, group_end, dtype):
    x = tf.cast(x, dtype)
    _, log_denominator, _ = _denominators(x, group_end)
    # Drop the last column: the anchor itself.
    return tf.cast(x - log_denominator, tf.float32)[:, :-1]


def _backward(x, group_start, group_end, upstream, dtype):
    x = tf.cast(x, dtype)
    terms, log_denominator, own = _denominators(x, group_end)
    u = tf.pad(tf.cast(upstream, dtype), [[0, 0], [0, 1]])  # the anchor's column: 0
    u = tf.where(own, tf.zeros_like(u), u)
    # A pair that is its own denominator has no gradient; its 1 / d may be inf.
    weights = tf.where(own, tf.zeros_like(u), u * tf.exp(-log_denominator))
    after = tf.gather(_running_sum(weights, reverse=True), group_start, batch_dims=1)
    return tf.cast(u - tf.math.multiply_no_nan(after, terms), tf.float32)


_BLOCK = 32


def _running_sum(x, reverse: bool = False):
    """Inclusive cumulative sum of `x` `(rows, n)` along axis 1 (from the
    right with `reverse`).

    Written as matrix products: each block of `_BLOCK` columns is summed
    within itself by one product with a triangular matrix of ones, and the
    blocks' totals (a cumulative sum `_BLOCK` times shorter) are added. On the
    CPU this is several times faster than `tf.math.cumsum`'s scan (which runs
    forward and, for the gradient, backward over every row), and both
    directions stay matrix products; every op has a GPU kernel.
    """
    rows, n = tf.shape(x)[0], tf.shape(x)[1]
    blocks = tf.reshape(tf.pad(x, [[0, 0], [0, -n % _BLOCK]]), [rows, -1, _BLOCK])
    # [k, j] = 1 where k <= j (from the left) or k >= j (from the right).
    ones = _UPPER_ONES.T if reverse else _UPPER_ONES
    within = tf.einsum("rbk,kj->rbj", blocks, tf.constant(ones, x.dtype))
    totals = within[:, :, 0] if reverse else within[:, :, -1]
    outside = tf.math.cumsum(totals, axis=1, exclusive=True, reverse=reverse)
    return tf.reshape(within + outside[:, :, None], [rows, -1])[:, :n]


_UPPER_ONES = np.triu(np.ones((_BLOCK, _BLOCK), np.float32))


def factored_is_cheaper(table) -> bool:
    """True for a table `(V, D)` with V < D: `P E E^T P^T` beats forming `P E`."""
    if table is None:
        return False
    vocabulary, dim = table.shape
    return vocabulary is not None and dim is not None and vocabulary < dim
