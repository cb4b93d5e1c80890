"""The RQ decoding layer: predicts the L codes coarse to fine (paper 3.3.2, 3.5)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from rq_keras.config.configs import CELLS, PREDICTIONS, REGRESSOR_INPUTS, check_distribution_options
from rq_keras.config.seeds import sub_seed
from rq_keras.layers.code_tree import (
    CodeTreeAtoms,
    atom_summary,
    expected_level_value,
)
from rq_keras.layers.transformer_cell import CausalTransformerCell
from rq_keras.quantizer.tokens import START_TOKEN, ZERO_TOKEN, special_tokens, token_offsets_for

__all__ = ["RQDecoder"]


def _cell(kind: str, units: int, seed: int | None, layers: int, heads: int, positions: int):
    if kind == "transformer":
        return CausalTransformerCell(
            units, num_layers=layers, num_heads=heads, max_positions=positions, seed=seed
        )
    init = keras.initializers.GlorotUniform(seed=seed)
    rec = keras.initializers.Orthogonal(seed=sub_seed(seed, "recurrent_kernel"))
    if kind == "lstm":
        return keras.layers.LSTMCell(units, kernel_initializer=init, recurrent_initializer=rec)
    if kind == "gru":
        return keras.layers.GRUCell(units, kernel_initializer=init, recurrent_initializer=rec)
    return keras.layers.SimpleRNNCell(units, kernel_initializer=init, recurrent_initializer=rec)


def _mlp(hidden: int, out: int, name: str, seed: int | None):
    def init(k):
        return keras.initializers.GlorotUniform(seed=sub_seed(seed, index=k))

    return keras.Sequential(
        [
            keras.layers.Dense(hidden, activation="relu", kernel_initializer=init(0)),
            keras.layers.Dense(out, kernel_initializer=init(1)),
        ],
        name=name,
    )


@keras.utils.register_keras_serializable(package="rq_keras")
class RQDecoder(keras.layers.Layer):
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
            the true global token ids `(batch, L)` (read only when training).
        training: Keras' training flag.

    The code tree (inference only, with `centroids`). The decoder is a
    distribution over code sequences, `p(q_1|x) p(q_2|x, q_1) ...`, and each
    sequence has the value `sum_l c_l(q_l)` (clipped to `value_range`). The
    first `exact_levels` levels are expanded: every code of level 1 is a
    branch whose step 2 reads that code's embedding (as in teacher forcing),
    and so on. The next level's codes become atoms (each branch times each
    code, with its probability); deeper levels enter through their expected
    value, each step reading the previous step's expected embedding (as the
    autoregressive inference does). `exact_levels=0` (the default): no
    branch, one pass; level 1's codes are the atoms. With `exact_levels >=
    L - 1` this is the exact distribution (tested against enumerating every
    code sequence); with 1 and L = 3 only level 3 is approximated by its
    expectation given E[e_2], with 0 levels 2..L are (the errors are
    measured by `benchmarks/code_tree.py`). Cost: `exact_levels=0` reads the
    logits of the layer's own autoregressive pass (no extra step; `K_1`
    atoms); 1: `K_1` branches through steps 2..L and `K_1 * K_2` atoms per
    row. With the zero code, a branch at `<zero>`
    stays `<zero>` (value 0) at every later level, as the quantizer codes it.

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

    def __init__(
        self,
        codebook_sizes: Sequence[int],
        units: int = 512,
        embedding_dim: int = 512,
        cell: str = "lstm",
        transformer_layers: int = 2,
        transformer_heads: int = 4,
        predictor_units: int = 512,
        regressor_units: int = 128,
        use_regressor: bool = True,
        centroids: Sequence[Sequence[float]] | None = None,
        sampling_probability: float = 1.0,
        residual_regressor: bool = False,
        seed: int | None = None,
        zero_token: bool = False,
        regressor_input: str = "logits",
        code_embedding_stddev: float = 0.05,
        prediction: str = "regressor",
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        thresholds: Sequence[float] = (0.0,),
        exact_levels: int = 0,
        value_range: Sequence[float | None] = (None, None),
        **kwargs,
    ):
        super().__init__(**kwargs)
        sizes = [int(k) for k in codebook_sizes]
        if not sizes or any(k < 1 for k in sizes):
            raise ValueError(f"`codebook_sizes` must be a non-empty list of ints >= 1, got {sizes}")
        for name, value in (
            ("units", units),
            ("embedding_dim", embedding_dim),
            ("predictor_units", predictor_units),
            ("regressor_units", regressor_units),
        ):
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}")
        if cell not in CELLS:
            raise ValueError(f"`cell` must be one of {CELLS}, got {cell!r}")
        if cell == "transformer" and (
            int(transformer_layers) < 1
            or int(transformer_heads) < 1
            or int(units) % int(transformer_heads)
        ):
            raise ValueError(
                f"`transformer_layers` and `transformer_heads` must be >= 1 and the heads must "
                f"divide `units` ({units}), got {transformer_layers} and {transformer_heads}"
            )
        if regressor_input not in REGRESSOR_INPUTS:
            raise ValueError(
                f"`regressor_input` must be one of {REGRESSOR_INPUTS}, got {regressor_input!r}"
            )
        if not 0.0 <= float(sampling_probability) <= 1.0:
            raise ValueError(
                f"`sampling_probability` must be in [0, 1], got {sampling_probability}"
            )
        if centroids is not None and [len(c) for c in centroids] != sizes:
            raise ValueError(
                f"`centroids` must have one list per level of the `codebook_sizes` {sizes}, "
                f"got sizes {[len(c) for c in centroids]}"
            )
        if not use_regressor and centroids is None:
            raise ValueError("`use_regressor=False` needs `centroids`")
        if prediction not in PREDICTIONS:
            raise ValueError(f"`prediction` must be one of {PREDICTIONS}, got {prediction!r}")
        if prediction != "regressor" and centroids is None:
            raise ValueError(f"`prediction={prediction!r}` needs `centroids` (the code tree)")
        check_distribution_options(quantiles, thresholds, exact_levels)
        if not float(code_embedding_stddev) > 0:
            raise ValueError(f"`code_embedding_stddev` must be > 0, got {code_embedding_stddev}")
        low, high = (None if v is None else float(v) for v in value_range)
        if low is not None and high is not None and low > high:
            raise ValueError(f"`value_range` must have low <= high, got {list(value_range)}")
        self.codebook_sizes = sizes
        self.units = int(units)
        self.embedding_dim = int(embedding_dim)
        self.cell = cell
        self.transformer_layers = int(transformer_layers)
        self.transformer_heads = int(transformer_heads)
        self.predictor_units = int(predictor_units)
        self.regressor_units = int(regressor_units)
        self.use_regressor = bool(use_regressor)
        self.centroids = None if centroids is None else [[float(v) for v in c] for c in centroids]
        self.initial_sampling_probability = float(sampling_probability)
        self.residual_regressor = bool(residual_regressor)
        self.seed = seed
        # An unseeded layer's coins still need a key: one drawn now.
        self._coin_seed = (
            sub_seed(seed, "sampling_coins") if seed is not None else secrets.randbits(31)
        )
        self.zero_token = bool(zero_token)
        self.regressor_input = regressor_input
        self.code_embedding_stddev = float(code_embedding_stddev)
        self.prediction = prediction
        self.quantiles = [float(q) for q in quantiles]
        self.thresholds = [float(t) for t in thresholds]
        self.exact_levels = int(exact_levels)
        self.value_range = [low, high]
        self.num_levels = len(sizes)
        self.vocabulary_size = special_tokens(self.zero_token) + sum(sizes)
        self.token_offsets = token_offsets_for(sizes, self.zero_token).tolist()
        # Made here, not in `build`: it does not depend on the input shape, and
        # the `ScheduledSampling` callback sets it before the first training
        # step builds a subclassed model's layers.
        self.sampling_probability = self.add_weight(
            name="sampling_probability",
            shape=(),
            dtype=tf.float32,
            initializer=keras.initializers.Constant(self.initial_sampling_probability),
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_WRITE,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    @property
    def state_size(self) -> int:
        """Width of the `state` input: `2 * units` for LSTM, `units` otherwise."""
        return 2 * self.units if self.cell == "lstm" else self.units

    def build(self, input_shape):
        seed = self.seed
        self.code_embeddings = self.add_weight(
            name="code_embeddings",
            shape=(self.vocabulary_size, self.embedding_dim),
            initializer=keras.initializers.RandomNormal(
                stddev=self.code_embedding_stddev, seed=seed
            ),
        )
        step = sub_seed(seed, "recurrent_cell")
        self.recurrent_cell = _cell(
            self.cell,
            self.units,
            step,
            self.transformer_layers,
            self.transformer_heads,
            positions=1 + self.num_levels,  # the prefix, then x_0 .. x_{L-1}
        )
        self.recurrent_cell.build((None, self.embedding_dim))
        self.predictor = _mlp(
            self.predictor_units,
            self.vocabulary_size,
            "predictor",
            sub_seed(seed, "predictor"),
        )
        self.predictor.build((None, self.units))
        if self.use_regressor:
            self.regressor = _mlp(self.regressor_units, 1, "regressor", sub_seed(seed, "regressor"))
            self.regressor.build((None, self.vocabulary_size))
        if self.residual_regressor:
            self.residual_head = _mlp(
                self.regressor_units, 1, "residual_regressor", sub_seed(seed, "residual_regressor")
            )
            self.residual_head.build((None, self.vocabulary_size))
        if not self.use_regressor:
            width = max(self.codebook_sizes)
            padded = [c + [0.0] * (width - len(c)) for c in self.centroids]
            self.level_centroids = self.add_weight(
                name="level_centroids",
                shape=(self.num_levels, width),
                initializer=keras.initializers.Constant(padded),
                trainable=False,
            )
        # Training calls so far (the coins' key). Made last: a model saved
        # before it existed loads every other variable (`load_own_variables`).
        self.sampling_step = self.add_weight(
            name="sampling_step",
            shape=(),
            dtype=tf.int64,
            initializer="zeros",
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_WRITE,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        super().build(input_shape)

    def load_own_variables(self, store):
        own = self._trainable_weights + self._non_trainable_weights
        if len(store.keys()) == len(own) - 1 and own[-1] is self.sampling_step:
            # Saved by rq_keras 0.2 (no coin counter): the rest, in order.
            for i, variable in enumerate(own[:-1]):
                variable.assign(store[f"{i}"])
            return
        super().load_own_variables(store)

    def _coin_key(self):
        """This training call's `(2,)` coin key: the layer's coin seed, the
        call count (then one more) and the replica folded in."""
        count = self.sampling_step.assign_add(1)
        key = tf.stack([tf.constant(self._coin_seed, tf.int64), tf.cast(count, tf.int64)])
        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group
        return tf.random.experimental.stateless_fold_in(key, tf.cast(replica, tf.int64))

    def _initial_states(self, state):
        if self.cell == "lstm":
            h0, c0 = tf.split(state, 2, axis=-1)
            return [h0, c0]
        return [state]

    def _level_logits(self, level: int, logits):
        """Logits of what level `level` may emit: `[<zero>,] codes`."""
        start, size = self.token_offsets[level], self.codebook_sizes[level]
        own = logits[:, start : start + size]
        if self.zero_token:
            own = tf.concat([logits[:, ZERO_TOKEN : ZERO_TOKEN + 1], own], axis=1)
        return own

    def _level_value(self, level: int, logits):
        if self.use_regressor:
            return self.regressor(logits)[:, 0]
        size = self.codebook_sizes[level]
        return expected_level_value(
            self._level_logits(level, logits), self.level_centroids[level, :size], self.zero_token
        )

    def call(self, inputs, training=None, distribution=None):
        state = inputs["state"]
        tokens = inputs.get("tokens")
        if state.shape[-1] is not None and state.shape[-1] != self.state_size:
            raise ValueError(
                f"{self.name}: `state` must have {self.state_size} columns for cell "
                f"{self.cell!r} with {self.units} units, got {state.shape[-1]}"
            )
        teacher = bool(training) and tokens is not None
        table = tf.cast(self.code_embeddings, self.compute_dtype)
        batch = tf.shape(state)[0]
        states = self._initial_states(tf.cast(state, self.compute_dtype))
        x = tf.repeat(table[START_TOKEN][tf.newaxis, :], batch, axis=0)
        if teacher:
            tokens = tf.cast(tokens, tf.int32)
            p = tf.cast(self.sampling_probability, tf.float32)
            key = self._coin_key()
        level_values, logits_all, expected, codes = [], [], [], []
        for level in range(self.num_levels):
            h, states = self.recurrent_cell(x, states, training=training)
            states = list(states) if isinstance(states, (list, tuple)) else [states]
            logits = self.predictor(h)
            probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
            e_hat = tf.matmul(tf.cast(probs, self.compute_dtype), table)
            reg_in = tf.stop_gradient(logits) if self.regressor_input == "stopped" else logits
            level_values.append(tf.cast(self._level_value(level, reg_in), tf.float32))
            logits_all.append(tf.cast(logits, tf.float32))
            expected.append(tf.cast(e_hat, tf.float32))
            code = tf.argmax(self._level_logits(level, logits), axis=-1, output_type=tf.int32)
            codes.append(code - 1 if self.zero_token else code)
            if level + 1 == self.num_levels:
                break
            if teacher:
                true_e = tf.gather(table, tokens[:, level])
                coin = tf.random.stateless_uniform(
                    [batch, 1], seed=tf.random.experimental.stateless_fold_in(key, level)
                )
                x = tf.where(coin < p, true_e, e_hat)
            else:
                x = e_hat
        level_values = tf.stack(level_values, axis=1)
        prediction = tf.reduce_sum(level_values, axis=1)
        outputs = {
            "level_values": level_values,
            "logits": tf.stack(logits_all, axis=1),
            "expected_embeddings": tf.concat(expected, axis=1),
            "codes": tf.stack(codes, axis=1),
        }
        if self.residual_regressor:
            outputs["residual"] = tf.cast(self.residual_head(reg_in)[:, 0], tf.float32)
            prediction = prediction + outputs["residual"]
        outputs["regressor"] = prediction
        if distribution is None:
            distribution = not training
        if distribution and self.centroids is not None:
            # The pass above is the tree's one pass unless it read true codes.
            outputs.update(
                self.code_tree(state, pass_logits=None if teacher else outputs["logits"])
            )
            if self.prediction != "regressor":
                prediction = outputs[self.prediction]
        return {"prediction": prediction, **outputs}

    def code_tree(
        self, state, exact_levels: int | None = None, pass_logits=None
    ) -> dict[str, tf.Tensor]:
        """The predictive distribution over the code tree (see the class doc).

        Args:
            state: the encoder output `(batch, state_size)`.
            exact_levels: overrides the layer's `exact_levels` (a
                benchmark compares 1 with L - 1, the exact distribution).
            pass_logits: the logits `(batch, L, V)` of the autoregressive
                pass of `state` (the layer's `logits` output at inference).
                With no level expanded they are the tree's one pass, which is
                then not run again; otherwise unused.

        Returns:
            dict: `mean`, `median`, `positive_mean` `(batch,)`, `quantiles` `(batch, Q)`,
            `exceedance` `(batch, T)` (when there are thresholds), float32.
        """
        if self.centroids is None:
            raise ValueError(f"{self.name}: the code tree needs `centroids`")
        # Expanding L - 1 levels is already exact; expanding level L too would
        # multiply the rows by K_L for nothing. 0: level 1's codes are the
        # atoms, one pass, no branches.
        exact = self.exact_levels if exact_levels is None else int(exact_levels)
        expand = min(exact, max(0, self.num_levels - 1))
        reuse = pass_logits is not None and expand == 0
        table = tf.cast(self.code_embeddings, self.compute_dtype)
        batch = tf.shape(state)[0]
        if not reuse:
            states = self._initial_states(tf.cast(state, self.compute_dtype))
            x = tf.repeat(table[START_TOKEN][tf.newaxis, :], batch, axis=0)
        tree = CodeTreeAtoms(batch, expand, self.zero_token)
        for level in range(self.num_levels):
            if reuse:
                logits = tf.cast(pass_logits[:, level], tf.float32)
            else:
                h, states = self.recurrent_cell(x, states, training=False)
                states = list(states) if isinstance(states, (list, tuple)) else [states]
                logits = tf.cast(self.predictor(h), tf.float32)
            own = self._level_logits(level, logits)
            branches = tree.branches
            tree.add_level(level, own, self.centroids[level])
            if level < expand:
                if level + 1 < self.num_levels:
                    # Each row becomes `size` rows, one per code of this level,
                    # and the next step reads that code's embedding.
                    size = own.shape[-1]
                    states = [tf.repeat(s, size, axis=0) for s in states]
                    start = self.token_offsets[level]
                    tokens = tf.range(start, start + self.codebook_sizes[level])
                    if self.zero_token:
                        tokens = tf.concat([[ZERO_TOKEN], tokens], axis=0)
                    x = tf.tile(tf.gather(table, tokens), [batch * branches, 1])
            elif not reuse:
                full = tf.nn.softmax(logits, axis=-1)
                x = tf.matmul(tf.cast(full, self.compute_dtype), table)
        return atom_summary(*tree.atoms(), self.quantiles, self.thresholds, self.value_range)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "codebook_sizes": list(self.codebook_sizes),
                "units": self.units,
                "embedding_dim": self.embedding_dim,
                "cell": self.cell,
                "transformer_layers": self.transformer_layers,
                "transformer_heads": self.transformer_heads,
                "predictor_units": self.predictor_units,
                "regressor_units": self.regressor_units,
                "use_regressor": self.use_regressor,
                "centroids": self.centroids,
                "sampling_probability": self.initial_sampling_probability,
                "residual_regressor": self.residual_regressor,
                "regressor_input": self.regressor_input,
                "code_embedding_stddev": self.code_embedding_stddev,
                "prediction": self.prediction,
                "quantiles": list(self.quantiles),
                "thresholds": list(self.thresholds),
                "exact_levels": self.exact_levels,
                "value_range": list(self.value_range),
                "seed": self.seed,
                "zero_token": self.zero_token,
            }
        )
        return config
