import numpy as np
import pytest

from conftest import CDNOW
from rq_keras.data import delimiter_for, read_column


def test_reads_whitespace_table():
    values = read_column(CDNOW, "dollar_value")
    assert values.dtype == np.float64 and values.shape == (69_659,)
    assert values[:4].tolist() == [11.77, 12.0, 77.0, 20.76]


def test_reads_csv_tsv_parquet_npy(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"a": [1.0, 2.5, -3.0], "b": ["x", "y", "z"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "t.parquet")
    np.save(tmp_path / "t.npy", frame["a"].to_numpy()[:, None])
    for name in ("t.csv", "t.tsv", "t.parquet", "t.npy"):
        np.testing.assert_array_equal(read_column(tmp_path / name, "a"), [1.0, 2.5, -3.0])


def test_non_numeric_text_is_returned_raw(tmp_path):
    (tmp_path / "t.csv").write_text("a\n1\nx\n")
    assert read_column(tmp_path / "t.csv", "a").tolist() == ["1", "x"]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_column(tmp_path / "none.csv", "a")
    (tmp_path / "t.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        read_column(tmp_path / "t.parquet", "a")
    np.save(tmp_path / "t.npy", np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"expected a 1-D array, got shape \(3, 2\)"):
        read_column(tmp_path / "t.npy", None)
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"a column name is needed"):
        read_column(tmp_path / "t.csv", None)


def test_delimiter_for():
    assert delimiter_for("x.CSV") == "," and delimiter_for("x.tsv") == "\t"
    assert delimiter_for("x.txt") is None
    with pytest.raises(ValueError, match="unknown table format"):
        delimiter_for("x.json")
