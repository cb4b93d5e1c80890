"""The Transformer backbone (`cell="transformer"`, Table 4): causality, the
step-by-step path against one causal pass, and a whole run with it (training,
the code tree, save/load, export and the C++ loader; training under
MirroredStrategy is in test_model.py)."""

import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

from conftest import TOY_SPEC as SPEC
from conftest import toy_files
from conftest import train_config as _config
from rq_keras.config import PREDICTIONS, ModelConfig
from rq_keras.layers import CausalTransformerCell, RQDecoder
from rq_keras.training import train
from rq_keras.training.run_dir import load_model

UNITS, LENGTH = 8, 4  # the prefix and three inputs (L = 3)


def _cell(**kwargs):
    cell = CausalTransformerCell(UNITS, num_layers=2, num_heads=2, max_positions=LENGTH, seed=3)
    cell.build((None, 6))
    return cell


def _sequence(rows=5, seed=0):
    rng = np.random.default_rng(seed)
    prefix = tf.constant(rng.normal(size=(rows, UNITS)), tf.float32)
    inputs = [tf.constant(rng.normal(size=(rows, 6)), tf.float32) for _ in range(LENGTH - 1)]
    return prefix, inputs


def test_position_l_sees_no_later_position():
    """Golden causality: changing input j moves the outputs at positions
    after it and none at or before it."""
    cell = _cell()
    prefix, inputs = _sequence()
    base = cell.sequence(prefix, inputs).numpy()
    for j in range(len(inputs)):
        changed = list(inputs)
        changed[j] = inputs[j] + 5.0
        out = cell.sequence(prefix, changed).numpy()
        position = j + 1  # the prefix is position 0
        # Masked scores get exactly zero weight: the same float operations on
        # the visible positions (1e-6 only guards against kernel choice).
        np.testing.assert_allclose(out[:, :position], base[:, :position], rtol=0, atol=1e-6)
        assert np.abs(out[:, position:] - base[:, position:]).min() > 1e-4


def test_steps_equal_one_causal_pass():
    """The decoder steps the cell per level; each step's output is the
    causal pass's output at that position (float32 on different shapes:
    1e-5)."""
    cell = _cell()
    prefix, inputs = _sequence(seed=1)
    full = cell.sequence(prefix, inputs).numpy()
    states = [prefix]
    for level, x in enumerate(inputs):
        h, states = cell(x, states)
        np.testing.assert_allclose(h.numpy(), full[:, level + 1], rtol=1e-5, atol=1e-5)
    assert len(states) == LENGTH
    with pytest.raises(ValueError, match="at most 4"):
        cell.sequence(prefix, [*inputs, inputs[0]])


def test_cell_config_and_bad_options():
    cell = _cell()
    again = CausalTransformerCell.from_config(cell.get_config())
    assert again.get_config() == cell.get_config()
    with pytest.raises(ValueError, match=r"`num_heads` \(3\) must divide `units` \(8\)"):
        CausalTransformerCell(8, num_heads=3)
    with pytest.raises(ValueError, match="must be >= 1"):
        CausalTransformerCell(8, num_layers=0)
    with pytest.raises(ValueError, match="must divide `units`"):
        RQDecoder([3, 2], units=6, cell="transformer")
    with pytest.raises(ValueError, match=r"`transformer_heads` \(4\) must divide `units` \(6\)"):
        ModelConfig(cell="transformer", units=6)


def test_decoder_config_round_trip():
    decoder = RQDecoder([3, 2], units=8, cell="transformer", transformer_layers=1)
    config = decoder.get_config()
    assert config["cell"] == "transformer" and config["transformer_layers"] == 1
    assert RQDecoder.from_config(config).get_config() == config


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_files(tmp_path_factory.mktemp("toy"))


@pytest.mark.slow
def test_a_transformer_run_trains_saves_exports_and_serves(toy, tmp_path):
    from rq_keras.serving import cpp_check as serving_check
    from rq_keras.serving.export import export_model
    from rq_keras.serving.signatures import feature_tensors, serialize_examples

    config = _config(
        toy, epochs=3, batch_size=128, model={"cell": "transformer", "transformer_heads": 2}
    )
    out = tmp_path / "run"
    result = train(config, out, verbose=0)
    metrics = json.loads((out / "metrics.json").read_text())
    history = result.history
    assert history["gen"][-1] < history["gen"][0]  # the code classifier learns
    level1 = metrics["test"]["codes"][0]
    assert level1["nll"] < level1["marginal_nll"]
    assert set(PREDICTIONS) <= set(metrics["test"]["by_prediction"])
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["cell"] == "transformer"

    # Saved and loaded: the same outputs.
    model = load_model(out / "model.keras")
    assert model.decoder.cell == "transformer"
    # Every block's weights are the model's (trained, saved): projection 2,
    # positions 1, per block 2 norms + 6 Dense = 16, the final norm 2.
    cell_weights = {id(w) for w in model.decoder.recurrent_cell.trainable_weights}
    assert len(cell_weights) == 2 + 1 + 16 * 2 + 2
    assert cell_weights <= {id(w) for w in model.trainable_weights}
    rows = {k: v[:64] for k, v in _rows(toy).items()}
    want = model(feature_tensors(SPEC, rows), training=False)
    again = result.model(feature_tensors(SPEC, rows), training=False)
    np.testing.assert_allclose(want["prediction"].numpy(), again["prediction"].numpy(), rtol=1e-6)

    # Exported and served by TensorFlow's C++ loader (no rq_keras there): every
    # output as the Python model computes it (float32 through two graphs: 1e-5).
    # The export's own fresh-process check is tested in test_export.py.
    exported = export_model(model, SPEC, tmp_path / "serving", check_rows=rows, check=False)
    examples = np.array(serialize_examples(SPEC, rows), dtype=object)
    served = serving_check.run(
        exported.export_dir, "examples", {"examples": examples}, binary=serving_check.build()
    )
    for key in ("prediction", *PREDICTIONS, "quantiles", "exceedance", "level_values"):
        np.testing.assert_allclose(served.outputs[key], want[key].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(served.outputs["codes"], want["codes"].numpy())


def _rows(toy):
    from rq_keras.data import read_chunks

    return next(iter(read_chunks(str(toy["test"]), SPEC, with_label=False)))
