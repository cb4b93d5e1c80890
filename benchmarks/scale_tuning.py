"""Each head's setting for `scale.py`'s test cells, chosen on VALIDATION
(issue 29, item 5: the same tuning budget for every head).

    python benchmarks/scale_tuning.py --run        # or: make bench-scale-tune
    python benchmarks/scale.py --tuned benchmarks/results/scale_tuned.json \
        --datasets complete_journey --fractions 1    # the chosen settings on test

The trials (`TRIALS`) are `scale.py --evaluate-on validation` cells, one
directory per setting below `--cells-dir` (`w0` untuned, `wlr3e-4` with
`--set learning_rate=0.0003`, ...; committed, as scale.py's cells) and below
`--work-dir` (its kept runs; the splits are scale.py's), at 10% of the
training rows (`--share`; `--share 1 --heads ziln,mse,optdist,kmeans` with
their own `--cells-dir` and `--work-dir` is the full-size tuning of
docs/quality.md), seed 0 (`--seeds 0,1`: those seeds; single-seed
validation can pick noise); `--run` runs the missing ones (resumable), then
the choice is made from every finished trial, each head's trials compared
on the mean over the seeds all of them ran. Every head has five: the coded
heads (RQ-Reg, K-means L = 1) three learning rates and two weights of
L_crps, the others five learning rates. Every cell there must be scored on
validation (the test split is never read). Per dataset, share of the
training rows and head, the chosen trial has the highest Norm-Gini(+) of the
served prediction (the ranking the issue's goals are about; ties to the
lower MAE), as `benchmarks/tune.py` chooses. Writes
`benchmarks/results/quality_scale_tuning.md` (every trial, the choice marked,
how many trials each head had) and `benchmarks/results/scale_tuned.json`
(`{dataset: {head: {override: value}}}`, `{}` where the untuned setting won;
with trials at several shares, the largest share's choice). A trial run by
hand with another training length (scale.py `--epochs`/`--patience`, which
each cell records) is its own trial; chosen, its `--epochs`/`--patience`
stand in the JSON beside the overrides, and `scale.py --tuned` trains so.
`--variants rq_reg=benchmarks/results/scale_validation_cells` adds a head's
hand-run validation rows (`scale.py --evaluate-on validation --variant V`),
each variant a trial, so the same rule chooses among them (RQ-Reg's codebook,
levels and learning rate at full size, docs/quality.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _machine import write_results
from scale import HERE, WORK, load_cells, row_settings
from tune import best

RESULTS = os.path.join(HERE, "results")
CODED = ("rq_reg", "kmeans")
OTHERS = ("ziln", "optdist", "mse")
TUNED_HEADS = CODED + OTHERS
# trial directory -> (overrides, heads): five trials a head.
TRIALS = {
    "w0": ({}, CODED + OTHERS),
    "wlr3e-4": ({"learning_rate": 3e-4}, CODED + OTHERS),
    "wlr3e-3": ({"learning_rate": 3e-3}, CODED + OTHERS),
    "w1": ({"model.crps_weight": 1}, CODED),
    "w10": ({"model.crps_weight": 10}, CODED),
    "wlr1e-4": ({"learning_rate": 1e-4}, OTHERS),
    "wlr1e-2": ({"learning_rate": 1e-2}, OTHERS),
}
SHARE = 0.1


def run_trials(
    work: str,
    cells_dir: str,
    datasets: list[str],
    share: float = SHARE,
    only: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] = (0,),
) -> None:
    """Every trial of `TRIALS` not finished yet, through scale.py, at `share`
    of the training rows and for `seeds`; with `only`, for those heads alone."""
    script = os.path.join(HERE, "scale.py")
    for name in datasets:
        for trial, (overrides, trial_heads) in TRIALS.items():
            heads = [h for h in trial_heads if only is None or h in only]
            if not heads:
                continue
            cmd = [sys.executable, script, "--evaluate-on", "validation", "--datasets", name]
            cmd += ["--heads", ",".join(heads), "--fractions", f"{share:g}"]
            cmd += ["--seeds", ",".join(map(str, seeds))]
            cmd += ["--work-dir", os.path.join(work, trial), "--data-dir", WORK]
            cmd += ["--cells-dir", os.path.join(cells_dir, trial)]
            cmd += ["--output", os.path.join(work, f"{trial}.md")]
            for key, value in overrides.items():
                cmd += ["--set", f"{key}={json.dumps(value)}"]
            print(" ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def trials(cells_dir: str) -> list[dict]:
    """Every validation cell of every trial directory directly below `cells_dir`."""
    cells = []
    for name in sorted(os.listdir(cells_dir)) if os.path.isdir(cells_dir) else []:
        where = os.path.join(cells_dir, name)
        if os.path.isdir(where):
            for cell in load_cells(where, "validation"):
                cell["trial"] = name
                cells.append(cell)
    return cells


def variant_trials(head: str, cells_dir: str) -> list[dict]:
    """`head`'s validation cells in a scale.py cells directory whose rows are
    `--variant`s (not trial directories), each variant a trial of its own."""
    if not os.path.isdir(cells_dir):
        raise SystemExit(f"--variants {head}={cells_dir}: no such directory")
    cells = [c for c in load_cells(cells_dir, "validation") if c["head"] == head]
    if not cells:
        raise SystemExit(f"--variants {head}={cells_dir}: no validation cell of {head} there")
    where = os.path.basename(os.path.normpath(cells_dir))
    for cell in cells:
        cell["trial"] = f"{where}/{cell['label']}"
    return cells


def _mean(values: list) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)


def compared(cells: list[dict]) -> dict:
    """`{(dataset, share, head): {trial: its cells}}`, each trial's cells
    only at the seeds every trial of that head has (so every trial is
    compared on the same seeds; all of them when all trials ran them)."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for cell in cells:
        key = (cell["dataset"], cell["share"], cell["head"])
        groups.setdefault(key, {}).setdefault(cell["trial"], []).append(cell)
    out = {}
    for key, by_trial in groups.items():
        common = set.intersection(*({c["seed"] for c in runs} for runs in by_trial.values()))
        if not common:
            raise SystemExit(f"{' '.join(map(str, key))}: no seed that every trial ran")
        out[key] = {
            trial: sorted((c for c in runs if c["seed"] in common), key=lambda c: c["seed"])
            for trial, runs in by_trial.items()
        }
    return out


def trial_scores(runs: list[dict]) -> dict:
    """A trial's served scores, each the mean over its compared seeds."""
    served = [c["served"] for c in runs]
    scores = {k: _mean([s.get(k) for s in served]) for k in served[0]}
    scores["crps"] = _mean([c.get("distribution", {}).get("crps") for c in runs])
    return scores


def choose(cells: list[dict]) -> dict:
    """`{(dataset, share, head): the chosen trial's first cell}`, by
    `tune.best` on the trials' served scores averaged over the seeds they
    share (highest Norm-Gini(+), then lower MAE; a tie to the shorter
    training, then the trial's name)."""
    chosen = {}
    for key, by_trial in compared(cells).items():
        ranked = sorted(by_trial.items(), key=lambda kv: (kv[1][0]["max_epochs"], kv[0]))
        scores = [trial_scores(runs) for _, runs in ranked]
        winner = best(scores)
        chosen[key] = next(runs[0] for (_, runs), s in zip(ranked, scores) if s is winner)
    return chosen


def report(cells: list[dict], chosen_cells: dict, argv: list[str]) -> str:
    lines = [
        "# Tuning for the scale benchmark on validation (issue 29)",
        "",
        f"Command: `{' '.join(['python benchmarks/scale_tuning.py', *argv])}`.",
        "Every trial is one or more `python benchmarks/scale.py --evaluate-on validation` "
        "cells (seed 0, and more seeds where run) with the settings in its row; a head's "
        "trials are compared on the seeds all of them ran (`seeds`), by their mean. The chosen "
        "one per head (`*`) has the highest Norm-Gini(+) of the served prediction on the "
        "validation split (ties: lower MAE). The test split is not read.",
        "",
    ]
    trials_of = compared(cells)
    for dataset in sorted({c["dataset"] for c in cells}):
        for share in sorted({c["share"] for c in cells if c["dataset"] == dataset}):
            lines += [
                f"## {dataset}, {share:.0%} of the training rows",
                "",
                "| head | trials | overrides | Norm-Gini(+) | Spearman(+) | MAE | CRPS "
                "| mean pred / label | epochs | seeds | chosen |",
                "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
            ]
            heads = sorted(
                {c["head"] for c in cells if (c["dataset"], c["share"]) == (dataset, share)}
            )
            for head in heads:
                by_trial = trials_of[(dataset, share, head)]
                chosen = chosen_cells[(dataset, share, head)]
                for trial, runs in sorted(
                    by_trial.items(),
                    key=lambda kv: json.dumps(row_settings(kv[1][0]), sort_keys=True),
                ):
                    s = trial_scores(runs)
                    crps = s["crps"]
                    setting = json.dumps(row_settings(runs[0]), sort_keys=True)
                    lines.append(
                        f"| {head} | {len(by_trial)} | `{setting}` "
                        f"| {s['normalized_gini_positive']:.4f} | {s['spearman_positive']:.4f} "
                        f"| {s['mae']:.3f} | {'n/a' if crps is None else f'{crps:.4f}'} "
                        f"| {s['mean_ratio']:.3f} | {'/'.join(str(c['epochs']) for c in runs)} "
                        f"| {','.join(str(c['seed']) for c in runs)} "
                        f"| {'*' if trial == chosen['trial'] else ''} |"
                    )
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work-dir", default=os.path.join(HERE, "work", "scale_tune"))
    p.add_argument("--cells-dir", default=os.path.join(RESULTS, "scale_tuning_cells"))
    p.add_argument("--output", default=os.path.join(RESULTS, "quality_scale_tuning.md"))
    p.add_argument("--json", default=os.path.join(RESULTS, "scale_tuned.json"))
    p.add_argument("--run", action="store_true", help="run the missing trials first")
    p.add_argument("--datasets", default="complete_journey,nycflights")
    p.add_argument(
        "--share",
        type=float,
        default=SHARE,
        help="share of the training rows the trials of --run train on (1: the whole split)",
    )
    p.add_argument("--heads", default=",".join(TUNED_HEADS), help="the heads --run tunes")
    p.add_argument(
        "--seeds",
        default="0",
        help="the seeds --run trains every trial at (the choice compares each head's trials "
        "on the seeds all of them ran)",
    )
    p.add_argument(
        "--variants",
        action="append",
        default=[],
        metavar="HEAD=DIR",
        help="also HEAD's validation rows in the scale.py cells directory DIR, each --variant "
        "a trial (repeatable; they are run by hand, not by --run)",
    )
    args = p.parse_args(argv)
    variants = []
    for item in args.variants:
        head, sep, where = item.partition("=")
        if not sep or head not in TUNED_HEADS or not where:
            p.error(f"--variants must be HEAD=DIR with HEAD one of {TUNED_HEADS}, got {item!r}")
        variants.append((head, where))
    if not 0.0 < args.share <= 1.0:
        p.error(f"--share must be in (0, 1], got {args.share}")
    heads = tuple(h for h in args.heads.split(",") if h)
    unknown = sorted(set(heads) - set(TUNED_HEADS))
    if unknown or not heads:
        p.error(f"--heads must name some of {TUNED_HEADS}, got {args.heads!r}")
    try:
        seeds = tuple(sorted({int(seed) for seed in args.seeds.split(",")}))
    except ValueError:
        p.error(f"--seeds must be integers separated by commas, got {args.seeds!r}")
    if any(seed < 0 for seed in seeds):
        p.error(f"--seeds must be non-negative, got {args.seeds!r}")
    if args.run:
        datasets = args.datasets.split(",")
        run_trials(args.work_dir, args.cells_dir, datasets, args.share, heads, seeds)
    cells = trials(args.cells_dir)
    # A variant row at a share no trial directory covers (a learning-curve
    # cell) is no trial of this tuning; with no trial directory, all count.
    covered = {(c["dataset"], c["share"]) for c in cells}
    for head, where in variants:
        cells += [
            c
            for c in variant_trials(head, where)
            if not covered or (c["dataset"], c["share"]) in covered
        ]
    if not cells:
        p.error(f"no finished validation cells below {args.cells_dir}")
    chosen_cells = choose(cells)
    text = report(cells, chosen_cells, argv)
    print(text)
    write_results(args.output, text)
    chosen: dict[str, dict] = {}
    for (dataset, _, head), cell in sorted(chosen_cells.items()):
        chosen.setdefault(dataset, {})[head] = row_settings(cell)
    tmp = args.json + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(chosen, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
