"""Progress lines for long passes over input rows (training's checked passes,
predict's scoring), importable without TensorFlow.

A pass over millions of rows takes minutes; a `RowTicker` prints how far it
is, at most once every `every` seconds, so a log stays short and a terminal
shows life:

    checking training rows: 2,097,152 so far (412,530 rows/s)
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RowTicker"]


class RowTicker:
    """Counts rows and emits a line at most every `every` seconds.

    Args:
        emit: prints one line (`print` to stdout or stderr).
        what: the line's start, e.g. `"checking training rows"`.
        every: seconds between two lines (the first comes after `every`).
        clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        what: str,
        every: float = 10.0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        if not every > 0:
            raise ValueError(f"`every` must be > 0 seconds, got {every}")
        self.emit = emit
        self.what = what
        self.every = float(every)
        self.clock = clock
        self.rows = 0
        self.start = self.last = clock()

    def add(self, rows: int, where: str | None = None) -> None:
        """`rows` more rows done (`where`: e.g. the file being read)."""
        self.rows += int(rows)
        self.at(self.rows, where)

    def at(self, rows: int, where: str | None = None) -> None:
        """`rows` rows done so far."""
        self.rows = int(rows)
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        rate = self.rows / max(now - self.start, 1e-9)
        self.emit(
            f"{self.what}: {self.rows:,} so far ({rate:,.0f} rows/s)"
            + (f", reading {where}" if where else "")
        )
