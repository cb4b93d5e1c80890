"""The dataset registry, its command line, the committed specs, end to end on CDNOW."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import CDNOW, REPO
from rq_keras import datasets
from rq_keras.data import check_files, make_dataset
from rq_keras.features import FeatureSpec
from rq_keras.features.preprocessing import FeaturePreprocessor


@pytest.mark.parametrize("name", sorted(datasets.DATASETS))
def test_registry_entry_and_committed_spec(name):
    module = datasets.get(name)
    assert module.INFO.name == name and callable(module.make)
    committed = FeatureSpec.load(REPO / "feature_specs" / f"{name}.yaml")
    # The committed file is what `--write-specs` makes from the module.
    assert committed == module.INFO.spec


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        datasets.get("nope")


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "rq_keras.cli.datasets", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_command_line(tmp_path):
    proc = _cli("cdnow", "--raw-dir", CDNOW.parent, "--out-dir", tmp_path, "--seed", 3)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 23_570 and summary["seed"] == 3
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert FeatureSpec.load(tmp_path / "feature_spec.yaml") == datasets.get("cdnow").SPEC
    proc = _cli("cdnow", "--raw-dir", tmp_path / "missing", "--out-dir", tmp_path / "o")
    assert proc.returncode == 2 and "error:" in proc.stderr and "missing" in proc.stderr
    proc = _cli("cdnow")
    assert proc.returncode == 2 and "--out-dir" in proc.stderr
    proc = _cli("--write-specs", tmp_path / "specs")
    assert proc.returncode == 0
    assert sorted(p.name for p in (tmp_path / "specs").iterdir()) == sorted(
        f"{n}.yaml" for n in datasets.DATASETS
    )


@pytest.fixture(scope="module")
def cdnow_splits(tmp_path_factory):
    out = tmp_path_factory.mktemp("cdnow")
    summary = datasets.make("cdnow", CDNOW.parent, out, seed=0)
    return out, summary


def test_cdnow_end_to_end(cdnow_splits):
    out, summary = cdnow_splits
    spec = FeatureSpec.load(out / "feature_spec.yaml")
    files = {s: out / f"{s}.parquet" for s in ("train", "validation", "test")}
    report = check_files(list(files.values()), spec)
    assert report.rows_kept == report.rows_read == 23_570 and report.rows_dropped == 0
    assert [f.rows_kept for f in report.files] == [
        summary["splits"][s]["rows"] for s in ("train", "validation", "test")
    ]
    pre = FeaturePreprocessor(spec).adapt(files["train"])
    assert pre.statistics["rows"] == summary["splits"]["train"]["rows"]
    import pandas as pd

    months = pd.read_parquet(files["train"])["first_purchase_month"].value_counts()
    assert pre.vocabulary("first_purchase_month") == months.index.tolist()  # most frequent first
    assert sorted(months.index) == [1, 2, 3]
    model = pre.build_model()
    vectors, labels = [], []
    for x, y in make_dataset(files["validation"], spec, batch_size=512):
        vectors.append(model(x).numpy())
        labels.append(y.numpy())
    vectors = np.concatenate(vectors)
    assert vectors.shape == (summary["splits"]["validation"]["rows"], pre.output_dim)
    assert np.isfinite(vectors).all() and (np.concatenate(labels) >= 0).all()


@pytest.mark.slow
def test_cdnow_formats_agree(cdnow_splits, tmp_path):
    out, _ = cdnow_splits
    spec = FeatureSpec.load(out / "feature_spec.yaml")
    expected = [b for b in make_dataset(out / "test.parquet", spec, batch_size=4096)]
    for fmt in ("csv", "tfrecord"):
        datasets.make("cdnow", CDNOW.parent, tmp_path / fmt, seed=0, fmt=fmt)
        ext = "csv" if fmt == "csv" else "tfrecord"
        got = list(make_dataset(tmp_path / fmt / f"test.{ext}", spec, batch_size=4096))
        assert len(got) == len(expected)
        for (gx, gy), (ex, ey) in zip(got, expected):
            np.testing.assert_allclose(gy.numpy(), ey.numpy(), rtol=1e-6)
            for name in spec.feature_names:
                np.testing.assert_allclose(gx[name].numpy(), ex[name].numpy(), rtol=1e-6)
