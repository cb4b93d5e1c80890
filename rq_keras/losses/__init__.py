"""The training objectives: RQ-Reg's (paper section 3.4, Eq. 11-16) and the baselines'.

* `code_nll`: the NLL of the true RQ codes, L_gen (Eq. 11);
* `huber_terms`: Huber on the prediction and on every level, L_reg (Eq. 12-13);
* `rank_n_contrast`: Rank-N-Contrast on the expected code embeddings, L_rnc
  (Eq. 14-15), in O(B^2) memory;
* `expected_level_values`: the per-level prediction of the "w/o f_reg"
  ablation (Table 3), the expectation of level l's centroids under step l's
  code distribution;
* `RQRegLoss`: L = w_gen L_gen + lambda_1 L_reg + lambda_2 L_rnc (Eq. 16),
  returning every term.

The functions return per-example losses `(batch,)`; `RQRegLoss` reduces them.
Everything is computed in float32 whatever the inputs' dtype (mixed
precision), label distances for Rank-N-Contrast in float64.

Distribution (MirroredStrategy, MultiWorkerMirroredStrategy, custom
`train_step`). L_gen and L_reg are means over examples. L_rnc is a mean over
anchors, and by default (`cross_replica=True`) each replica's anchors are
contrasted with the whole global batch, gathered from every replica with
`all_gather` (whose gradient flows back to the replica that owns each row): the
loss and its gradients are those of one device on the global batch, whatever
the number of replicas. `cross_replica=False` contrasts each anchor with its
replica's local batch only (no collective, a different loss: a single-device
RnC at the local batch size). Build the loss with `reduction="none"` and scale
by the global batch exactly once::

    terms = loss_fn(outputs, targets, sample_weight)        # each (local_batch,)
    loss = global_batch_mean(terms["loss"])

`global_batch_mean` divides this replica's sum by the global batch, summed
over the replicas' actual local batches, so the per-replica results add up to
the global mean also for a last, uneven batch (`tf.nn.compute_average_loss`
assumes every replica holds as many rows as this one).

Modules: `terms` (L_gen, L_reg, `global_batch_mean`), `rnc` (L_rnc),
`rq_reg` (`RQRegLoss`, `expected_level_values`), `baseline_math` (the
baseline heads' losses, MSE, log-MSE, Huber, ZILN, OptDist, written once),
`baselines` (their registered Keras 2 losses; the Keras 3 ones are in
`rq_keras.layers.keras3`). The names load on first use; `terms`, `rnc`,
`rq_reg` and `baseline_math` need no Keras 2 (they import in a Keras 3
process too), `baselines` is Keras 2
(`rq_keras.config.keras_version.require_keras2`).
"""

import os

from rq_keras.config.exports import lazy_namespace

__all__ = [
    "BASELINE_HEADS",
    "BASELINE_LOSSES",
    "BaselineLoss",
    "HuberLoss",
    "LogMSELoss",
    "MSELoss",
    "OptDistLoss",
    "RQRegLoss",
    "ZILNLoss",
    "baseline_loss",
    "code_nll",
    "expected_level_values",
    "global_batch_mean",
    "huber",
    "huber_terms",
    "rank_n_contrast",
    "rank_n_contrast_factored",
]
# module -> the names it defines.
_MODULES = {
    "rq_keras.losses.baseline_math": "BASELINE_HEADS",
    "rq_keras.losses.baselines": (
        "BASELINE_LOSSES BaselineLoss HuberLoss LogMSELoss MSELoss OptDistLoss ZILNLoss "
        "baseline_loss"
    ),
    "rq_keras.losses.rnc": "rank_n_contrast rank_n_contrast_factored",
    "rq_keras.losses.rq_reg": "RQRegLoss expected_level_values",
    "rq_keras.losses.terms": "code_nll global_batch_mean huber huber_terms",
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names.split()}
__getattr__, __dir__ = lazy_namespace(globals(), _EXPORTS, deprecated=True)

# `rq_keras.losses.heads` of rq_keras 0.2 imports from its deprecation stub.
__path__.append(os.path.join(os.path.dirname(os.path.dirname(__file__)), "_deprecated", "losses"))
