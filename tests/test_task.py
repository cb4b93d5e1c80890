import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from rq_keras import ResidualQuantizer
from rq_keras.evaluation.code_report import CodeReport
from rq_keras.models.rq_reg import RQRegTask
from rq_keras.training.callbacks import ScheduledSampling


class Ranker(tfrs.Model):
    """A user's own ranking model: a DCN tower with the RQ-Reg task on top."""

    def __init__(self, quantizer):
        super().__init__()
        init = keras.initializers.GlorotUniform
        self.embed = keras.layers.Embedding(50, 8, embeddings_initializer=init(seed=1))
        self.cross = tfrs.layers.dcn.Cross(kernel_initializer=init(seed=2))
        self.dense = keras.layers.Dense(16, activation="relu", kernel_initializer=init(seed=3))
        self.task = RQRegTask.from_quantizer(
            quantizer,
            units=16,
            code_embedding_dim=8,
            encoder_units=16,
            predictor_units=16,
            regressor_units=8,
            delta=1.0,
            seed=0,
        )

    def tower(self, features):
        x = tf.concat([self.embed(features["item"]), features["x"][:, None]], axis=1)
        return self.dense(self.cross(x))

    def compute_loss(self, inputs, training=False):
        features, labels = inputs
        return self.task(labels, self.tower(features), training=training)


def _data(n=2048, seed=0):
    rng = np.random.default_rng(seed)
    item = rng.integers(0, 50, n)
    x = rng.normal(size=n).astype(np.float32)
    y = np.exp(0.05 * item + 0.5 * x) * (rng.random(n) > 0.2)
    return {"item": item, "x": x}, y.astype(np.float32)


def _head_learned(model, features, y, quantizer):
    """The served outputs, and per level the code NLL minus the marginal's."""
    out = model.task.predict(model.tower(features))
    codes = quantizer.encode(y)
    report = CodeReport(
        codes, quantizer.fitted_codebook_sizes, quantizer.token_offsets, quantizer.zero_token
    )
    report.update(out["logits"].numpy(), out["codes"].numpy(), codes)
    return out, [level["nll"] - level["marginal_nll"] for level in report.result()]


@pytest.mark.slow
def test_tfrs_model_trains_and_loss_falls():
    features, y = _data()
    quantizer = ResidualQuantizer(num_levels=2, codebook_size=8, clip_min=0).fit(y)
    model = Ranker(quantizer)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    ds = tf.data.Dataset.from_tensor_slices((features, y)).batch(256)
    history = model.fit(ds, epochs=5, verbose=0, callbacks=[ScheduledSampling(k=1.0, t0=2)])
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    assert "mae" in history.history
    out, nll_gain = _head_learned(model, features, y, quantizer)
    assert out["prediction"].shape == (2048,) and out["codes"].shape == (2048, 2)
    # The level-1 classifier learned (the item feature sets the value's
    # scale; 40 steps are too few for level 2: see test_code_learning), and
    # the served prediction, the code tree's mean, is right in total.
    assert nll_gain[0] < -0.1, nll_gain
    np.testing.assert_array_equal(out["prediction"].numpy(), out["mean"].numpy())
    assert out["mean"].numpy().mean() == pytest.approx(y.mean(), rel=0.15)
    assert float(model.task.decoder.sampling_probability.numpy()) < 0.5


def test_config_round_trip():
    q = ResidualQuantizer(num_levels=2, codebook_size=4).fit(np.arange(100.0))
    task = RQRegTask.from_quantizer(q, units=8, rnc_weight=0.0)
    again = RQRegTask.from_config(task.get_config())
    assert again.get_config() == task.get_config()
    assert again.rq_loss.label_scale == task.rq_loss.label_scale == q.label_std
    # Built from centroids alone, the default label scale needs the std.
    centroids = [c.tolist() for c in q.centroids]
    with pytest.raises(ValueError, match="needs the training labels' std.*from_quantizer"):
        RQRegTask(centroids, units=8)
    assert RQRegTask(centroids, units=8, label_std=3.0).rq_loss.label_scale == 3.0
    assert RQRegTask(centroids, units=8, label_scale="none").rq_loss.label_scale == 1.0
    assert isinstance(task, tfrs.tasks.Task)


@pytest.mark.slow
def test_zero_code_task_trains_in_a_tfrs_model():
    features, y = _data()
    quantizer = ResidualQuantizer(
        num_levels=2, codebook_size=8, clip_min=0, zero_threshold=5e-3
    ).fit(y)
    model = Ranker(quantizer)
    assert model.task.decoder.zero_token
    assert RQRegTask.from_config(model.task.get_config()).label_encoder.zero_threshold == 5e-3
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    ds = tf.data.Dataset.from_tensor_slices((features, y)).batch(256)
    losses = model.fit(ds, epochs=5, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    out, nll_gain = _head_learned(model, features, y, quantizer)
    codes = out["codes"].numpy()
    assert codes.min() >= -1 and codes.max() < 8
    assert nll_gain[0] < -0.1, nll_gain
    # P(y > 0) from the zero code: 20% of the labels are 0, at random.
    assert out["exceedance"].numpy().mean() == pytest.approx(np.mean(y > 0), abs=0.1)
