"""A Keras 3 model with the RQ-Reg head, from a feature spec to TF Serving.

The Keras 3 tower of a spec (`FeaturePreprocessor.build_keras3_model`) under
`rq_keras.layers.keras3.RQRegRanker`, trained, then exported by
`export_model` through Keras 3's own export (`keras.export.ExportArchive`):
the same layout, signatures, checks and outputs as a Keras 2 export, served
by the C++ SavedModel loader (TF Serving's) as Python computes them.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import SERVING_SPEC, serving_frame
from rq_keras.config import PREDICTIONS
from rq_keras.data import make_dataset, write_table
from rq_keras.features import FeatureSpec
from rq_keras.features.preprocessing import FeaturePreprocessor
from rq_keras.layers import keras3
from rq_keras.quantizer.residual import ResidualQuantizer
from rq_keras.serving.export import SPEC_FILE, export_model, is_keras3_model
from rq_keras.serving.export_checks import read_rows
from rq_keras.serving.signatures import feature_tensors, serialize_examples

pytestmark = [
    pytest.mark.slow,
    # tf.data from files has no known length: Keras 3 warns at each epoch's end.
    pytest.mark.filterwarnings("ignore:Your input ran out of data:UserWarning"),
]
HEAD = {"units": 16, "code_embedding_dim": 8, "encoder_units": 16, "predictor_units": 16}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("k3")
    files = {}
    for split, n, seed in (("train", 1200, 0), ("test", 200, 1)):
        files[split] = root / f"{split}.parquet"
        write_table(serving_frame(n, seed), SERVING_SPEC, files[split])
    labels = serving_frame(1200, 0)["y"].to_numpy()
    quantizer = ResidualQuantizer(num_levels=2, codebook_size=[6, 4], zero_threshold=1e-6)
    quantizer.fit(labels)
    keras.utils.set_random_seed(0)
    tower = FeaturePreprocessor(SERVING_SPEC).adapt(files["train"]).build_keras3_model(seed=0)
    model = keras3.RQRegRanker(tower, keras3.RQRegHead.from_quantizer(quantizer, **HEAD, seed=0))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    train = make_dataset(files["train"], SERVING_SPEC, batch_size=128)
    history = model.fit(train, epochs=3, shuffle=False, verbose=0)  # the pipeline shuffles
    return files, model, history


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    files, model, _ = trained
    base = tmp_path_factory.mktemp("serving")
    rows = read_rows([files["test"]], SERVING_SPEC, 64)
    return export_model(model, SERVING_SPEC, base, check_rows=rows), rows


def test_keras3_ranker_trains_on_the_spec_pipeline(trained):
    _, model, history = trained
    assert is_keras3_model(model)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_keras3_export_has_the_layout_and_passes_the_checks(trained, exported):
    result, _ = exported
    export_dir = result.export_dir
    assert result.version == 1 and result.checks["warmup_records"] > 0
    loaded = tf.saved_model.load(export_dir)
    assert set(loaded.signatures) == {"serving_default", "examples"}
    outputs = loaded.signatures["examples"].structured_outputs
    assert {"prediction", *PREDICTIONS, "quantiles", "exceedance", "codes"} <= set(outputs)
    extra = f"{export_dir}/assets.extra"
    levels = json.loads(open(f"{extra}/outputs.json").read())
    assert levels["quantiles"] == [float(q) for q in trained[1].decoder.quantiles]
    assert FeatureSpec.load(f"{extra}/{SPEC_FILE}").to_dict() == SERVING_SPEC.to_dict()


def test_cpp_loader_serves_the_keras3_export_like_the_model(trained, exported):
    from rq_keras.serving import cpp_check

    _, model, _ = trained
    result, rows = exported
    want = model(feature_tensors(SERVING_SPEC, rows), training=False)
    examples = np.array(serialize_examples(SERVING_SPEC, rows), dtype=object)
    binary = cpp_check.build()
    for signature, inputs in (
        ("examples", {"examples": examples}),
        ("serving_default", feature_tensors(SERVING_SPEC, rows)),
    ):
        got = cpp_check.run(result.export_dir, signature, inputs, binary=binary).outputs
        for key in ("prediction", *PREDICTIONS, "quantiles", "exceedance", "level_values"):
            np.testing.assert_allclose(
                got[key], np.asarray(want[key]), rtol=1e-5, atol=1e-5, err_msg=key
            )
        np.testing.assert_array_equal(got["codes"], np.asarray(want["codes"]))


def test_keras3_ziln_ranker_exports_and_serves(trained, tmp_path):
    """A baseline head (ZILN) on the spec's Keras 3 tower exports the same
    way: `prediction`, `positive_mean` and `quantiles` served by C++ as Python
    computes them; no RQ outputs, no `outputs.json`."""
    from rq_keras.serving import cpp_check

    files, _, _ = trained
    keras.utils.set_random_seed(0)
    tower = FeaturePreprocessor(SERVING_SPEC).adapt(files["train"]).build_keras3_model(seed=0)
    head = keras3.BaselineHead("ziln", config=HEAD, clip_min=0.0, prediction_max=100.0)
    model = keras3.RQRegRanker(tower, head)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    train = make_dataset(files["train"], SERVING_SPEC, batch_size=128)
    model.fit(train, epochs=1, shuffle=False, verbose=0)
    rows = read_rows([files["test"]], SERVING_SPEC, 32)
    result = export_model(model, SERVING_SPEC, tmp_path / "serving", check_rows=rows)
    assert not (tmp_path / "serving" / "1" / "assets.extra" / "outputs.json").exists()
    examples = np.array(serialize_examples(SERVING_SPEC, rows), dtype=object)
    got = cpp_check.run(result.export_dir, "examples", {"examples": examples}).outputs
    assert set(got) == {"prediction", "positive_mean", "quantiles"}
    want = model(feature_tensors(SERVING_SPEC, rows), training=False)
    for key in got:
        np.testing.assert_allclose(got[key], np.asarray(want[key]), rtol=1e-5, atol=1e-5)
