"""Named sub-seeds: every initializer and in-graph coin draws from the run's one
seed through `sub_seed`, and the offsets that keep two parts from sharing a
seed are this module's one table.

`ModelConfig.seed` seeds the head (`rq_keras.models.rq_reg`, `rq_keras.models.baselines`); each
layer passes its own seed on to its parts the same way. `None` (unseeded,
random initialisation) stays `None` everywhere.
"""

from __future__ import annotations

__all__ = ["OFFSETS", "sub_seed"]

OFFSETS = {
    # the features model's embedding of feature i: + i, from ModelConfig.seed
    "feature_embedding": 0,
    # a head's parts, from ModelConfig.seed
    "decoder": 1000,
    "head_output": 1000,  # a baseline head's output layer (it has no decoder)
    "encoder": 2000,
    # RQDecoder's parts, from the decoder's seed (its code embeddings use it as is)
    "recurrent_cell": 10,
    "predictor": 20,
    "regressor": 30,
    "residual_regressor": 40,
    "sampling_coins": 50,  # the key of the scheduled-sampling coins
    # a recurrent cell's recurrent kernel, from the cell's seed
    "recurrent_kernel": 1,
    # CausalTransformerCell's parts, from the cell's seed
    "positions": 1,
    "transformer_block": 10,  # block i: + 10 + 10 i
    # OptDistTowers' parts, from its seed: SDN i's layers + 2 i and + 2 i + 1
    "sdn": 100,
    "selection": 10,
}


def sub_seed(seed: int | None, part: str | None = None, index: int = 0) -> int | None:
    """`seed` plus the offset of `part` (none for None) plus `index` (the
    k-th initializer of one layer); None stays None.

    Raises:
        KeyError: `part` is not in `OFFSETS`.
    """
    if seed is None:
        return None
    return int(seed) + (OFFSETS[part] if part is not None else 0) + int(index)
