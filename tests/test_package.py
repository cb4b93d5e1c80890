import subprocess
import sys

import pytest

from conftest import REPO


def test_rq_keras_then_tfrs_in_fresh_interpreter():
    code = (
        "import os; os.environ.pop('TF_USE_LEGACY_KERAS', None)\n"
        "import rq_keras\n"
        "import tensorflow_recommenders as tfrs\n"
        "import tensorflow as tf\n"
        "import tf_keras\n"
        "assert os.environ['TF_USE_LEGACY_KERAS'] == '1'\n"
        "assert tf.keras.__name__.startswith('tf_keras'), tf.keras.__name__\n"
        "assert tf_keras.__version__.split('.')[:2] == tf.__version__.split('.')[:2], "
        "(tf_keras.__version__, tf.__version__)\n"
        "layer = tfrs.layers.dcn.Cross()\n"
        "assert isinstance(layer, tf_keras.layers.Layer)\n"
        "assert isinstance(rq_keras.ResidualQuantizer(), object)\n"
        "print('ok')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


def test_quantizer_import_does_not_load_tensorflow():
    code = "import sys, rq_keras; print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "False"


def test_the_quantizer_and_the_token_layout_are_leaves():
    """The numpy quantizer and the token layout import no layer, no loss and
    no TensorFlow: the layers read them, never the other way round."""
    code = (
        "import sys, rq_keras.quantization, rq_keras.tokens\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rq_keras'),"
        " 'tensorflow' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = [
        "rq_keras",
        "rq_keras.atomic",
        "rq_keras.clustering1d",
        "rq_keras.codebook_json",
        "rq_keras.codebook_report",
        "rq_keras.labels",
        "rq_keras.quantization",
        "rq_keras.residual_fit",
        "rq_keras.tokens",
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


def _module_imports() -> dict[str, set[str]]:
    """rq_keras module -> the rq_keras modules its top-level statements import."""
    import ast

    files = {}
    for path in (REPO / "rq_keras").rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in files.items():
        edges = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in files:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    edges.add(sub if sub in files else node.module)
        graph[module] = edges - {module}
    return graph


def test_no_module_is_over_500_lines_and_no_import_cycle():
    """One idea per module (about 500 lines is the warning) and no cycle among
    the modules' top-level imports (lazy imports inside functions aside)."""
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / "rq_keras").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not long, long
    graph = _module_imports()
    assert graph["rq_keras.model"] >= {"rq_keras.task"}  # the walk sees real imports
    done: set[str] = set()

    def visit(module, path):
        if module in path:
            raise AssertionError(f"import cycle: {' -> '.join([*path, module])}")
        if module in done:
            return
        for other in sorted(graph[module]):
            visit(other, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
