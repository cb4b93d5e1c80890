"""The seeded toy recommender set that the model, head and training tests train on.

Three features of every kind a spec has (a string category, a number, a list of
ids) and a zero-inflated, long-tailed label that depends on all of them.
"""

import numpy as np
import pandas as pd

from rq_keras.features import FeatureSpec

SPEC_DICT = {
    "name": "toy",
    "label": {"name": "y", "clip_min": 0},
    "embedding_dim": 8,
    "features": [
        {"name": "group", "kind": "categorical", "dtype": "string"},
        {"name": "x", "kind": "numeric"},
        {"name": "tags", "kind": "list", "dtype": "int64", "max_length": 3},
    ],
}
SPEC = FeatureSpec.from_dict(SPEC_DICT)


def frame(n: int, seed: int) -> pd.DataFrame:
    """`n` rows of the toy set; 20% of the labels are 0 whatever the features."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 4, n)
    x = rng.normal(size=n)
    tags = rng.integers(0, 5, (n, 2))
    scale = np.exp(0.8 * group + 0.5 * x + 0.3 * (tags == 3).sum(1))
    y = np.where(rng.random(n) < 0.2, 0.0, scale * rng.lognormal(0, 0.3, n))
    return pd.DataFrame(
        {
            "group": [f"g{g}" for g in group],
            "x": x,
            "tags": ["|".join(map(str, t)) for t in tags],
            "y": y,
        }
    )
