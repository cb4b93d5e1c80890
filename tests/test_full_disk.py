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
