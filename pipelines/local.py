"""Running the whole pipeline on this machine through ``kfp.local``.

kfp.local lays a run out as ``<pipeline_root>/<pipeline-name>-<timestamp>/<task>/``
with each task's ``executor_output.json``; the summary below is read from
those files, so it reports what the tasks really wrote.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.config import PipelineConfig

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
        # push sets the artifact's uri to the published version directory.
        return push.artifacts.get("pushed_model", {}).get("uri")


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


PIPELINE_ORDER = ("ingest", "compute-class-weights", "train", "evaluate", "push")


def _pipeline_position(task_name: str) -> int:
    for position, prefix in enumerate(PIPELINE_ORDER):
        if task_name == prefix or task_name.startswith(prefix + "-"):
            return position
    return len(PIPELINE_ORDER)


def summarize_run(run_dir: Path) -> LocalRunSummary:
    task_dirs = [path for path in run_dir.iterdir() if path.is_dir()]
    task_dirs.sort(key=lambda path: (_pipeline_position(path.name), path.name))
    tasks = {task_dir.name: _read_task(task_dir) for task_dir in task_dirs}
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


def prepare_pipeline_root(pipeline_root: str | Path | None, base_dir: Path) -> Path:
    """Creates the pipeline root and checks it is writable, before any task runs.

    Raises:
        PermissionError: naming the folder, when it cannot be created or written.
    """
    root = Path(pipeline_root or base_dir / DEFAULT_LOCAL_ROOT / "pipeline_root").resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(
            f"pipeline root {str(root)!r} is not writable: cannot create it "
            f"({error.strerror or error})"
        ) from None
    if not os.access(root, os.W_OK):
        raise PermissionError(f"pipeline root {str(root)!r} is not writable")
    return root


def _fix_condition_outputs_in_kfp_local() -> None:
    """Lets kfp.local's dsl.If read a named output such as evaluate's ``blessed``.

    kfp.local 2.17 resolves ``pipelinechannel--<task>-<output>`` in a condition
    only when the output is called ``Output``; any other name is looked up as a
    pipeline input, fails, and the condition is silently taken as False, so push
    would never run locally. Vertex AI and Kubeflow evaluate the same compiled
    condition correctly, so the fix belongs here and not in the pipeline.
    """
    from kfp.local.orchestrator import enhanced_dag_orchestrator

    evaluator = enhanced_dag_orchestrator.ConditionEvaluator
    if getattr(evaluator, "_petseg_named_outputs", False):
        return
    upstream_resolve = evaluator._resolve_pipeline_channel

    def resolve(channel_ref: str, io_store: Any) -> Any:
        reference = channel_ref.removeprefix("pipelinechannel--")
        if "-" in reference and "--" not in reference:
            task_name, output_key = reference.rsplit("-", 1)
            try:
                return io_store.get_task_output(task_name, output_key)
            except (ValueError, KeyError):
                pass
        return upstream_resolve(channel_ref, io_store)

    evaluator._resolve_pipeline_channel = staticmethod(resolve)
    evaluator._petseg_named_outputs = True


def run_local(config: PipelineConfig, pipeline_root: str | Path | None = None) -> LocalRunSummary:
    """Runs every task in this Python environment and summarises what each one wrote."""
    from kfp import local

    from pipelines.segmentation import create_pipeline

    base_dir = Path.cwd()
    config = localize_paths(config, base_dir)
    pipeline_root = prepare_pipeline_root(pipeline_root, base_dir)
    before = set(pipeline_root.glob(f"{config.name}-*"))

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )
    _fix_condition_outputs_in_kfp_local()
    pipeline_func = create_pipeline(config, target="local")
    with warnings.catch_warnings():
        # Images, resources and display names are for the cloud; locally they are noise.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
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
