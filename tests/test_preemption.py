"""Preemption: SIGTERM during training saves the step, and the rerun ends
with the weights of a run never stopped (rq_keras.training.preemption)."""

import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import cli_args as _cli_args
from conftest import start_script, toy_files
from conftest import summary as _summary
from conftest import train_config as _config
from rq_keras.cli.train import train_main
from rq_keras.training import train
from rq_keras.training.callbacks import read_history
from rq_keras.training.preemption import (
    PREEMPTED_EXIT,
    PreemptionGuard,
    SaveOnPreemption,
    TrainingPreempted,
    backup_position,
    resume_point,
)


# ------------------------------------------------------------- the arithmetic
def test_the_resume_point_follows_the_saved_step():
    # nothing saved: the start
    assert resume_point(None, 10, 10) == {
        "epoch": 0,
        "step": 0,
        "start_pass": 0,
        "skip_batches": 0,
    }
    # step 4 of epoch 2 trained (0-based): step 5 next; 25 batches read
    assert resume_point((2, 4), 10, 10) == {
        "epoch": 2,
        "step": 5,
        "start_pass": 2,
        "skip_batches": 5,
    }
    # the epoch's last step, or an epoch end with no step recorded: next epoch
    for batch in (9, -1):
        assert resume_point((2, batch), 10, 10) == {
            "epoch": 3,
            "step": 0,
            "start_pass": 3,
            "skip_batches": 0,
        }
    # epochs of 4 steps over passes of 10 batches: 2 * 4 + 3 = 11 read
    assert resume_point((2, 2), 4, 10) == {
        "epoch": 2,
        "step": 3,
        "start_pass": 1,
        "skip_batches": 1,
    }


# ------------------------------------------------------------- the guard
def test_the_guard_raises_at_once_outside_training_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingPreempted, match="SIGTERM outside training") as caught:
        with PreemptionGuard():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    assert caught.value.epoch is None
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_guard_only_records_while_deferring_and_raises_on_leaving():
    with PreemptionGuard() as guard:
        with pytest.raises(TrainingPreempted):
            with guard.deferring():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
                assert guard.requested and guard.received == "SIGTERM"
        # a signal recorded earlier stops the next training at once
        with pytest.raises(TrainingPreempted):
            with guard.deferring():
                pytest.fail("entered")


def test_the_guard_is_entered_in_the_main_thread_only():
    errors = []

    def enter():
        try:
            with PreemptionGuard():
                pass
        except RuntimeError as err:
            errors.append(str(err))

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert errors and "main thread" in errors[0]


# ------------------------------------------------------------- training
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_files(tmp_path_factory.mktemp("toy"))


def _weights(result):
    return result.model.get_weights()


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_the_step_and_the_rerun_ends_as_if_never_stopped(
    toy, tmp_path, monkeypatch
):
    # 3000 rows at batch 64: 47 steps per epoch; scheduled sampling at p < 1
    # from the start (t0 = 1), so the coins count too.
    config = _config(toy, epochs=3, batch_size=64, seed=3, sampling_t0=1.0)
    whole = train(config, tmp_path / "whole", verbose=0)

    # The signal is sent by the process to itself as batch 10 of epoch 2
    # starts (a real SIGTERM through the guard's handler).
    ran = []

    def on_train_batch_begin(self, batch, logs=None):
        ran.append((self._epoch, batch))
        if (self._epoch, batch) == (1, 10):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(SaveOnPreemption, "on_train_batch_begin", on_train_batch_begin)
    out = tmp_path / "cut"
    with PreemptionGuard() as guard:
        with pytest.raises(TrainingPreempted) as caught:
            train(config, out, verbose=0, preemption=guard)
    stop = caught.value
    # batch 10 finished, then the save: the rerun starts at step 11 of epoch 2
    assert (stop.epoch, stop.step) == (1, 11) and ran[-1] == (1, 10)
    assert "epoch 2, step 12 of 47" in str(stop)
    assert backup_position(out / "backup") == (1, 10)
    assert sorted(read_history(str(out / "history.csv"))) == [1]
    assert not (out / "metrics.json").exists()

    ran.clear()
    with PreemptionGuard() as guard:
        resumed = train(config, out, verbose=0, preemption=guard)
    # the rerun trained the rest of epoch 2 and epoch 3 only ...
    assert ran[0] == (1, 11) and len(ran) == 47 - 11 + 47
    assert resumed.resumed and resumed.epochs_run == 3
    # ... on the same batches with the same coins: the same weights. Float
    # sums on one machine in one process type repeat exactly; the tolerance
    # allows only last-bit differences of a thread schedule.
    for got, want in zip(_weights(resumed), _weights(whole)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # and the same history, the interrupted epoch's running means included
    got_history = read_history(str(out / "history.csv"))
    want_history = read_history(str(tmp_path / "whole" / "history.csv"))
    assert sorted(got_history) == [1, 2, 3]
    for epoch, row in want_history.items():
        for key, value in row.items():
            assert got_history[epoch][key] == pytest.approx(value, rel=1e-5), (epoch, key)
    assert resumed.metrics["test"]["mae"] == pytest.approx(whole.metrics["test"]["mae"], rel=1e-5)


@pytest.mark.slow
def test_train_py_exits_75_on_sigterm_and_the_same_command_resumes(toy, tmp_path, capsys):
    """The command line: SIGTERM from outside during training, exit 75 within
    seconds, and the same command finishes with the uninterrupted weights."""
    out = tmp_path / "term"
    args = _cli_args(toy, out, "--epochs", "3", "--batch-size", "32", "--seed", "1")
    proc = start_script("train.py", args, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            # the first epoch's backup is complete: training is under way
            if (out / "history.csv").exists():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the signal"
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == PREEMPTED_EXIT, err[-2000:]
    assert "stopped by SIGTERM; the state is saved in" in err and "to resume at epoch" in err
    # generous for a loaded CI machine: a step, a validation pass and a save
    assert seconds < 30
    assert backup_position(out / "backup") is not None
    assert not (out / "metrics.json").exists()

    capsys.readouterr()
    assert train_main(args) == 0, capsys.readouterr().err[-2000:]
    resumed = _summary(capsys.readouterr().out)
    assert resumed["resumed"] is True and resumed["epochs_run"] == 3
    whole = _cli_args(toy, tmp_path / "whole", "--epochs", "3", "--batch-size", "32", "--seed", "1")
    assert train_main(whole) == 0
    expected = _summary(capsys.readouterr().out)
    assert resumed["test"]["mae"] == pytest.approx(expected["test"]["mae"], rel=1e-5)
    assert resumed["test"]["spearman"] == pytest.approx(expected["test"]["spearman"], abs=1e-6)
