"""Atomic file writes, importable without TensorFlow.

Every file rq_keras writes is written under a temporary name beside its
destination and renamed over it when complete (`os.replace`, atomic on one
file system): a reader never sees half a file, and a failed or killed write
leaves the previous file as it was. On an error the temporary file is
removed; a killed process leaves it behind under a name that says whose it
was (`NAME.tmp-PID`), or under a name its directory's owner knows (a run
directory's `NAME.tmp`, see `rq_keras.training.run_dir`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["atomic_path", "temporary_name", "write_json", "write_text"]


def temporary_name(path: str | os.PathLike) -> str:
    """The name a run directory's file is written through before it is renamed
    into place (`NAME.tmp`, beside it): a name the run's manifest owns
    (`rq_keras.training.run_dir`), so a run killed mid-write leaves nothing the
    next run would refuse."""
    return f"{os.path.basename(os.fspath(path))}.tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, tmp_name: str | None = None) -> Iterator[str]:
    """Yields a temporary path to write; it becomes `path` when the block
    ends without an exception and is removed otherwise.

    Args:
        path: the destination (its directory must exist).
        tmp_name: the temporary file's name in that directory (default
            `NAME.tmp-PID`).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    name = tmp_name or f"{os.path.basename(path)}.tmp-{os.getpid()}"
    tmp = os.path.join(directory, name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def write_text(path: str | os.PathLike, text: str, tmp_name: str | None = None) -> None:
    """Writes UTF-8 `text` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path, tmp_name) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def write_json(
    path: str | os.PathLike, doc: Any, tmp_name: str | None = None, indent: int | None = 2
) -> None:
    """Writes `doc` as JSON (numpy scalars as floats) atomically, newline-ended."""
    write_text(path, json.dumps(doc, indent=indent, default=float) + "\n", tmp_name)
