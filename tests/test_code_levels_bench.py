"""The numpy helpers of benchmarks/code_levels.py's `prefix` distribution:
the mixture quantiles agree with the code tree's `atom_quantiles`, and the
cluster atoms hold each level-1 cluster's training labels."""

import sys

import numpy as np

from conftest import REPO
from rq_keras.layers.code_tree import atom_quantiles
from rq_keras.quantizer.residual import ResidualQuantizer

sys.path.insert(0, str(REPO / "benchmarks"))
from code_levels import cluster_atoms, mixture_quantiles  # noqa: E402


def test_mixture_quantiles_match_the_code_trees_atom_quantiles():
    rng = np.random.default_rng(0)
    values = np.round(rng.lognormal(1.0, 1.0, 40), 2)
    values[:5] = 0.0  # ties, as the zero cluster gives
    probabilities = rng.dirichlet(np.ones(40), size=64)
    grid = [0.025, 0.1, 0.5, 0.77, 0.9, 0.975]
    want = atom_quantiles(np.tile(values, (64, 1)), probabilities, grid).numpy()
    got = mixture_quantiles(probabilities, values, grid)
    # float32 (the tree) against float64 (here): a level landing within
    # round-off of a CDF step may pick the neighbouring atom; none does here
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_cluster_atoms_hold_each_clusters_training_labels():
    rng = np.random.default_rng(1)
    y = np.where(rng.random(5000) < 0.4, 0.0, rng.lognormal(2.0, 1.0, 5000))
    quantizer = ResidualQuantizer(2, 6, clip_min=0, zero_threshold=1e-3).fit(y)
    codes = quantizer.encode(y)
    sizes = [int(k) for k in quantizer.fitted_codebook_sizes]
    table, stats = cluster_atoms(y, codes, sizes, atoms=16)
    assert table.shape == (sizes[0] + 1, 16)
    np.testing.assert_array_equal(table[-1], 0.0)  # the zero code's cluster
    assert stats["mean"][-1] == 0.0 and stats["positive_share"][-1] == 0.0
    for k in range(sizes[0]):
        members = y[codes[:, 0] == k]
        assert members.min() <= table[k].min() and table[k].max() <= members.max()
        np.testing.assert_allclose(table[k], np.quantile(members, (np.arange(16) + 0.5) / 16))
        assert stats["mean"][k] == members.mean()
        assert stats["positive_share"][k] == 1.0  # zeros have their own code
        assert stats["positive_mean"][k] == members.mean()


def test_value_left_shrinks_level_by_level_and_more_with_a_finer_codebook():
    from level_value import value_left

    rng = np.random.default_rng(2)
    y = np.where(rng.random(4000) < 0.5, 0.0, rng.lognormal(1.5, 1.2, 4000))
    left = {}
    for k in (4, 16):
        quantizer = ResidualQuantizer(3, k, clip_min=0, zero_threshold=1e-3).fit(y)
        left[k] = value_left(quantizer, y)
        assert left[k][0] > left[k][1] > left[k][2] >= 0
        # All levels: the quantizer's own reconstruction error.
        np.testing.assert_allclose(
            left[k][2], np.abs(quantizer.decode(quantizer.encode(y)) - y).mean()
        )
    # A coarser first level leaves more for the deeper ones.
    assert left[4][0] > 2 * left[16][0]
