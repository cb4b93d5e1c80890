"""The code tree's distribution math: atoms of code sequences and what is read from them.

`RQDecoder.code_tree` runs the decoder level by level (see its class doc);
`CodeTreeAtoms` turns each level's logits and centroids into branches and
atoms (value, probability), and `atom_summary` reads the mean, median,
quantiles, P(y > t) and the mean given y > 0 off the atoms. The decoder's
steps (its pass and the tree's) go through `CellSteps` (any cell) or
`FactoredLstmSteps` (the LSTM with its input projection computed once per
code, not once per row or branch).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

__all__ = [
    "CellSteps",
    "CodeTreeAtoms",
    "FactoredLstmSteps",
    "atom_quantiles",
    "atom_summary",
    "expected_level_value",
]


def expected_level_value(level_logits, centroids, zero_token: bool):
    """One level's expected code value, `sum_k softmax(z)_k c_k`: the "w/o
    f_reg" prediction of that level (Table 3).

    Args:
        level_logits: float `(batch, [1 +] K)`, the logits of what the level may
            emit (`<zero>` first with the zero code, then its K codes).
        centroids: the level's K centroids (a tensor or a float32 array).
        zero_token: `level_logits` starts with `<zero>`, whose value is 0.

    Returns:
        `(batch,)` in the logits' dtype.
    """
    probs = tf.nn.softmax(level_logits, axis=-1)
    centroids = tf.cast(centroids, probs.dtype)
    if zero_token:
        centroids = tf.concat([tf.zeros([1], probs.dtype), centroids], axis=0)
    return tf.linalg.matvec(probs, centroids)


def atom_quantiles(values, probabilities, levels):
    """Quantiles of discrete distributions given by atoms.

    Args:
        values: float `(batch, atoms)`, the atoms' values.
        probabilities: float `(batch, atoms)`, their masses (rows summing to
            about 1; each row is normalised by its own sum).
        levels: the quantile levels, each in (0, 1).

    Returns:
        float32 `(batch, len(levels))`: per row and level q the smallest atom
        value v with P(y <= v) >= q (the lower quantile of a step CDF).
    """
    values = tf.cast(values, tf.float32)
    probabilities = tf.cast(probabilities, tf.float32)
    order = tf.argsort(values, axis=1, stable=True)
    sorted_values = tf.gather(values, order, batch_dims=1)
    cdf = tf.math.cumsum(tf.gather(probabilities, order, batch_dims=1), axis=1)
    targets = tf.constant([list(map(float, levels))], tf.float32) * cdf[:, -1:]
    index = tf.searchsorted(cdf, targets, side="left")
    index = tf.minimum(index, tf.shape(values)[1] - 1)
    return tf.gather(sorted_values, index, batch_dims=1)


class CodeTreeAtoms:
    """The code tree's branches and atoms, gathered level by level.

    Rows are (example, branch), example-major. Each of the first `expand`
    levels branches: a row becomes one row per code of the level, with the
    path's probability and value. Level `expand`'s codes make the atoms
    (each branch times each code); each deeper level adds its expected value
    to the atoms. With the zero code, a branch at `<zero>` stays `<zero>`
    (value 0) at every later level.

    Args:
        batch: the examples (a scalar tensor).
        expand: the levels expanded branch by branch (at most L - 1).
        zero_token: the levels' logits start with `<zero>`.
    """

    def __init__(self, batch, expand: int, zero_token: bool):
        self.batch = batch
        self.expand = expand
        self.zero_token = zero_token
        self.branches = 1  # per example
        self.path_p = tf.ones([batch, 1], tf.float32)
        self.path_v = tf.zeros([batch, 1], tf.float32)
        self.path_zero = tf.zeros([batch, 1], tf.bool)
        self.atom_p = self.atom_v = self.atom_open = None
        self.shift = 0.0

    def add_level(
        self, level: int, own_logits, centroids: Sequence[float], shared: bool = False
    ) -> None:
        """Adds level `level` (levels come in order, from 0).

        Args:
            level: the level, 0-based.
            own_logits: float32 `(batch * branches, size)`, the logits of what
                the level may emit (`[<zero>,] codes`) on every row; with
                `shared`, `(batch, size)`, one row per example that every
                branch of it reads (a level deeper than the atoms' only).
            centroids: the level's code values (without `<zero>`).
            shared: see `own_logits`.
        """
        batch, branches = self.batch, self.branches
        size = own_logits.shape[-1]
        if shared and level <= self.expand:
            raise ValueError(f"level {level} makes branches or atoms: its logits cannot be shared")
        probs = tf.reshape(
            tf.nn.softmax(own_logits, axis=-1), [batch, 1 if shared else branches, size]
        )
        if self.zero_token:
            # A branch at <zero> stays there: value 0 at every later level.
            zero_row = tf.one_hot(0, size, dtype=tf.float32)
            probs = tf.where(self.path_zero[:, :, tf.newaxis], zero_row, probs)
        values = list(centroids)
        values = tf.constant(([0.0] + values) if self.zero_token else values, tf.float32)
        if level < self.expand:
            width = branches * size
            self.path_p = tf.reshape(self.path_p[:, :, tf.newaxis] * probs, [batch, width])
            self.path_v = tf.reshape(self.path_v[:, :, tf.newaxis] + values, [batch, width])
            if self.zero_token:
                is_zero = tf.range(size) == 0
                path_zero = self.path_zero[:, :, tf.newaxis] | is_zero
                self.path_zero = tf.reshape(path_zero, [batch, width])
            self.branches *= size
        elif level == self.expand:
            self.atom_p = self.path_p[:, :, tf.newaxis] * probs
            self.atom_v = self.path_v[:, :, tf.newaxis] + values
            # After a <zero> code every level is <zero>: no deeper value.
            self.atom_open = tf.constant(
                [0.0] + [1.0] * (size - 1) if self.zero_token else [1.0] * size
            )
        else:
            self.shift += tf.linalg.matvec(probs, values)

    def atoms(self):
        """`(probabilities, values)`, each float32 `(batch, atoms)`."""
        if self.atom_p is None:
            return self.path_p, self.path_v
        atom_v = self.atom_v
        if not isinstance(self.shift, float):
            atom_v += self.shift[:, :, tf.newaxis] * self.atom_open
        return tf.reshape(self.atom_p, [self.batch, -1]), tf.reshape(atom_v, [self.batch, -1])


class CellSteps:
    """The decoder's recurrent cell stepped over code inputs (any cell): the
    decoding pass (`RQDecoder.call`) and the code tree.

    A step's input is one of: `start(token)`, one token for every row (fanned
    out); `codes(tokens)`, the tokens' rows, either one per row (teacher
    forcing) or one per code with each parent row fanning out to one row per
    code (the tree's expanded level); `expected(probs, mixed)`, the row's
    expected embedding `softmax(z) E` (`mixed` when the caller has it).
    `step(inputs, states, fan_out)` runs the cell and returns `(h, states)`.

    Args:
        cell: the decoder's recurrent cell.
        table: the code embeddings `(V, D)` in the compute dtype.
    """

    def __init__(self, cell, table):
        self.cell = cell
        # What a step's inputs are rows (or softmax mixtures of rows) of.
        self.inputs = table

    def start(self, token: int):
        return self.inputs[token][tf.newaxis, :]

    def codes(self, tokens):
        return tf.gather(self.inputs, tokens)

    def expected(self, probs, mixed=None):
        if mixed is not None:
            return mixed
        return tf.matmul(tf.cast(probs, self.inputs.dtype), self.inputs)

    def step(self, inputs, states, fan_out: bool, training=False):
        """Args: `inputs` from `start`/`codes` (`fan_out`: each of the R rows
        of `states` becomes `len(inputs)` rows, row-major; otherwise one per
        row) or from `expected` (one per row); `training`: Keras' flag."""
        if fan_out:
            size = tf.shape(inputs)[0]
            rows = tf.shape(states[0])[0]
            states = [tf.repeat(s, size, axis=0) for s in states]
            inputs = tf.tile(inputs, [rows, 1])
        h, states = self.cell(inputs, states, training=training)
        return h, list(states) if isinstance(states, (list, tuple)) else [states]


class FactoredLstmSteps(CellSteps):
    """`CellSteps` for the LSTM with its input projection factored out.

    An LSTM step's gates are `x W + h U + b` (Keras' order i, f, c, o). A
    decoder step's `x` is a code's embedding or a softmax-weighted sum of
    them, so the inputs are handed over projected (`(rows, 4 units)`), and
    `x W` is computed in the cheaper order for the batch's `rows`: through
    `E W` (computed once, then a gather or `softmax(z) (E W)`, V columns in
    place of the embedding width D) when `rows` > V, as `(softmax(z) E) W`
    otherwise (serving one row must not pay for `E W`). A fan-out step
    computes `h U + b` once per parent row and adds each code's projected row
    (no matmul per branch). In
    training at the paper's sizes this removes most of the `(batch, D) x (D,
    4 units)` product of every step (`benchmarks/train_step.py`); gradients
    reach W and E either way. The math of Keras' `LSTMCell` (without
    dropout, which the decoder never sets), up to float association.
    """

    def __init__(self, cell, table, rows):
        super().__init__(cell, table)
        dtype = table.dtype
        self.kernel = tf.cast(cell.kernel, dtype)
        self.recurrent = tf.cast(cell.recurrent_kernel, dtype)
        self.bias = tf.cast(cell.bias, dtype) if cell.use_bias else None
        # Through E W when the rows outnumber V: decided once, at trace time
        # when `rows` is static (a fixed batch), else at run time, where
        # E W is computed once by one `tf.cond` (zeros when unused).
        vocabulary = int(table.shape[0])
        self.through_table = rows > vocabulary  # a bool, or a bool tensor
        if isinstance(rows, int):
            self.projected = self._table() if self.through_table else None
        else:
            width = int(self.kernel.shape[-1])
            self.projected = tf.cond(
                self.through_table, self._table, lambda: tf.zeros([vocabulary, width], dtype)
            )

    def _table(self):
        return tf.matmul(self.inputs, self.kernel)  # E W, (V, 4 units)

    def _projected(self, through_table, direct):
        """`through_table(E W)` or `direct()`, as decided at construction."""
        if isinstance(self.through_table, bool):
            return through_table(self.projected) if self.through_table else direct()
        return tf.cond(self.through_table, lambda: through_table(self.projected), direct)

    def start(self, token: int):
        return tf.matmul(super().start(token), self.kernel)

    def codes(self, tokens):
        return self._projected(
            lambda projected: tf.gather(projected, tokens),
            lambda: tf.matmul(super(FactoredLstmSteps, self).codes(tokens), self.kernel),
        )

    def expected(self, probs, mixed=None):
        return self._projected(
            lambda projected: tf.matmul(tf.cast(probs, projected.dtype), projected),
            lambda: tf.matmul(super(FactoredLstmSteps, self).expected(probs, mixed), self.kernel),
        )

    def step(self, inputs, states, fan_out: bool, training=False):
        h, c = states  # an LSTM cell without dropout: `training` changes nothing
        z = tf.matmul(h, self.recurrent)
        if self.bias is not None:
            z = z + self.bias
        if fan_out:
            z = tf.reshape(z[:, tf.newaxis, :] + inputs[tf.newaxis, :, :], [-1, z.shape[-1]])
            c = tf.repeat(c, tf.shape(inputs)[0], axis=0)
        else:
            z = z + inputs
        i, f, g, o = tf.split(z, 4, axis=-1)
        gate, act = self.cell.recurrent_activation, self.cell.activation
        c = gate(f) * c + gate(i) * act(g)
        h = gate(o) * act(c)
        return h, [h, c]


def atom_summary(
    atom_p,
    atom_v,
    quantiles: Sequence[float],
    thresholds: Sequence[float],
    value_range: Sequence[float | None],
) -> dict[str, tf.Tensor]:
    """What `RQDecoder.code_tree` returns, read off the atoms.

    Args:
        atom_p: float32 `(batch, atoms)`, the atoms' probabilities.
        atom_v: float32 `(batch, atoms)`, their values.
        quantiles: the levels of the `quantiles` output.
        thresholds: the t of the `exceedance` output P(y > t).
        value_range: `(low, high)` the atoms' values are clipped to (None: open).

    Returns:
        dict: `mean`, `median`, `positive_mean` `(batch,)`, `quantiles` `(batch, Q)`,
        `exceedance` `(batch, T)` (when there are thresholds), float32.
    """
    low, high = value_range
    if low is not None or high is not None:
        atom_v = tf.clip_by_value(
            atom_v,
            -float("inf") if low is None else low,
            float("inf") if high is None else high,
        )
    total = tf.reduce_sum(atom_p, axis=1)
    levels = atom_quantiles(atom_v, atom_p, [0.5, *quantiles])
    # E[y | x, y > 0]: the mass and value of the atoms above 0 (0 when
    # no atom is above 0).
    positive_p = atom_p * tf.cast(atom_v > 0.0, tf.float32)
    out = {
        "mean": tf.math.divide_no_nan(tf.reduce_sum(atom_p * atom_v, axis=1), total),
        "median": levels[:, 0],
        "positive_mean": tf.math.divide_no_nan(
            tf.reduce_sum(positive_p * atom_v, axis=1), tf.reduce_sum(positive_p, axis=1)
        ),
        "quantiles": levels[:, 1:],
    }
    if thresholds:
        above = tf.cast(
            atom_v[:, tf.newaxis, :] > tf.constant(thresholds)[:, tf.newaxis], tf.float32
        )
        out["exceedance"] = tf.math.divide_no_nan(
            tf.reduce_sum(atom_p[:, tf.newaxis, :] * above, axis=2), total[:, tf.newaxis]
        )
    return out
