"""Atomic writes (`rq_keras.atomic`): all of a file or the previous one."""

import json
import os
import re

import pytest

from rq_keras.atomic import atomic_path, write_json, write_text


def test_a_finished_block_replaces_the_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with atomic_path(path) as tmp:
        # Unique across processes and hosts: PID, a random part, the host.
        assert re.fullmatch(
            rf"a\.txt\.tmp-{os.getpid()}-[0-9a-f]{{8}}-[\w.]+", os.path.basename(tmp)
        )
        with open(tmp, "w") as f:
            f.write("new")
        assert path.read_text() == "old"  # not before the block ends
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["a.txt"]


def test_a_failed_block_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path, tmp_name="a.txt.tmp") as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_text_and_json(tmp_path):
    write_text(tmp_path / "t.csv", "a,b\r\n1,2\n")
    assert (tmp_path / "t.csv").read_bytes() == b"a,b\r\n1,2\n"  # newlines as given
    np = pytest.importorskip("numpy")
    write_json(tmp_path / "d.json", {"x": np.float32(1.5), "n": [1, 2]}, indent=None)
    text = (tmp_path / "d.json").read_text()
    assert text.endswith("\n") and json.loads(text) == {"x": 1.5, "n": [1, 2]}
    assert sorted(os.listdir(tmp_path)) == ["d.json", "t.csv"]
