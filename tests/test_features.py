import math

import pytest
import yaml

from rq_keras.features import FeatureSpec, FeatureSpecError

FULL = {
    "name": "shop",
    "description": "every kind once",
    "label": {"name": "spend", "clip_min": 0, "clip_max": 1000},
    "embedding_dim": 8,
    "features": [
        {"name": "country", "kind": "categorical", "dtype": "string", "min_count": 2},
        {"name": "user", "kind": "categorical", "dtype": "int64", "num_oov_buckets": 3},
        {"name": "query", "kind": "hashed", "dtype": "string", "num_bins": 100},
        {"name": "items", "kind": "list", "dtype": "int64", "max_length": 5, "pooling": "sum"},
        {"name": "tags", "kind": "list", "dtype": "string", "max_length": 3, "num_bins": 50},
        {"name": "price", "kind": "numeric", "transform": "log"},
        {"name": "age", "kind": "numeric", "encoding": "bucketize", "num_buckets": 10},
        {"name": "hour", "kind": "numeric", "encoding": "bucketize", "boundaries": [6, 12, 18]},
        {"name": "raw", "kind": "numeric", "encoding": "raw", "default": 1.5},
    ],
}


def test_full_spec_loads_with_derived_defaults():
    spec = FeatureSpec.from_dict(FULL)
    assert spec.feature_names[:2] == ("country", "user")
    assert spec.columns[-1] == "spend" and spec.label.clip_max == 1000.0
    country, user, query, items, tags, price, age, hour, raw = spec.features
    assert country.embedding_dim == 8 and country.default == "" and country.min_count == 2
    assert user.default == -1 and user.num_oov_buckets == 3 and user.has_learned_vocabulary
    assert query.is_hashed and not query.has_learned_vocabulary and not query.needs_statistics
    assert items.shape == (5,) and items.pad_value == -1 and items.pooling == "sum"
    assert tags.is_hashed and tags.pad_value == ""
    assert price.embedding_dim == 0 and price.dtype == "float32" and price.needs_statistics
    assert age.embedding_dim == 8 and age.needs_statistics
    assert hour.boundaries == (6.0, 12.0, 18.0) and not hour.needs_statistics
    assert raw.default == 1.5 and not raw.needs_statistics


def test_yaml_round_trip(tmp_path):
    spec = FeatureSpec.from_dict(FULL)
    spec.save(tmp_path / "s.yaml")
    again = FeatureSpec.load(tmp_path / "s.yaml")
    assert again == spec
    assert again.source == str(tmp_path / "s.yaml")


def test_label_may_be_a_plain_name():
    spec = FeatureSpec.from_dict({**FULL, "label": "spend"})
    assert spec.label.name == "spend" and spec.label.clip_min is None


def _with_feature(**changes):
    raw = yaml.safe_load(yaml.safe_dump(FULL))
    raw["features"][0] = {**raw["features"][0], **changes}
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**FULL, "labels": "x"}, "field 'labels': unknown"),
        ({k: v for k, v in FULL.items() if k != "label"}, "field 'label': is required"),
        ({**FULL, "features": []}, "field 'features': must be a non-empty list"),
        ({**FULL, "embedding_dim": "8"}, "field 'embedding_dim': must be an integer"),
        (_with_feature(kind="dense"), "feature 'country': field 'kind': must be one of"),
        (_with_feature(dtype="float"), "feature 'country': field 'dtype': must be one of"),
        (_with_feature(min_count="2"), "feature 'country': field 'min_count': must be an integer"),
        (_with_feature(min_count=True), "field 'min_count': must be an integer, got True"),
        (_with_feature(min_count=0), "field 'min_count': must be >= 1, got 0"),
        (_with_feature(num_bin=3), "feature 'country': field 'num_bin': unknown for kind"),
        (_with_feature(default=3), "feature 'country': field 'default': must be a string"),
        (_with_feature(name="spend"), "feature 'spend': field 'name': is also the label column"),
        (_with_feature(name="user"), "feature 'user': field 'name': is used by two features"),
        ({**FULL, "features": [{"kind": "hashed"}]}, "field 'features[0].name': is required"),
        ({**FULL, "features": [{"name": "q", "kind": "hashed", "dtype": "string"}]}, "num_bins"),
        ({**FULL, "features": [{"name": "l", "kind": "list", "dtype": "int64"}]}, "max_length"),
        (
            {**FULL, "features": [{"name": "p", "kind": "numeric", "encoding": "bucketize"}]},
            "bucketize needs exactly one of",
        ),
        (
            {**FULL, "features": [{"name": "p", "kind": "numeric", "boundaries": [2, 1]}]},
            "field 'boundaries'",
        ),
        (
            {**FULL, "features": [{"name": "p", "kind": "numeric", "embedding_dim": 4}]},
            "field 'embedding_dim': only applies to bucketize",
        ),
        (
            {**FULL, "features": [{"name": "p", "kind": "numeric", "default": math.inf}]},
            "field 'default': must be finite",
        ),
        (
            {
                **FULL,
                "features": [
                    {"name": "l", "kind": "list", "dtype": "int64", "max_length": 2, "default": 3}
                ],
            },
            "a missing list is an empty list",
        ),
        ({**FULL, "label": {"name": "y", "clip_min": 5, "clip_max": 1}}, "label.clip_min"),
        ({**FULL, "label": {"name": "y", "clip": 5}}, "field 'label.clip': unknown"),
    ],
)
def test_bad_specs_name_feature_and_field(raw, message):
    with pytest.raises(FeatureSpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        FeatureSpec.from_dict(raw, source="spec.yaml")


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nlabel: y\nfeatures:\n  - {name: a, kind: categorical}\n")
    with pytest.raises(FeatureSpecError, match=rf"{path}: feature 'a': field 'dtype': is required"):
        FeatureSpec.load(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(FeatureSpecError, match="not valid YAML"):
        FeatureSpec.load(path)
    with pytest.raises(FileNotFoundError, match="no such feature spec"):
        FeatureSpec.load(tmp_path / "none.yaml")


def test_vocabulary_file_is_relative_to_the_spec(tmp_path):
    raw = _with_feature(vocabulary_file="vocab/country.txt")
    spec = FeatureSpec.from_dict(raw, source=str(tmp_path / "spec.yaml"))
    assert spec.features[0].vocabulary_file == str(tmp_path / "vocab" / "country.txt")
    assert not spec.features[0].has_learned_vocabulary


def test_parse_spec_inputs_and_signature():
    import tensorflow as tf

    spec = FeatureSpec.from_dict(FULL)
    parse = spec.parse_spec()
    assert parse["country"].default_value == "" and parse["user"].dtype == tf.int64
    assert isinstance(parse["items"], tf.io.RaggedFeature)
    assert math.isnan(parse["spend"].default_value)
    assert "spend" not in spec.parse_spec(with_label=False)
    inputs = spec.keras_inputs()
    assert inputs["items"].shape.as_list() == [None, 5] and inputs["items"].dtype == tf.int64
    assert inputs["price"].shape.as_list() == [None] and inputs["price"].dtype == tf.float32
    sig = spec.input_signature()
    assert sig["tags"] == tf.TensorSpec((None, 3), tf.string, name="tags")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    FeatureSpec.from_dict(FULL).save(path)
    before = path.read_text()

    def broken_dump(data, stream, **kwargs):
        stream.write("name: half-writ")
        raise OSError("disk full")

    monkeypatch.setattr(yaml, "safe_dump", broken_dump)
    changed = FeatureSpec.from_dict({**FULL, "name": "other"})
    with pytest.raises(OSError, match="disk full"):
        changed.save(path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # no temp file left
    monkeypatch.undo()
    changed.save(path)
    assert FeatureSpec.load(path).name == "other"
