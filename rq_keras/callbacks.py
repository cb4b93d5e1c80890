"""Training callbacks."""

from __future__ import annotations

import math

import tf_keras as keras

__all__ = ["ScheduledSampling", "sampling_probability"]


def sampling_probability(epoch: float, k: float = 0.1, t0: float = 10.0) -> float:
    """Inverse sigmoid decay `p(t) = sigmoid(-k (t - t0))` (Eq. 17)."""
    return 1.0 / (1.0 + math.exp(k * (epoch - t0)))


@keras.utils.register_keras_serializable(package="rq_keras")
class ScheduledSampling(keras.callbacks.Callback):
    """Sets every `RQDecoder`'s `sampling_probability` at each epoch's start.

    `p` is the probability that a training step feeds the true previous code
    (Eq. 17; the paper's defaults `k = 0.1`, `t0 = 10`: p = 0.73 at epoch 0,
    0.5 at epoch 10, 0.02 at epoch 50). Epochs count from 0 as Keras does.

    Args:
        k: decay rate (> 0).
        t0: the epoch where p = 0.5.
    """

    def __init__(self, k: float = 0.1, t0: float = 10.0):
        super().__init__()
        if not k > 0:
            raise ValueError(f"`k` must be > 0, got {k}")
        self.k = float(k)
        self.t0 = float(t0)
        self.history: list[float] = []

    def _decoders(self):
        from rq_keras.layers.decoder import RQDecoder

        found = [m for m in self.model.submodules if isinstance(m, RQDecoder)]
        if not found:
            raise ValueError("ScheduledSampling: the model has no RQDecoder")
        return found

    def on_epoch_begin(self, epoch, logs=None):
        p = sampling_probability(epoch, self.k, self.t0)
        for decoder in self._decoders():
            decoder.sampling_probability.assign(p)
        self.history.append(p)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["sampling_probability"] = self.history[-1]

    def get_config(self):
        return {"k": self.k, "t0": self.t0}
