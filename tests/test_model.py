import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from conftest import TOY_SPEC as SPEC
from conftest import toy_frame as _frame
from rq_keras import ResidualQuantizer
from rq_keras.config.configs import ModelConfig
from rq_keras.data import make_dataset, write_table
from rq_keras.evaluation.metrics import spearman, spearman_positive
from rq_keras.features.preprocessing import FeaturePreprocessor
from rq_keras.layers.assembly import loss_config
from rq_keras.models.rq_reg import RQRegModel, build_model

SMALL = ModelConfig(
    units=32,
    code_embedding_dim=16,
    encoder_units=32,
    predictor_units=32,
    regressor_units=16,
    delta=1.0,
    seed=0,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    paths = {}
    for split, n, seed in (("train", 4000, 0), ("test", 1000, 1)):
        paths[split] = root / f"{split}.parquet"
        write_table(_frame(n, seed), SPEC, paths[split])
    pre = FeaturePreprocessor(SPEC).adapt(paths["train"])
    y = _frame(4000, 0)["y"].to_numpy()
    quantizer = ResidualQuantizer(num_levels=3, codebook_size=8, clip_min=0).fit(y)
    return paths, pre, quantizer, y


def _model(data, config=SMALL, run_eagerly=False):
    _, pre, quantizer, _ = data
    model = build_model(SPEC, pre, quantizer, config)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), run_eagerly=run_eagerly)
    return model


@pytest.mark.slow
def test_outputs_and_loss_terms(data):
    paths = data[0]
    model = _model(data)
    x, y = next(iter(make_dataset(paths["test"], SPEC, batch_size=16)))
    out = model(x, training=False)
    assert out["prediction"].shape == (16,) and out["logits"].shape == (16, 3, 1 + 3 * 8)
    assert out["expected_embeddings"].shape == (16, 3 * 16)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "gen", "reg", "rnc", "crps", "mae"}
    assert all(np.isfinite(v) for v in logs.values())
    expected = logs["gen"] + 1.0 * logs["reg"] + 0.1 * logs["rnc"]
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)


def test_inference_never_reads_the_label(data):
    paths = data[0]
    model = _model(data)
    x, y = next(iter(make_dataset(paths["test"], SPEC, batch_size=32)))
    a = model(x, training=False)["prediction"].numpy()
    b = model({**x, "y": y * 0 + 1e6}, training=False)["prediction"].numpy()
    np.testing.assert_array_equal(a, b)  # the same eager call twice: bit for bit
    # predict_on_batch runs a traced graph, which may pick other kernels and
    # summation orders than eager execution (3e-8 apart seen on AMD EPYC): a
    # float32 tolerance that still catches any change in what is computed.
    np.testing.assert_allclose(model.predict_on_batch(x)["prediction"], a, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_trains_until_it_beats_the_training_mean(data):
    paths, _, _, y_train = data
    model = _model(data)
    train = make_dataset(paths["train"], SPEC, batch_size=128, shuffle=True, seed=0)
    model.fit(train, epochs=6, verbose=0)
    preds, labels = [], []
    for x, y in make_dataset(paths["test"], SPEC, batch_size=500):
        preds.append(model(x, training=False)["prediction"].numpy())
        labels.append(y.numpy())
    preds, labels = np.concatenate(preds), np.concatenate(labels)
    mae = np.abs(preds - labels).mean()
    mean_mae = np.abs(y_train.mean() - labels).mean()
    rho = spearman(labels, preds)
    rho_pos = spearman_positive(labels, preds)
    print(
        f"test MAE {mae:.3f}, train-mean MAE {mean_mae:.3f}, Spearman {rho:.3f} (+ {rho_pos:.3f})"
    )
    # seen here: MAE 0.54x the mean's, Spearman 0.60, Spearman(+) 0.955
    assert mae < 0.75 * mean_mae, (mae, mean_mae)
    assert rho > 0.4 and rho_pos > 0.85, (rho, rho_pos)


@pytest.mark.slow
def test_crps_term_learns_below_the_marginal_and_joins_the_loss(data):
    """L_crps (level 1's CRPS over its atoms) with weight 1: reported, in the
    total, and after training below the CRPS of the training codes' marginal
    on held-out rows (its trivial value)."""
    from rq_keras.layers.assembly import level_one_atoms
    from rq_keras.losses.terms import atom_crps

    paths, _, quantizer, y_train = data
    model = _model(data, dataclasses.replace(SMALL, crps_weight=1.0))
    atoms = level_one_atoms(model.task.label_encoder)
    loss = model.task.rq_loss
    assert loss.crps_tokens == atoms["crps_tokens"] and loss.crps_weight == 1.0
    assert len(atoms["crps_values"]) == len(quantizer.require_fitted()[0]) + (
        1 if quantizer.zero_token else 0
    )
    x, y = next(iter(make_dataset(paths["test"], SPEC, batch_size=64)))
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["crps"] > 0
    total = logs["gen"] + logs["reg"] + 0.1 * logs["rnc"] + logs["crps"]
    assert logs["loss"] == pytest.approx(total, rel=1e-4)
    train = make_dataset(paths["train"], SPEC, batch_size=128, shuffle=True, seed=0)
    model.fit(train, epochs=6, verbose=0)
    tokens = model.task.label_encoder(tf.constant(y_train, tf.float32))["tokens"].numpy()[:, 0]
    counts = np.array([np.sum(tokens == t) for t in atoms["crps_tokens"]], np.float64) + 0.5
    scale = loss.label_scale
    values = np.asarray(atoms["crps_values"]) / scale
    learned, marginal = [], []
    for x, y in make_dataset(paths["test"], SPEC, batch_size=500):
        logits = model(x, training=False)["logits"].numpy()[:, 0, atoms["crps_tokens"]]
        label = np.asarray(y, np.float64) / scale
        learned.append(atom_crps(logits, values, label).numpy())
        prior = np.broadcast_to(np.log(counts / counts.sum()), logits.shape)
        marginal.append(atom_crps(prior, values, label).numpy())
    learned, marginal = np.concatenate(learned).mean(), np.concatenate(marginal).mean()
    print(f"level-1 CRPS {learned:.4f} against the marginal's {marginal:.4f} (label stds)")
    assert learned < 0.8 * marginal, (learned, marginal)


@pytest.mark.slow
def test_ablation_switches(data):
    paths = data[0]
    x, y = next(iter(make_dataset(paths["test"], SPEC, batch_size=16)))

    def variant(**changes):
        # One step each, eagerly (tracing four train steps costs 3 s apiece);
        # the decoder path without f_reg is traced, as the loss terms are in
        # test_losses.
        graph = changes.get("use_regressor") is False
        return _model(data, ModelConfig(**{**SMALL.__dict__, **changes}), run_eagerly=not graph)

    no_gen = variant(gen_weight=0.0, rnc_weight=0.0)
    logs = no_gen.train_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["reg"], rel=1e-5)
    no_reg = variant(use_regressor=False)
    assert not any("regressor" in w.name for w in no_reg.weights)
    assert np.isfinite(no_reg.train_on_batch(x, y, return_dict=True)["loss"])
    cumulative = variant(cumulative_huber=True)
    assert cumulative.task.rq_loss.cumulative_huber and not no_gen.task.rq_loss.cumulative_huber
    assert np.isfinite(cumulative.train_on_batch(x, y, return_dict=True)["reg"])
    residual = variant(residual_regressor=True)
    out = residual(x, training=False)
    np.testing.assert_allclose(
        out["regressor"].numpy(),
        out["level_values"].numpy().sum(1) + out["residual"].numpy(),
        rtol=1e-5,
    )
    assert np.isfinite(residual.train_on_batch(x, y, return_dict=True)["reg"])
    with pytest.raises(ValueError, match="`cell` must be one of"):
        ModelConfig(cell="lstm2")
    stopped = _model(data, ModelConfig(**{**SMALL.__dict__, "regressor_input": "stopped"}))
    assert stopped.decoder.regressor_input == "stopped"
    with pytest.raises(ValueError, match="`regressor_input` must be one of"):
        ModelConfig(regressor_input="detached")
    forced = _model(data, ModelConfig(**{**SMALL.__dict__, "teacher_forced_evaluation": True}))
    assert forced.decoder.teacher_forced_evaluation
    # "auto" (the default): validation scores the tree that is served, the
    # one-pass marginals with exact_levels 0 (the default), the code
    # sequence's NLL with level 1 branched; a bool is kept as given.
    assert SMALL.teacher_forced_evaluation == "auto" and SMALL.exact_levels == 0
    assert not stopped.decoder.teacher_forced_evaluation
    branched = _model(data, ModelConfig(**{**SMALL.__dict__, "exact_levels": 1}))
    assert branched.decoder.teacher_forced_evaluation
    plain = ModelConfig(**{**SMALL.__dict__, "exact_levels": 1, "teacher_forced_evaluation": False})
    assert plain.resolved_teacher_forced_evaluation is False
    with pytest.raises(ValueError, match="`teacher_forced_evaluation` must be true, false or"):
        ModelConfig(teacher_forced_evaluation="yes")
    # label_scale "std" (the default): L_reg in units of the codebook's label std.
    quantizer = data[2]
    assert no_gen.task.rq_loss.label_scale == quantizer.label_std > 1.0
    plain = _model(data, ModelConfig(**{**SMALL.__dict__, "label_scale": "none"}))
    assert plain.task.rq_loss.label_scale == 1.0
    with pytest.raises(ValueError, match="`label_scale` must be one of"):
        ModelConfig(label_scale="max")
    with pytest.raises(ValueError, match="needs the training labels' std"):
        loss_config(ModelConfig(label_scale="std"))


class _UsersRanker(tfrs.Model):
    """A user's own TFRS model around a tower and an RQRegTask."""

    def __init__(self, tower, task):
        super().__init__()
        self.tower = tower
        self.task = task

    def compute_loss(self, inputs, training=False):
        features, labels = inputs
        return self.task(labels, self.tower(features, training=training), training=training)


@pytest.mark.slow
def test_train_py_model_and_a_users_tfrs_model_run_one_head(data):
    """One assembly: build_model's model is a tfrs.Model around an RQRegTask,
    and its train/test step computes the loss a user's own tfrs.Model gets
    from the same task and weights (teacher forcing at p = 1 is deterministic,
    so training=True compares too)."""
    model = _model(data)
    assert isinstance(model, tfrs.Model) and model.decoder is model.task.decoder
    users = _UsersRanker(model.features, model.task)
    x, y = next(iter(make_dataset(data[0]["test"], SPEC, batch_size=64)))
    # Graph (the Keras step) against eager (the user's call): float32 kernels
    # and summation orders may differ, so a tolerance far below any loss change.
    for training in (False, True):
        theirs = float(users.compute_loss((x, y), training=training))
        ours = float(model.compute_loss((x, y), training=training))
        assert ours == pytest.approx(theirs, rel=1e-6)
        step = model.train_on_batch if training else model.test_on_batch
        logs = step(x, y, return_dict=True)  # the loss before the update
        assert logs["loss"] == pytest.approx(theirs, rel=1e-5), training


@pytest.mark.slow
def test_a_users_tfrs_model_reports_the_library_models_loss_and_metrics(data):
    """One loss path: the task owns its metrics, so a user's own tfrs.Model
    (TFRS's own train and test steps) around the same task and weights reports
    what RQRegModel reports, every loss term and `mae`, on the same batch
    (L_crps on, so every term is > 0)."""
    model = build_model(SPEC, data[1], data[2], dataclasses.replace(SMALL, crps_weight=0.5))
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # the weights stay as they are
    users = _UsersRanker(model.features, model.task)
    users.compile(optimizer=keras.optimizers.SGD(0.0))
    x, y = next(iter(make_dataset(data[0]["test"], SPEC, batch_size=64)))
    keys = [*model.task.TERMS, "mae"]
    assert [m.name for m in model.metrics] == keys
    for training in (False, True):  # p = 1: teacher forcing, deterministic
        step = "train_on_batch" if training else "test_on_batch"
        ours = getattr(model, step)(x, y, return_dict=True)
        theirs = getattr(users, step)(x, y, return_dict=True)
        assert set(keys) <= set(theirs) and set(ours) == set(keys)
        assert all(np.isfinite(ours[k]) and ours[k] > 0 for k in keys)
        # Both steps run in graph mode; they differ only in summation order.
        for key in keys:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5), (training, key)


def test_a_model_file_of_the_old_layout_is_refused_by_name():
    old = {"name": "rq_reg", "features": {}, "label_encoder": {}, "encoder": {}, "decoder": {}}
    with pytest.raises(ValueError, match=r"saved by rq_keras 0\.1.*exports still serve"):
        RQRegModel.from_config(old)


def test_save_and_load(data, tmp_path):
    paths = data[0]
    model = _model(data)
    x, _ = next(iter(make_dataset(paths["test"], SPEC, batch_size=16)))
    expected = model(x, training=False)["prediction"].numpy()
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(again, RQRegModel)
    np.testing.assert_allclose(
        again(x, training=False)["prediction"].numpy(), expected, rtol=1e-6, atol=1e-7
    )


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "transformer"])
def test_trains_under_mirrored_strategy(data, mirrored, cell):
    paths, pre, quantizer, _ = data
    strategy = mirrored
    with strategy.scope():
        model = build_model(SPEC, pre, quantizer, dataclasses.replace(SMALL, cell=cell))
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = make_dataset(paths["train"], SPEC, batch_size=256).take(4)
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.slow
def test_zero_code_model_trains_saves_and_predicts_zero_codes(data, tmp_path):
    paths, pre, _, y_train = data
    quantizer = ResidualQuantizer(
        num_levels=3, codebook_size=8, clip_min=0, zero_threshold=5e-3
    ).fit(y_train)
    model = build_model(SPEC, pre, quantizer, SMALL)
    assert model.decoder.zero_token and model.label_encoder.zero_token
    assert model.decoder.vocabulary_size == 2 + 3 * 8
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    train = make_dataset(paths["train"], SPEC, batch_size=128, shuffle=True, seed=0)
    model.fit(train, epochs=6, verbose=0)
    x, labels = next(iter(make_dataset(paths["test"], SPEC, batch_size=1000)))
    out = model(x, training=False)
    preds, labels = out["prediction"].numpy(), labels.numpy()
    mae = np.abs(preds - labels).mean()
    mean_mae = np.abs(y_train.mean() - labels).mean()
    # The label is zero for a random 20% of rows whatever the features: level
    # 1's softmax should give <zero> about that probability on average, and
    # its argmax should rarely be <zero>.
    p_zero = tf.nn.softmax(out["logits"][:, 0, :], axis=-1)[:, 1].numpy().mean()
    zero_first = (out["codes"].numpy()[:, 0] == -1).mean()
    print(
        f"zero code: MAE {mae:.3f} vs mean {mean_mae:.3f}, p(<zero>) {p_zero:.3f}, "
        f"argmax <zero> share {zero_first:.3f}"
    )
    assert mae < 0.75 * mean_mae, (mae, mean_mae)
    assert 0.12 < p_zero < 0.3, p_zero
    assert zero_first < 0.2
    model.save(tmp_path / "zero.keras")
    again = keras.models.load_model(tmp_path / "zero.keras")
    assert again.decoder.zero_token and again.label_encoder.zero_threshold == 5e-3
    np.testing.assert_allclose(again(x, training=False)["prediction"].numpy(), preds, rtol=1e-5)
