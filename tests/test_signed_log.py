import numpy as np
import tf_keras as keras

from rq_keras.layers import SignedLog
from rq_keras.layers.feature_math import signed_log

X = np.array([-1000.0, -1.0, 0.0, 0.5, np.e - 1, 1e6])


def test_golden_values_and_numpy_twin():
    expected = [-np.log(1001.0), -np.log(2.0), 0.0, np.log(1.5), 1.0, np.log(1e6 + 1)]
    np.testing.assert_allclose(SignedLog()(X).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(signed_log(X), expected, rtol=1e-12)


def test_shape_config_save_load(tmp_path):
    inp = keras.Input((2,))
    model = keras.Model(inp, SignedLog(name="log")(inp))
    assert model.output_shape == (None, 2)
    assert SignedLog.from_config(model.get_layer("log").get_config()).name == "log"
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    x = X.reshape(3, 2)
    np.testing.assert_array_equal(again(x).numpy(), model(x).numpy())
