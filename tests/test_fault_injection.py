"""SIGKILL at seeded random moments: `train.py` and `export.py` are killed 10
times each, and after every kill nothing the user wrote is touched, no
half-written export version is visible, and the next run goes on from what
the kill left; the last training run ends as a run never killed."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, cli_args, start_script, summary, toy_files
from rq_keras.serving.export import OUTPUTS_FILE
from rq_keras.training.run_dir import RunDir

pytestmark = pytest.mark.slow

KILLS = 10
# What a complete export version holds (the outputs file is written last).
NEEDED = ("saved_model.pb", "variables/variables.index", f"assets.extra/{OUTPUTS_FILE}")


def _digests(paths):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def _run(script, args, timeout=300):
    """`python SCRIPT ARGS` to the end: (exit status, stdout, seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout, time.monotonic() - started, done.stderr


def _kill_at(script, args, moment):
    """Starts `script`, SIGKILLs it `moment` seconds later; None when it was
    killed, else its exit status (it ended first)."""
    proc = start_script(script, args)
    try:
        return proc.wait(timeout=moment)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def _kill_when(script, args, ready, delay):
    """Starts `script`, waits until `ready()`, SIGKILLs it `delay` seconds
    later; None when it was killed, else its exit status."""
    proc = start_script(script, args)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and not ready():
            time.sleep(0.02)
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def _rewritten(path):
    """A `ready` for `_kill_when`: `path` written after this call."""
    before = path.stat().st_mtime_ns if path.exists() else None
    return lambda: path.exists() and path.stat().st_mtime_ns != before


def _moments(seed, seconds):
    return np.random.default_rng(seed).uniform(0.0, seconds, KILLS).round(2).tolist()


def test_train_py_killed_at_ten_moments_resumes_and_ends_as_an_unkilled_run(tmp_path):
    toy = toy_files(tmp_path / "toy")
    user = tmp_path / "notes.txt"
    user.write_text("the user's\n")
    guarded = _digests([*toy.values(), user])
    flags = ("--epochs", "3", "--batch-size", "64", "--seed", "1", "--verbose", "0")

    code, out, seconds, err = _run("train.py", cli_args(toy, tmp_path / "whole", *flags))
    assert code == 0, err[-2000:]
    expected = summary(out)["test"]

    run = tmp_path / "run"
    args = cli_args(toy, run, *flags)
    backup = run / "backup" / "chief" / "checkpoint"  # rewritten at each epoch's end
    finished = in_training = 0
    fresh = False  # after a finished run, the next attempt starts over
    # Odd kills at a moment of the whole run (start-up included), even ones
    # a moment after the attempt's next epoch backup (in training): a kill
    # during start-up loses the attempt's progress, so moments of the whole
    # run alone would rarely reach the later epochs.
    for k, moment in enumerate(_moments(2027, seconds)):
        attempt = [*args, "--overwrite"] if fresh else args
        if k % 2 == 0:
            status = _kill_at("train.py", attempt, moment)
        else:
            delay = moment / seconds * 1.5  # within about an epoch
            status = _kill_when("train.py", attempt, _rewritten(backup), delay)
        # an attempt ends killed, or finished (never failed: every state a
        # kill leaves is one the next attempt can go on from)
        assert status in (None, 0), f"exit {status} after kill {k}"
        # Finished: metrics.json written (a kill can land after that, while the
        # process winds down); the next attempt needs --overwrite then.
        fresh = (run / "metrics.json").is_file()
        assert fresh or status is None
        finished += fresh
        in_training += status is None and backup.is_file()
        assert _digests(guarded) == guarded  # the inputs and the user's file
        if run.exists():
            RunDir(run).inspect()  # a run's directory, its manifest readable
    code, out, _, err = _run("train.py", [*args, "--overwrite"] if fresh else args)
    assert code == 0, err[-2000:]
    got = summary(out)["test"]
    # the same batches and coins from each backup on: the figures of the run never killed
    assert got["mae"] == pytest.approx(expected["mae"], rel=1e-5)
    assert got["spearman"] == pytest.approx(expected["spearman"], abs=1e-6)
    # kills landed in training (a backup to resume from), not only at start-up
    assert in_training >= 4 and finished < KILLS, (in_training, finished)


def _complete_versions(base):
    """Every visible version (a numeric folder) with all its files; the names
    of the other entries."""
    versions, others = [], []
    for entry in sorted(base.iterdir()):
        if entry.name.isdigit():
            for need in (
                "saved_model.pb",
                "variables/variables.index",
                f"assets.extra/{OUTPUTS_FILE}",
            ):
                assert (entry / need).is_file(), f"{entry} is visible without {need}"
            versions.append(int(entry.name))
        else:
            others.append(entry.name)
    return versions, others


def _temporaries(base):
    return {p.name for p in base.iterdir() if p.name.startswith(".tmp-")}


def test_export_py_killed_at_ten_moments_never_shows_a_half_written_version(tmp_path):
    toy = toy_files(tmp_path / "toy")
    run = tmp_path / "run"
    flags = ("--epochs", "1", "--batch-size", "128", "--seed", "1", "--verbose", "0")
    code, _, _, err = _run("train.py", cli_args(toy, run, *flags))
    assert code == 0, err[-2000:]
    guarded = _digests([*run.rglob("*"), *toy.values()])
    base = tmp_path / "serving"
    args = ["--model-dir", run, "--export-base", base, "--check-rows", "64"]
    code, _, seconds, err = _run("export.py", args)
    assert code == 0, err[-2000:]

    mid_write = 0
    before = _temporaries(base)  # the killed exports' temporary folders so far
    for k, moment in enumerate(_moments(2028, seconds)):
        if k % 2 == 0:  # a moment of the whole export
            status = _kill_at("export.py", args, moment)
        else:  # a moment after it started writing its version
            new = lambda seen=before: _temporaries(base) - seen  # noqa: E731
            status = _kill_when("export.py", args, new, moment / 4)
        assert status in (None, 0), f"exit {status} after kill {k}"
        versions, others = _complete_versions(base)
        mid_write += status is None and bool(_temporaries(base) - before)
        before = _temporaries(base)
        assert versions == list(range(1, len(versions) + 1))
        assert _digests(guarded) == guarded  # the run it exports from
    assert mid_write >= 4, mid_write  # kills landed while a version was written
    code, _, _, err = _run("export.py", args)
    assert code == 0, err[-2000:]
    versions, others = _complete_versions(base)
    # the last export removed every temporary folder of the killed ones
    assert others in ([], [".rq_keras.lock"]), others
    import tensorflow as tf

    served = tf.saved_model.load(str(base / str(versions[-1])))
    assert "serving_default" in served.signatures
