"""Writes on a full file system (a small tmpfs, mounted where the test may: root
with CAP_SYS_ADMIN) fail naming the path and the cause, leave the previous file
as it was and no temporary file behind."""

import errno
import os
import subprocess

import pytest

from rq_keras.atomic import write_text


@pytest.fixture
def small_fs(tmp_path):
    """A 256 KiB tmpfs at tmp_path/fs, unmounted afterwards."""
    root = tmp_path / "fs"
    root.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(root)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


def test_an_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(small_fs):
    path = small_fs / "metrics.json"
    path.write_text("the previous run's\n")
    with pytest.raises(OSError) as err:
        write_text(path, "x" * (1 << 20))  # 1 MiB into 256 KiB
    assert err.value.errno == errno.ENOSPC
    assert f"could not write {path}" in str(err.value) and "No space left" in str(err.value)
    assert path.read_text() == "the previous run's\n"
    assert os.listdir(small_fs) == ["metrics.json"]


@pytest.mark.slow
def test_an_export_into_a_full_disk_fails_naming_the_path_and_leaves_nothing(small_fs, tmp_path):
    from conftest import TINY_MODEL, TOY_SPEC, toy_frame
    from rq_keras import ResidualQuantizer
    from rq_keras.data import write_table
    from rq_keras.features.preprocessing import FeaturePreprocessor
    from rq_keras.models.rq_reg import build_model
    from rq_keras.serving.errors import ExportError
    from rq_keras.serving.export import export_model

    train = tmp_path / "train.parquet"
    frame = toy_frame(300, 0)
    write_table(frame, TOY_SPEC, train)
    quantizer = ResidualQuantizer(3, 8, clip_min=0).fit(frame["y"].to_numpy())
    model = build_model(TOY_SPEC, FeaturePreprocessor(TOY_SPEC).adapt(train), quantizer, TINY_MODEL)
    (small_fs / "1").mkdir()  # a version already served, to keep
    (small_fs / "1" / "saved_model.pb").write_bytes(b"served")
    with pytest.raises((ExportError, OSError)) as err:
        export_model(model, TOY_SPEC, small_fs, check=False)
    message = str(err.value)
    assert str(small_fs) in message and "space" in message.lower(), message
    assert sorted(os.listdir(small_fs)) == ["1"]  # no temporary directory, no lock file
    assert (small_fs / "1" / "saved_model.pb").read_bytes() == b"served"


def _leftovers(root):
    """Temporary files or folders a failed write could leave under `root`."""
    marks = ("_temp", ".tempstate", "checkpoint.tmp", ".tmp-", "model.tmp")
    return [p for p in root.rglob("*") if any(m in p.name for m in marks)]


@pytest.mark.slow
def test_training_that_fills_the_disk_fails_naming_the_file_and_resumes_with_room(
    small_fs, tmp_path, capsys
):
    """The disk fills during training (a checkpoint or the TensorBoard log):
    exit 2 naming the file and the cause, no temporary left, the user's file
    untouched; with room again the same command finishes as a run that never
    failed."""
    from conftest import cli_args, summary, toy_files
    from rq_keras.cli.train import train_main

    toy = toy_files(tmp_path / "toy")
    (small_fs / "notes.txt").write_text("the user's\n")
    subprocess.run(["mount", "-o", "remount,size=560k", str(small_fs)], check=True)
    out = small_fs / "run"
    args = cli_args(toy, out, "--epochs", "3", "--batch-size", "64", "--seed", "1")
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert "train.py: error:" in err and "No space left on device" in err, err[-2000:]
    assert str(out) in err and "{{function_node" not in err and "[Op:" not in err
    assert _leftovers(out) == []
    assert (small_fs / "notes.txt").read_text() == "the user's\n"

    subprocess.run(["mount", "-o", "remount,size=16m", str(small_fs)], check=True)
    assert train_main(args) == 0, capsys.readouterr().err[-2000:]
    resumed = summary(capsys.readouterr().out)
    assert _leftovers(out) == []
    whole = cli_args(toy, tmp_path / "whole", "--epochs", "3", "--batch-size", "64", "--seed", "1")
    assert train_main(whole) == 0
    expected = summary(capsys.readouterr().out)
    assert resumed["test"]["mae"] == pytest.approx(expected["test"]["mae"], rel=1e-5)


# ------------------------------------------------------- read-only targets
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run (1 epoch) to export and score from, and its toy files."""
    from conftest import toy_files, train_config
    from rq_keras.training import train

    root = tmp_path_factory.mktemp("finished")
    toy = toy_files(root / "toy")
    train(train_config(toy, epochs=1, seed=0), root / "run", verbose=0)
    return root / "run", toy


@pytest.fixture
def readonly_fs(small_fs):
    """`small_fs` holding a user's file and a served version, then remounted read-only."""
    (small_fs / "notes.txt").write_text("the user's\n")
    (small_fs / "serving" / "1").mkdir(parents=True)
    (small_fs / "serving" / "1" / "saved_model.pb").write_bytes(b"served")
    done = subprocess.run(
        ["mount", "-o", "remount,ro", str(small_fs)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {done.stderr.strip()}")
    before = {p: p.read_bytes() for p in small_fs.rglob("*") if p.is_file()}
    yield small_fs
    assert {p: p.read_bytes() for p in small_fs.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_read_only_targets_fail_naming_the_path_and_the_cause(
    readonly_fs, finished, tmp_path, capsys
):
    from conftest import cli_args
    from rq_keras.cli.export import export_main
    from rq_keras.cli.predict import predict_main
    from rq_keras.cli.train import train_main

    run, toy = finished
    cause = "Read-only file system"
    assert train_main(cli_args(toy, readonly_fs / "run", "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert "train.py: error:" in err and str(readonly_fs / "run") in err and cause in err, err

    base = readonly_fs / "serving"
    assert export_main(["--model-dir", str(run), "--export-base", str(base)]) == 2
    err = capsys.readouterr().err
    assert "export.py: error:" in err and str(base) in err and cause in err, err

    out = readonly_fs / "scores.parquet"
    code = predict_main(
        ["--model-dir", str(run), "--input", str(toy["test"]), "--output", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(out) in err and cause in err, err


@pytest.mark.slow
def test_scoring_into_a_full_disk_fails_naming_the_output_and_leaves_the_old_one(
    small_fs, finished, tmp_path, capsys
):
    import pandas as pd

    from conftest import toy_frame
    from rq_keras.cli.predict import predict_main

    run, _ = finished
    rows = tmp_path / "rows.parquet"
    toy_frame(20_000, 3).drop(columns=["y"]).to_parquet(rows, index=False)  # ~2 MB of scores
    out = small_fs / "scores.csv"
    out.write_text("the previous scores\n")
    code = predict_main(
        ["--model-dir", str(run), "--input", str(rows), "--output", str(out), "--overwrite"]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(out) in err and "No space left on device" in err, err
    assert out.read_text() == "the previous scores\n"
    assert sorted(os.listdir(small_fs)) == ["scores.csv"]
    assert pd.read_parquet(rows).shape[0] == 20_000  # the input untouched
