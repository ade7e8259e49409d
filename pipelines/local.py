"""Running the whole pipeline on this machine through ``kfp.local``.

kfp.local lays a run out as ``<pipeline_root>/<pipeline-name>-<timestamp>/<task>/``
with each task's ``executor_output.json``; the summary below is read from
those files, so it reports what the tasks really wrote.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig

DEFAULT_LOCAL_ROOT = "petseg-local"
EXECUTOR_OUTPUT = "executor_output.json"


@dataclass
class TaskResult:
    name: str
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {uri, metadata}
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalRunSummary:
    run_dir: Path
    tasks: dict[str, TaskResult]

    def task(self, prefix: str) -> TaskResult | None:
        """The task whose name starts with ``prefix`` (kfp.local may suffix names)."""
        for name, result in self.tasks.items():
            if name == prefix or name.startswith(prefix + "-"):
                return result
        return None

    @property
    def blessed(self) -> bool | None:
        evaluate = self.task("evaluate")
        return None if evaluate is None else bool(evaluate.parameters.get("blessed"))

    @property
    def pushed_uri(self) -> str | None:
        push = self.task("push")
        if push is None:
            return None
        artifact = push.artifacts.get("pushed_model", {})
        return artifact.get("metadata", {}).get("version_uri") or artifact.get("uri")


def localize_paths(config: PipelineConfig, base_dir: Path) -> PipelineConfig:
    """Makes relative local paths absolute, since component subprocesses may run elsewhere."""
    config = config.model_copy(deep=True)

    def absolute(path: str | None) -> str | None:
        if not path or "://" in path or os.path.isabs(path):
            return path
        return str((base_dir / path).resolve())

    config.push.destination = absolute(config.push.destination) or ""
    config.data.data_dir = absolute(config.data.data_dir)
    config.data.manual_dir = absolute(config.data.manual_dir)
    baseline = config.evaluation.baseline
    if baseline not in ("latest", "none"):
        config.evaluation.baseline = absolute(baseline) or baseline
    return config


def _read_task(task_dir: Path) -> TaskResult:
    result = TaskResult(name=task_dir.name)
    output_file = task_dir / EXECUTOR_OUTPUT
    if not output_file.is_file():
        return result
    payload = json.loads(output_file.read_text())
    for name, entry in payload.get("artifacts", {}).items():
        artifacts = entry.get("artifacts", [])
        if artifacts:
            result.artifacts[name] = {
                "uri": artifacts[0].get("uri", ""),
                "metadata": artifacts[0].get("metadata", {}),
            }
    result.parameters = dict(payload.get("parameterValues", {}))
    return result


def summarize_run(run_dir: Path) -> LocalRunSummary:
    tasks = {
        task_dir.name: _read_task(task_dir)
        for task_dir in sorted(run_dir.iterdir())
        if task_dir.is_dir()
    }
    return LocalRunSummary(run_dir=run_dir, tasks=tasks)


def _latest_run_dir(pipeline_root: Path, pipeline_name: str, before: set[Path]) -> Path:
    candidates = [
        path
        for path in pipeline_root.glob(f"{pipeline_name}-*")
        if path.is_dir() and path not in before
    ]
    if not candidates:
        raise RuntimeError(f"kfp.local wrote no run folder for {pipeline_name} in {pipeline_root}")
    return max(candidates, key=lambda path: path.stat().st_mtime)


def run_local(config: PipelineConfig, pipeline_root: str | Path | None = None) -> LocalRunSummary:
    """Runs every task in this Python environment and summarises what each one wrote."""
    from kfp import local

    from pipelines.segmentation import create_pipeline

    base_dir = Path.cwd()
    config = localize_paths(config, base_dir)
    pipeline_root = Path(pipeline_root or base_dir / DEFAULT_LOCAL_ROOT / "pipeline_root").resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    if not os.access(pipeline_root, os.W_OK):
        raise PermissionError(f"pipeline root {str(pipeline_root)!r} is not writable")
    before = set(pipeline_root.glob(f"{config.name}-*"))

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )
    pipeline_func = create_pipeline(config, target="local")
    pipeline_func()
    return summarize_run(_latest_run_dir(pipeline_root, config.name, before))


def format_summary(summary: LocalRunSummary) -> str:
    """Human-readable report: every artifact's location, the metrics, the decision, the push."""
    lines = [f"run folder: {summary.run_dir}"]
    for task_name, task in summary.tasks.items():
        lines.append(f"[{task_name}]")
        for artifact_name, artifact in task.artifacts.items():
            lines.append(f"  {artifact_name}: {artifact['uri']}")
            metadata = artifact.get("metadata", {})
            numbers = {
                key: value
                for key, value in metadata.items()
                if isinstance(value, int | float) and not isinstance(value, bool)
            }
            if artifact_name in ("metrics", "eval_metrics") and numbers:
                for key, value in sorted(numbers.items()):
                    shown = f"{value:.4f}" if isinstance(value, float) else str(value)
                    lines.append(f"    {key} = {shown}")
        for key, value in task.parameters.items():
            lines.append(f"  {key} = {value}")
    blessed = summary.blessed
    lines.append(f"blessed: {blessed}")
    if blessed:
        lines.append(f"pushed model: {summary.pushed_uri or 'no push destination configured'}")
    else:
        evaluate = summary.task("evaluate")
        reason = evaluate.parameters.get("reason") if evaluate else None
        lines.append(f"not pushed: {reason or 'evaluation did not run'}")
    return "\n".join(lines)
