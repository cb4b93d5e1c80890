"""RQRegLoss: the RQ-Reg objective (Eq. 16) with each term, and the
`expected_level_values` of the "w/o f_reg" ablation (Table 3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from rq_keras.layers.code_tree import expected_level_value
from rq_keras.losses.rnc import factored_is_cheaper, rank_n_contrast, rank_n_contrast_factored
from rq_keras.losses.terms import (
    atom_crps,
    check_positive,
    check_weight,
    code_nll,
    flat,
    huber,
    huber_terms,
)
from rq_keras.quantizer.tokens import ZERO_TOKEN, token_offsets_for

__all__ = ["REDUCTIONS", "TERMS", "RQRegLoss", "expected_level_values"]

REDUCTIONS = ("sum_over_batch_size", "sum", "none")
TERMS = ("loss", "gen", "reg", "rnc", "crps")


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
        values.append(expected_level_value(own, table, zero_token))
    return tf.stack(values, axis=1)


@keras.utils.register_keras_serializable(package="rq_keras")
class RQRegLoss:
    """The RQ-Reg objective, Eq. 16, with each term reported.

    `loss = gen_weight * L_gen + reg_weight * L_reg + rnc_weight * L_rnc
    + crps_weight * L_crps`. The terms are reported unweighted. L_crps is not
    the paper's: the CRPS of level 1's distribution over its atoms (the zero
    code and level 1's centroids) against the label, in `label_scale` units
    (`atom_crps`): the served distribution's quality, which L_gen's NLL
    judges without the codes' order. A term whose weight is 0 is not
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
        crps_weight: weight of L_crps, >= 0 (0: not computed, reported as 0).
        crps_tokens: the vocabulary ids of level 1's atoms (`<zero>` first
            with the zero code, then level 1's codes); needed with
            `crps_weight > 0`.
        crps_values: their values (0 for `<zero>`, then level 1's
            centroids), in the label's unit.

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
        dict `{"loss", "gen", "reg", "rnc", "crps"}` of float32 scalars, or `(batch,)`
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
        crps_weight: float = 0.0,
        crps_tokens: Sequence[int] | None = None,
        crps_values: Sequence[float] | None = None,
    ):
        self.gen_weight = check_weight("gen_weight", gen_weight)
        self.reg_weight = check_weight("reg_weight", reg_weight)
        self.rnc_weight = check_weight("rnc_weight", rnc_weight)
        self.temperature = check_positive("temperature", temperature)
        self.delta = check_positive("delta", delta)
        self.label_scale = check_positive("label_scale", label_scale)
        if reduction not in REDUCTIONS:
            raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.name = str(name)
        self.cumulative_huber = bool(cumulative_huber)
        self.rnc_cross_replica = bool(rnc_cross_replica)
        self.crps_weight = check_weight("crps_weight", crps_weight)
        self.crps_tokens = None if crps_tokens is None else [int(t) for t in crps_tokens]
        self.crps_values = None if crps_values is None else [float(v) for v in crps_values]
        if self.crps_weight > 0:
            if self.crps_tokens is None or self.crps_values is None:
                raise ValueError("`crps_weight > 0` needs `crps_tokens` and `crps_values`")
            if len(self.crps_tokens) != len(self.crps_values) or not self.crps_tokens:
                raise ValueError(
                    f"`crps_tokens` and `crps_values` must be non-empty and of one length, got "
                    f"{len(self.crps_tokens)} and {len(self.crps_values)}"
                )
            if min(self.crps_tokens) < 0:
                raise ValueError(f"`crps_tokens` must be >= 0, got {self.crps_tokens}")
            if not all(np.isfinite(self.crps_values)):
                raise ValueError(f"`crps_values` must be finite, got {self.crps_values}")

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
        label = flat(self._get(targets, "label", "targets"))
        zeros = tf.zeros_like(label)
        terms = {"gen": zeros, "reg": zeros, "rnc": zeros, "crps": zeros}
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
                residual = flat(self._get(targets, "residual", "targets"))
                error = scaled(residual - flat(outputs["residual"]))
                terms["reg"] += huber(error, self.delta)
        if self.rnc_weight > 0 and factored_is_cheaper(code_embeddings):
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
        if self.crps_weight > 0:
            logits = tf.cast(self._get(outputs, "logits", "outputs"), tf.float32)
            level_one = tf.gather(logits[:, 0], self.crps_tokens, axis=-1)
            values = np.asarray(self.crps_values) / self.label_scale
            terms["crps"] = atom_crps(level_one, values, label / self.label_scale)
        terms["loss"] = (
            self.gen_weight * terms["gen"]
            + self.reg_weight * terms["reg"]
            + self.rnc_weight * terms["rnc"]
            + self.crps_weight * terms["crps"]
        )
        return terms

    def __call__(
        self, outputs, targets, sample_weight=None, code_embeddings=None
    ) -> dict[str, tf.Tensor]:
        with tf.name_scope(self.name):
            terms = self.per_example(outputs, targets, code_embeddings)
            if sample_weight is not None:
                weight = flat(sample_weight)
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
            "crps_weight": self.crps_weight,
            "crps_tokens": self.crps_tokens,
            "crps_values": self.crps_values,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RQRegLoss:
        return cls(**config)
