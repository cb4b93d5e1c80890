"""What a run prints: phase lines with their durations, progress lines of long
passes over the inputs, Keras' verbosity."""

from __future__ import annotations

import sys
import time

from rq_keras.data.progress import RowTicker

__all__ = ["PROGRESS_SECONDS", "Progress", "rows_text", "verbosity"]


# Seconds between two progress lines of a long pass over the inputs.
PROGRESS_SECONDS = 10.0


class Progress:
    """Prints what the run is doing before and around Keras' epoch lines.

    `say(text, since=True)` appends the seconds since the previous line.
    """

    def __init__(self, on: bool):
        self.on = on
        self._last = time.perf_counter()

    def __call__(self, text: str, since: bool = False) -> None:
        now = time.perf_counter()
        if self.on:
            print(f"{text} in {now - self._last:.1f} s" if since else text, flush=True)
        self._last = now

    def rows(self, what: str):
        """`on_chunk(rows, path)` for a long pass: an indented line every
        `PROGRESS_SECONDS`."""
        if not self.on:
            return None
        say = lambda line: print("  " + line, flush=True)  # noqa: E731
        return RowTicker(say, what, every=PROGRESS_SECONDS).add


def rows_text(report) -> str:
    """Rows kept, and what was skipped or defaulted (`data_report.json` has the rows)."""
    notes = []
    if report.rows_dropped:
        notes.append(f"{report.rows_dropped:,} bad rows skipped")
    defaulted = sum(report.non_finite.values())
    if defaulted:
        notes.append(f"{defaulted:,} NaN or infinite feature values took the default")
    return f"{report.rows_kept:,}" + (f" ({'; '.join(notes)})" if notes else "")


def verbosity(verbose) -> int:
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)
