"""Component modules stay light: heavy imports live inside component bodies.

Compiling or submitting the pipeline must not need TensorFlow, and a body
that forgets an import it needs would only fail inside the container, so
both rules are checked here (the pipelines-components catalog enforces the
first with a script).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPS = sorted((ROOT / "components" / "ops").glob("*.py"))
ALLOWED_MODULE_LEVEL = {"kfp", "typing", "components.ops", "__future__"}


def _module_level_imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", OPS, ids=lambda path: path.name)
def test_component_modules_import_only_kfp_at_module_level(path):
    imports = _module_level_imports(ast.parse(path.read_text()))
    heavy = {
        name
        for name in imports
        if not any(
            name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED_MODULE_LEVEL
        )
    }
    assert not heavy, f"{path.name} imports {sorted(heavy)} at module level; import inside the body"


def test_every_component_module_defines_a_component():
    names = {path.stem for path in OPS} - {"__init__"}
    assert names == {
        "resolve_config",
        "ingest",
        "data_validation",
        "enforce_data_checks",
        "skip_unchanged",
        "class_weights",
        "train",
        "evaluate",
        "push",
        "notify",
        "predict",
    }


def test_compiling_the_pipeline_imports_no_tensorflow():
    code = (
        "import sys\n"
        "from components.platform.config import load_config\n"
        "from pipelines.segmentation import create_pipeline\n"
        "create_pipeline(load_config('tutorial'))\n"
        "heavy = ('tensorflow', 'tensorflow_datasets', 'keras')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
