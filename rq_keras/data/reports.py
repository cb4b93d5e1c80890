"""What reading found: the bad-row error and the per-file and total reports (numpy only)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["DataReport", "FileReport", "MalformedDataError"]

_MAX_LISTED = 5


class MalformedDataError(ValueError):
    """A bad row under `on_bad_rows="fail"`, naming the file, row and reason;
    or a file no row policy can read (two columns of one name).

    Attributes:
        row: the bad row's number (1-based, the header not counted), or None
            when the file itself is at fault: `on_bad_rows="skip"` would not
            help, and the command lines suggest it only when it would.
    """

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row


@dataclasses.dataclass
class FileReport:
    """What reading one file found.

    Attributes:
        path: the file.
        rows_read: data rows read (the header not counted).
        rows_kept: rows that reached the output.
        bad_rows: reason -> number of rows dropped for it.
        first_bad_rows: reason -> the first row numbers (1-based).
        non_finite: numeric feature -> values of kept rows that were NaN,
            infinite or beyond float32 and took the spec default.
        first_non_finite_rows: feature -> the first row numbers (1-based).
    """

    path: str
    rows_read: int = 0
    rows_kept: int = 0
    bad_rows: dict[str, int] = dataclasses.field(default_factory=dict)
    first_bad_rows: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    non_finite: dict[str, int] = dataclasses.field(default_factory=dict)
    first_non_finite_rows: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        return sum(self.bad_rows.values())

    def add_bad(self, reason: str, rows: np.ndarray) -> None:
        _count(self.bad_rows, self.first_bad_rows, reason, rows)

    def add_non_finite(self, feature: str, rows: np.ndarray) -> None:
        _count(self.non_finite, self.first_non_finite_rows, feature, rows)


def _count(counts: dict, first: dict, key: str, rows: np.ndarray) -> None:
    if rows.size == 0:
        return
    counts[key] = counts.get(key, 0) + int(rows.size)
    listed = first.setdefault(key, [])
    listed.extend(int(r) for r in rows[: max(0, _MAX_LISTED - len(listed))])


@dataclasses.dataclass
class DataReport:
    """What reading a set of files found, per file and in total."""

    files: list[FileReport] = dataclasses.field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_kept(self) -> int:
        return sum(f.rows_kept for f in self.files)

    @property
    def rows_dropped(self) -> int:
        return sum(f.rows_dropped for f in self.files)

    @property
    def non_finite(self) -> dict[str, int]:
        """Numeric feature -> NaN, infinite or beyond-float32 values that took
        the spec default, over every file."""
        out: dict[str, int] = {}
        for f in self.files:
            for name, count in f.non_finite.items():
                out[name] = out.get(name, 0) + count
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_dropped": self.rows_dropped,
            "non_finite": self.non_finite,
            "files": [dataclasses.asdict(f) | {"rows_dropped": f.rows_dropped} for f in self.files],
        }

    def summary(self) -> str:
        """One line per file and reason of drops or defaults, for logs."""
        lines = [f"{self.rows_kept} of {self.rows_read} rows kept"]
        for f in self.files:
            for reason, count in f.bad_rows.items():
                rows = ", ".join(map(str, f.first_bad_rows[reason]))
                lines.append(f"  {f.path}: {count} row(s) dropped, {reason} (rows {rows}, ...)")
            for name, count in f.non_finite.items():
                rows = ", ".join(map(str, f.first_non_finite_rows[name]))
                lines.append(
                    f"  {f.path}: column {name!r}: {count} NaN, infinite or beyond-float32 "
                    f"value(s) took the spec default (rows {rows}, ...)"
                )
        return "\n".join(lines)
