"""The RQ-Reg training objective (paper section 3.4, Eq. 11-16).

* `code_nll`: the NLL of the true RQ codes, L_gen (Eq. 11);
* `huber_terms`: Huber on the prediction and on every level, L_reg (Eq. 12-13);
* `rank_n_contrast`: Rank-N-Contrast on the expected code embeddings, L_rnc
  (Eq. 14-15), in O(B^2) memory;
* `expected_level_values`: the per-level prediction of the "w/o f_reg"
  ablation (Table 3), the expectation of level l's centroids under step l's
  code distribution;
* `RQRegLoss`: L = w_gen L_gen + lambda_1 L_reg + lambda_2 L_rnc (Eq. 16),
  returning every term.

The functions return per-example losses `(batch,)`; `RQRegLoss` reduces them.
Everything is computed in float32 whatever the inputs' dtype (mixed
precision), label distances for Rank-N-Contrast in float64.

Distribution (MirroredStrategy, MultiWorkerMirroredStrategy, custom
`train_step`). L_gen and L_reg are means over examples. L_rnc is a mean over
anchors, and by default (`cross_replica=True`) each replica's anchors are
contrasted with the whole global batch, gathered from every replica with
`all_gather` (whose gradient flows back to the replica that owns each row): the
loss and its gradients are those of one device on the global batch, whatever
the number of replicas. `cross_replica=False` contrasts each anchor with its
replica's local batch only (no collective, a different loss: a single-device
RnC at the local batch size). Build the loss with `reduction="none"` and scale
by the global batch exactly once::

    terms = loss_fn(outputs, targets, sample_weight)        # each (local_batch,)
    loss = global_batch_mean(terms["loss"])

`global_batch_mean` divides this replica's sum by the global batch, summed
over the replicas' actual local batches, so the per-replica results add up to
the global mean also for a last, uneven batch (`tf.nn.compute_average_loss`
assumes every replica holds as many rows as this one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from rq_keras.tokens import ZERO_TOKEN, token_offsets_for

__all__ = [
    "RQRegLoss",
    "code_nll",
    "expected_level_values",
    "global_batch_mean",
    "huber",
    "huber_terms",
    "rank_n_contrast",
    "rank_n_contrast_factored",
]

REDUCTIONS = ("sum_over_batch_size", "sum", "none")
TERMS = ("loss", "gen", "reg", "rnc")


def _check_positive(name: str, value: Any) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value}")
    return value


def _check_weight(name: str, value: Any) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value}")
    return value


def _flat(x) -> tf.Tensor:
    """`(batch,)` or `(batch, 1)` -> float32 `(batch,)`."""
    return tf.reshape(tf.cast(x, tf.float32), [-1])


@keras.utils.register_keras_serializable(package="rq_keras")
def code_nll(tokens, logits) -> tf.Tensor:
    """Per-example negative log-likelihood of the true RQ codes (Eq. 11).

    The softmax runs over the whole shared vocabulary (`<start>` and the codes
    of every level), as in Eq. 9. The paper's L_gen is the mean of this over
    the examples: per example the NLL is summed over the levels, not averaged.

    Args:
        tokens: int `(batch, levels)`, the global vocabulary id of each level's
            true code (`ResidualCodeEncoder` output `tokens`).
        logits: float `(batch, levels, vocabulary)`, z_l of each step.

    Returns:
        float32 `(batch,)`: `-sum_l log softmax(z_l)[tokens_l]`.
    """
    logits = tf.cast(logits, tf.float32)
    tokens = tf.cast(tokens, tf.int32)
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tokens, logits=logits)
    return tf.reduce_sum(nll, axis=-1)


def huber(error: tf.Tensor, delta: float) -> tf.Tensor:
    """The Huber loss of `error` elementwise (Eq. 12): `error^2 / 2` within
    `delta`, `delta * |error| - delta^2 / 2` beyond."""
    abs_error = tf.abs(error)
    quadratic = tf.minimum(abs_error, delta)
    return 0.5 * tf.square(quadratic) + delta * (abs_error - quadratic)


def huber_terms(
    y, y_hat, level_values, level_predictions, delta: float = 2.0, cumulative: bool = False
) -> tf.Tensor:
    """Per-example regression loss of Eq. 13 with the Huber loss of Eq. 12.

    `huber(y, y_hat) + sum_l huber(q_l, y_hat_l)`, where
    `huber(u, v) = (u - v)^2 / 2` if `|u - v| <= delta`, else
    `delta * |u - v| - delta^2 / 2`.

    With `cumulative=True` (the authors' released code) the level terms
    compare running sums instead, each level correcting what the earlier ones
    left, whose predictions are held fixed (no gradient):
    `sum_l huber(q_1 + ... + q_l, stop_gradient(y_hat_1 + ... + y_hat_{l-1}) + y_hat_l)`.

    Args:
        y: `(batch,)` or `(batch, 1)` labels.
        y_hat: `(batch,)` or `(batch, 1)` predictions, `sum_l y_hat_l`.
        level_values: `(batch, levels)`, the quantized value q_l of each level
            (`ResidualCodeEncoder` output `level_values`).
        level_predictions: `(batch, levels)`, the per-level predictions y_hat_l.
        delta: the Huber threshold, > 0.
        cumulative: compare running sums (see above) instead of levels.

    Returns:
        float32 `(batch,)`.
    """
    delta = _check_positive("delta", delta)
    total = huber(_flat(y) - _flat(y_hat), delta)
    q = tf.cast(level_values, tf.float32)
    pred = tf.cast(level_predictions, tf.float32)
    if cumulative:
        earlier = tf.stop_gradient(tf.math.cumsum(pred, axis=-1, exclusive=True))
        level_error = tf.math.cumsum(q, axis=-1) - (earlier + pred)
    else:
        level_error = q - pred
    return total + tf.reduce_sum(huber(level_error, delta), axis=-1)


@tf.custom_gradient
def _gram(e):
    """`e @ e^T` whose gradient takes one matmul, `(G + G^T) e`, instead of two."""

    def grad(upstream):
        return tf.matmul(upstream + tf.transpose(upstream), e)

    return tf.matmul(e, e, transpose_b=True), grad


def global_batch_mean(per_example):
    """This replica's share of the global-batch mean of `per_example` `(batch,)`.

    Outside a multi-replica strategy: the mean (0 for an empty batch). Under
    one: this replica's sum over the global batch size (all-reduced from the
    local sizes); summed over replicas, the mean over the global batch.
    """
    per_example = tf.convert_to_tensor(per_example)
    count = tf.cast(tf.size(per_example), per_example.dtype)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.math.divide_no_nan(tf.reduce_sum(per_example), count)


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
    anchor itself last; a running sum of `exp(s_ik)` along the row (float64,
    shifted by the row's largest similarity) gives, at the last position of
    each group of equal label distances, the denominator of every j in that
    group. No `(B, B, F)` or `(B, B, B)` tensor is built.

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
    temperature = _check_positive("temperature", temperature)
    epsilon = _check_positive("epsilon", epsilon)
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
    temperature = _check_positive("temperature", temperature)
    epsilon = _check_positive("epsilon", epsilon)
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
    sim = -tf.sqrt(tf.maximum(sq, epsilon)) / temperature

    # Label distance, the anchor itself at -1: last in decreasing order.
    dist = tf.where(
        is_self, tf.constant(-1.0, tf.float64), tf.abs(y[:, None] - all_labels[None, :])
    )
    order = tf.argsort(dist, axis=1, direction="DESCENDING")
    neg_dist = -tf.gather(dist, order, batch_dims=1)  # increasing along each row
    sim_sorted = tf.gather(sim, order, batch_dims=1)
    pairs = tf.maximum(batch - 1, 1)
    # Running sums of exp(s - m), m the row's largest s over k != i, in
    # float64. The sum for j holds exp(s_ij - m) itself, so the `maximum` only
    # acts where that underflows (a distance gap of more than ~700 tau).
    row_max = tf.stop_gradient(tf.reduce_max(sim_sorted[:, :pairs], axis=1, keepdims=True))
    shifted = tf.cast(sim_sorted - row_max, tf.float64)
    running = tf.math.cumsum(tf.exp(shifted), axis=1)
    # Index of the last position of each position's tie group.
    group_end = tf.searchsorted(neg_dist, neg_dist, side="right", out_type=tf.int32) - 1
    denominator = tf.gather(running, group_end, batch_dims=1)
    tiny = tf.constant(np.finfo(np.float64).tiny, tf.float64)
    log_denominator = tf.maximum(tf.math.log(tf.maximum(denominator, tiny)), shifted)
    # Drop the last column: the anchor itself.
    log_prob = tf.cast(shifted - log_denominator, tf.float32)[:, :-1]
    return -tf.reduce_sum(log_prob, axis=1) / tf.cast(pairs, tf.float32)


def _factored_is_cheaper(table) -> bool:
    """True for a table `(V, D)` with V < D: `P E E^T P^T` beats forming `P E`."""
    if table is None:
        return False
    vocabulary, dim = table.shape
    return vocabulary is not None and dim is not None and vocabulary < dim


def expected_level_values(
    logits,
    centroids,
    token_offsets: Sequence[int] | None = None,
    zero_token: bool = False,
):
    """Per-level expected code value: the "w/o f_reg" ablation of Table 3.

    Replaces the regressor (Eq. 10) by `y_hat_l = E_{p(q | x, q_<l)} q`. The
    softmax of Eq. 9 runs over the whole vocabulary, whose tokens include
    `<start>` and the other levels' codes, which have no value at level l; this
    function renormalises step l's softmax over level l's own codes::

        y_hat_l = sum_k softmax(z_l[level l's tokens])_k * c_{l,k}

    i.e. the expectation conditional on the step emitting a level-l code. A
    trained model puts almost all mass there, and then it equals the
    unrestricted expectation; early in training it stays a convex combination
    of the level's centroids instead of being pulled towards 0.

    Args:
        logits: float `(batch, levels, vocabulary)`.
        centroids: per level its centroids (L sequences; sizes may differ).
        token_offsets: the global token id of each level's code 0; default the
            package's layout, `1 + sum(K[:l])` (`<start>` is token 0), or
            `2 + sum(K[:l])` with `zero_token`.
        zero_token: the vocabulary has `<zero>` (token 1): each level's
            softmax runs over `<zero>` and the level's codes, and `<zero>`
            has the value 0.

    Returns:
        float32 `(batch, levels)`.
    """
    if not isinstance(centroids, (list, tuple, np.ndarray)) or len(centroids) == 0:
        raise ValueError(f"`centroids` must be a non-empty list of levels, got {centroids!r}")
    tables = [np.asarray(c, dtype=np.float32).reshape(-1) for c in centroids]
    for level, table in enumerate(tables):
        if table.size == 0:
            raise ValueError(f"`centroids` level {level} is empty")
    sizes = [t.size for t in tables]
    if token_offsets is None:
        token_offsets = token_offsets_for(sizes, zero_token)
    token_offsets = [int(o) for o in token_offsets]
    if len(token_offsets) != len(tables):
        raise ValueError(
            f"`token_offsets` must have one entry per level ({len(tables)}), got {token_offsets}"
        )
    if any(o < 0 for o in token_offsets):
        raise ValueError(f"`token_offsets` must be >= 0, got {token_offsets}")
    logits = tf.cast(logits, tf.float32)
    if logits.shape.rank is not None and logits.shape.rank != 3:
        raise ValueError(f"`logits` must be (batch, levels, vocabulary), got shape {logits.shape}")
    if logits.shape[1] is not None and logits.shape[1] != len(tables):
        raise ValueError(f"`logits` has {logits.shape[1]} levels but `centroids` has {len(tables)}")
    vocabulary = logits.shape[2]
    needed = max(o + k for o, k in zip(token_offsets, sizes))
    if vocabulary is not None and vocabulary < needed:
        raise ValueError(f"`logits` vocabulary is {vocabulary}, the codes need {needed} tokens")
    values = []
    for level, (offset, table) in enumerate(zip(token_offsets, tables)):
        own = logits[:, level, offset : offset + table.size]
        if zero_token:
            own = tf.concat([logits[:, level, ZERO_TOKEN : ZERO_TOKEN + 1], own], axis=1)
            table = np.concatenate([[0.0], table]).astype(np.float32)
        probs = tf.nn.softmax(own, axis=-1)
        values.append(tf.linalg.matvec(probs, tf.constant(table)))
    return tf.stack(values, axis=1)


@keras.utils.register_keras_serializable(package="rq_keras")
class RQRegLoss:
    """The RQ-Reg objective, Eq. 16, with each term reported.

    `loss = gen_weight * L_gen + reg_weight * L_reg + rnc_weight * L_rnc`.
    The terms are reported unweighted. A term whose weight is 0 is not
    computed (its inputs may be absent) and is reported as zeros: the
    "w/o L_gen" and "w/o L_rnc" ablations of Table 3. "w/o f_reg" is a decoder
    switch (its `level_values` come from `expected_level_values`); the loss is
    the same.

    Sample weights weight each example's L_gen and L_reg and each anchor's
    L_rnc; every example of the batch still takes part in the other anchors'
    contrasts.

    Args:
        gen_weight: weight of L_gen (the paper's 1), >= 0.
        reg_weight: lambda_1, weight of L_reg, >= 0.
        rnc_weight: lambda_2, weight of L_rnc, >= 0.
        temperature: tau of Rank-N-Contrast, > 0.
        delta: the Huber threshold, > 0 (the paper: 0.1 for Criteo-SSC,
            10.0 for CIKM16, 2.0 otherwise), in units of `label_scale`.
        label_scale: L_reg's unit, > 0: its Huber terms compare `u / s` with
            `v / s` (1.0: the label's own unit, the paper; `ModelConfig`'s
            `label_scale="std"` passes the training labels' std).
        reduction: `"sum_over_batch_size"` (sum of weighted per-example losses
            divided by the number of examples), `"sum"`, or `"none"`
            (per-example `(batch,)` tensors, for `tf.nn.compute_average_loss`
            under a distribution strategy; see the module docstring).
        name: a name for the loss.
        cumulative_huber: the level terms of L_reg on running sums with the
            earlier levels' predictions detached (`huber_terms(cumulative=True)`;
            the authors' released code).
        rnc_cross_replica: under a multi-replica strategy, L_rnc contrasts
            each anchor with the global batch (True: the single-device loss)
            or with its replica's local batch only (False); see the module
            docstring.

    Call args:
        outputs: dict of decoder outputs: `prediction` `(batch,)` or
            `(batch, 1)` (L_reg's y_hat; `regressor` instead when present),
            `level_values` `(batch, levels)` (y_hat_l),
            `logits` `(batch, levels, vocabulary)`, `expected_embeddings`
            `(batch, levels, dim)` or `(batch, levels * dim)`.
        targets: dict: `label` `(batch,)`, `tokens` int `(batch, levels)`,
            `level_values` `(batch, levels)` (q_l); with a `residual` output,
            also `residual` `(batch,)` (`label - sum_l q_l`), whose Huber term
            joins L_reg.
        sample_weight: optional `(batch,)` or `(batch, 1)` weights.
        code_embeddings: optional decoder table `E` `(vocabulary, dim)`; with
            it L_rnc is computed from the logits (see `per_example`).

    Returns:
        dict `{"loss", "gen", "reg", "rnc"}` of float32 scalars, or `(batch,)`
        tensors with `reduction="none"`.
    """

    def __init__(
        self,
        gen_weight: float = 1.0,
        reg_weight: float = 1.0,
        rnc_weight: float = 0.1,
        temperature: float = 2.0,
        delta: float = 2.0,
        reduction: str = "sum_over_batch_size",
        name: str = "rq_reg_loss",
        cumulative_huber: bool = False,
        rnc_cross_replica: bool = True,
        label_scale: float = 1.0,
    ):
        self.gen_weight = _check_weight("gen_weight", gen_weight)
        self.reg_weight = _check_weight("reg_weight", reg_weight)
        self.rnc_weight = _check_weight("rnc_weight", rnc_weight)
        self.temperature = _check_positive("temperature", temperature)
        self.delta = _check_positive("delta", delta)
        self.label_scale = _check_positive("label_scale", label_scale)
        if reduction not in REDUCTIONS:
            raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.name = str(name)
        self.cumulative_huber = bool(cumulative_huber)
        self.rnc_cross_replica = bool(rnc_cross_replica)

    @staticmethod
    def _get(inputs: Mapping[str, Any], key: str, where: str):
        if key not in inputs:
            raise ValueError(f"`{where}` has no {key!r} entry (keys: {sorted(inputs)})")
        return inputs[key]

    def per_example(self, outputs, targets, code_embeddings=None) -> dict[str, tf.Tensor]:
        """Unweighted per-example terms, each float32 `(batch,)`.

        With `code_embeddings` (the decoder's table `E`, `(vocabulary, dim)`)
        and a vocabulary smaller than `dim`, L_rnc is computed from the
        `logits` through `rank_n_contrast_factored` (the same loss, fewer
        operations) instead of from `expected_embeddings`.
        """
        label = _flat(self._get(targets, "label", "targets"))
        zeros = tf.zeros_like(label)
        terms = {"gen": zeros, "reg": zeros, "rnc": zeros}
        if self.gen_weight > 0:
            terms["gen"] = code_nll(
                self._get(targets, "tokens", "targets"), self._get(outputs, "logits", "outputs")
            )
        if self.reg_weight > 0:
            # f_reg's sum: `regressor` when the decoder serves another prediction.
            key = "regressor" if "regressor" in outputs else "prediction"
            unit = 1.0 / self.label_scale  # every value of L_reg in label_scale units

            def scaled(x):
                return x if self.label_scale == 1.0 else tf.cast(x, tf.float32) * unit

            terms["reg"] = huber_terms(
                scaled(label),
                scaled(self._get(outputs, key, "outputs")),
                scaled(self._get(targets, "level_values", "targets")),
                scaled(self._get(outputs, "level_values", "outputs")),
                self.delta,
                cumulative=self.cumulative_huber,
            )
            if "residual" in outputs:
                # The residual regressor's target: what the L codes leave over.
                residual = _flat(self._get(targets, "residual", "targets"))
                error = scaled(residual - _flat(outputs["residual"]))
                terms["reg"] += huber(error, self.delta)
        if self.rnc_weight > 0 and _factored_is_cheaper(code_embeddings):
            probabilities = tf.nn.softmax(
                tf.cast(self._get(outputs, "logits", "outputs"), tf.float32), axis=-1
            )
            terms["rnc"] = rank_n_contrast_factored(
                probabilities,
                code_embeddings,
                label,
                self.temperature,
                cross_replica=self.rnc_cross_replica,
            )
        elif self.rnc_weight > 0:
            terms["rnc"] = rank_n_contrast(
                self._get(outputs, "expected_embeddings", "outputs"),
                label,
                self.temperature,
                cross_replica=self.rnc_cross_replica,
            )
        terms["loss"] = (
            self.gen_weight * terms["gen"]
            + self.reg_weight * terms["reg"]
            + self.rnc_weight * terms["rnc"]
        )
        return terms

    def __call__(
        self, outputs, targets, sample_weight=None, code_embeddings=None
    ) -> dict[str, tf.Tensor]:
        with tf.name_scope(self.name):
            terms = self.per_example(outputs, targets, code_embeddings)
            if sample_weight is not None:
                weight = _flat(sample_weight)
                terms = {k: v * weight for k, v in terms.items()}
            if self.reduction == "none":
                return {k: terms[k] for k in TERMS}
            sums = {k: tf.reduce_sum(terms[k]) for k in TERMS}
            if self.reduction == "sum":
                return sums
            count = tf.cast(tf.size(terms["loss"]), tf.float32)
            return {k: tf.math.divide_no_nan(v, count) for k, v in sums.items()}

    def get_config(self) -> dict[str, Any]:
        return {
            "gen_weight": self.gen_weight,
            "reg_weight": self.reg_weight,
            "rnc_weight": self.rnc_weight,
            "temperature": self.temperature,
            "delta": self.delta,
            "reduction": self.reduction,
            "name": self.name,
            "cumulative_huber": self.cumulative_huber,
            "rnc_cross_replica": self.rnc_cross_replica,
            "label_scale": self.label_scale,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RQRegLoss:
        return cls(**config)
