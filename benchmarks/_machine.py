"""What the benchmarks report about the machine they ran on."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what `platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


NOTES_MARKER = (
    "<!-- Hand-written notes below this line are kept when the benchmark rewrites the file. -->"
)


def write_results(path: str, text: str) -> None:
    """Writes a benchmark's Markdown results, keeping the notes of the old file.

    Everything below `NOTES_MARKER` in an existing file is hand-written and
    survives a re-run; the table above it is replaced by `text`.
    """
    import os

    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        if NOTES_MARKER in old:
            text += "\n" + NOTES_MARKER + old.split(NOTES_MARKER, 1)[1]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
