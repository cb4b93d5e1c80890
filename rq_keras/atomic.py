"""Writes that leave no mix of two states, importable without TensorFlow.

Atomic files: every file rq_keras writes is written under a temporary name beside its
destination and renamed over it when complete (`os.replace`, atomic on one
file system): a reader never sees half a file, and a failed or killed write
leaves the previous file as it was. On an error the temporary file is
removed; a killed process leaves it behind under a name that says whose it
was (`NAME.tmp-PID-RANDOM-HOST`, unique across the hosts sharing a file
system), or under a name its directory's owner knows (a run
directory's `NAME.tmp`, see `rq_keras.training.run_dir`).

One writer per directory: `DirectoryLock` holds an advisory lock on a run
directory or an export base for a process's life, so a second `train.py` or
`export.py` on it fails at once, naming the first.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

__all__ = [
    "LOCK_NAME",
    "DirectoryInUseError",
    "DirectoryLock",
    "atomic_path",
    "host_tag",
    "process_gone",
    "temporary_name",
    "unique_suffix",
    "write_json",
    "write_text",
]


def host_tag() -> str:
    """This host's name as temporary names carry it: every character but
    letters, digits, `.` and `_` as `_`."""
    import re
    import socket

    return re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname()) or "host"


def process_gone(pid: int) -> bool:
    """True when no process `pid` runs on this host; another user's process
    counts as running.

    On Windows `os.kill(pid, 0)` would terminate the process, so nothing
    counts as gone there.
    """
    if os.name == "nt":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it runs as another user
        return False
    return False


def unique_suffix() -> str:
    """`PID-RANDOM-HOST`: a temporary name's part that no other process, on this
    host or another sharing the file system, uses at the same time (`host_tag`)."""
    import secrets

    return f"{os.getpid()}-{secrets.token_hex(4)}-{host_tag()}"


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
            `NAME.tmp-PID-RANDOM-HOST`, `unique_suffix`).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    name = tmp_name or f"{os.path.basename(path)}.tmp-{unique_suffix()}"
    tmp = os.path.join(directory, name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        # A failed write() names no file: say which one (a full disk, say).
        raise OSError(err.errno, f"could not write {path}: {err.strerror}") from err
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


# --------------------------------------------------------- one writer per directory
LOCK_NAME = ".rq_keras.lock"


class DirectoryInUseError(RuntimeError):
    """Another process writes into the directory (it holds its lock), or a lock
    left there by a process of another host cannot be checked from here."""


def _holder_text(holder: dict[str, Any]) -> str:
    what = holder.get("what", "a process")
    return (
        f"{what} (pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')})"
    )


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        holder = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"what": "an unreadable lock"}  # a writer killed mid-write
    return holder if isinstance(holder, dict) else {"what": "an unreadable lock"}


class DirectoryLock:
    """One writer per directory: an advisory lock held for the process's life.

    `acquire` creates `directory` (if missing) and takes an exclusive `flock`
    on `directory/.rq_keras.lock`, then writes the holder into it: `what`,
    host, PID and start time. The operating system drops the lock when the
    process ends, however it ends, so:

    * a second process on a directory in use fails at once
      (`DirectoryInUseError` naming the holder);
    * a lock file left by a killed process of this host (its PID gone, or not
      holding the lock) is taken over, and `acquire` returns a line saying so;
    * a lock file written on another host is refused: whether its process
      still runs cannot be checked from here (and `flock` may not reach across
      hosts on a network file system); the message says to delete the file
      once no process on that host uses the directory.

    `release` (or leaving the `with` block) removes the file and the lock.

    Args:
        directory: the directory to hold.
        what: what holds it, for messages (`"train.py"`, `"export.py"`).
    """

    def __init__(self, directory: str | os.PathLike, what: str):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, LOCK_NAME)
        self.what = what
        self._fd: int | None = None
        self.notice: str | None = None

    def acquire(self) -> str | None:
        """Takes the lock; returns a line when it took over a stale lock file.

        Raises:
            DirectoryInUseError: another process holds it, or a lock file of
                another host is there.
            OSError: the directory cannot be created or the lock file written
                (the message names the path).
        """
        import fcntl

        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this DirectoryLock")
        os.makedirs(self.directory, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise DirectoryInUseError(
                    f"{self.directory} is in use by {_holder_text(holder)}: one process writes "
                    f"into it at a time; wait for that one to end, or use another directory"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder before us may have removed the file between our open
            # and our flock: hold the file that is at the path now.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            notice = self._take(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.notice = notice
        return notice

    def _take(self, fd: int) -> str | None:
        import datetime
        import socket

        previous = _read_holder(fd)
        host = socket.gethostname()
        notice = None
        if previous and "host" not in previous:
            notice = f"replaced the unreadable lock file {self.path} (no process held it)"
        elif previous:
            if previous.get("host") != host:
                raise DirectoryInUseError(
                    f"{self.path} was left by {_holder_text(previous)}; whether that process "
                    f"still writes into {self.directory} cannot be checked from host {host}. "
                    f"If no process on {previous.get('host', 'that host')} uses it, delete "
                    f"{self.path} and run again"
                )
            pid = previous.get("pid")
            alive = isinstance(pid, int) and pid > 0 and not process_gone(pid)
            state = "still runs but does not hold it" if alive else "is gone"
            notice = f"took over the lock of {self.directory} left by {_holder_text(previous)}"
            notice += f" (that process {state})"
        holder = {
            "what": self.what,
            "host": host,
            "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        data = (json.dumps(holder) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)
        return notice

    def release(self) -> None:
        """Removes the lock file and drops the lock (nothing if not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                os.remove(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
