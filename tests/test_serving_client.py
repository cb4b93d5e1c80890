"""Client requests for an exported model: tf.Examples and TF Serving REST bodies."""

import base64
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import SERVING_SPEC as SPEC
from conftest import TINY_MODEL
from conftest import serving_frame as _frame
from rq_keras import ResidualQuantizer
from rq_keras.data import write_table
from rq_keras.data.examples import example_from_dict, serialize_example
from rq_keras.features import FeatureSpec
from rq_keras.features.preprocessing import FeaturePreprocessor
from rq_keras.models.rq_reg import build_model
from rq_keras.serving.client import rest_request
from rq_keras.serving.export import export_model

# Raw rows as a client has them, and the `serving_default` inputs they mean.
ROWS = [
    {"group": "g1", "store": 103, "x": 0.25, "tags": [1, 3], "words": ["w0"]},
    # numpy scalars, a tuple, full lists
    {
        "group": np.str_("g2"),
        "store": np.int64(105),
        "x": np.float32(-1.5),
        "tags": (4, 0, 2),
        "words": ["w1", "w2"],
    },
    {"x": 2},  # an int for a numeric; every other feature missing
    # bytes, an id never seen in training, NaN, None and empty lists
    {"group": b"g3", "store": 999_999, "x": float("nan"), "tags": None, "words": []},
    {"group": "never-seen", "x": float("inf"), "tags": np.array([2]), "words": ("w3",)},
    {"group": "g0", "store": 100, "x": 1e39, "tags": [], "words": None},  # beyond float32
]
TENSORS = {
    "group": [b"g1", b"g2", b"?", b"g3", b"never-seen", b"g0"],
    "store": [103, 105, 7, 999_999, 7, 100],
    "x": [0.25, -1.5, 2.0, 0.5, 0.5, 0.5],  # a non-finite value: the default
    "tags": [[1, 3, -1], [4, 0, 2], [-1, -1, -1], [-1, -1, -1], [2, -1, -1], [-1, -1, -1]],
    "words": [[b"w0", b""], [b"w1", b"w2"], [b"", b""], [b"", b""], [b"w3", b""], [b"", b""]],
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A tiny untrained model exported and reloaded: the client must match whatever it computes."""
    root = tmp_path_factory.mktemp("client")
    frame = _frame(500, 0)
    write_table(frame, SPEC, root / "train.parquet")
    pre = FeaturePreprocessor(SPEC).adapt(root / "train.parquet")
    quantizer = ResidualQuantizer(3, 8, clip_min=0, zero_threshold=5e-3).fit(frame["y"].to_numpy())
    model = build_model(SPEC, pre, quantizer, TINY_MODEL)
    result = export_model(model, SPEC, root / "serving", check=False)
    # A client reads the spec the export wrote beside the graph.
    spec = FeatureSpec.load(pathlib.Path(result.export_dir) / "assets.extra" / "feature_spec.yaml")
    assert spec == SPEC and rest_request(spec, ROWS) == rest_request(SPEC, ROWS)
    return tf.saved_model.load(result.export_dir)


def _tensors(columns):
    """Feature name -> values as the spec's tensors."""
    return {
        f.name: tf.constant(columns[f.name], dtype=tf.as_dtype(f.tf_dtype_name))
        for f in SPEC.features
    }


def _from_json(value):
    """A TF Serving JSON element: `{"b64": ...}` is bytes, lists element-wise."""
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, str):
        return value.encode()
    return value


def _assert_same(got, want):
    assert set(got) == set(want) and "prediction" in got
    for key in want:
        if key == "codes":
            np.testing.assert_array_equal(got[key].numpy(), want[key].numpy())
        else:
            np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_examples_give_the_outputs_of_the_same_rows_as_tensors(loaded):
    by_examples = loaded.signatures["examples"](
        examples=tf.constant([serialize_example(SPEC, row) for row in ROWS])
    )
    by_tensors = loaded.signatures["serving_default"](**_tensors(TENSORS))
    _assert_same(by_examples, by_tensors)
    assert len(np.unique(by_tensors["prediction"].numpy())) > 1  # the rows do differ


def test_examples_encode_the_spec_kinds_and_leave_missing_scalars_out():
    example = example_from_dict(SPEC, ROWS[0])
    assert isinstance(example, tf.train.Example)
    assert example.SerializeToString() == serialize_example(SPEC, ROWS[0])
    feature = example.features.feature
    assert {k: feature[k].WhichOneof("kind") for k in feature} == {
        "group": "bytes_list",
        "store": "int64_list",
        "x": "float_list",
        "tags": "int64_list",
        "words": "bytes_list",
    }
    assert list(feature["tags"].int64_list.value) == [1, 3]  # no padding
    assert list(feature["x"].float_list.value) == [0.25]
    feature = example_from_dict(SPEC, ROWS[2]).features.feature
    assert sorted(feature) == ["tags", "words", "x"]  # missing scalars left out
    assert list(feature["tags"].int64_list.value) == [] and list(feature["x"].float_list.value) == [
        2
    ]
    assert "x" not in example_from_dict(SPEC, {"x": float("nan")}).features.feature
    assert example_from_dict(SPEC, {}).features.feature["words"].bytes_list.value == []


@pytest.mark.slow
def test_rest_request_serving_default_rows_match_the_example_path(loaded):
    body = json.loads(json.dumps(rest_request(SPEC, ROWS), allow_nan=False))
    assert list(body) == ["instances"] and len(body["instances"]) == len(ROWS)
    assert all(list(instance) == list(SPEC.feature_names) for instance in body["instances"])
    columns = {
        name: [_from_json(instance[name]) for instance in body["instances"]]
        for name in SPEC.feature_names
    }
    assert columns == TENSORS
    by_rest = loaded.signatures["serving_default"](**_tensors(columns))
    by_examples = loaded.signatures["examples"](
        examples=tf.constant([serialize_example(SPEC, row) for row in ROWS])
    )
    _assert_same(by_rest, by_examples)


@pytest.mark.slow
def test_rest_request_examples_is_the_readme_form(loaded):
    body = json.loads(json.dumps(rest_request(SPEC, ROWS, signature="examples"), allow_nan=False))
    assert body["signature_name"] == "examples" and list(body["inputs"]) == ["examples"]
    examples = [base64.b64decode(e["b64"]) for e in body["inputs"]["examples"]]
    assert examples == [serialize_example(SPEC, row) for row in ROWS]
    by_rest = loaded.signatures["examples"](examples=tf.constant(examples))
    _assert_same(by_rest, loaded.signatures["serving_default"](**_tensors(TENSORS)))


def test_bytes_ids_go_as_b64_in_json():
    body = rest_request(SPEC, [{"group": b"\xff", "words": [b"\x00a", "w1"]}])
    instance = body["instances"][0]
    assert instance["group"] == {"b64": "/w=="}
    assert instance["words"] == [{"b64": "AGE="}, "w1"]
    assert instance["store"] == 7 and instance["x"] == 0.5 and instance["tags"] == [-1, -1, -1]


BAD = [
    ({"x": "1.5"}, "feature 'x' (numeric) expects one number (an int or a float), got str '1.5'"),
    ({"x": True}, "feature 'x' (numeric) expects one number (an int or a float), got bool True"),
    ({"x": [1.0]}, "feature 'x' (numeric) expects one number (an int or a float), got list [1.0]"),
    ({"store": 3.0}, "feature 'store' (categorical, int64) expects one integer id, got float 3.0"),
    ({"store": np.float64(3)}, "feature 'store' (categorical, int64) expects one integer id"),
    ({"store": 2**63}, "feature 'store' (categorical, int64): id 9223372036854775808 is outside"),
    (
        {"group": 5},
        "feature 'group' (categorical, string) expects one str (or bytes) id, got int 5",
    ),
    ({"group": ["g1"]}, "feature 'group' (categorical, string) expects one str (or bytes) id"),
    (
        {"tags": [1, 2, 3, 4]},
        "feature 'tags' (list of int64 ids, max_length 3) holds 4 ids; it takes at most 3",
    ),
    ({"tags": "1|2"}, "feature 'tags' (list of int64 ids, max_length 3) expects a list of at most"),
    ({"tags": 1}, "feature 'tags' (list of int64 ids, max_length 3) expects a list"),
    (
        {"tags": [1, 2.0]},
        "feature 'tags' (list of int64 ids, max_length 3) expects integer ids, got float 2.0 "
        "at position 1",
    ),
    ({"tags": [1, -1]}, "feature 'tags' (list of int64 ids, max_length 3): -1 at position 1 is"),
    ({"words": ["w1", 3]}, "feature 'words' (list of string ids, max_length 2) expects str"),
    ({"words": ["", "w1"]}, "feature 'words' (list of string ids, max_length 2): '' at position 0"),
    ({"colour": "red"}, "unknown feature 'colour'; the features are ['group', 'store', 'x'"),
    ({"y": 1.0}, "'y' is the label, not a model input"),
]


@pytest.mark.parametrize(("row", "message"), BAD, ids=[str(row) for row, _ in BAD])
def test_bad_values_raise_naming_the_feature(row, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        example_from_dict(SPEC, row)
    with pytest.raises(ValueError, match=re.escape(message)):
        serialize_example(SPEC, row)
    for signature in ("serving_default", "examples"):
        with pytest.raises(ValueError, match="^" + re.escape(f"rows[1]: {message}")):
            rest_request(SPEC, [ROWS[0], row], signature=signature)


def test_bad_requests():
    with pytest.raises(ValueError, match="a row is a mapping of feature name to value, got list"):
        example_from_dict(SPEC, [("x", 1.0)])
    with pytest.raises(ValueError, match="`rows` must be a sequence of rows.*got a dict"):
        rest_request(SPEC, ROWS[0])
    with pytest.raises(ValueError, match="`rows` is empty"):
        rest_request(SPEC, [])
    with pytest.raises(ValueError, match="`signature` must be one of.*got 'predict'"):
        rest_request(SPEC, ROWS, signature="predict")


# Run in a fresh process: what a client that imports rq_keras.serving.client loads.
_CLIENT = r"""
import json, sys
from rq_keras.features import FeatureSpec
from rq_keras.data.examples import serialize_example
from rq_keras.serving.client import rest_request

spec = FeatureSpec.from_dict(json.loads(sys.argv[1]))
rest_request(spec, [{"x": 1.0, "tags": [1]}])
keras = [m for m in sys.modules if m.split(".")[0] in ("keras", "tf_keras")]
before = {"tensorflow": "tensorflow" in sys.modules, "keras": keras}
serialize_example(spec, {"x": 1.0, "tags": [1]})
print(json.dumps({
    "before": before,
    "rq_keras": sorted(m for m in sys.modules if m.split(".")[0] == "rq_keras"),
    "recommenders": "tensorflow_recommenders" in sys.modules,
}))
"""


@pytest.mark.slow
def test_client_needs_no_model_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _CLIENT, json.dumps(SPEC.to_dict())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    # The row form needs neither TensorFlow nor Keras.
    assert loaded["before"] == {"tensorflow": False, "keras": []}
    # Examples need TensorFlow's protos, and nothing of rq_keras that builds a model:
    # the feature spec, the tf.Example encoder (rq_keras.data), the client, and
    # the Keras choice made before TensorFlow loads (config.keras_version) and
    # the lazy package namespaces (config.exports); the configs stay unloaded.
    loaded_parts = {tuple(m.split(".")[1:3]) for m in loaded["rq_keras"]}
    allowed = {(), ("_deprecated",), ("atomic",), ("serving",), ("serving", "client")}
    allowed |= {("config",), ("config", "exports"), ("config", "keras_version")}
    assert {p for p in loaded_parts if p[:1] not in {("data",), ("features",)}} <= allowed
    assert ("features", "preprocessing") not in loaded_parts
    assert not loaded["recommenders"]
