"""benchmarks/scale.py's bookkeeping (no training): a work directory holds
one split, a row (head or HEAD@variant) one setting, variants sit beside
their head in the tables, and --set on the test split needs a variant."""

import argparse
import json
import os
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import scale  # noqa: E402


def write_cell(
    cells, head, seed, gini, variant="", overrides=None, split=None, share=1.0, **recorded
):
    path = scale.cell_file(str(cells), "toy", head, share, seed, variant)
    cell = {
        "dataset": "toy",
        "head": head,
        "share": share,
        "seed": seed,
        "rows": {"train": 10, "validation": 5, "test": 5},
        "served": {
            "normalized_gini_positive": gini,
            "spearman_positive": gini / 2,
            "mae": 1.0,
            "mean_ratio": 1.0,
        },
        "distribution": {"crps": 2.0 - gini},
        "by_prediction": {},
        "levels": None,
        "epochs": 3,
        "seconds": 1.0,
    }
    if variant:
        cell["variant"] = variant
    if overrides is not None:
        cell["overrides"] = overrides
    if split is not None:
        cell["split"] = split
    cell.update(recorded)  # fields newer cells record (max_epochs, ...)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cell, f)


def test_variants_are_rows_beside_their_head_with_their_own_margin(tmp_path):
    for seed in (0, 1):
        write_cell(tmp_path, "rq_reg", seed, 0.70)  # a cell from before splits were recorded
        write_cell(tmp_path, "ziln", seed, 0.60, split="test", overrides={})
        write_cell(tmp_path, "rq_reg", seed, 0.75, "crps1", {"model.crps_weight": 1})
        for share in (0.1, 0.3):
            write_cell(tmp_path, "rq_reg", seed, 0.5, share=share)
            write_cell(tmp_path, "ziln", seed, 0.4, share=share)
            write_cell(
                tmp_path, "rq_reg", seed, 0.6, "crps1", {"model.crps_weight": 1}, share=share
            )
    cells = scale.load_cells(str(tmp_path))
    assert scale.head_labels(cells) == ["rq_reg", "rq_reg@crps1", "ziln"]
    curve = "\n".join(scale.learning_curve(cells))
    assert "margin Norm-Gini(+) (rq_reg@crps1)" in curve
    row = next(line for line in curve.splitlines() if line.startswith("| 100% |"))
    # rq_reg minus ZILN: +0.1000; the variant: +0.1500 (Norm-Gini(+) margins)
    assert "+0.1000" in row and "+0.1500" in row
    with pytest.raises(SystemExit, match="scored on 'test', not 'validation'"):
        scale.load_cells(str(tmp_path), "validation")


def test_a_row_with_two_settings_is_refused(tmp_path):
    write_cell(tmp_path, "rq_reg", 0, 0.7, "crps", {"model.crps_weight": 1})
    write_cell(tmp_path, "rq_reg", 1, 0.7, "crps", {"model.crps_weight": 10})
    with pytest.raises(SystemExit, match="different overrides.*its own --variant"):
        scale.load_cells(str(tmp_path))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "model.crps_weight=1"], "--set on the test split needs --variant NAME"),
        (["--variant", "a/b", "--set", "model.crps_weight=1"], "--variant must be letters"),
    ],
)
def test_overrides_on_the_test_split_need_a_variant_name(argv, message, capsys, monkeypatch):
    # main() sets two TF variables by setdefault; the test's are restored after.
    for key in ("TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS"):
        monkeypatch.setenv(key, os.environ.get(key, "1"))
    with pytest.raises(SystemExit):
        scale.main([*argv, "--report-only", "--work-dir", "/nonexistent"])
    assert message in capsys.readouterr().err


def test_the_report_is_written_from_the_cells_directory_alone(tmp_path, monkeypatch):
    # The committed cells are the table: no work directory (splits, kept
    # runs) is needed to write it, as on a fresh checkout.
    for key in ("TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS"):
        monkeypatch.setenv(key, os.environ.get(key, "1"))
    cells = tmp_path / "cells"
    for seed in (0, 1):
        write_cell(cells, "rq_reg", seed, 0.70 + seed / 100, split="test", overrides={})
        write_cell(cells, "ziln", seed, 0.60, split="test", overrides={})
    out = tmp_path / "report.md"
    argv = ["--report-only", "--cells-dir", str(cells), "--work-dir", str(tmp_path / "none")]
    assert scale.main([*argv, "--output", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert not (tmp_path / "none").exists()
    assert f"every finished cell in `{cells}`" in text
    row = next(line for line in text.splitlines() if line.startswith("| rq_reg | 2 |"))
    assert "0.7050 ± 0.0071" in row  # Norm-Gini(+) over the two seeds' cells


def test_tuning_chooses_each_heads_best_validation_trial(tmp_path):
    import scale_tuning

    for trial, overrides, gini in (("w0", {}, 0.70), ("wlr", {"learning_rate": 3e-4}, 0.72)):
        write_cell(tmp_path / trial, "ziln", 0, gini, overrides=overrides, split="validation")
        write_cell(tmp_path / trial, "rq_reg", 0, 0.8 - gini / 10, overrides=overrides,
                   split="validation")  # fmt: skip
    cells = scale_tuning.trials(str(tmp_path))
    best = scale_tuning.choose(cells)
    assert best[("toy", 1.0, "ziln")]["overrides"] == {"learning_rate": 3e-4}
    assert best[("toy", 1.0, "rq_reg")]["overrides"] == {}
    text = scale_tuning.report(cells, best, [])
    assert '| ziln | 2 | `{"learning_rate": 0.0003}` | 0.7200 |' in text
    # A test-split cell among the trials is refused: the test split is never read.
    write_cell(tmp_path / "wbad", "mse", 0, 0.5, overrides={})
    with pytest.raises(SystemExit, match="scored on 'test', not 'validation'"):
        scale_tuning.trials(str(tmp_path))


def test_tuning_runs_its_trials_at_the_share_and_for_the_heads_asked(tmp_path, monkeypatch):
    import scale_tuning

    commands = []
    monkeypatch.setattr(scale_tuning.subprocess, "run", lambda cmd, **_: commands.append(cmd))
    scale_tuning.run_trials(str(tmp_path), str(tmp_path / "cells"), ["toy"], 1.0, ("ziln",), (0, 1))
    # ziln's five learning-rate trials (none of the coded heads' L_crps ones), whole split.
    assert len(commands) == 5
    for cmd in commands:
        assert cmd[cmd.index("--heads") + 1] == "ziln"
        assert cmd[cmd.index("--seeds") + 1] == "0,1"
        assert cmd[cmd.index("--fractions") + 1] == "1"
        assert cmd[cmd.index("--evaluate-on") + 1] == "validation"
    rates = sorted(c[c.index("--set") + 1] for c in commands if "--set" in c)
    assert rates == [f"learning_rate={r}" for r in ("0.0001", "0.0003", "0.003", "0.01")]
    commands.clear()
    scale_tuning.run_trials(str(tmp_path), str(tmp_path / "cells"), ["toy"])
    assert len(commands) == len(scale_tuning.TRIALS)  # every head, 10% of the rows
    assert {c[c.index("--fractions") + 1] for c in commands} == {"0.1"}
    assert {c[c.index("--seeds") + 1] for c in commands} == {"0"}
    with pytest.raises(SystemExit):
        scale_tuning.main(["--share", "0", "--cells-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        scale_tuning.main(["--heads", "lightgbm", "--cells-dir", str(tmp_path)])
    for seeds in ("a", "-1"):
        with pytest.raises(SystemExit):
            scale_tuning.main(["--seeds", seeds, "--cells-dir", str(tmp_path)])


def test_a_tuning_cells_old_prefix_scores_which_read_test_are_dropped(tmp_path):
    # Cells written before `prefix_split` scored `prefix` on the test split
    # whatever split they were scored on: a test cell keeps them under the
    # new key, a validation (tuning) cell loses them, so no test figure
    # reaches a tuning report.
    prefix = {"crps": 1.0, "mean_gini_positive": 0.5, "mean_ratio": 1.0}
    for split in ("test", "validation"):
        write_cell(tmp_path / split, "rq_reg", 0, 0.7, overrides={}, split=split)
        path = scale.cell_file(str(tmp_path / split), "toy", "rq_reg", 1.0, 0)
        with open(path, encoding="utf-8") as f:
            cell = json.load(f)
        cell["prefix_test"] = prefix
        with open(path, "w", encoding="utf-8") as f:
            json.dump(cell, f)
    (test_cell,) = scale.load_cells(str(tmp_path / "test"))
    assert test_cell["prefix_split"] == prefix and "prefix_test" not in test_cell
    (tuning_cell,) = scale.load_cells(str(tmp_path / "validation"), "validation")
    assert "prefix_split" not in tuning_cell and "prefix_test" not in tuning_cell


def test_a_rows_training_length_and_its_numeric_overrides_are_its_settings(tmp_path):
    # `--set learning_rate=3e-4` reaches a cell as the string "3e-4" (YAML
    # 1.1): it is the same setting as 0.0003, one row. A cell trained under
    # another epoch cap is a setting of its own, refused in a row beside the
    # default's, and listed in the tuning report and its choice.
    import scale_tuning

    write_cell(tmp_path, "rq_reg", 0, 0.7, "lr", {"learning_rate": "3e-4"})
    write_cell(tmp_path, "rq_reg", 1, 0.7, "lr", {"learning_rate": 0.0003})
    cells = scale.load_cells(str(tmp_path))
    assert [c["overrides"] for c in cells] == [{"learning_rate": 0.0003}] * 2
    assert scale.numeric("adam") == "adam" and scale.numeric("nan") == "nan"
    write_cell(tmp_path, "rq_reg", 1, 0.7, "lr", {"learning_rate": 0.0003}, max_epochs=24,
               patience=3)  # fmt: skip
    with pytest.raises(SystemExit, match="different overrides"):
        scale.load_cells(str(tmp_path))

    trials = tmp_path / "trials"
    write_cell(trials / "w0", "ziln", 0, 0.70, overrides={}, split="validation")
    write_cell(trials / "we24", "ziln", 0, 0.72, overrides={}, split="validation", max_epochs=24)
    found = scale_tuning.trials(str(trials))
    best = scale_tuning.choose(found)
    assert scale.row_settings(best[("toy", 1.0, "ziln")]) == {"--epochs": 24}
    assert '| ziln | 2 | `{"--epochs": 24}` | 0.7200 |' in scale_tuning.report(found, best, [])


def record_cell_commands(monkeypatch) -> list:
    """Makes `scale.main` record each cell's command instead of running it."""
    for key in ("TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS"):
        monkeypatch.setenv(key, os.environ.get(key, "1"))
    commands = []

    def run(cmd, **_):
        commands.append(cmd)
        return scale.subprocess.CompletedProcess(cmd, 1, "", "not run")

    monkeypatch.setattr(scale, "prepare", lambda *a, **k: None)
    monkeypatch.setattr(scale.subprocess, "run", run)
    return commands


def test_a_tuned_training_length_reaches_the_cells_command(tmp_path, monkeypatch):
    # scale_tuned*.json may carry `--epochs`/`--patience` beside the
    # overrides: the test cells train that long, and no `--set` gets them.
    commands = record_cell_commands(monkeypatch)
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"toy": {"ziln": {"--epochs": 24, "learning_rate": 0.0001}}}))
    argv = ["--datasets", "toy", "--heads", "ziln", "--fractions", "1", "--seeds", "0,1"]
    argv += ["--tuned", str(tuned), "--work-dir", str(tmp_path / "work")]
    argv += ["--cells-dir", str(tmp_path / "cells"), "--output", str(tmp_path / "r.md")]
    scale.main(argv)
    assert len(commands) == 2
    for cmd in commands:
        assert cmd[cmd.index("--epochs") + 1] == "24"
        assert cmd[cmd.index("--patience") + 1] == str(scale.DEFAULT_PATIENCE)
        assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"] == ["learning_rate=0.0001"]


@pytest.mark.parametrize("head, keep", [("ziln", False), ("ziln", True), ("kmeans", False)])
def test_a_cell_keeps_its_trained_run_for_its_head_or_with_keep_runs(
    tmp_path, monkeypatch, head, keep
):
    # A baseline's run is removed once its figures are in the cell file,
    # unless --keep-runs asks for it (an analysis of its predictions);
    # K-means' and RQ-Reg's are always kept. Checkpoints never are.
    def network_cell(data, head, share, seed, args, run):
        for part in ("model.keras", "predictions.parquet", "checkpoints/last.ckpt"):
            os.makedirs(os.path.dirname(os.path.join(run, part)), exist_ok=True)
            open(os.path.join(run, part), "w").close()
        return {"served": {}}

    monkeypatch.setattr(scale, "prepare", lambda *a, **k: {"rows": {"train": 1}})
    monkeypatch.setattr(scale, "network_cell", network_cell)
    args = argparse.Namespace(
        work_dir=str(tmp_path / "work"),
        cells_dir=str(tmp_path / "cells"),
        data_dir=str(tmp_path / "data"),
        variant="",
        evaluate_on="validation",
        set=[],
        epochs=12,
        patience=3,
        keep_runs=keep,
    )
    scale.run_cell("toy", head, 1.0, 0, args)
    run = os.path.join(scale.cell_dir(args.work_dir, "toy", head, 1.0, 0, ""), "run")
    kept = head == "kmeans" or keep
    assert os.path.exists(os.path.join(run, "predictions.parquet")) == kept
    assert os.path.exists(os.path.join(run, "model.keras")) == kept
    assert not os.path.exists(os.path.join(run, "checkpoints"))
    assert os.path.exists(scale.cell_file(args.cells_dir, "toy", head, 1.0, 0, ""))


def test_keep_runs_reaches_each_cells_command(tmp_path, monkeypatch):
    commands = record_cell_commands(monkeypatch)
    argv = ["--datasets", "toy", "--heads", "ziln", "--fractions", "1", "--seeds", "0"]
    argv += ["--work-dir", str(tmp_path / "work"), "--cells-dir", str(tmp_path / "cells")]
    argv += ["--output", str(tmp_path / "r.md")]
    scale.main([*argv, "--keep-runs"])
    scale.main(argv)
    assert ["--keep-runs" in cmd for cmd in commands] == [True, False]


def test_tuning_compares_trials_on_the_seeds_they_all_ran(tmp_path):
    # A second validation seed changes the choice only where every trial of
    # the head ran it; the means over the shared seeds decide.
    import scale_tuning

    ginis = {"w0": {0: 0.70, 1: 0.70}, "wlr": {0: 0.72, 1: 0.66}, "wx": {0: 0.71}}
    for trial, by_seed in ginis.items():
        overrides = {} if trial == "w0" else {"learning_rate": len(trial) / 10}
        for seed, gini in by_seed.items():
            write_cell(tmp_path / trial, "ziln", seed, gini, overrides=overrides,
                       split="validation")  # fmt: skip
    best = scale_tuning.choose(scale_tuning.trials(str(tmp_path)))
    assert best[("toy", 1.0, "ziln")]["trial"] == "wlr"  # seed 0 alone: wx ran no seed 1
    write_cell(tmp_path / "wx", "ziln", 1, 0.70, overrides={"learning_rate": 0.2},
               split="validation")  # fmt: skip
    cells = scale_tuning.trials(str(tmp_path))
    best = scale_tuning.choose(cells)
    assert best[("toy", 1.0, "ziln")]["trial"] == "wx"  # means 0.700, 0.690, 0.705
    text = scale_tuning.report(cells, best, [])
    assert "| 0.6900 | 0.3450 | 1.000 | 1.3100 | 1.000 | 3/3 | 0,1 |  |" in text
    write_cell(tmp_path / "wy", "ziln", 2, 0.5, overrides={"learning_rate": 0.3},
               split="validation")  # fmt: skip
    with pytest.raises(SystemExit, match="no seed that every trial ran"):
        scale_tuning.choose(scale_tuning.trials(str(tmp_path)))


def test_a_heads_variant_rows_are_trials_chosen_by_the_same_rule(tmp_path):
    # RQ-Reg's full-size settings are hand-run variants in scale.py's own
    # cells directory; --variants makes each one a trial beside the trial
    # directories' (compared on the seeds all of them ran, like any head's).
    import scale_tuning

    trials = tmp_path / "trials"
    write_cell(trials / "w0", "ziln", 0, 0.70, overrides={}, split="validation")
    rows = tmp_path / "scale_validation_cells"
    for variant, overrides, by_seed in (
        ("", {}, {0: 0.74, 1: 0.70}),
        ("k16", {"quantizer.codebook_size": 16}, {0: 0.73, 1: 0.73}),
        ("k8", {"quantizer.codebook_size": 8}, {0: 0.75}),
    ):
        for seed, gini in by_seed.items():
            write_cell(rows, "rq_reg", seed, gini, variant=variant, overrides=overrides,
                       split="validation")  # fmt: skip
    write_cell(rows, "kmeans", 0, 0.9, overrides={}, split="validation")  # another head: not read
    cells = scale_tuning.trials(str(trials)) + scale_tuning.variant_trials("rq_reg", str(rows))
    assert {c["trial"] for c in cells if c["head"] == "rq_reg"} == {
        "scale_validation_cells/rq_reg",
        "scale_validation_cells/rq_reg@k16",
        "scale_validation_cells/rq_reg@k8",
    }
    best = scale_tuning.choose(cells)
    assert best[("toy", 1.0, "rq_reg")]["variant"] == "k8"  # seed 0 alone: k8 ran no seed 1
    assert ("toy", 1.0, "kmeans") not in best
    write_cell(rows, "rq_reg", 1, 0.69, variant="k8", overrides={"quantizer.codebook_size": 8},
               split="validation")  # fmt: skip
    best = scale_tuning.choose(scale_tuning.variant_trials("rq_reg", str(rows)))
    assert best[("toy", 1.0, "rq_reg")]["variant"] == "k16"  # means 0.720, 0.730, 0.720
    out = tmp_path / "tuned.json"
    scale_tuning.main(
        ["--cells-dir", str(trials), "--variants", f"rq_reg={rows}", "--json", str(out),
         "--output", str(tmp_path / "t.md")]
    )  # fmt: skip
    assert json.loads(out.read_text()) == {
        "toy": {"rq_reg": {"quantizer.codebook_size": 16}, "ziln": {}}
    }
    # A variant row at a share no trial directory has (a learning-curve
    # cell) is left out of this tuning.
    write_cell(rows, "rq_reg", 0, 0.99, variant="k16", overrides={"quantizer.codebook_size": 16},
               split="validation", share=0.3)  # fmt: skip
    scale_tuning.main(
        ["--cells-dir", str(trials), "--variants", f"rq_reg={rows}", "--json", str(out),
         "--output", str(tmp_path / "t.md")]
    )  # fmt: skip
    assert "30%" not in (tmp_path / "t.md").read_text()
    for bad in ("rq_reg", "lightgbm=" + str(rows), "rq_reg="):
        with pytest.raises(SystemExit):
            scale_tuning.main(["--cells-dir", str(trials), "--variants", bad])
    with pytest.raises(SystemExit, match="no validation cell of mse"):
        scale_tuning.variant_trials("mse", str(rows))
    with pytest.raises(SystemExit, match="no such directory"):
        scale_tuning.variant_trials("rq_reg", str(tmp_path / "missing"))
