"""The paper presets in `presets/`: they load, name a registered dataset, hold §4.1.2's values.

Quick checks only: configs are parsed and validated, nothing is built or trained.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np
import pytest

from rq_keras import datasets
from rq_keras.cli.train import build_train_parser
from rq_keras.config import load_config
from rq_keras.features import FeatureSpec
from rq_keras.layers.decoding import sampling_probability

REPO = pathlib.Path(__file__).resolve().parents[1]
PRESETS = REPO / "presets"
FEATURE_SPECS = REPO / "feature_specs"

# Huber threshold per dataset (§4.1.2: 0.1 Criteo-SSC, 10.0 CIKM16, 2.0 the others).
DELTAS = {"kuairec": 2.0, "cikm16": 10.0, "criteo_ssc": 0.1, "valued_shoppers": 2.0}
NAMES = sorted(DELTAS)

# Table 3's variants as `train.py --set` strings (as docs/paper.md, "Reproducing the paper",
# gives them) and the config change each must make.
ABLATIONS = {
    "w/o L_gen": ("model.gen_weight=0", {"model.gen_weight": 0.0}),
    "w/o L_rnc": ("model.rnc_weight=0", {"model.rnc_weight": 0.0}),
    "w/o f_reg": ("model.use_regressor=false", {"model.use_regressor": False}),
    "w/o SS (p=1)": ("sampling_t0=1000000000", {"sampling_t0": 1.0e9}),
    "w/o SS (p=0)": ("sampling_t0=-1000000000", {"sampling_t0": -1.0e9}),
}


def _preset(name: str) -> pathlib.Path:
    return PRESETS / f"{name}.yaml"


def _flat(config) -> dict:
    """Dotted key -> value of a TrainConfig."""
    out = {}
    for key, value in dataclasses.asdict(config).items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def test_exactly_the_four_paper_presets_and_the_paper_switches():
    assert sorted(p.stem for p in PRESETS.glob("*.yaml")) == sorted([*NAMES, "paper"])
    config = load_config(_preset("paper"), {"dataset": "cdnow"})
    _assert_papers_objective(config)
    # Only the six switches differ from rq_keras's defaults.
    default = load_config(None, {"dataset": "cdnow"})
    changed = {k for k, v in _flat(config).items() if _flat(default)[k] != v}
    assert changed == {
        "monitor", "quantizer.zero_threshold", "model.regressor_input",
        "model.code_embedding_stddev", "model.prediction", "model.label_scale",
    }  # fmt: skip


def _assert_papers_objective(config):
    assert config.quantizer.zero_threshold is None
    assert config.resolved_monitor == "val_mae"
    assert config.model.regressor_input == "logits"  # Eq. 10
    assert config.model.label_scale == "none"  # Eq. 12 in the label's unit
    assert config.model.code_embedding_stddev == 0.05
    assert config.model.prediction == "regressor"  # sum_l f_reg(z_l)


@pytest.mark.parametrize("name", NAMES)
def test_preset_has_the_papers_values(name):
    config = load_config(_preset(name))
    assert config.dataset == name
    assert config.head == "rq_reg"
    # §4.1.2: Adam, lr 5e-4, batch 1,024, 50 epochs "in total" (no early stopping).
    assert config.epochs == 50
    assert config.batch_size == 1024
    assert config.learning_rate == pytest.approx(5.0e-4)
    assert config.patience is None
    # Scheduled sampling k = 0.1, t0 = 10, t = the epoch number (Eq. 17).
    assert config.sampling_k == pytest.approx(0.1)
    assert config.sampling_t0 == pytest.approx(10.0)
    assert config.sampling_per_batch is False
    # RQ K-means with L = 3, K = 48.
    assert config.quantizer.num_levels == 3
    assert config.quantizer.codebook_size == 48
    assert config.quantizer.method == "kmeans"
    _assert_papers_objective(config)
    # Single-layer LSTM with 512 units; D = 512 (an rq_keras default the paper leaves open).
    model = config.model
    assert model.cell == "lstm"
    assert model.units == 512
    assert model.code_embedding_dim == 512
    # Eq. 16 with lambda1 = 1.0, lambda2 = 0.1; tau = 2.0; the per-dataset Huber delta.
    assert model.gen_weight == 1.0
    assert model.reg_weight == pytest.approx(1.0)
    assert model.rnc_weight == pytest.approx(0.1)
    assert model.temperature == pytest.approx(2.0)
    assert model.delta == pytest.approx(DELTAS[name])
    # The paper's model, not the released code's variants.
    assert model.use_regressor is True
    assert model.cumulative_huber is False
    assert model.residual_regressor is False
    assert model.num_cross_layers == 0


@pytest.mark.parametrize("name", NAMES)
def test_preset_header_gives_the_one_command(name):
    lines = _preset(name).read_text(encoding="utf-8").splitlines()
    header = " ".join(line.lstrip("#").replace("\\", " ") for line in lines if line[:1] == "#")
    header = " ".join(header.split())
    assert (
        f"python train.py --dataset {name} --raw-dir /path/to/raw "
        f"--config presets/{name}.yaml --output-dir out/{name}"
    ) in header
    assert "--raw-dir:" in header


@pytest.mark.parametrize("name", NAMES)
def test_dataset_is_registered_and_has_a_feature_spec(name):
    assert name in datasets.DATASETS
    assert datasets.get(name).INFO.name == name
    spec_path = FEATURE_SPECS / f"{name}.yaml"
    assert spec_path.is_file()
    assert FeatureSpec.load(spec_path).name == name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_table3_ablation_overrides_load(name, ablation):
    _, overrides = ABLATIONS[ablation]
    base = _flat(load_config(_preset(name)))
    config = load_config(_preset(name), overrides)
    changed = {k: v for k, v in _flat(config).items() if v != base[k]}
    assert changed == overrides


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_table3_ablation_set_flags_parse(ablation):
    """The `--set` strings of docs/paper.md give the same config as the dotted overrides."""
    flag, overrides = ABLATIONS[ablation]
    args = build_train_parser().parse_args(["--output-dir", "out/x", "--set", flag])
    preset = _preset("kuairec")
    assert load_config(preset, dict(args.set)) == load_config(preset, overrides)


@pytest.mark.parametrize("ablation", ["w/o SS (p=1)", "w/o SS (p=0)"])
def test_fixed_sampling_probability(ablation):
    """p(t) stays at 1 (teacher forcing) or 0 (own predictions) for every epoch."""
    config = load_config(_preset("kuairec"), ABLATIONS[ablation][1])
    p = np.array(
        [
            sampling_probability(t, config.sampling_k, config.sampling_t0)
            for t in range(config.epochs)
        ],
        dtype=np.float32,  # the decoder's variable is float32
    )
    assert np.all(p == (1.0 if "p=1" in ablation else 0.0))


def test_default_schedule_matches_eq17():
    config = load_config(_preset("kuairec"))
    p = [sampling_probability(t, config.sampling_k, config.sampling_t0) for t in (0, 10, 49)]
    assert p[0] == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert p[1] == pytest.approx(0.5)
    assert p[2] < 0.03


def test_sampling_t0_minus_1e9_gives_p0():
    assert sampling_probability(0, 0.1, -1.0e9) == 0.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("head", ["ziln", "mse", "log_mse", "huber"])
def test_baseline_heads_load_on_the_preset(name, head):
    config = load_config(_preset(name), {"head": head})
    assert config.head == head
    assert config.model.delta == pytest.approx(DELTAS[name])
