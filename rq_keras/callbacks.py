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

    With `per_batch=True`, p follows the fractional epoch instead, updated
    before every training batch: `t = epoch + batch / steps_per_epoch` (a
    smooth curve, as the authors' released code does it; needs a known number
    of steps per epoch).

    Args:
        k: decay rate (> 0).
        t0: the epoch where p = 0.5.
        per_batch: update p every batch from the fractional epoch.
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
        from rq_keras.layers.decoder import RQDecoder

        found = [m for m in self.model.submodules if isinstance(m, RQDecoder)]
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

    def get_config(self):
        return {"k": self.k, "t0": self.t0, "per_batch": self.per_batch}
