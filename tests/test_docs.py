"""The README and the manual in docs/: the quick start runs, relative links resolve."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]

# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(`{3,}|~{3,})")


def _prose(text: str) -> str:
    """The text outside fenced code blocks (links there are not links)."""
    kept, fence = [], None
    for line in text.splitlines():
        match = FENCE.match(line.strip())
        if fence is None and match:
            fence = match.group(1)[0] * 3
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            kept.append(line)
    return "\n".join(kept)


def quick_start() -> str:
    """The ```python block under README's `## Quick start` heading."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no `## Quick start` section"
    block = re.search(r"^```python\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, "README.md's quick start has no ```python block"
    return block.group(1)


def test_quick_start_is_short():
    assert len(quick_start().splitlines()) <= 20


@pytest.mark.slow
def test_quick_start_runs(tmp_path):
    # a user's fresh process: no Keras chosen (conftest chose Keras 2 for this one)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [sys.executable, "-c", quick_start()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "test MAE" in done.stdout
    assert (tmp_path / "runs" / "cdnow" / "metrics.json").is_file()
    assert (tmp_path / "scores.parquet").is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    missing = []
    for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor on the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(REPO)}: links to missing files: {missing}"


def test_every_docs_page_is_in_the_index():
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    linked = set(LINK.findall(index))
    pages = {p.name for p in PAGES if p.parent.name == "docs" and p.name != "README.md"}
    assert pages <= linked, f"docs/README.md does not list {sorted(pages - linked)}"


# ------------------------------------------------ what the pages name exists
# `rq_keras.x.y` in prose or code, not inside a quoted string (a file format's
# name such as "rq_keras.residual_quantizer" is not a Python path).
DOTTED = re.compile(r"(?<![\w./\"'-])rq_keras(?:\.[A-Za-z_]\w*)+")
# A flag of a command line.
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
# Flags of other programs the pages show (the tool in the comment).
OTHER_FLAGS = {
    "--help",  # every argparse command line
    "--all", "--dir",  # saved_model_cli show
    "--rm",  # docker run
    "--model_config_file", "--model_name", "--model_base_path", "--rest_api_port", "--port",
    # tensorflow_model_server
    "--no-deps",  # pip install
}  # fmt: skip
# Words written in capitals stand for a value in a path: `feature_specs/NAME.yaml`;
# in a dotted name these stand for any package, module or name: `rq_keras.PACKAGE.X`.
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9_]*\b")
PLACEHOLDER_NAMES = {"PACKAGE", "MODULE", "X"}


def _resolves(dotted: str) -> bool:
    """`rq_keras.a.b.C.d` imports (the longest module prefix) and its
    attributes exist, with no DeprecationWarning (a 0.2 path does not count)."""
    import importlib
    import warnings

    parts = dotted.split(".")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ModuleNotFoundError:
                continue
            except DeprecationWarning:
                return False
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except (AttributeError, DeprecationWarning):
                return False
            return True
    return False


def _repository_paths(text: str) -> set[str]:
    """The repository paths a page names: under a top-level directory of the
    repository, or one of its top-level files."""
    tops = sorted(p.name for p in REPO.iterdir() if not p.name.startswith(".") or p.name == ".ci")
    tops = [t for t in tops if t not in (".venv", ".venv-compat", "out")]
    dirs = "|".join(re.escape(t) for t in tops if (REPO / t).is_dir())
    files = "|".join(re.escape(t) for t in tops if (REPO / t).is_file())
    path = re.compile(rf"(?<![\w/.-])((?:{dirs})/[\w./*-]*|(?:{files})\b)")
    found = {m.rstrip(".,:;") for m in path.findall(text)}
    # "examples/s" is a rate and "examples/NAME" an output of the `examples`
    # signature: under examples/ only files (a suffix) name the directory's.
    return {m for m in found if not m.startswith("examples/") or "." in m.split("/", 1)[1]}


def _exists(path: str) -> bool:
    import glob

    pattern = PLACEHOLDER.sub("*", path)
    return bool(glob.glob(str(REPO / pattern))) if "*" in pattern else (REPO / path).exists()


def _command_flags() -> set[str]:
    """Every flag of rq_keras's command lines, benchmarks, examples and C++ check."""
    import ast

    flags = set(
        re.findall(
            r'"(--[a-z][a-z0-9-]*)"',
            (REPO / "rq_keras" / "serving" / "cpp" / "serving_check.cc").read_text(),
        )
    )
    scripts = ("rq_keras/cli", "benchmarks", "examples")
    for path in [p for d in scripts for p in (REPO / d).glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
            ):
                continue
            names = [a.value for a in node.args if isinstance(a, ast.Constant)]
            flags |= {n for n in names if isinstance(n, str) and n.startswith("--")}
            if any("BooleanOptionalAction" in ast.unparse(k.value) for k in node.keywords):
                flags |= {f"--no-{n[2:]}" for n in names if n.startswith("--")}
    return flags


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_name_path_and_flag_a_page_mentions_exists(page):
    text = page.read_text(encoding="utf-8")
    names = sorted(
        n for n in set(DOTTED.findall(text))
        if not PLACEHOLDER_NAMES & set(n.split(".")) and not _resolves(n)
    )  # fmt: skip
    paths = sorted(p for p in _repository_paths(text) if not _exists(p))
    known = _command_flags() | OTHER_FLAGS
    flags = sorted(f for f in set(FLAG.findall(text)) if f not in known)
    assert not (names or paths or flags), (
        f"{page.relative_to(REPO)} mentions what does not exist: names {names}, "
        f"paths {paths}, flags {flags}"
    )


def test_every_rq_keras_name_in_the_sources_exists():
    """Docstrings and comments name rq_keras objects by their one current path."""
    stale = {}
    for path in sorted((REPO / "rq_keras").rglob("*.py")):
        if "_deprecated" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        missing = sorted(n for n in set(DOTTED.findall(text)) if not _resolves(n))
        if missing:
            stale[str(path.relative_to(REPO))] = missing
    assert not stale, stale


def test_the_checks_catch_what_is_missing():
    assert _resolves("rq_keras.quantizer.ResidualQuantizer")
    assert not _resolves("rq_keras.quantizer.NoSuchThing")
    assert not _resolves("rq_keras.quantization.ResidualQuantizer")  # a 0.2 path: it warns
    assert _exists("feature_specs/NAME.yaml") and not _exists("docs/nothing.md")
    assert {"--output-dir", "--export-base", "--no-ablations", "--repeat"} <= _command_flags()
    assert _repository_paths("see `docs/model.md`, train.py and out/x") >= {
        "docs/model.md", "train.py"
    }  # fmt: skip


def test_the_saved_model_cli_listing_shows_every_served_output():
    """docs/serving.md shows `saved_model_cli show --all` of the demo export:
    both signatures list exactly the outputs an RQ-Reg export serves."""
    from rq_keras.serving.signatures import OUTPUTS

    text = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    for signature in ("examples", "serving_default"):
        block = text.split(f"signature_def['{signature}']:", 1)[1].split("signature_def[", 1)[0]
        shown = set(re.findall(r"outputs\['(\w+)'\]", block))
        assert shown == set(OUTPUTS), (signature, sorted(shown ^ set(OUTPUTS)))
