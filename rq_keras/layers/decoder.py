"""The RQ decoding layer: predicts the L codes coarse to fine (paper 3.3.2, 3.5).

The Keras 2 skin (`tf_keras`) over `rq_keras.layers.decoding.DecoderMath`,
which holds the math shared with the Keras 3 layer
(`rq_keras.layers.keras3.RQDecoder`).
"""

from __future__ import annotations

# ruff: noqa: E402 (the Keras check comes before TensorFlow loads)
from rq_keras.config.keras_version import require_keras2

require_keras2("rq_keras.layers")  # a Keras 2 module: before TensorFlow loads

import tensorflow as tf
import tf_keras as keras

from rq_keras.layers.decoding import DecoderMath
from rq_keras.layers.transformer_cell import CausalTransformerCell

__all__ = ["RQDecoder"]


@keras.utils.register_keras_serializable(package="rq_keras")
class RQDecoder(DecoderMath, keras.layers.Layer):
    """Recurrent decoder of RQ codes with scheduled sampling (Eq. 8-10, 14, 17).

    One shared embedding table `E` over the vocabulary (`<start>`, `<zero>`
    when the codebook has a zero code, then every level's codes, level-major,
    as `ResidualQuantizer` numbers them). For
    l = 1..L: the cell (Eq. 8) consumes an input embedding, `f_pred` (a
    two-layer MLP) gives logits `z_l` over the whole vocabulary (Eq. 9),
    `f_reg` (a two-layer MLP) maps `z_l` to `y_l` (Eq. 10), and
    `e_l = softmax(z_l) E` is the expected embedding (Eq. 14). The prediction
    is `sum_l y_l`.

    Input embeddings. Step 1 reads `e(<start>)`. After that:

    * `training=True` with `tokens`: per example, the true previous code's
      embedding `e(q_{l-1})` with probability `p` (the `sampling_probability`
      variable), else the model's own `e_{l-1}` (scheduled sampling, 3.5.1).
      `p = 1` is exactly teacher forcing, `p = 0` exactly free running. The
      coins are stateless draws keyed on the layer's seed, the training call
      (the `sampling_step` counter, saved with the weights and in
      checkpoints), the replica and the level: a run resumed from a
      checkpoint draws the coins the uninterrupted run would have.
    * otherwise (inference, or no `tokens`): `e_{l-1}`, fully autoregressive
      (3.5.2); the tokens are not read.

    Args:
        codebook_sizes: codes per level (the quantizer's
            `fitted_codebook_sizes`); L = its length.
        units: the recurrent cell's units (paper: 512).
        embedding_dim: D, the code embedding size (paper: 512).
        cell: `"lstm"` (default), `"gru"`, `"rnn"` (SimpleRNN) or
            `"transformer"` (a causal Transformer decoder conditioned on the
            encoder output as a prefix token, `CausalTransformerCell`;
            Table 4).
        transformer_layers: the Transformer's blocks (`cell="transformer"`).
        transformer_heads: its attention heads; they must divide `units`.
        predictor_units: hidden units of `f_pred`.
        regressor_units: hidden units of `f_reg`.
        use_regressor: False is the "w/o f_reg" ablation (Table 3): `y_l` is
            the expectation of level l's centroids under softmax of the
            level's own logits; needs `centroids`.
        centroids: per level the quantizer's centroids (for
            `use_regressor=False`).
        sampling_probability: initial `p` (1.0: teacher forcing until a
            `ScheduledSampling` callback lowers it; 0.0 for the "SS with
            p = 0" ablation).
        residual_regressor: add a two-layer MLP on the last step's logits
            that predicts what the L codes leave over (`y - sum_l q_l`), and
            add it to the prediction (the authors' released code); its output
            is `residual`.
        zero_token: the codebook has the zero code (`ResidualQuantizer`'s
            `zero_threshold`): the vocabulary gets `<zero>` (token 1), a
            level's code is the argmax over `<zero>` and the level's codes
            (-1 for `<zero>`), and without `f_reg` `<zero>` counts as value 0
            in the expectation.
        code_embedding_stddev: the code embeddings' initial N(0, s).
        prediction: what the `prediction` output is at inference: `"regressor"`
            (the paper: `sum_l y_l`), `"mean"`, `"median"` or `"positive_mean"`
            (the mean given y > 0) of the code tree's distribution (needs
            `centroids`). In training (`training=True`)
            `prediction` is always the regressor's.
        quantiles: levels of the `quantiles` output (each in (0, 1)).
        thresholds: the t of the `exceedance` output P(y > t).
        exact_levels: code levels expanded branch by branch by the code tree
            (see below).
        value_range: `(low, high)` the labels were clipped to (None: open);
            the code tree's atoms are clipped to it.
        teacher_forced_evaluation: outside training, given `tokens` (the
            validation loss), read the true codes at every step (teacher
            forcing, no coins), so the code loss is the NLL of the true code
            sequence, `-log p(q_1|x) - log p(q_2|x, q_1) - ...`. False (the
            default): outside training the tokens are not read and each level
            reads the previous step's expected embedding, as the served pass
            does, so each level is scored by its served marginal.
        regressor_input: what `f_reg` (and the residual head, and without
            `f_reg` the expectation over centroids) reads: `"logits"` (Eq. 10:
            L_reg's gradients flow into the code classifier) or `"stopped"`
            (the same logits behind `tf.stop_gradient`: L_reg trains `f_reg`
            only, and the classifier learns from L_gen and L_rnc).
        seed: seeds the initializers and the sampling coins (None: random).

    Call args:
        distribution: compute the code tree's outputs (default: when not
            training). `RQRegModel`'s validation passes False when the
            served prediction is `"regressor"`, which needs no tree.
        inputs: dict with `state`, the encoder output `(batch, state_size)`
            (`[h0; c0]` for LSTM, `h0` otherwise), and optionally `tokens`,
            the true global token ids `(batch, L)` (read when training, and
            outside training with `teacher_forced_evaluation`).
        training: Keras' training flag.

    The code tree (inference only, with `centroids`). The decoder is a
    distribution over code sequences, `p(q_1|x) p(q_2|x, q_1) ...`, and each
    sequence has the value `sum_l c_l(q_l)` (clipped to `value_range`). The
    first `exact_levels` levels are expanded: every code of level 1 is a
    branch whose step 2 reads that code's embedding (as in teacher forcing),
    and so on. The next level's codes become atoms (each branch times each
    code, with its probability); deeper levels enter through their expected
    value under the layer's own autoregressive pass (each step reading the
    previous step's expected embedding), one per example, which all its
    branches share. `exact_levels=0` (the default): no branch, one pass;
    level 1's codes are the atoms. With `exact_levels >= L - 1` this is the
    exact distribution (tested against enumerating every code sequence);
    with 1 and L = 3 only level 3 is approximated by the pass's expectation,
    with 0 levels 2..L are (the errors are measured by
    `benchmarks/code_tree.py`; reading level 3 on every branch instead,
    `code_tree(deeper="branch")`, moved the served CRPS by at most 0.02% and
    Norm-Gini(+) by 0.0003 on complete_journey and nycflights,
    `benchmarks/results/code_tree_deeper.md`). Cost:
    `exact_levels=0` reads the logits of the layer's own autoregressive pass
    (no extra step; `K_1` atoms); 1: steps 1 and 2 again, step 2 on `K_1`
    (+ 1) branches, and `K_1 * K_2` atoms per row. With the LSTM, step 2's
    branches share their parent's state, so its input projection is computed
    once per code and its recurrent product once per row
    (`FactoredLstmSteps`): step 2 costs about one row's step plus f_pred on
    each branch. With the zero code, a branch at `<zero>` stays `<zero>`
    (value 0) at every later level, as the quantizer codes it.

    Returns:
        dict: `prediction` `(batch,)`, `regressor` `(batch,)` (the sum of
        f_reg's outputs, plus `residual`), `level_values` `(batch, L)`,
        `logits` `(batch, L, V)`, `expected_embeddings` `(batch, L * D)` and
        `codes` `(batch, L)` int32 (argmax over each level's own codes, and
        `<zero>` as -1 when `zero_token`), all float32 except `codes`; with
        `residual_regressor`, also `residual` `(batch,)`. At inference with
        `centroids`, also the code tree's `mean` `(batch,)`, `median`
        `(batch,)`, `positive_mean` `(batch,)` (E[y | x, y > 0]; 0 when no
        atom is above 0), `quantiles` `(batch, Q)` and, with `thresholds`,
        `exceedance` `(batch, T)`.
    """

    _keras = keras
    _transformer_cell = CausalTransformerCell
    _first_replica = {
        "synchronization": tf.VariableSynchronization.ON_WRITE,
        "aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA,
    }

    def build(self, input_shape):
        self._build_parts()
        super().build(input_shape)

    def load_own_variables(self, store):
        own = self._trainable_weights + self._non_trainable_weights
        if len(store.keys()) == len(own) - 1 and own[-1] is self.sampling_step:
            # Saved by rq_keras 0.2 (no coin counter): the rest, in order.
            for i, variable in enumerate(own[:-1]):
                variable.assign(store[f"{i}"])
            return
        super().load_own_variables(store)
