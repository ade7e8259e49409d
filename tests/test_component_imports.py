"""Component modules stay light and thin; the core steps they call keep their shape.

Compiling or submitting the pipeline must not need TensorFlow, and a body
that forgets an import it needs would only fail inside the container, so
both rules are checked here (the pipelines-components catalog enforces the
first with a script). Each body stays a short shell around one core step
that takes one typed input and returns a contract.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from components.platform.contracts import StepInputs

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


# Each op → the core step it calls: (module, function).
CORE_STEPS = {
    "resolve_config": ("components.platform.contracts", "ResolvedConfig.run"),
    "ingest": ("components.data.beam_ingest", "run"),
    "data_validation": ("components.data.data_validation", "run"),
    "enforce_data_checks": ("components.data.data_validation", "enforce_saved"),
    "skip_unchanged": ("components.data.skip_unchanged", "run"),
    "class_weights": ("components.model.class_weights", "run"),
    "train": ("components.model.train", "run"),
    "evaluate": ("components.evaluation.evaluate", "run"),
    "push": ("components.publish.push", "run"),
    "notify": ("components.platform.notify", "run"),
    "predict": ("components.publish.predict", "run"),
}


@pytest.mark.parametrize("path", OPS, ids=lambda path: path.name)
def test_no_component_module_is_over_40_lines(path):
    assert len(path.read_text().splitlines()) <= 40


@pytest.mark.parametrize("op", sorted(CORE_STEPS))
def test_every_core_step_takes_one_typed_input_and_returns_a_contract(op):
    module, name = CORE_STEPS[op]
    step = importlib.import_module(module)
    for part in name.split("."):
        step = getattr(step, part)
    (parameter,) = inspect.signature(step).parameters.values()
    hints = typing.get_type_hints(step)
    inputs, outcome = hints[parameter.name], hints["return"]
    assert issubclass(inputs, StepInputs) and inputs.model_config["frozen"]
    assert issubclass(outcome, BaseModel) and callable(getattr(outcome, "to_metadata", None))
    body = (ROOT / "components" / "ops" / f"{op}.py").read_text()
    assert f"{inputs.__name__}.of(" in body  # the op builds exactly this input


def test_every_component_module_defines_a_component():
    assert set(CORE_STEPS) == {path.stem for path in OPS} - {"__init__"}

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
