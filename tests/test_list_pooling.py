import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from rq_keras.layers import ListPooling

EMB = tf.constant([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]], [[5.0, 6.0], [7.0, 7.0], [8.0, 8.0]]])
IDS = tf.constant([[4, 2, 0], [0, 0, 0]])


def test_golden_mean_and_sum():
    assert ListPooling("mean")([EMB, IDS]).numpy().tolist() == [[2.0, 3.0], [0.0, 0.0]]
    assert ListPooling("sum")([EMB, IDS]).numpy().tolist() == [[4.0, 6.0], [0.0, 0.0]]


def test_shape_config_and_errors():
    layer = ListPooling("sum", name="p")
    assert layer.compute_output_shape([(None, 3, 2), (None, 3)]).as_list() == [None, 2]
    again = ListPooling.from_config(layer.get_config())
    assert again.mode == "sum" and again.name == "p"
    with pytest.raises(ValueError, match="`mode` must be one of"):
        ListPooling("max")


def test_save_load(tmp_path):
    ids = keras.Input((3,), dtype="int64")
    emb = keras.layers.Embedding(10, 2, embeddings_initializer="ones")(ids)
    model = keras.Model(ids, ListPooling("mean")([emb, ids]))
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    x = np.array([[1, 2, 0], [0, 0, 0]])
    np.testing.assert_array_equal(again(x).numpy(), [[1.0, 1.0], [0.0, 0.0]])
