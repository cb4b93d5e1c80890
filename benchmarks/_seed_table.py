"""The Markdown table of the seed benchmarks (`optimizer_quality.py`,
`keras_versions.py`): one row per (group, seed) cell of a CDNOW run, then
each group's mean +- std."""

from __future__ import annotations

import statistics


def mean_std(values: list[float], fmt: str) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{fmt.format(statistics.mean(values))} +- {fmt.format(std).lstrip('+')}"


def seed_table(rows: list[dict], key: str, groups, figures, seconds: tuple[str, str]) -> str:
    """`rows`: dicts with `key` (the group), `seed`, each figure's label, `levels
    NLL - marginal`, `epochs (best)` and the `seconds` column (name, format).
    `figures`: (label, metrics key, format, offset) tuples."""
    labels = [label for label, _, _, _ in figures]
    fmt = {label: f for label, _, f, _ in figures}
    seconds_name, seconds_fmt = seconds
    head = [key, "seed", *labels, "levels NLL - marginal", "epochs (best)", seconds_name]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [r[key], str(r["seed"])]
        cells += [fmt[label].format(r[label]) for label in labels]
        cells.append(", ".join(f"{d:+.3f}" for d in r["levels NLL - marginal"]))
        cells += [r["epochs (best)"], seconds_fmt.format(r[seconds_name])]
        lines.append("| " + " | ".join(cells) + " |")
    for group in groups:
        mine = [r for r in rows if r[key] == group]
        if not mine:
            continue
        cells = [f"**{group}** mean +- std", str(len(mine))]
        cells += [mean_std([r[label] for r in mine], fmt[label]) for label in labels]
        cells += ["", "", mean_std([r[seconds_name] for r in mine], seconds_fmt)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
