"""One writer per run directory and per export base (rq_keras.atomic.DirectoryLock),
with real processes: a holder, a second writer, a killed holder, another host."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO
from rq_keras.atomic import LOCK_NAME, DirectoryInUseError, DirectoryLock

_HOLD = """
import sys, time
from rq_keras.atomic import DirectoryLock
lock = DirectoryLock(sys.argv[1], "the test's holder")
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def _holder(directory):
    """A process holding `directory`'s lock until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(directory)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        start = time.monotonic()
        with pytest.raises(DirectoryInUseError) as err:
            DirectoryLock(tmp_path / "run", "a second writer").acquire()
        assert time.monotonic() - start < 5
        message = str(err.value)
        assert f"the test's holder (pid {proc.pid} on host {socket.gethostname()}" in message
        assert "wait for that one to end, or use another directory" in message
    finally:
        _kill(proc)


def test_a_killed_holders_lock_is_taken_over_and_said_so(tmp_path):
    proc = _holder(tmp_path)
    _kill(proc)
    left = json.loads((tmp_path / LOCK_NAME).read_text())
    assert left["pid"] == proc.pid and left["host"] == socket.gethostname()
    lock = DirectoryLock(tmp_path, "the next run")
    notice = lock.acquire()
    assert f"left by the test's holder (pid {proc.pid}" in notice
    assert notice.endswith("(that process is gone)") and lock.notice == notice
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists() and not lock.held


def test_a_lock_of_another_host_is_reported_with_how_to_clear_it(tmp_path):
    doc = {"what": "train.py", "host": "elsewhere", "pid": 4321, "started": "2026-01-01"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(doc))
    with pytest.raises(DirectoryInUseError) as err:
        DirectoryLock(tmp_path, "train.py").acquire()
    message = str(err.value)
    assert "left by train.py (pid 4321 on host elsewhere" in message
    assert f"If no process on elsewhere uses it, delete {tmp_path / LOCK_NAME}" in message
    assert json.loads((tmp_path / LOCK_NAME).read_text()) == doc  # left as it was


def test_an_unreadable_lock_file_is_replaced_and_a_lock_is_reusable(tmp_path):
    (tmp_path / LOCK_NAME).write_text('{"what": "train.py", "ho')  # a writer killed mid-write
    with DirectoryLock(tmp_path, "first") as lock:
        assert "replaced the unreadable lock file" in lock.notice
        with pytest.raises(RuntimeError, match="already held"):
            lock.acquire()
    with DirectoryLock(tmp_path, "second") as again:
        assert again.notice is None and again.held
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_a_second_train_py_on_a_run_directory_fails_and_a_killed_runs_lock_is_taken_over(
    tmp_path,
):
    from conftest import cli_args, toy_files

    toy = toy_files(tmp_path)
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [sys.executable, str(REPO / "train.py"), *cli_args(toy, out, "--epochs", "1")]
    first = subprocess.Popen(args + ["--epochs", "50"], cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / LOCK_NAME).exists() or not (out / LOCK_NAME).read_text():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.2)
        second = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
        assert second.returncode == 4, second.stderr[-2000:]
        assert f"is in use by train.py --output-dir {out} (pid {first.pid}" in second.stderr
    finally:
        _kill(first)
    # The killed run's lock file is left; the next run takes it over and says so.
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == first.pid
    third = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"took over the lock of {out} left by train.py" in third.stdout
    assert f"(pid {first.pid}" in third.stdout
    assert (out / "metrics.json").is_file() and not (out / LOCK_NAME).exists()


def test_export_py_into_a_base_in_use_fails_at_once(tmp_path):
    proc = _holder(tmp_path / "serving")
    try:
        done = subprocess.run(
            [sys.executable, str(REPO / "export.py"), "--model-dir", str(tmp_path / "none"),
             "--export-base", str(tmp_path / "serving")],
            cwd=REPO, capture_output=True, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )  # fmt: skip
    finally:
        _kill(proc)
    assert done.returncode == 4, done.stderr[-2000:]
    assert f"is in use by the test's holder (pid {proc.pid}" in done.stderr
