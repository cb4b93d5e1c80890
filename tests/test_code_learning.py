"""Each part of RQ-Reg learns what it is for, with the default settings.

Toy data where one categorical feature fixes the level-1 code (a zero
segment and seven value bands) and another fixes the level-2 code (an offset
inside the band). A default `train()` run (the library's objective, the
auto zero code, early stopping on `val_gen`, the code tree's mean served) must
learn the codes, put the total value right and give calibrated P(y > 0).
"""

import numpy as np
import pandas as pd
import pytest

from conftest import TINY
from rq_keras.config import config_from_dict
from rq_keras.data import write_table
from rq_keras.features import FeatureSpec
from rq_keras.training import train

BANDS = [0.0, 5.0, 12.0, 20.0, 35.0, 60.0, 100.0, 160.0]  # segment 0: the zeros
OFFSETS = [0.0, 0.5, 1.0, 1.5]
SPEC = FeatureSpec.from_dict(
    {
        "name": "learnable",
        "label": {"name": "y", "clip_min": 0},
        "embedding_dim": 8,
        "features": [
            {"name": "segment", "kind": "categorical", "dtype": "string"},
            {"name": "offset", "kind": "categorical", "dtype": "string"},
            {"name": "noise", "kind": "numeric"},
        ],
    }
)

# Trains, exports or serves: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow


def _frame(n, seed):
    rng = np.random.default_rng(seed)
    segment = rng.choice(len(BANDS), n, p=[0.4] + [0.6 / 7] * 7)
    offset = rng.integers(0, len(OFFSETS), n)
    y = np.where(segment == 0, 0.0, np.take(BANDS, segment) + np.take(OFFSETS, offset))
    return pd.DataFrame(
        {
            "segment": [f"s{s}" for s in segment],
            "offset": [f"o{o}" for o in offset],
            "noise": rng.normal(size=n),
            "y": y,
        }
    )


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    root = tmp_path_factory.mktemp("learnable")
    files = {}
    for split, n, seed in (("train", 3000, 0), ("validation", 500, 1), ("test", 1000, 2)):
        files[split] = str(root / f"{split}.parquet")
        write_table(_frame(n, seed), SPEC, files[split])
    SPEC.save(root / "spec.yaml")
    config = config_from_dict(
        {
            "train_files": [files["train"]],
            "validation_files": [files["validation"]],
            "test_files": [files["test"]],
            "feature_spec": str(root / "spec.yaml"),
            "epochs": 15,
            "batch_size": 128,
            "learning_rate": 3e-3,
            "quantizer": {"num_levels": 2, "codebook_size": [7, 4]},
            "model": dict(TINY),
        }
    )
    return train(config, root / "run", verbose=0).metrics


def test_the_code_classifier_learns_every_level(learned):
    assert learned["monitor"] == "val_gen"
    levels = learned["test"]["codes"]
    # The segment fixes level 1: near-perfect, far above the most frequent code.
    assert levels[0]["accuracy"] >= 0.95, levels
    for level in levels:
        assert level["nll"] < level["marginal_nll"] - 0.3, levels
        assert level["accuracy"] > level["majority_accuracy"], levels


def test_total_value_and_probability_of_a_non_zero_value(learned):
    test = learned["test"]
    assert test["prediction_type"] == "mean"
    assert test["mean_ratio"] == pytest.approx(1.0, abs=0.05)
    # The mean beats the trivial predictors by far (MAE), and the model ranks.
    assert test["mae"] < 0.2 * test["trivial"]["train_median"]["mae"]
    assert test["normalized_gini"] > 0.95
    p_positive = test["distribution"]["exceedance"]["0"]
    assert p_positive["mean_predicted"] == pytest.approx(p_positive["observed"], abs=0.03)
    # Segment 0 is exactly the zeros: a useful P(y > 0) beats the base rate.
    assert p_positive["brier"] < 0.2 * p_positive["brier_base_rate"]
