"""The RQ decoder's math, written once for its Keras 2 and Keras 3 layers.

`DecoderMath` holds everything of the decoder but the Keras objects: the
settings and their checks, the parts it builds (through the skin's Keras
module), the L decoding steps with scheduled sampling (`call`) and the code
tree (`code_tree`). `rq_keras.layers.decoder.RQDecoder` (Keras 2, `tf_keras`)
and `rq_keras.layers.keras3.RQDecoder` (Keras 3) are thin skins over it: a
Keras base class, its Keras module (`_keras`) and how a replica-synchronized
counter is made. A fix here lands in both; `tests/test_keras3.py` gives the
two the same weights and compares every output and the loss.

This module needs TensorFlow but no Keras: it imports in a Keras 2 and in a
Keras 3 process.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from rq_keras.config.choices import CELLS, PREDICTIONS, REGRESSOR_INPUTS, check_distribution_options
from rq_keras.config.seeds import sub_seed
from rq_keras.layers.code_tree import (
    CellSteps,
    CodeTreeAtoms,
    FactoredLstmSteps,
    atom_summary,
    expected_level_value,
)
from rq_keras.layers.layer_math import LayerMath
from rq_keras.quantizer.tokens import START_TOKEN, ZERO_TOKEN, special_tokens, token_offsets_for

__all__ = ["DecoderMath", "SamplingSchedule", "sampling_probability"]


class DecoderMath(LayerMath):
    """The RQ decoder without its Keras: see `rq_keras.layers.decoder.RQDecoder`
    for the arguments, the outputs and the code tree.

    A skin is `class RQDecoder(DecoderMath, <Keras>.layers.Layer)` with
    `_keras` (its Keras module) and `_first_replica` (the keyword arguments
    of `add_weight` for a variable written by the first replica only); its
    `build` calls `_build_parts()`. It may override `_make_cell` (a cell kind
    its Keras lacks). The constructor and `get_config` are `LayerMath`'s.
    """

    _first_replica: dict[str, Any] = {}

    def _configure(
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
        teacher_forced_evaluation: bool = False,
    ) -> None:
        """Checks the settings and keeps them (see `RQDecoder`'s Args)."""
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
        if not isinstance(teacher_forced_evaluation, bool):
            raise ValueError(
                f"`teacher_forced_evaluation` must be True or False, got "
                f"{teacher_forced_evaluation!r}"
            )
        self.teacher_forced_evaluation = bool(teacher_forced_evaluation)
        self.value_range = [low, high]
        self.num_levels = len(sizes)
        self.vocabulary_size = special_tokens(self.zero_token) + sum(sizes)
        self.token_offsets = token_offsets_for(sizes, self.zero_token).tolist()
        self._make_state_weights()

    def _make_state_weights(self) -> None:
        """`sampling_probability` (p) and `sampling_step` (the coins' call
        counter): both non-trainable, written by the first replica only.

        Made at construction, not in `build`: they do not depend on the input
        shape, and the `ScheduledSampling` callback sets p before the first
        training step builds a subclassed model's layers.
        """
        keras = self._keras
        self.sampling_probability = self.add_weight(
            name="sampling_probability",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(self.initial_sampling_probability),
            trainable=False,
            **self._first_replica,
        )

    def _make_counter(self) -> None:
        # Training calls so far (the coins' key). Made last in `build`: a model
        # saved before it existed loads every other variable.
        self.sampling_step = self.add_weight(
            name="sampling_step",
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            **self._first_replica,
        )

    def _make_cell(self, kind: str, seed: int | None):
        """The recurrent cell of `kind` (`CELLS`) through `_keras`; the
        Transformer is the skin's `_transformer_cell` (a
        `CausalTransformerCellMath` layer of its Keras)."""
        keras = self._keras
        if kind == "transformer":
            return self._transformer_cell(
                self.units,
                num_layers=self.transformer_layers,
                num_heads=self.transformer_heads,
                max_positions=1 + self.num_levels,  # the prefix, then x_0 .. x_{L-1}
                seed=seed,
            )
        init = keras.initializers.GlorotUniform(seed=seed)
        rec = keras.initializers.Orthogonal(seed=sub_seed(seed, "recurrent_kernel"))
        layer = {
            "lstm": keras.layers.LSTMCell,
            "gru": keras.layers.GRUCell,
            "rnn": keras.layers.SimpleRNNCell,
        }[kind]
        return layer(self.units, kernel_initializer=init, recurrent_initializer=rec)

    def _make_mlp(self, hidden: int, out: int, name: str, seed: int | None):
        keras = self._keras

        def init(k):
            return keras.initializers.GlorotUniform(seed=sub_seed(seed, index=k))

        return keras.Sequential(
            [
                keras.layers.Dense(hidden, activation="relu", kernel_initializer=init(0)),
                keras.layers.Dense(out, kernel_initializer=init(1)),
            ],
            name=name,
        )

    def _build_parts(self) -> None:
        """The code embeddings, the cell, f_pred, f_reg (and the residual
        head, the centroids table), then the coin counter."""
        keras, seed = self._keras, self.seed
        self.code_embeddings = self.add_weight(
            name="code_embeddings",
            shape=(self.vocabulary_size, self.embedding_dim),
            initializer=keras.initializers.RandomNormal(
                stddev=self.code_embedding_stddev, seed=seed
            ),
        )
        self.recurrent_cell = self._make_cell(self.cell, sub_seed(seed, "recurrent_cell"))
        self.recurrent_cell.build((None, self.embedding_dim))
        self.predictor = self._make_mlp(
            self.predictor_units, self.vocabulary_size, "predictor", sub_seed(seed, "predictor")
        )
        self.predictor.build((None, self.units))
        if self.use_regressor:
            self.regressor = self._make_mlp(
                self.regressor_units, 1, "regressor", sub_seed(seed, "regressor")
            )
            self.regressor.build((None, self.vocabulary_size))
        if self.residual_regressor:
            self.residual_head = self._make_mlp(
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
        self._make_counter()

    def _settings(self) -> dict[str, Any]:
        """The settings as `get_config` entries."""
        return {
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
            "teacher_forced_evaluation": self.teacher_forced_evaluation,
            "seed": self.seed,
            "zero_token": self.zero_token,
        }

    @property
    def state_size(self) -> int:
        """Width of the `state` input: `2 * units` for LSTM, `units` otherwise."""
        return 2 * self.units if self.cell == "lstm" else self.units

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

    def _tree_steps(self, table, rows):
        """How the decoding steps (`call`, `code_tree`) run the cell: the
        LSTM with its input projection factored out (a step's input is a code
        embedding or a softmax mixture of them, so `E W` serves every row,
        and a tree's branches share their parent's state), any other cell as
        it is. `rows`: the batch (an int when static, else a scalar tensor)."""
        if self.cell == "lstm":
            return FactoredLstmSteps(self.recurrent_cell, table, rows)
        return CellSteps(self.recurrent_cell, table)

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
        # Outside training, true codes are read only with
        # `teacher_forced_evaluation` (every step, no coins: the validation
        # loss is then the code sequence's NLL).
        teacher = tokens is not None and (bool(training) or self.teacher_forced_evaluation)
        coins = teacher and bool(training)
        table = tf.cast(self.code_embeddings, self.compute_dtype)
        batch = tf.shape(state)[0]
        steps = self._tree_steps(table, _rows(state))
        states = self._initial_states(tf.cast(state, self.compute_dtype))
        x, fan_out = steps.start(START_TOKEN), True
        if teacher:
            tokens = tf.cast(tokens, tf.int32)
        if coins:
            p = tf.cast(self.sampling_probability, tf.float32)
            key = self._coin_key()
        level_values, logits_all, expected, codes = [], [], [], []
        for level in range(self.num_levels):
            h, states = steps.step(x, states, fan_out, training=training)
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
            # The next step's input: the true code's row, or the expected
            # one (`e_hat`, through `steps`: for the LSTM, its projection).
            fan_out = False
            if teacher and not coins:
                x = steps.codes(tokens[:, level])
            elif teacher:
                coin = tf.random.stateless_uniform(
                    [batch, 1], seed=tf.random.experimental.stateless_fold_in(key, level)
                )
                x = tf.where(coin < p, steps.codes(tokens[:, level]), steps.expected(probs, e_hat))
            else:
                x = steps.expected(probs, e_hat)
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
        self, state, exact_levels: int | None = None, pass_logits=None, deeper: str = "pass"
    ) -> dict[str, tf.Tensor]:
        """The predictive distribution over the code tree (see the class doc).

        Args:
            state: the encoder output `(batch, state_size)`.
            exact_levels: overrides the layer's `exact_levels` (a
                benchmark compares 1 with L - 1, the exact distribution).
            pass_logits: the logits `(batch, L, V)` of the autoregressive
                pass of `state` (the layer's `logits` output at inference),
                read for the levels below the atoms (every level with none
                expanded) instead of running the pass again. None: the tree
                runs the pass when it needs one.
            deeper: how a level below the atoms' level is read: `"pass"`
                (served: the one pass's level, one row per example, which every
                branch of the example shares) or `"branch"` (a step on every
                branch, reading the branch's previous expected embedding:
                K_1 + 1 recurrent products per example at width `units`,
                kept to measure what `"pass"` gives up, in
                `benchmarks/code_levels.py`).

        Returns:
            dict: `mean`, `median`, `positive_mean` `(batch,)`, `quantiles` `(batch, Q)`,
            `exceedance` `(batch, T)` (when there are thresholds), float32.
        """
        if self.centroids is None:
            raise ValueError(f"{self.name}: the code tree needs `centroids`")
        if deeper not in ("pass", "branch"):
            raise ValueError(f"`deeper` must be 'pass' or 'branch', got {deeper!r}")
        # Expanding L - 1 levels is already exact; expanding level L too would
        # multiply the rows by K_L for nothing. 0: level 1's codes are the
        # atoms, one pass, no branches.
        exact = self.exact_levels if exact_levels is None else int(exact_levels)
        expand = min(exact, max(0, self.num_levels - 1))
        # The levels the tree steps: none when the pass is the tree; else its
        # branched levels and the atoms' level, and with `"branch"` the
        # deeper ones too (with `"pass"` they come from the one pass).
        if expand == 0:
            stepped = 0
        else:
            stepped = expand + 1 if deeper == "pass" else self.num_levels
        if stepped < self.num_levels and pass_logits is None:
            pass_logits = self.call({"state": state}, training=False, distribution=False)["logits"]
        batch = tf.shape(state)[0]
        if stepped:
            table = tf.cast(self.code_embeddings, self.compute_dtype)
            steps = self._tree_steps(table, _rows(state))
            states = self._initial_states(tf.cast(state, self.compute_dtype))
            x, fan_out = steps.start(START_TOKEN), True
        tree = CodeTreeAtoms(batch, expand, self.zero_token)
        for level in range(self.num_levels):
            if level >= stepped:
                own = self._level_logits(level, tf.cast(pass_logits[:, level], tf.float32))
                tree.add_level(level, own, self.centroids[level], shared=level > expand)
                continue
            h, states = steps.step(x, states, fan_out)
            logits = tf.cast(self.predictor(h), tf.float32)
            tree.add_level(level, self._level_logits(level, logits), self.centroids[level])
            if level + 1 == stepped:
                continue
            if level < expand:
                # Each row becomes one row per code of this level, and the
                # next step reads that code's embedding.
                start = self.token_offsets[level]
                tokens = tf.range(start, start + self.codebook_sizes[level])
                if self.zero_token:
                    tokens = tf.concat([[ZERO_TOKEN], tokens], axis=0)
                x, fan_out = steps.codes(tokens), True
            else:
                x, fan_out = steps.expected(tf.nn.softmax(logits, axis=-1)), False
        return atom_summary(*tree.atoms(), self.quantiles, self.thresholds, self.value_range)


def _rows(tensor):
    """A tensor's first dimension: an int when static, else a scalar tensor."""
    rows = tensor.shape[0]
    return int(rows) if rows is not None else tf.shape(tensor)[0]


def sampling_probability(epoch: float, k: float = 0.1, t0: float = 10.0) -> float:
    """Inverse sigmoid decay `p(t) = sigmoid(-k (t - t0))` (Eq. 17).

    Computed without overflow for any `t0`, so a `t0` far in the future or the
    past pins p at 1 or 0 (the "SS with p = 1 / p = 0" ablations).
    """
    z = k * (epoch - t0)
    if z > 0:
        e = math.exp(-z)  # <= 1
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(z))


class SamplingSchedule:
    """What `ScheduledSampling` does in either Keras: see
    `rq_keras.training.callbacks.ScheduledSampling` (Keras 2) and
    `rq_keras.layers.keras3.ScheduledSampling` (Keras 3), the skins that add
    the Keras `Callback` base. It sets the `sampling_probability` of every RQ
    decoder of the model (`DecoderMath`, either Keras).
    """

    def __init__(self, k: float = 0.1, t0: float = 10.0, per_batch: bool = False):
        super().__init__()
        if not k > 0:
            raise ValueError(f"`k` must be > 0, got {k}")
        self.k = float(k)
        self.t0 = float(t0)
        self.per_batch = bool(per_batch)
        self.history: list[float] = []
        self._epoch = 0

    def _decoders(self):
        # Keras 2 models are tf.Modules (`submodules`); Keras 3's list their layers.
        parts = getattr(self.model, "submodules", None)
        if parts is None:
            parts = self.model._flatten_layers(include_self=False, recursive=True)
        found = [m for m in parts if isinstance(m, DecoderMath)]
        if not found:
            raise ValueError("ScheduledSampling: the model has no RQDecoder")
        return found

    def _set(self, t: float) -> float:
        p = sampling_probability(t, self.k, self.t0)
        for decoder in self._decoders():
            decoder.sampling_probability.assign(p)
        return p

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self.history.append(self._set(epoch))

    def on_train_batch_begin(self, batch, logs=None):
        if not self.per_batch:
            return
        steps = (self.params or {}).get("steps")
        if not steps:
            raise ValueError(
                "ScheduledSampling(per_batch=True) needs a known number of steps per epoch "
                "(pass `steps_per_epoch` to fit for an infinite dataset)"
            )
        self.history[-1] = self._set(self._epoch + batch / steps)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["sampling_probability"] = self.history[-1]
