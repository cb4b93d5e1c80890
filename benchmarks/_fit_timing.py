"""Timing training steps inside one `model.fit`.

Timing whole `fit` calls adds the end of `fit`, where freeing the input
iterator waits for tf.data's autotuning thread to wake (up to ~10 s on this
machine; with `tf.data.Options().autotune.enabled = False` the wait goes),
so repeats of the same step cluster at two rates. `timed_blocks` runs one
`fit` and times blocks of steps from a callback between steps.
"""

from __future__ import annotations

import time


def timed_blocks(model, ds, warmup: int, steps: int, repeats: int, between=None):
    """Seconds of each of `repeats` blocks of `steps` training steps, after
    `warmup` untimed steps, in one `model.fit`; `between()` (if given) runs
    after each block, untimed (a same-process reference to alternate with).
    Returns `(seconds per block, fit's History)`."""
    import tf_keras as keras

    seconds = []

    class Blocks(keras.callbacks.Callback):
        start = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            if batch == warmup:
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            done = batch + 1 - warmup  # timed steps so far
            if done <= 0 or done % steps:
                return
            seconds.append(time.perf_counter() - self.start)
            if between is not None:
                between()
            self.start = time.perf_counter()

    history = model.fit(
        ds, steps_per_epoch=warmup + repeats * steps, epochs=1, verbose=0, callbacks=[Blocks()]
    )
    return seconds, history
