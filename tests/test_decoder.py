import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from rq_keras.layers.decoder import RQDecoder

SIZES = [3, 2, 4]  # L = 3, V = 1 + 9


def _decoder(**kw):
    kw = {
        "units": 8,
        "embedding_dim": 6,
        "predictor_units": 5,
        "regressor_units": 4,
        "seed": 1,
        **kw,
    }
    return RQDecoder(SIZES, **kw)


def _inputs(batch=5, state=16, seed=0):
    rng = np.random.default_rng(seed)
    tokens = np.stack(
        [
            1 + rng.integers(0, 3, batch),
            4 + rng.integers(0, 2, batch),
            6 + rng.integers(0, 4, batch),
        ],
        axis=1,
    )
    return {
        "state": tf.constant(rng.normal(size=(batch, state)), tf.float32),
        "tokens": tf.constant(tokens, tf.int32),
    }


@pytest.mark.parametrize("cell,state", [("lstm", 16), ("gru", 8), ("rnn", 8), ("transformer", 8)])
def test_shapes(cell, state):
    dec = _decoder(cell=cell)
    assert dec.state_size == state
    out = dec(_inputs(state=state), training=True)
    assert out["prediction"].shape == (5,) and out["level_values"].shape == (5, 3)
    assert out["logits"].shape == (5, 3, 10) and out["expected_embeddings"].shape == (5, 18)
    assert out["codes"].dtype == tf.int32
    codes = out["codes"].numpy()
    assert (codes >= 0).all() and (codes < np.array(SIZES)).all()
    np.testing.assert_allclose(
        out["prediction"].numpy(), out["level_values"].numpy().sum(1), rtol=1e-6
    )


def test_golden_values_with_constant_weights():
    """One level, all weights constant: every quantity by hand."""
    dec = RQDecoder([2], units=2, embedding_dim=2, cell="rnn", predictor_units=1, regressor_units=1)
    dec.build(None)
    for w in dec.weights:
        if w.trainable:
            w.assign(tf.fill(w.shape, 0.1))
    out = dec({"state": tf.constant([[1.0, 1.0]])})
    # SimpleRNN: h = tanh(W x + U h0 + b) with x = e(<start>) = [.1, .1]
    h = np.tanh(0.1 * 0.1 * 2 + 0.1 * 2 + 0.1)
    z_hidden = max(0.0, 0.1 * h * 2 + 0.1)
    z = 0.1 * z_hidden + 0.1  # every one of the 3 logits
    y = 0.1 * max(0.0, 0.1 * z * 3 + 0.1) + 0.1
    np.testing.assert_allclose(out["logits"].numpy(), np.full((1, 1, 3), z), rtol=1e-6)
    np.testing.assert_allclose(out["prediction"].numpy(), [y], rtol=1e-6)
    np.testing.assert_allclose(out["expected_embeddings"].numpy(), [[0.1, 0.1]], rtol=1e-6)


def _outputs(dec, inputs, p, training=True):
    if not dec.built:
        dec(inputs)
    dec.sampling_probability.assign(p)
    return dec(inputs, training=training)


def test_teacher_forcing_and_free_running_are_exact():
    dec = _decoder()
    inputs = _inputs()
    dec(inputs)
    teacher = _outputs(dec, inputs, 1.0)
    free = _outputs(dec, inputs, 0.0)
    infer = dec(inputs, training=False)
    # p = 0 in training is exactly inference (which never reads the tokens)
    np.testing.assert_allclose(
        free["logits"].numpy(), infer["logits"].numpy(), rtol=1e-6, atol=1e-7
    )
    assert not np.allclose(teacher["logits"].numpy()[:, 1:], infer["logits"].numpy()[:, 1:])
    # teacher forcing equals feeding e(q_{l-1}) by hand: change a token, the
    # first level is untouched and the second level moves
    other = dict(inputs, tokens=tf.where(inputs["tokens"] == 1, 2, inputs["tokens"]))
    moved = _outputs(dec, other, 1.0)
    np.testing.assert_array_equal(moved["logits"][:, 0].numpy(), teacher["logits"][:, 0].numpy())
    changed = inputs["tokens"][:, 0].numpy() == 1
    assert changed.any()
    diff = np.abs(moved["logits"][:, 1].numpy() - teacher["logits"][:, 1].numpy()).max(axis=1)
    assert (diff[changed] > 0).all() and (diff[~changed] == 0).all()


def _teacher_forced(dec, inputs, p):
    """Per example, whether level 2 read the true code in one training call at
    `p` (its logits equal those of a call at p = 1, not those at p = 0), and
    whether that can be told (the two differ)."""
    mixed = _outputs(dec, inputs, p)["logits"][:, 1].numpy()
    forced = _outputs(dec, inputs, 1.0)["logits"][:, 1].numpy()
    free = _outputs(dec, inputs, 0.0)["logits"][:, 1].numpy()
    to_forced = np.abs(mixed - forced).max(axis=1)
    to_free = np.abs(mixed - free).max(axis=1)
    assert (np.minimum(to_forced, to_free) < 1e-6).all()  # one or the other
    return to_forced < 1e-6, np.abs(forced - free).max(axis=1) > 1e-5


def test_sampling_coins_fall_at_rate_p_and_anew_each_training_call():
    dec = _decoder()
    inputs = _inputs(batch=4000)
    dec(inputs)
    first, told = _teacher_forced(dec, inputs, 0.3)
    second, _ = _teacher_forced(dec, inputs, 0.3)
    assert told.mean() > 0.9
    first, second = first[told], second[told]
    # about 4,000 coins at p = 0.3: std 0.0073, so 5 std is 0.037
    assert abs(first.mean() - 0.3) < 0.037 and abs(second.mean() - 0.3) < 0.037
    # a new call draws new coins: they agree at chance (0.3^2 + 0.7^2 = 0.58)
    assert abs((first == second).mean() - 0.58) < 0.04
    # each training call (three per `_teacher_forced`) counts once
    assert int(dec.sampling_step.numpy()) == 6
    dec(inputs, training=False)  # inference draws no coin
    assert int(dec.sampling_step.numpy()) == 6


def test_sampling_coins_are_a_function_of_seed_and_call_count():
    """What resuming from a checkpoint needs: a layer restored at call k
    draws the coins the uninterrupted one draws at call k."""
    inputs = _inputs(batch=400)
    a, b, c = _decoder(), _decoder(), _decoder(seed=2)
    for dec in (a, b, c):
        dec(inputs)
    b.set_weights(a.get_weights())
    c.set_weights(a.get_weights())
    _teacher_forced(a, inputs, 0.5)  # calls 1-3
    b.sampling_step.assign(a.sampling_step)
    c.sampling_step.assign(a.sampling_step)
    coins_a, told = _teacher_forced(a, inputs, 0.5)
    coins_b, _ = _teacher_forced(b, inputs, 0.5)
    coins_c, _ = _teacher_forced(c, inputs, 0.5)
    np.testing.assert_array_equal(coins_a, coins_b)
    assert (coins_c[told] != coins_a[told]).mean() > 0.3  # another seed, other coins


def test_replicas_draw_their_own_coins_and_a_step_counts_once(mirrored):
    inputs = _inputs(batch=400)
    with mirrored.scope():
        dec = _decoder()
        dec(inputs)
    dec.sampling_probability.assign(0.5)

    @tf.function
    def step():
        return mirrored.run(lambda: dec(inputs, training=True)["logits"])

    first, second = (t.numpy() for t in mirrored.experimental_local_results(step()))
    assert not np.allclose(first, second)  # same examples, other coins
    assert [int(v.numpy()) for v in dec.sampling_step.values] == [1, 1]


def test_a_decoder_saved_without_the_coin_counter_loads(tmp_path):
    """rq_keras 0.2's decoders had no `sampling_step`: their .keras files
    load every other variable, and the counter starts at 0."""
    inputs = _inputs()
    dec = _decoder()
    dec(inputs)
    for w in dec.trainable_weights:
        w.assign(w + 0.25)
    own = dec._trainable_weights + dec._non_trainable_weights
    assert own[-1] is dec.sampling_step
    old_store = {f"{i}": w.numpy() for i, w in enumerate(own[:-1])}
    fresh = _decoder()
    fresh(inputs)
    fresh.load_own_variables(old_store)
    for a, b in zip(own[:-1], fresh._trainable_weights + fresh._non_trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(fresh.sampling_step.numpy()) == 0
    with pytest.raises(ValueError, match="variables"):
        fresh.load_own_variables({"0": old_store["0"]})


def test_inference_never_reads_tokens():
    dec = _decoder()
    inputs = _inputs()
    a = dec(inputs, training=False)
    b = dec({"state": inputs["state"]}, training=False)
    c = dec(dict(inputs, tokens=inputs["tokens"] * 0 + 9), training=False)
    for key in ("prediction", "logits"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
        np.testing.assert_array_equal(a[key].numpy(), c[key].numpy())


def test_per_example_mix_at_half():
    """At p = 0.5, about half the examples take the true embedding at a step."""
    dec = _decoder()
    inputs = _inputs(batch=4000, seed=3)
    dec(inputs)  # builds the variables
    teacher = _outputs(dec, inputs, 1.0)["logits"][:, 1].numpy()
    free = _outputs(dec, inputs, 0.0)["logits"][:, 1].numpy()
    mixed = _outputs(dec, inputs, 0.5)["logits"][:, 1].numpy()
    # rows whose hidden ReLUs are all off give the same logits either way
    distinct = np.abs(teacher - free).max(axis=1) > 1e-4
    assert distinct.mean() > 0.5
    took_true = np.all(np.isclose(mixed, teacher, atol=1e-6), axis=1)[distinct]
    took_own = np.all(np.isclose(mixed, free, atol=1e-6), axis=1)[distinct]
    assert (took_true ^ took_own).all()  # each example took one of the two, whole
    assert 0.45 < took_true.mean() < 0.55


def test_without_regressor_uses_expected_centroids():
    centroids = [[1.0, 2.0, 3.0], [0.1, 0.2], [0.0, 0.01, 0.02, 0.03]]
    dec = _decoder(use_regressor=False, centroids=centroids)
    out = dec(_inputs(), training=False)
    logits = out["logits"].numpy()
    offsets = [1, 4, 6]
    for level, (c, o) in enumerate(zip(centroids, offsets)):
        z = logits[:, level, o : o + len(c)]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        np.testing.assert_allclose(
            out["level_values"][:, level].numpy(), p @ np.array(c), rtol=1e-5
        )
    with pytest.raises(ValueError, match="needs `centroids`"):
        _decoder(use_regressor=False)


def test_config_round_trip_and_validation():
    dec = _decoder(cell="gru", sampling_probability=0.0)
    again = RQDecoder.from_config(dec.get_config())
    assert again.get_config() == dec.get_config()
    assert again.initial_sampling_probability == 0.0
    for kwargs, message in (
        ({"codebook_sizes": []}, "codebook_sizes"),
        ({"codebook_sizes": SIZES, "units": 0}, "`units` must be >= 1, got 0"),
        ({"codebook_sizes": SIZES, "cell": "mamba"}, "`cell` must be one of"),
        ({"codebook_sizes": SIZES, "sampling_probability": 2}, "sampling_probability"),
    ):
        with pytest.raises(ValueError, match=message):
            RQDecoder(**kwargs)
    with pytest.raises(ValueError, match="`state` must have 16 columns"):
        _decoder()({"state": tf.zeros((2, 5))})


@pytest.mark.slow
def test_save_load(tmp_path):
    dec = _decoder()
    state = keras.Input((16,))
    model = keras.Model(state, dec({"state": state})["prediction"])
    x = _inputs()["state"]
    expected = model(x).numpy()
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(x).numpy(), expected, rtol=1e-6, atol=1e-7)
    tf.saved_model.save(model, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-6, atol=1e-7)


def test_gradients_flow_to_every_trainable_weight():
    dec = _decoder()
    inputs = _inputs()
    with tf.GradientTape() as tape:
        out = _outputs(dec, inputs, 0.5)
        loss = tf.reduce_sum(out["prediction"]) + tf.reduce_sum(out["expected_embeddings"])
    grads = tape.gradient(loss, dec.trainable_weights)
    assert all(g is not None for g in grads)
    assert "sampling_probability" not in [w.name.split("/")[-1][:-2] for w in dec.trainable_weights]


def test_residual_regressor_adds_to_the_prediction():
    dec = _decoder(residual_regressor=True)
    out = dec(_inputs(), training=False)
    assert out["residual"].shape == (5,)
    np.testing.assert_allclose(
        out["prediction"].numpy(),
        out["level_values"].numpy().sum(1) + out["residual"].numpy(),
        rtol=1e-6,
    )
    assert "residual" not in _decoder()(_inputs(), training=False)
    assert RQDecoder.from_config(dec.get_config()).residual_regressor


@pytest.mark.parametrize("regressor_input", ["logits", "stopped"])
def test_regressor_input_decides_where_the_regression_gradient_goes(regressor_input):
    dec = _decoder(regressor_input=regressor_input, residual_regressor=True)
    inputs = _inputs()
    with tf.GradientTape() as tape:
        out = _outputs(dec, inputs, 0.5)
        loss = tf.reduce_sum(out["prediction"])  # what L_reg differentiates
    regressors = dec.regressor.trainable_weights + dec.residual_head.trainable_weights
    classifier = dec.predictor.trainable_weights
    grads = tape.gradient(loss, regressors + classifier)
    assert all(g is not None for g in grads[: len(regressors)])
    # "stopped": f_reg still trains, but nothing of L_reg reaches the classifier.
    reaches = [
        g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads[len(regressors) :]
    ]
    assert all(reaches) if regressor_input == "logits" else not any(reaches)
    # The forward pass is the same either way.
    same = _decoder(residual_regressor=True)(inputs, training=False)["prediction"]
    np.testing.assert_array_equal(dec(inputs, training=False)["prediction"].numpy(), same.numpy())
    assert RQDecoder.from_config(dec.get_config()).regressor_input == regressor_input
    with pytest.raises(ValueError, match="`regressor_input` must be one of"):
        _decoder(regressor_input="detached")


def test_teacher_forced_evaluation_reads_the_true_codes_outside_training():
    """With `teacher_forced_evaluation`, an evaluation call given tokens has
    the logits of a training call at p = 1 (the code sequence's NLL) and draws
    no coin; without it the tokens are ignored outside training (the served
    pass). The option is in the layer's config."""
    inputs = _inputs(batch=64)
    plain, forced_eval = _decoder(), _decoder(teacher_forced_evaluation=True)
    plain(inputs)
    forced_eval(inputs)
    forced_eval.set_weights(plain.get_weights())
    teacher = _outputs(plain, inputs, 1.0)["logits"].numpy()
    served = plain({"state": inputs["state"]}, training=False)["logits"].numpy()
    steps = int(forced_eval.sampling_step.numpy())
    evaluated = forced_eval(inputs, training=False, distribution=False)["logits"].numpy()
    assert int(forced_eval.sampling_step.numpy()) == steps  # no coin drawn
    # float32 over one decoder pass: the same ops, so equal to rounding
    np.testing.assert_allclose(evaluated, teacher, atol=1e-6)
    assert np.abs(teacher[:, 1:] - served[:, 1:]).max() > 1e-4  # the two can be told
    ignored = plain(inputs, training=False, distribution=False)["logits"].numpy()
    np.testing.assert_allclose(ignored, served, atol=1e-6)
    assert forced_eval.get_config()["teacher_forced_evaluation"] is True
    assert RQDecoder.from_config(forced_eval.get_config()).teacher_forced_evaluation
    with pytest.raises(ValueError, match="`teacher_forced_evaluation` must be True or False"):
        _decoder(teacher_forced_evaluation="yes")


@pytest.mark.parametrize("batch", [6, 64])  # rows below V = 10 (x E then W), above (E W first)
def test_factored_lstm_steps_match_the_keras_cell_in_training(batch):
    """The LSTM's decoding pass with its input projection factored out
    (`FactoredLstmSteps`: E W once, its rows gathered or mixed) against the
    same weights stepping the Keras `LSTMCell` (`CellSteps`), in a training
    call with coins at p = 0.5 (the same coins: the counter is reset): every
    output and every gradient. Two float32 orders of the same sums: 1e-5
    relative, plus 1e-6 absolute for entries near 0."""
    from rq_keras.layers.code_tree import CellSteps, FactoredLstmSteps

    dec = _decoder()
    inputs = _inputs(batch=batch, seed=batch)
    dec(inputs)
    assert isinstance(dec._tree_steps(dec.code_embeddings, batch), FactoredLstmSteps)

    def run():
        dec.sampling_step.assign(0)
        with tf.GradientTape() as tape:
            out = _outputs(dec, inputs, 0.5)
            loss = tf.reduce_sum(out["prediction"] ** 2) + tf.reduce_sum(
                out["logits"] * out["logits"][:, ::-1]
            )
        return out, tape.gradient(loss, dec.trainable_weights)

    factored, factored_grads = run()
    # Traced with an unknown batch (as `fit` and the SavedModel trace it), the
    # order of `x W` is chosen by `tf.cond` at run time: the same numbers.
    spec = {k: tf.TensorSpec([None, *v.shape[1:]], v.dtype) for k, v in inputs.items()}

    @tf.function(input_signature=[spec])
    def traced(features):
        with tf.GradientTape() as tape:
            out = dec(features, training=True)
            loss = tf.reduce_sum(out["prediction"] ** 2) + tf.reduce_sum(
                out["logits"] * out["logits"][:, ::-1]
            )
        return out["logits"], tape.gradient(loss, dec.trainable_weights)

    dec.sampling_step.assign(0)
    logits, grads = traced(inputs)
    graph = traced.get_concrete_function().graph
    assert any(op.type in ("If", "StatelessIf") for op in graph.get_operations())
    np.testing.assert_allclose(logits.numpy(), factored["logits"].numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, factored_grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    dec._tree_steps = lambda table, rows: CellSteps(dec.recurrent_cell, table)
    cell, cell_grads = run()
    for key in ("prediction", "logits", "level_values", "expected_embeddings", "codes"):
        np.testing.assert_allclose(
            factored[key].numpy(), cell[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key
        )
    names = [w.name for w in dec.trainable_weights]
    assert any("kernel" in n for n in names) and any("code_embeddings" in n for n in names)
    for name, a, b in zip(names, factored_grads, cell_grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    # The coins mixed true and expected inputs, so both kinds were compared.
    forced = _outputs(dec, inputs, 1.0)["logits"][:, 1].numpy()
    free = _outputs(dec, inputs, 0.0)["logits"][:, 1].numpy()
    mixed = factored["logits"][:, 1].numpy()
    assert (np.abs(mixed - forced).max(1) < 1e-5).any()
    assert (np.abs(mixed - free).max(1) < 1e-5).any()
