import pytest

from rq_keras.config.seeds import OFFSETS, sub_seed


def test_sub_seeds_are_the_seed_plus_the_named_offset():
    assert sub_seed(None, "decoder") is None and sub_seed(None, index=3) is None
    assert sub_seed(7, "decoder") == 1007 and sub_seed(7, "encoder") == 2007
    assert sub_seed(7) == 7 and sub_seed(7, index=2) == 9
    assert sub_seed(0, "transformer_block", 10 * 2) == 30  # block 2: + 10 (2 + 1)
    with pytest.raises(KeyError):
        sub_seed(0, "decodr")


def test_the_parts_one_seed_feeds_never_share_a_seed():
    # The head's parts (from ModelConfig.seed), the decoder's (from its seed):
    # a layer's own index offsets (its k-th initializer) stay below the next
    # part's offset.
    head = [OFFSETS["decoder"], OFFSETS["encoder"]]
    decoder = [0, *(OFFSETS[p] for p in ("recurrent_cell", "predictor", "regressor"))]
    decoder += [OFFSETS["residual_regressor"], OFFSETS["sampling_coins"]]
    for offsets in (head, decoder):
        assert len(set(offsets)) == len(offsets)
        assert min(b - a for a, b in zip(sorted(offsets), sorted(offsets)[1:])) >= 10
