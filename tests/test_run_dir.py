import json

import pytest

from rq_keras.run_dir import ARTIFACTS, MANIFEST, OWNED, RunDir, RunDirError


def _claimed(path):
    run = RunDir(path)
    run.inspect()
    run.claim()
    return run


def test_a_new_or_empty_directory_becomes_a_run_directory(tmp_path):
    for path in (tmp_path / "new" / "deeper", tmp_path / "empty"):
        if path.name == "empty":
            path.mkdir()
        run = _claimed(path)
        doc = json.loads((path / MANIFEST).read_text())
        assert doc["entries"] == sorted(OWNED) and run.listed == set(OWNED)
        assert sorted(p.name for p in path.iterdir()) == [MANIFEST]


def test_a_folder_it_did_not_make_is_refused_untouched(tmp_path):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.csv").write_text("a,y\n1,2\n")
    (project / "config.yaml").write_text("mine: true\n")
    with pytest.raises(RunDirError, match=rf"{project} is not empty \(config.yaml, data\)"):
        RunDir(project).inspect()
    assert (project / "data" / "train.csv").read_text() == "a,y\n1,2\n"
    assert sorted(p.name for p in project.iterdir()) == ["config.yaml", "data"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a directory"):
        RunDir(tmp_path / "file").inspect()


def test_remove_deletes_only_listed_names(tmp_path):
    run = _claimed(tmp_path / "run")
    for name in ARTIFACTS:
        target = run / name
        if "." in name:
            target.write_text("x")
        else:
            (target / "inner").mkdir(parents=True)
    (run / "notes.txt").write_text("the user's")
    (run / "mine").mkdir()
    assert sorted(run.remove()) == sorted(ARTIFACTS)
    assert sorted(p.name for p in run.path.iterdir()) == sorted([MANIFEST, "mine", "notes.txt"])
    with pytest.raises(RunDirError, match=r"\['notes.txt'\] are not listed"):
        run.remove(["notes.txt"])


def test_a_users_file_under_a_run_name_is_refused(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    (path / "plots").mkdir()
    (path / "plots" / "mine.png").write_text("x")
    # Not a run directory at all: refused as not empty.
    with pytest.raises(RunDirError, match="holds no rq_keras_run.json"):
        RunDir(path).inspect()
    # A run directory whose manifest does not list `plots` (it existed before).
    (path / "plots").rename(tmp_path / "plots")
    _claimed(path)
    doc = json.loads((path / MANIFEST).read_text())
    doc["entries"].remove("plots")
    (path / MANIFEST).write_text(json.dumps(doc))
    (tmp_path / "plots").rename(path / "plots")
    with pytest.raises(RunDirError, match=r"holds \['plots'\], which its rq_keras_run.json"):
        RunDir(path).inspect()
    assert (path / "plots" / "mine.png").exists()


def test_an_edited_manifest_cannot_reach_outside(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    path = tmp_path / "run"
    _claimed(path)
    (path / "notes.txt").write_text("keep too")
    doc = {"entries": ["../victim.txt", "notes.txt", "/", "metrics.json"]}
    (path / MANIFEST).write_text(json.dumps(doc))
    (path / "metrics.json").write_text("{}")
    run = RunDir(path)
    run.inspect()
    assert run.listed == {"metrics.json"}
    assert run.remove() == ["metrics.json"]
    assert victim.read_text() == "keep" and (path / "notes.txt").read_text() == "keep too"


@pytest.mark.parametrize("text", ["", "{not json", '{"entries": "all"}', "[1, 2]"])
def test_a_damaged_manifest_is_named(tmp_path, text):
    path = tmp_path / "run"
    path.mkdir()
    (path / MANIFEST).write_text(text)
    with pytest.raises(RunDirError, match=rf"{path / MANIFEST} is not a"):
        RunDir(path).inspect()
