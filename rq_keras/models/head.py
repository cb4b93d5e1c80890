"""What every head shares: `HeadTask`, the interface between a features tower and a head.

A head is the part of a model between the features tower and the prediction,
with its objective: `RQRegTask` (`rq_keras.models.rq_reg`) and `BaselineTask`
(`rq_keras.models.baselines`). Both are TFRS tasks, so `task(labels,
tower_output)` is the loss of a user's own `tfrs.Model.compute_loss`, and
`rq_keras.models.ranking_model.RankingModel` trains them through that same
call: one loss path. The task owns its loss trackers and metrics (the running
means of its loss terms, `TERMS`, and `mae` on the clipped label), so any
`tfrs.Model` around it reports the same numbers.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from rq_keras.losses.terms import global_batch_mean

__all__ = ["HeadTask"]


class _Restartable:
    """A task metric that a `.keras` file of rq_keras 0.2 holds no variables
    for (the model tracked the running means itself): it starts at zero."""

    def load_own_variables(self, store):
        if len(store.keys()) == 0:
            return
        super().load_own_variables(store)


class _RunningMean(_Restartable, keras.metrics.Mean):
    """A loss term's running mean."""


class _RunningMAE(_Restartable, keras.metrics.MeanAbsoluteError):
    """The running MAE against the clipped label."""


class HeadTask(keras.layers.Layer, tfrs.tasks.Task):
    """What every rq_keras head shares (`RQRegTask`, `BaselineTask`).

    A head takes the tower's output `(batch, features)`: `predict` (inference
    outputs), `loss_terms` (per-example terms, `TERMS`, before the batch mean)
    and `task(labels, predictions)`, the TFRS loss: `loss_terms`, then the
    task's metrics (the running mean of each term and `mae` on the clipped
    label, `task_metrics`), then the global-batch mean of `loss`. A
    `tfrs.Model`'s `compute_loss` and `RankingModel`'s train and test steps
    all call that, so they compute the same loss and report the same metrics.
    The task remembers the tower's width, so a task restored from its config
    builds its weights before they are loaded.
    """

    TERMS: tuple[str, ...] = ("loss",)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Metrics assigned to a layer are tracked by it: any Keras model around
        # the task reports them (`Model.metrics` collects its layers' metrics).
        self.trackers = {term: _RunningMean(name=term) for term in self.TERMS}
        self.mae = _RunningMAE(name="mae")
        self._tower_width: int | None = None

    @property
    def task_metrics(self) -> list:
        """The task's metrics, in the order a train step reports them: the
        running mean of each of `TERMS`, then `mae`."""
        return [*self.trackers.values(), self.mae]

    def _see_tower(self, predictions) -> None:
        width = predictions.shape[-1]
        if width is not None:
            self._tower_width = int(width)

    def predict(self, predictions, labels=None, training=False):
        raise NotImplementedError

    def loss_terms(self, labels, predictions, sample_weight=None, training=False):
        raise NotImplementedError

    def call(self, labels, predictions, sample_weight=None, training=False, compute_metrics=True):
        """The loss of one batch, scaled by the global batch (a scalar).

        Args:
            labels: raw labels `(batch,)` or `(batch, 1)`.
            predictions: the tower's output `(batch, features)`.
            sample_weight: optional `(batch,)`; the terms are weighted.
            training: Keras' flag.
            compute_metrics: update the task's metrics (`task_metrics`).
        """
        terms, outputs, targets = self.loss_terms(labels, predictions, sample_weight, training)
        if compute_metrics:
            # The terms are already weighted per example, so their plain mean
            # is the loss; a weight here would count twice.
            for key, tracker in self.trackers.items():
                tracker.update_state(terms[key])
            # (batch, 1): MeanAbsoluteError averages over the last axis, so a
            # (batch,) pair would count each batch's mean once, whatever its size.
            self.mae.update_state(
                targets["label"][:, None], outputs["prediction"][:, None], sample_weight
            )
        # Scaled by the global batch exactly once (per-replica shares add up).
        return global_batch_mean(terms["loss"])

    def get_build_config(self):
        return None if self._tower_width is None else {"tower_width": self._tower_width}

    def build_from_config(self, config):
        """Creates every weight for a tower `config["tower_width"]` wide (one
        inference pass on zeros), so saved weights can be loaded."""
        self.predict(tf.zeros([1, int(config["tower_width"])]), training=False)
