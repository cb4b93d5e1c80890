import ast
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO


def test_quantizer_import_does_not_load_tensorflow():
    code = "import sys, rq_keras; print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "False"


def test_the_quantizer_and_the_token_layout_are_leaves():
    """The numpy quantizer and the token layout import no layer, no loss and
    no TensorFlow: the layers read them, never the other way round."""
    code = (
        "import sys, rq_keras.quantizer.residual, rq_keras.quantizer.tokens\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rq_keras'),"
        " 'tensorflow' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = [
        "rq_keras",
        "rq_keras.atomic",
        "rq_keras.config",
        "rq_keras.config.exports",
        "rq_keras.features",
        "rq_keras.features.labels",
        "rq_keras.features.spec",
        "rq_keras.features.validation",
        "rq_keras.quantizer",
        "rq_keras.quantizer.clustering1d",
        "rq_keras.quantizer.codebook_json",
        "rq_keras.quantizer.codebook_report",
        "rq_keras.quantizer.residual",
        "rq_keras.quantizer.residual_fit",
        "rq_keras.quantizer.tokens",
    ]
    assert proc.stdout.strip() == f"{loaded} False"


def test_the_flat_api_names_what_a_user_needs():
    import importlib

    import rq_keras

    names = {
        "ResidualQuantizer", "FeatureSpec", "FeaturePreprocessor", "ModelConfig", "TrainConfig",
        "RQRegTask", "build_model", "train", "export_run", "make_dataset",
    }  # fmt: skip
    assert names <= set(rq_keras.__all__) and names <= set(dir(rq_keras))
    for name, module in rq_keras._EXPORTS.items():
        assert getattr(rq_keras, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = rq_keras.nothing


# The packages of ARCHITECTURE.md section 3, and the one shared helper module.
PACKAGES = {
    "config", "quantizer", "features", "data", "datasets", "layers", "losses", "models",
    "evaluation", "training", "serving", "cli",
}  # fmt: skip
TOP_LEVEL = PACKAGES | {"atomic.py", "_deprecated"}
MAX_IMPORT_CHAIN = 12


def _module_files() -> dict[str, pathlib.Path]:
    """rq_keras module name -> its file; the 0.2 stubs of `_deprecated` aside."""
    files = {}
    for path in (REPO / "rq_keras").rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if "_deprecated" not in parts:
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _module_imports() -> dict[str, set[str]]:
    """rq_keras module -> the rq_keras modules it imports, anywhere in it (an
    import inside a function counts: it runs when the function does)."""
    files = _module_files()
    graph = {}
    for module, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in files:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    edges.add(sub if sub in files else node.module)
        graph[module] = edges - {module}
    return graph


def longest_import_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest chain of imports (modules, first to last); AssertionError
    naming the circle if the imports have one."""
    longest: dict[str, list[str]] = {}

    def visit(module, path):
        if module in path:
            raise AssertionError(f"import circle: {' -> '.join([*path, module])}")
        if module not in longest:
            below = [visit(other, [*path, module]) for other in sorted(graph[module])]
            longest[module] = [module, *max(below, key=len, default=[])]
        return longest[module]

    return max((visit(module, []) for module in sorted(graph)), key=len)


def test_the_top_level_is_one_package_per_concept():
    entries = {
        p.name for p in (REPO / "rq_keras").iterdir()
        if p.name != "__init__.py" and not p.name.startswith((".", "__pycache__"))
    }  # fmt: skip
    assert entries == TOP_LEVEL, sorted(entries ^ TOP_LEVEL)
    assert len(entries) <= 14


def test_no_import_circle_and_short_import_chains():
    graph = _module_imports()
    assert graph["rq_keras.models.rq_reg"] >= {"rq_keras.models.head"}  # the walk sees imports
    chain = longest_import_chain(graph)
    assert len(chain) <= MAX_IMPORT_CHAIN, " -> ".join(chain)
    with pytest.raises(AssertionError, match="import circle: a -> b -> a"):
        longest_import_chain({"a": {"b"}, "b": {"a"}})
    assert longest_import_chain({"a": {"b"}, "b": {"c"}, "c": set()}) == ["a", "b", "c"]


def _listed(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [e.value for e in node.value.elts]
    return []


def _defined(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_each_public_name_has_one_import_path():
    """A module lists (`__all__`) only what it defines; a package may list its
    own modules' names, and `rq_keras` its flat API; no object is listed under
    one name by two other modules."""
    import importlib

    files = _module_files()
    public = {
        m: p for m, p in files.items()
        if not any(part.startswith("_") for part in m.split(".")) and not m.endswith("__main__")
    }  # fmt: skip
    trees = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in files.items()}
    borrowed, seen = [], {}
    for module, path in sorted(public.items()):
        names = _listed(trees[module])
        is_package = path.name == "__init__.py"
        own = set().union(*(_defined(t) for m, t in trees.items() if m.startswith(module + ".")))
        if not is_package:
            borrowed += [f"{module}.{n}" for n in sorted(set(names) - _defined(trees[module]))]
            # `from rq_keras.x import name as name` re-exports too.
            borrowed += [
                f"{module}.{a.name}"
                for node in trees[module].body
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rq_keras")
                for a in node.names
                if a.asname == a.name
            ]
        loaded = importlib.import_module(module)
        for name in names:
            if module == "rq_keras" or (is_package and name in own):
                continue  # the flat API, or a package listing its own module's name
            seen.setdefault((name, id(getattr(loaded, name))), []).append(module)
    assert not borrowed, f"listed in __all__ but defined elsewhere: {borrowed}"
    twice = {name: modules for (name, _), modules in seen.items() if len(modules) > 1}
    assert not twice, f"one object, two public paths: {twice}"
