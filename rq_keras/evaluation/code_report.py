"""Per-level report of the code classifier: NLL and accuracy beside the marginal.

:class:`CodeReport` is fed the decoder's logits batch by batch at inference
and compares them, level by level, with what knowing only the training codes'
marginal distribution scores. numpy only; re-exported by :mod:`rq_keras.evaluation.metrics`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CodeReport"]


class CodeReport:
    """How well the code classifier predicts each level's code, beside the
    training codes' marginal distribution (the score of knowing nothing).

    Fed batch by batch with the decoder's logits at inference, so level 1 is
    p(q_1 | x) and a deeper level is conditioned on the model's own earlier
    codes, as served. Per level it reports the mean NLL of the true code
    under the softmax over the whole vocabulary (as L_gen reads it) and under
    the marginal (add-half smoothed), the accuracy of the served code and of
    always serving the most frequent one, and the probability the model puts
    on tokens of other levels (and `<start>`).

    Args:
        train_codes: `(n, L)` codes of the training labels (-1: the zero code).
        codebook_sizes: K per level.
        token_offsets: global token of code 0 per level (the quantizer's).
        zero_token: the vocabulary has `<zero>` (token 1) for code -1.
    """

    def __init__(self, train_codes, codebook_sizes, token_offsets, zero_token: bool = False):
        codes = np.asarray(train_codes, dtype=np.int64)
        self.sizes = [int(k) for k in codebook_sizes]
        self.offsets = np.asarray(token_offsets, dtype=np.int64)
        self.zero_token = bool(zero_token)
        if codes.ndim != 2 or codes.shape[1] != len(self.sizes) or codes.shape[0] == 0:
            raise ValueError(f"`train_codes` must be (n > 0, {len(self.sizes)}), got {codes.shape}")
        self.log_marginal, self.majority = [], []
        for level, k in enumerate(self.sizes):
            slots = k + 1 if self.zero_token else k
            counts = np.bincount(self._slots(codes[:, level], level), minlength=slots)
            self.log_marginal.append(np.log((counts + 0.5) / (counts.sum() + 0.5 * slots)))
            self.majority.append(int(np.argmax(counts)))
        levels = len(self.sizes)
        self.rows = 0
        self.sums = {k: np.zeros(levels) for k in ("nll", "marginal_nll", "other_mass")}
        self.correct = np.zeros(levels)
        self.majority_correct = np.zeros(levels)

    def _slots(self, codes: np.ndarray, level: int) -> np.ndarray:
        """Code -> index in the level's marginal (the zero code last)."""
        return np.where(codes < 0, self.sizes[level], codes)

    def _tokens(self, codes: np.ndarray, level: int) -> np.ndarray:
        return np.where(codes < 0, 1, codes + self.offsets[level])

    def update(self, logits, predicted_codes, true_codes) -> None:
        """Adds a batch: logits `(n, L, V)`, served and true codes `(n, L)`."""
        z = np.asarray(logits, dtype=np.float64)
        predicted = np.asarray(predicted_codes, dtype=np.int64)
        true = np.asarray(true_codes, dtype=np.int64)
        if z.ndim != 3 or z.shape[:2] != true.shape or predicted.shape != true.shape:
            raise ValueError(
                f"logits (n, L, V) and codes (n, L) do not match: {z.shape}, "
                f"{predicted.shape}, {true.shape}"
            )
        top = z.max(axis=2, keepdims=True)
        log_p = z - top - np.log(np.exp(z - top).sum(axis=2, keepdims=True))
        rows = np.arange(z.shape[0])
        for level, k in enumerate(self.sizes):
            codes = true[:, level]
            self.sums["nll"][level] -= log_p[rows, level, self._tokens(codes, level)].sum()
            marginal = self.log_marginal[level][self._slots(codes, level)]
            self.sums["marginal_nll"][level] -= marginal.sum()
            own = list(range(self.offsets[level], self.offsets[level] + k))
            if self.zero_token:
                own.append(1)
            mass = np.exp(log_p[:, level, own]).sum(axis=1)
            self.sums["other_mass"][level] += (1.0 - mass).sum()
            self.correct[level] += (predicted[:, level] == codes).sum()
            majority = self.majority[level]
            self.majority_correct[level] += (self._slots(codes, level) == majority).sum()
        self.rows += z.shape[0]

    def result(self) -> list[dict[str, float | int]]:
        """One dict per level: `level` (1-based), `nll`, `marginal_nll`,
        `accuracy`, `majority_accuracy`, `other_level_mass`."""
        if self.rows == 0:
            return []
        n = float(self.rows)
        return [
            {
                "level": level + 1,
                "nll": float(self.sums["nll"][level] / n),
                "marginal_nll": float(self.sums["marginal_nll"][level] / n),
                "accuracy": float(self.correct[level] / n),
                "majority_accuracy": float(self.majority_correct[level] / n),
                "other_level_mass": float(self.sums["other_mass"][level] / n),
            }
            for level in range(len(self.sizes))
        ]
