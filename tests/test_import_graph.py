"""Imports point one way: CLI and pipeline → component wrappers → core, with no cycles.

Read from the source with ``ast`` (every import, module level or inside a
function), so a lazy import that reaches up or closes a loop is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_imports(path: Path, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name in known)
    return found


def _graph() -> dict[str, set[str]]:
    files = sorted((ROOT / "components").rglob("*.py")) + sorted((ROOT / "pipelines").rglob("*.py"))
    modules = {_module_name(path): path for path in files}
    known = set(modules)
    return {name: _project_imports(path, known) - {name} for name, path in modules.items()}


def _layer(module: str) -> int:
    if module.startswith("pipelines"):
        return 2
    if module.startswith("components.ops"):
        return 1
    return 0


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_core_modules_import_each_other_without_cycles():
    graph = {
        module: {target for target in targets if _layer(target) == 0 and target != "components"}
        for module, targets in _graph().items()
        if _layer(module) == 0
    }
    cycles = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_graph_sees_real_edges():
    """Guards the two tests above against a parser that finds nothing."""
    graph = _graph()
    assert "components.platform.config" in graph["components.data.ingest"]
    assert "components.evaluation.metrics" in graph["components.evaluation.report"]
    assert "pipelines.segmentation" in graph["pipelines.local"]


def test_platform_package_imports_no_other_component_package():
    """Config, contracts and files sit under every step; reaching up would tie them to one."""
    reaching_up = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if module.startswith("components.platform")
        for target in targets
        if target.startswith("components.") and not target.startswith("components.platform")
    ]
    assert reaching_up == []
