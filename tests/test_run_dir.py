"""The run-directory contract: what a run may delete, and what survives a kill
(rq_keras.training.run_dir, through train() and train.py)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, TINY, start_script, toy_files
from conftest import cli_args as _cli_args
from conftest import summary as _summary
from conftest import train_config as _config
from rq_keras.cli.train import train_main
from rq_keras.training import RunExistsError, train
from rq_keras.training.callbacks import EarlyStoppingCheckpoint, read_history
from rq_keras.training.run_dir import ARTIFACTS, MANIFEST, OWNED, RunDir, RunDirError

# Trains, exports or serves: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow


def _claimed(path):
    run = RunDir(path)
    run.inspect()
    run.claim()
    return run


def test_a_new_or_empty_directory_becomes_a_run_directory(tmp_path):
    for path in (tmp_path / "new" / "deeper", tmp_path / "empty"):
        if path.name == "empty":
            path.mkdir()
        run = _claimed(path)
        doc = json.loads((path / MANIFEST).read_text())
        assert doc["entries"] == sorted(OWNED) and run.listed == set(OWNED)
        assert sorted(p.name for p in path.iterdir()) == [MANIFEST]


def test_a_folder_it_did_not_make_is_refused_untouched(tmp_path):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.csv").write_text("a,y\n1,2\n")
    (project / "config.yaml").write_text("mine: true\n")
    with pytest.raises(RunDirError, match=rf"{project} is not empty \(config.yaml, data\)"):
        RunDir(project).inspect()
    assert (project / "data" / "train.csv").read_text() == "a,y\n1,2\n"
    assert sorted(p.name for p in project.iterdir()) == ["config.yaml", "data"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a directory"):
        RunDir(tmp_path / "file").inspect()


def test_remove_deletes_only_listed_names(tmp_path):
    run = _claimed(tmp_path / "run")
    for name in ARTIFACTS:
        target = run / name
        if "." in name:
            target.write_text("x")
        else:
            (target / "inner").mkdir(parents=True)
    (run / "notes.txt").write_text("the user's")
    (run / "mine").mkdir()
    assert sorted(run.remove()) == sorted(ARTIFACTS)
    assert sorted(p.name for p in run.path.iterdir()) == sorted([MANIFEST, "mine", "notes.txt"])
    with pytest.raises(RunDirError, match=r"\['notes.txt'\] are not listed"):
        run.remove(["notes.txt"])


def test_a_users_file_under_a_run_name_is_refused(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    (path / "plots").mkdir()
    (path / "plots" / "mine.png").write_text("x")
    # Not a run directory at all: refused as not empty.
    with pytest.raises(RunDirError, match="holds no rq_keras_run.json"):
        RunDir(path).inspect()
    # A run directory whose manifest does not list `plots` (it existed before).
    (path / "plots").rename(tmp_path / "plots")
    _claimed(path)
    doc = json.loads((path / MANIFEST).read_text())
    doc["entries"].remove("plots")
    (path / MANIFEST).write_text(json.dumps(doc))
    (tmp_path / "plots").rename(path / "plots")
    with pytest.raises(RunDirError, match=r"holds \['plots'\], which its rq_keras_run.json"):
        RunDir(path).inspect()
    assert (path / "plots" / "mine.png").exists()


def test_an_edited_manifest_cannot_reach_outside(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    path = tmp_path / "run"
    _claimed(path)
    (path / "notes.txt").write_text("keep too")
    doc = {"entries": ["../victim.txt", "notes.txt", "/", "metrics.json"]}
    (path / MANIFEST).write_text(json.dumps(doc))
    (path / "metrics.json").write_text("{}")
    run = RunDir(path)
    run.inspect()
    assert run.listed == {"metrics.json"}
    assert run.remove() == ["metrics.json"]
    assert victim.read_text() == "keep" and (path / "notes.txt").read_text() == "keep too"


@pytest.mark.parametrize("text", ["", "{not json", '{"entries": "all"}', "[1, 2]"])
def test_a_damaged_manifest_is_named(tmp_path, text):
    path = tmp_path / "run"
    path.mkdir()
    (path / MANIFEST).write_text(text)
    with pytest.raises(RunDirError, match=rf"{path / MANIFEST} is not a"):
        RunDir(path).inspect()


# ------------------------------------------------------- through train()
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_files(tmp_path_factory.mktemp("toy"))


def _unfinished_run(out, config_text):
    """A run directory as a killed run leaves it: manifest, config, a backup."""
    run = RunDir(out)
    run.inspect()
    run.claim()
    (out / "backup" / "chief").mkdir(parents=True)
    (out / "backup" / "chief" / "checkpoint").write_text("x")
    (out / "config.yaml").write_text(config_text)


def test_unfinished_run_of_another_config_is_refused(toy, tmp_path):
    out = tmp_path / "run"
    _unfinished_run(out, yaml.safe_dump(_config(toy, epochs=9).to_dict()))
    with pytest.raises(RunExistsError, match=r"another config \(differs in \['epochs'\]\)"):
        train(_config(toy), out, verbose=0)


def test_cli_refuses_a_folder_it_did_not_make(toy, tmp_path, capsys):
    """A project folder (here the one holding the training file) is left as it is."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    train_file = project / "data" / "train.parquet"
    train_file.write_bytes(toy["train"].read_bytes())
    (project / "config.yaml").write_text("the user's: true\n")
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    for extra in ((), ("--overwrite",)):
        args = _cli_args(toy, project, *extra)
        args[args.index("--train") + 1] = str(train_file)
        assert train_main(args) == 2
        err = capsys.readouterr().err
        assert f"--output-dir {project} is not empty" in err and "rq_keras_run.json" in err
        assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before


class _Killed(BaseException):
    """Stands for SIGKILL: no `except Exception` handler runs, nothing is cleaned."""


def test_a_kill_after_training_resumes_without_training_again(toy, tmp_path, capsys, monkeypatch):
    from rq_keras.training import run as training_module

    # Early stopping ends this run at epoch 2 (no later epoch improves by 1e9).
    config = _config(toy, epochs=6, patience=1, min_delta=1e9)
    out = tmp_path / "run"

    def kill_at(target):
        original = training_module.write_run_json

        def write(path, doc):
            if path.name == target:
                raise _Killed(target)
            return original(path, doc)

        monkeypatch.setattr(training_module, "write_run_json", write)

    # 1. Killed after fit returned, before training was recorded as finished.
    kill_at("trained.json")
    with pytest.raises(_Killed):
        train(config, out, verbose=2)
    monkeypatch.undo()
    assert sorted(read_history(str(out / "history.csv"))) == [1, 2]
    assert any((out / "backup").rglob("checkpoint"))  # kept until the outputs exist
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    capsys.readouterr()

    # 2. The rerun trains no epoch (early stopping had ended training); then a
    #    kill during the evaluation, after training was recorded.
    kill_at("metrics.json")
    with pytest.raises(_Killed):
        train(config, out, verbose=2)
    monkeypatch.undo()
    assert "Epoch " not in capsys.readouterr().out
    trained = json.loads((out / "trained.json").read_text())
    assert trained["epochs_run"] == 2 and trained["best_epoch"] == 1

    # 3. The rerun goes straight to the evaluation, with the trained weights.
    result = train(config, out, verbose=2)
    assert "Epoch " not in capsys.readouterr().out
    assert result.resumed and result.epochs_run == 2 and result.best_epoch == 1
    assert result.weights_digest == trained["weights_digest"]
    assert json.loads((out / "metrics.json").read_text())["test"]["rows"] == 800
    assert not (out / "backup").exists()

    # A damaged backup is named, not silently restarted from epoch 1.
    for index in (damaged / "backup").rglob("*.index"):
        index.write_bytes(index.read_bytes()[:10])
    with pytest.raises(RunDirError, match=r"backup of the unfinished run .* cannot be read"):
        train(config, damaged, verbose=0)
    assert sorted(read_history(str(damaged / "history.csv"))) == [1, 2]


def test_damaged_run_files_are_named(toy, tmp_path, capsys):
    out = tmp_path / "run"
    _unfinished_run(out, "")
    assert train_main(_cli_args(toy, out)) == 2
    assert f"{out / 'config.yaml'} does not hold a run config" in capsys.readouterr().err
    (out / "config.yaml").write_text("epochs: [unclosed\n")
    assert train_main(_cli_args(toy, out)) == 2
    assert f"{out / 'config.yaml'} cannot be read" in capsys.readouterr().err

    state = tmp_path / "early_stopping.json"
    state.write_text('{"best": 1.5, "best_ep')
    callback = EarlyStoppingCheckpoint(str(tmp_path / "best"), str(state))
    with pytest.raises(ValueError, match=rf"early-stopping state {state} cannot be read"):
        callback.on_train_begin()
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,val_mae\n1,2.5,1.0\n2,2.")
    with pytest.raises(ValueError, match=rf"training history {history} cannot be read.*line 3"):
        read_history(str(history))


def test_cli_resumes_after_sigkill(toy, tmp_path, capsys):
    """A run killed mid-training resumes from its last finished epoch and ends
    as a run never stopped."""
    out = tmp_path / "killed"
    args = _cli_args(toy, out, "--epochs", "4", "--batch-size", "64", "--seed", "1")
    proc = start_script("train.py", args)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            # The backup's index file is written last: an epoch is safe.
            if any(p.name == "checkpoint" for p in (out / "backup").rglob("*")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = len(read_history(str(out / "history.csv")))
    assert 1 <= done_before < 4 and not (out / "metrics.json").exists()

    # The same command again (in this process: a new process all the same for
    # the killed run, without paying for another TensorFlow start).
    capsys.readouterr()
    assert train_main(args) == 0, capsys.readouterr().err[-2000:]
    resumed = capsys.readouterr().out
    summary = _summary(resumed)
    assert summary["resumed"] is True and summary["epochs_run"] == 4
    assert f"Epoch {done_before + 1}/4" in resumed
    assert "Epoch 1/4" not in resumed
    assert sorted(read_history(str(out / "history.csv"))) == [1, 2, 3, 4]

    whole = _cli_args(toy, tmp_path / "whole", "--epochs", "4", "--batch-size", "64", "--seed", "1")
    assert train_main(whole) == 0
    expected = _summary(capsys.readouterr().out)["test"]
    got = summary["test"]
    # the same batches and coins from the backup on: the uninterrupted run's figures
    assert got["mae"] == pytest.approx(expected["mae"], rel=1e-5)
    assert got["spearman"] == pytest.approx(expected["spearman"], abs=1e-6)


def _workers(args, scratch):
    """train.py as two MultiWorkerMirroredStrategy workers on 127.0.0.1, with
    their temporary files under `scratch` (a killed worker cannot remove its
    own)."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_CONFIG": json.dumps(task),
            "TMPDIR": str(scratch),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(REPO / "train.py"), *args],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def test_cli_multi_worker_killed_and_resumed(toy, tmp_path):
    """Two workers train in lockstep, only the chief writes; killed after an
    epoch, both resume from the chief's backup and agree on every decision."""
    out = tmp_path / "mw"
    # No epoch after the first improves by 1e9: a worker that forgot the
    # early-stopping state would save "best" weights (a collective) alone.
    args = _cli_args(
        toy, out, "--epochs", "4", "--strategy", "multi_worker", "--set", "min_delta=1e9"
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    procs = _workers(args, scratch)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and all(p.poll() is None for p in procs):
            if any(p.name == "checkpoint" for p in (out / "backup").rglob("*")):
                break
            time.sleep(0.05)
        assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-3000:]
    finally:
        for proc in reversed(procs):  # the other worker first, mid-epoch
            proc.kill()
            proc.wait()
            proc.communicate()
    done_before = len(read_history(str(out / "history.csv")))
    assert 1 <= done_before < 4 and not (out / "metrics.json").exists()

    procs = _workers(args, scratch)
    outputs = [p.communicate(timeout=400) for p in procs]
    for proc, (_, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-3000:]
    chief, worker = (_summary(stdout) for stdout, _ in outputs)
    assert chief["chief"] is True and worker["chief"] is False
    assert chief["weights_digest"] == worker["weights_digest"]
    assert chief["resumed"] is True and chief["epochs_run"] == 4 and chief["best_epoch"] == 1
    assert f"Epoch {done_before + 1}/4" in outputs[0][0] and "Epoch 1/4" not in outputs[0][0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["test"]["rows"] == 800
    assert not [p for p in out.rglob("*") if "workertemp" in p.name]
    # The finished worker removed its scratch (the killed one's is left).
    assert len(list(scratch.glob("rq_keras_worker_*"))) == 1


def test_a_dataset_run_builds_its_splits_before_replacing_data(tmp_path, capsys):
    """A registered dataset's splits go through data.staging; a typo in
    --raw-dir with --overwrite leaves the finished run whole."""
    out = tmp_path / "cdnow"
    args = [
        "--dataset", "cdnow", "--output-dir", str(out), "--epochs", "1",
        "--steps-per-epoch", "2", "--batch-size", "256", "--verbose", "0",
        "--set", "quantizer.codebook_size=4",
    ]  # fmt: skip
    for key, value in TINY.items():
        args += ["--set", f"model.{key}={value}"]
    assert train_main(args) == 0, capsys.readouterr().err[-2000:]
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "feature_spec.yaml", "summary.json", "test.parquet", "train.parquet",
        "validation.parquet",
    ]  # fmt: skip
    assert not (out / "data.staging").exists()
    finished = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert train_main([*args, "--overwrite", "--raw-dir", str(tmp_path / "typo")]) == 2
    assert "typo" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == finished


def test_held_out_files_come_from_the_run_config(tmp_path):
    """export.load_run's held-out rows: one reading of a run's layout."""
    from rq_keras.config import TrainConfig
    from rq_keras.training.run_dir import held_out_files

    run = tmp_path / "run"
    run.mkdir()
    assert held_out_files(run) == []
    given = TrainConfig(train_files=["a.parquet"], feature_spec="s.yaml")
    (run / "config.yaml").write_text(yaml.safe_dump(given.to_dict()))
    assert held_out_files(run) == []
    with_validation = TrainConfig(
        train_files=["a.parquet"], validation_files=["v.parquet"], feature_spec="s.yaml"
    )
    (run / "config.yaml").write_text(yaml.safe_dump(with_validation.to_dict()))
    assert held_out_files(run) == ["v.parquet"]
    tested = TrainConfig(
        train_files=["a"], validation_files=["v"], test_files=["t"], feature_spec="s"
    )
    (run / "config.yaml").write_text(yaml.safe_dump(tested.to_dict()))
    assert held_out_files(run) == ["t"]
    (run / "config.yaml").write_text(yaml.safe_dump(TrainConfig(dataset="cdnow").to_dict()))
    (run / "data").mkdir()
    for name in ("train.parquet", "test.parquet", "test.json"):
        (run / "data" / name).write_text("")
    assert held_out_files(run) == [str(run / "data" / "test.parquet")]
    (run / "config.yaml").write_text("- a list\n")
    with pytest.raises(RunDirError, match="does not hold a run config"):
        held_out_files(run)
    (run / "config.yaml").write_text(yaml.safe_dump({"test_files": ["t.csv"], "epochz": 3}))
    assert held_out_files(run) == ["t.csv"]  # only the keys it needs are read
