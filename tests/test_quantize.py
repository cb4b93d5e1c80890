"""The `python -m rq_keras.cli.quantize` command, end to end."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import CDNOW, REPO
from rq_keras.cli.quantize import main
from rq_keras.quantizer.residual import ResidualQuantizer


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "rq_keras.cli.quantize", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_cli_on_cdnow(tmp_path, cdnow_values):
    out = tmp_path / "cb" / "codebook.json"
    proc = run_cli(
        "--input", CDNOW, "--column", "dollar_value",
        "--levels", 3, "--codebook-size", 48, "--output", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["n"] == 69_659
    assert summary["codebook_sizes"] == [48, 48, 48]
    assert summary["fit_seconds"] > 0
    for key in ("reconstruction_mae", "max_abs_error"):
        assert 0 <= summary[key] < 1.0  # dollars
    q = ResidualQuantizer.load(out)
    # The summary's figures are the codebook's own, recomputed here.
    rep = q.report(cdnow_values)
    assert summary["reconstruction_mae"] == pytest.approx(rep["reconstruction_mae"])
    assert summary["max_abs_error"] == pytest.approx(rep["max_abs_error"])
    assert json.loads((tmp_path / "cb" / "codebook.report.json").read_text()) == rep
    assert (tmp_path / "cb" / "codebook.png").read_bytes()[:4] == b"\x89PNG"
    # The per-level table comes before the JSON line.
    assert proc.stdout.splitlines()[0].split()[:3] == ["level", "method", "K"]


def test_cli_zero_threshold(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.where(rng.random(3000) < 0.7, 0.0, rng.lognormal(3, 1, 3000))
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "zero.json"
    args = ["--input", str(tmp_path / "y.npy"), "--levels", "2", "--codebook-size", "8"]
    assert main([*args, "--zero-threshold", "0.005", "--no-plot", "--output", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "zero rows" in lines[0]
    zeros = int(np.count_nonzero(y == 0))
    assert lines[1].split()[4] == str(zeros)  # level 1: the zero labels
    q = ResidualQuantizer.load(out)
    assert q.zero_threshold == 0.005
    assert (q.encode(y)[y == 0] == -1).all()
    assert main([*args, "--zero-threshold", "-1", "--output", str(out)]) == 2
    assert "zero_threshold" in capsys.readouterr().err


def test_cli_parquet_and_npy(tmp_path, capsys):
    y = np.random.default_rng(0).lognormal(1, 1, 2000)
    pd.DataFrame({"gmv": y, "w": np.ones_like(y)}).to_parquet(tmp_path / "t.parquet")
    np.save(tmp_path / "t.npy", y)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["--levels", "2", "--codebook-size", "8,4", "--no-plot"]
    args_a = ["--input", str(tmp_path / "t.parquet"), "--column", "gmv", "--weight-column", "w"]
    assert main([*args_a, *common, "--output", str(a)]) == 0
    assert main(["--input", str(tmp_path / "t.npy"), *common, "--output", str(b)]) == 0
    qa, qb = ResidualQuantizer.load(a), ResidualQuantizer.load(b)
    assert qa.fitted_codebook_sizes == [8, 4]
    for ca, cb in zip(qa.centroids, qb.centroids):
        np.testing.assert_array_equal(ca, cb)
    assert not (tmp_path / "a.png").exists()


def test_cli_kmedians_first_level(tmp_path, capsys):
    out = tmp_path / "cb.json"
    args = ["--input", str(CDNOW), "--column", "dollar_value", "--levels", "2"]
    assert main([*args, "--method", "kmedians,kmeans", "--no-plot", "--output", str(out)]) == 0
    assert ResidualQuantizer.load(out).method == ["kmedians", "kmeans"]


def bad_run(tmp_path, capsys, *args):
    code = main([*args, "--output", str(tmp_path / "cb.json"), "--no-plot"])
    err = capsys.readouterr().err
    assert code == 2
    assert not (tmp_path / "cb.json").exists()
    return err


def test_cli_missing_column(tmp_path, capsys):
    err = bad_run(tmp_path, capsys, "--input", str(CDNOW), "--column", "revenue")
    assert "no column 'revenue'" in err and "'dollar_value'" in err


def test_cli_non_numeric_column(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("id,value\na,1.5\nb,oops\nc,2\nd,\n")
    err = bad_run(tmp_path, capsys, "--input", str(path), "--column", "value")
    assert "column 'value' has non-numeric values: 2 row(s)" in err
    assert "[1, 3]" in err and "'oops'" in err


def test_cli_nan_rows(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("value\n1\nnan\n3\nNaN\n")
    err = bad_run(tmp_path, capsys, "--input", str(path), "--column", "value")
    assert "has NaN values: 2 row(s), first row indices (0-based): [1, 3]" in err


def test_cli_empty_input(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("value\n")
    assert "is empty" in bad_run(tmp_path, capsys, "--input", str(path), "--column", "value")


def test_cli_missing_file_and_unknown_format(tmp_path, capsys):
    err = bad_run(tmp_path, capsys, "--input", str(tmp_path / "none.csv"), "--column", "v")
    assert "no such file" in err
    (tmp_path / "t.xlsx").write_text("x")
    err = bad_run(tmp_path, capsys, "--input", str(tmp_path / "t.xlsx"), "--column", "v")
    assert "unknown table format '.xlsx'" in err


def test_cli_bad_levels(tmp_path, capsys):
    err = bad_run(tmp_path, capsys, "--input", str(CDNOW), "--column", "dollar_value",
                  "--levels", "0")  # fmt: skip
    assert "`num_levels` must be >= 1, got 0" in err
