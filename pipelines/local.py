"""Running the whole pipeline on this machine through ``kfp.local``.

kfp.local lays a run out as ``<pipeline_root>/<pipeline-name>-<timestamp>/<task>/``
with each task's ``executor_output.json``; the step lines and the summary below are
read from those files, so they report what the tasks really wrote. What the tasks print
(TensorFlow, TFDS, the executor) goes to ``<run folder>/logs/<task>.log``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from components.data import splits
from components.platform.config import PipelineConfig
from components.platform.contracts import DatasetInfo
from pipelines import steps
from pipelines.runs import mark_failed
from pipelines.tasklogs import LOGS_DIR, TaskLogRouter, TaskRecord

DEFAULT_LOCAL_ROOT = "petseg-local"
RUNNERS = ("subprocess", "docker")
# What containers/build-local.sh tags; --runner docker uses them unless the config names others.
LOCAL_IMAGES = {"cpu_image": "petseg-cpu:local", "gpu_image": "petseg-gpu:local"}
EXECUTOR_OUTPUT = "executor_output.json"
# The data check's one output must stay 'train' for the pipeline's dsl.If, so why it trains
# (data changed, or no production model to compare with) is in its log line, read from there.
# ("[KFP Executor <time> INFO]: Training: ..." as the executor's logging formats it).
_TRAINING_REASON = re.compile(r"\bINFO\b[^:]*: (Training: .+)$")
# Skipped records named on the terminal; all of them are in the dataset's dataset.json.
MAX_LISTED_SKIPPED = 10


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
        """The published version directory, or None when push did not push."""
        push = self.task("push")
        if push is None:
            return None
        pushed = push.artifacts.get("pushed_model", {})
        if not pushed.get("metadata", {}).get("pushed"):
            return None
        # push sets the artifact's uri to the published version directory.
        return pushed.get("uri")

    @property
    def data_unchanged(self) -> str | None:
        """Why train, evaluate and push were skipped (data unchanged), or None."""
        check = self.task("check-data-changed")
        decision = None if check is None else check.parameters.get("Output")
        return decision if decision and decision != "train" else None

    @property
    def data_change_reason(self) -> str | None:
        """Why the data check let training run, as its step logged it (None: not found)."""
        check = self.task("check-data-changed")
        if check is None or self.data_unchanged:
            return None
        try:
            text = (self.run_dir / LOGS_DIR / f"{check.name}.log").read_text(errors="replace")
        except OSError:
            return None
        reasons = [match[1] for match in map(_TRAINING_REASON.search, text.splitlines()) if match]
        return reasons[-1] if reasons else None

    def skipped_records(self) -> tuple[list[dict[str, str]], str | None]:
        """Records ingest skipped ({split, file_name, reason}) and the dataset.json naming them."""
        ingest = self.task("ingest")
        uri = None if ingest is None else ingest.artifacts.get("dataset", {}).get("uri")
        if not uri:
            return [], None
        path = os.path.join(uri, DatasetInfo.FILE_NAME)
        try:
            entries = DatasetInfo.read(path).splits
        except (OSError, ValueError):
            return [], None
        skipped = [
            {"split": s, **record} for s, entry in entries.items() for record in entry.skipped
        ]
        return skipped, path

    @property
    def push_skip_reason(self) -> str | None:
        """Why push pushed nothing, as the push task recorded it (None when it pushed)."""
        push = self.task("push")
        if push is None:
            return "push did not run"
        metadata = push.artifacts.get("pushed_model", {}).get("metadata", {})
        if metadata.get("pushed"):
            return None
        return metadata.get("skip_reason") or "push did not run"


def localize_paths(config: PipelineConfig, base_dir: Path) -> PipelineConfig:
    """Makes relative local paths absolute, since component subprocesses may run elsewhere."""
    config = config.model_copy(deep=True)

    def absolute(path: str | None) -> str | None:
        if not path or "://" in path or os.path.isabs(path):
            return path
        return str((base_dir / path).resolve())

    config.push.destination = absolute(config.push.destination) or ""
    config.predict.input = absolute(config.predict.input) or ""
    config.data.data_dir = absolute(config.data.data_dir)
    config.data.manual_dir = absolute(config.data.manual_dir)
    config.data.path = absolute(config.data.path) or ""
    baseline = config.evaluation.baseline
    if baseline not in ("latest", "none"):
        config.evaluation.baseline = absolute(baseline) or baseline
    return config


def localize_parameters(parameters: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Makes the relative local paths among run-time parameter values absolute."""
    localized = dict(parameters)
    for name in ("data_dir", "data_path", "push_destination"):
        path = localized.get(name)
        if isinstance(path, str) and path and "://" not in path and not os.path.isabs(path):
            localized[name] = str((base_dir / path).resolve())
    return localized


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
    task_dirs = [path for path in run_dir.iterdir() if path.is_dir() and path.name != LOGS_DIR]
    task_dirs.sort(key=lambda path: (steps.position(path.name), path.name))
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


class LocalRunError(RuntimeError):
    """A step failed: which one, its own error line, and where its full log is."""

    def __init__(self, step: str, message: str, log_path: Path | None) -> None:
        super().__init__(f"step {step} failed: {message}")
        self.step, self.message = step, message
        # Only a log that exists is shown (a full disk may have kept it from being written).
        self.log_path = log_path if log_path is not None and log_path.is_file() else None


# OSErrors of space or permission: errno -> what the one line calls it.
DISK_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}
# How a step's output says so: "[Errno 28]", h5py's "errno = 28", TensorFlow's
# "...; No space left on device", or the strerror alone.
_DISK_TEXT = [
    (re.compile(rf"\[Errno {code}\]|\berrno = {code}\b|{re.escape(os.strerror(code))}"), code)
    for code in DISK_ERRNOS
]
_QUOTED_PATH = re.compile(r"(?:filename = |: )'(/[^']+)'")
_BARE_PATH = re.compile(r"(/[^\s'\",;()]+)")


def disk_problem(text: str, under: Path | None = None) -> tuple[int, str | None] | None:
    """``(errno, path)`` when a step's error text is a full disk or a refused write.

    The path is the file the error names (h5py's ``filename = '...'``, Python's
    ``: '/...'``, TensorFlow's bare path), preferring one under ``under``; None if none.
    """
    code = next((code for pattern, code in _DISK_TEXT if pattern.search(text)), None)
    if code is None:
        return None
    paths = _QUOTED_PATH.findall(text) or _BARE_PATH.findall(text)
    if under is not None:
        paths = [path for path in paths if path.startswith(str(under))] or paths
    return code, (paths[0].rstrip(".") if paths else None)


def disk_message(code: int, path: str | None, pipeline_root: Path) -> str:
    """The one line for a full disk or a refused write: what, which file, what to do."""
    where = path or str(pipeline_root)
    if code in (errno.ENOSPC, errno.EDQUOT):
        todo = f"free space under {pipeline_root} and run again; `petseg runs gc --keep N` "
        todo += "removes old run folders"
    else:
        todo = f"make {pipeline_root} writable or choose another --pipeline-root, and run again"
    return f"{DISK_ERRNOS[code]}: {where}; {todo}"


class LocalRunInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped a run; its steps' processes were terminated and reaped."""

    def __init__(
        self,
        step: str | None,
        signal_name: str,
        run_dir: Path | None,
        still_running: list[str] | None = None,
    ) -> None:
        where = f"during step {step}" if step else "between steps"
        folder = f" (run folder {run_dir}, marked failed)" if run_dir is not None else ""
        left = (
            f"; could not stop {', '.join(still_running)}: docker stop them"
            if still_running
            else ""
        )
        super().__init__(
            f"interrupted by {signal_name} {where}{folder}; running the same command again "
            f"starts a new run in which every step runs again (see README, 'Interrupted "
            f"runs'){left}"
        )
        self.step, self.signal_name, self.run_dir = step, signal_name, run_dir
        self.still_running = still_running or []


class _Interrupted(BaseException):
    """Raised in the main thread by the signal handler.

    Not an Exception, so kfp's handlers of task errors do not take it for a failed task.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


# A step's process gets this long to exit after SIGTERM before it is killed.
TERMINATE_GRACE_S = 10.0


def _descendants(pid: int, skip: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Every process below pid (children first found through /proc; Linux).

    Processes in ``skip`` and everything below them are left out.
    """
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop()
        if child in skip:
            continue
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


@contextlib.contextmanager
def _stopped_by_signals():
    """SIGINT/SIGTERM: terminate every step process (kill after a grace), raise _Interrupted.

    kfp.local waits for the step's process as the exception unwinds, so it is reaped; a
    timer kills what ignores SIGTERM, so that wait ends. Processes this one had started
    before the run (a caller's own servers) are not the run's and are left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state: dict[str, Any] = {}
    before = set(_descendants(os.getpid()))

    def handler(signum: int, _frame: Any) -> None:
        pids = _descendants(os.getpid(), skip=before)
        _signal_all(pids, signal.SIGTERM)
        if state:  # a second signal while stopping: no more waiting
            _signal_all(pids, signal.SIGKILL)
            return
        state["signal"] = signal.Signals(signum).name
        timer = threading.Timer(TERMINATE_GRACE_S, lambda: _signal_all(pids, signal.SIGKILL))
        timer.daemon = True
        timer.start()
        state["timer"] = timer
        raise _Interrupted(state["signal"])

    previous = {
        signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        if "timer" in state:
            state["timer"].cancel()


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


# The figures a step's line shows: (artifact, metadata keys) in that order.
KEY_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "train": ("metrics", ("val_mean_iou", "val_accuracy", "loss")),
    "evaluate": ("metrics", ("mean_iou", "pixel_accuracy")),
}


def key_figures(task: TaskResult) -> str:
    """One line's worth of what a finished step produced (counts, weights, metrics, push)."""
    figures: list[str] = []
    step = getattr(steps.step_of(task.name), "name", task.name)
    dataset = task.artifacts.get("dataset", {}).get("metadata", {})
    if isinstance(dataset.get("num_records"), dict):
        order = {split: index for index, split in enumerate(splits.SPLITS)}
        ordered = sorted(dataset["num_records"].items(), key=lambda item: order.get(item[0], 9))
        counts = ", ".join(f"{split} {int(n)}" for split, n in ordered)
        figures.append(f"records {counts}")
        skipped = sum(int(n) for n in (dataset.get("num_skipped") or {}).values())
        if skipped:
            figures.append(f"skipped {skipped} (listed after the run)")
    weights = task.artifacts.get("class_weights", {}).get("metadata", {})
    if weights.get("weights"):
        pairs = zip(weights.get("classes", []), weights["weights"], strict=False)
        shown = ", ".join(f"{name} {float(weight):.2f}" for name, weight in pairs)
        figures.append(f"weights ({weights.get('strategy', '?')}) {shown}")
    artifact, keys = KEY_METRICS.get(step, ("", ()))
    metrics = task.artifacts.get(artifact, {}).get("metadata", {})
    figures.extend(f"{key} {_number(metrics[key])}" for key in keys if key in metrics)
    if "blessed" in task.parameters:
        figures.append("blessed" if task.parameters["blessed"] else "not blessed")
    pushed = task.artifacts.get("pushed_model", {})
    push = pushed.get("metadata", {})
    if push.get("pushed") and push.get("version"):
        figures.append(f"version {push['version']} at {pushed['uri']}")
    elif "skip_reason" in push:
        figures.append(f"not pushed: {push['skip_reason']}")
    predictions = task.artifacts.get("predictions", {}).get("metadata", {})
    if predictions.get("skip_reason"):
        figures.append(f"nothing predicted: {predictions['skip_reason']}")
    elif "predicted" in predictions:
        unreadable = int(predictions.get("unreadable", 0))
        figures.append(f"predicted {int(predictions['predicted'])} images, {unreadable} unreadable")
    return ", ".join(figures)


class StepLines:
    """Prints one line when a step starts and one when it ends, as they happen."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def _print(self, text: str) -> None:
        self.out.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.out.flush()

    def started(self, task: TaskRecord) -> None:
        self._print(f"started  {task.name}")

    def ended(self, task: TaskRecord, run_dir: Path | None) -> None:
        if task.status == "succeeded":
            figures = key_figures(_read_task(run_dir / task.name)) if run_dir else ""
            took = _duration(task.seconds)
            self._print(f"finished {task.name} in {took}" + (f": {figures}" if figures else ""))
        elif task.status == "failed":
            self._print(f"FAILED   {task.name} after {_duration(task.seconds)}")
        else:
            self._print(f"{task.status:<8} {task.name}")


def default_pipeline_root(runner: str, base_dir: Path) -> Path:
    """Subprocess runs: ./petseg-local/pipeline_root. Docker runs: ./petseg-local itself.

    Containers see only the pipeline root, so under --runner docker it is the folder that
    also holds the demo's push destination (petseg-local/models).
    """
    local_dir = base_dir / DEFAULT_LOCAL_ROOT
    return local_dir if runner == "docker" else local_dir / "pipeline_root"


def with_local_images(config: PipelineConfig) -> PipelineConfig:
    """The locally built images, for each runtime image the config leaves at its default."""
    defaults = type(config.runtime)()
    updates = {
        field: image
        for field, image in LOCAL_IMAGES.items()
        if getattr(config.runtime, field) == getattr(defaults, field)
    }
    if not updates:
        return config
    config = config.model_copy(deep=True)
    config.runtime = config.runtime.model_copy(update=updates)
    return config


def paths_outside(config: PipelineConfig, pipeline_root: Path) -> list[str]:
    """Local paths in the config that a container (which mounts only the root) cannot see."""
    candidates = {
        "push.destination": config.push.destination,
        "data.path": config.data.path,
        "data.data_dir": config.data.data_dir,
        "data.manual_dir": config.data.manual_dir,
        "predict.input": config.predict.input,
    }
    if config.evaluation.baseline not in ("latest", "none"):
        candidates["evaluation.baseline"] = config.evaluation.baseline
    outside = []
    for name, path in candidates.items():
        if not path or "://" in path:
            continue
        if not Path(path).resolve().is_relative_to(pipeline_root):
            outside.append(f"{name}={path}")
    return outside


# Every container a run starts carries this label (value: the run's own id), so an
# interrupted run can find and stop them: they run under dockerd, not below petseg.
RUN_LABEL = "petseg.run"


def stop_run_containers(run_id: str, client: Any = None) -> list[str]:
    """Stops (SIGTERM, then SIGKILL after the grace) every container labelled with run_id.

    Returns:
        The names of those that could not be stopped (empty: none is left running).
    """
    import docker

    own_client = client is None
    client = client or docker.from_env()
    left = []
    try:
        containers = client.containers.list(filters={"label": f"{RUN_LABEL}={run_id}"})
        for container in containers:
            try:
                container.stop(timeout=int(TERMINATE_GRACE_S))
            except docker.errors.NotFound:
                pass  # it ended (and was removed) meanwhile
            except docker.errors.DockerException:
                left.append(container.name)
    except docker.errors.DockerException:
        left.append(f"the containers labelled {RUN_LABEL}={run_id}")
    finally:
        if own_client:
            client.close()
    return left


def docker_runner(config: PipelineConfig, pipeline_root: Path, run_id: str = "") -> Any:
    """kfp.local.DockerRunner: no network, this user's ids, the images present locally.

    Args:
        config: the effective config (run-time parameters applied, local paths absolute).
        pipeline_root: the absolute pipeline root, the only folder the containers mount.
        run_id: labels every container (``RUN_LABEL``) so an interrupt can stop them.

    Raises:
        ValueError: a local path in the config lies outside the pipeline root, or an image
            is not in the local Docker engine, or no engine answers.
    """
    from kfp import local

    outside = paths_outside(config, pipeline_root)
    if outside:
        raise ValueError(
            f"--runner docker mounts only the pipeline root {str(pipeline_root)!r} into the "
            f"containers; {', '.join(outside)} lies outside it and would be written inside a "
            "container and lost. Put it under the pipeline root or choose a --pipeline-root "
            "that contains it."
        )
    try:
        import docker
    except ImportError:
        raise ValueError(
            "--runner docker needs the 'docker' package (dev group): uv sync --locked"
        ) from None
    try:
        client = docker.from_env()
        try:
            for image in sorted({config.runtime.cpu_image, config.runtime.gpu_image}):
                try:
                    client.images.get(image)
                except docker.errors.ImageNotFound:
                    raise ValueError(
                        f"image {image!r} is not in the local Docker engine; build it with "
                        "containers/build-local.sh (or set runtime.cpu_image/gpu_image)"
                    ) from None
        finally:
            client.close()
    except docker.errors.DockerException as error:
        raise ValueError(f"--runner docker: no Docker engine answers ({error})") from None
    return local.DockerRunner(
        labels={RUN_LABEL: run_id},
        network_mode="none",
        # Outputs belong to whoever ran petseg; HOME must be writable for Keras and TFDS.
        user=f"{os.getuid()}:{os.getgid()}",
        environment={"HOME": "/tmp"},
    )


def run_local(
    config: PipelineConfig,
    pipeline_root: str | Path | None = None,
    parameters: dict[str, Any] | None = None,
    *,
    runner: str = "subprocess",
    out: TextIO | None = None,
    verbose: bool = False,
    scheduled: bool = False,
) -> LocalRunSummary:
    """Runs every task here or in the component images and summarises what each one wrote.

    Args:
        config: the settings compiled into the pipeline.
        pipeline_root: where kfp.local writes the run (default ./petseg-local/pipeline_root;
            ./petseg-local with the docker runner).
        parameters: run-time parameter values (``RUNTIME_PARAMETERS`` names), as a cloud
            run would pass them; unnamed ones keep the compiled values.
        runner: 'subprocess' runs every task in this Python environment; 'docker' runs each
            in its image (runtime.cpu_image / gpu_image, by default the local builds),
            with no network.
        out: where the step lines go (default sys.stdout).
        verbose: also copy everything the tasks and kfp.local print to ``out``.
        scheduled: run the pipeline as compiled for a schedule (create_pipeline's flag).

    Raises:
        LocalRunError: a step failed; names it, its error line and its log file.
        ValueError: an unknown runner, or a docker run that cannot work (see docker_runner).
    """
    from kfp import local

    from components.platform.config import apply_runtime_parameters
    from pipelines.segmentation import create_pipeline

    if runner not in RUNNERS:
        raise ValueError(f"unknown runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    out = out or sys.stdout
    base_dir = Path.cwd()
    config = localize_paths(config, base_dir)
    parameters = localize_parameters(parameters or {}, base_dir)
    pipeline_root = prepare_pipeline_root(
        pipeline_root or default_pipeline_root(runner, base_dir), base_dir
    )
    before = set(pipeline_root.glob(f"{config.name}-*"))

    run_id = uuid.uuid4().hex
    if runner == "docker":
        config = with_local_images(config)
        task_runner = docker_runner(
            apply_runtime_parameters(config, parameters), pipeline_root, run_id
        )
    else:
        task_runner = local.SubprocessRunner(use_venv=False)
    local.init(runner=task_runner, pipeline_root=str(pipeline_root), raise_on_error=True)
    pipeline_func = create_pipeline(config, target="local", scheduled=scheduled)
    steps = StepLines(out)
    router = TaskLogRouter(
        pipeline_root,
        config.name,
        on_start=steps.started,
        on_end=steps.ended,
        echo=out if verbose else None,
    )
    try:
        with _stopped_by_signals(), router.capturing(), warnings.catch_warnings():
            # Images, resources and display names are for the cloud; locally they are noise.
            warnings.filterwarnings(
                "ignore", message=".*have no effect in the current local runner"
            )
            warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
            pipeline_func(**parameters)
    except _Interrupted as stop:
        step = _running_step(router)
        # A container is dockerd's child, not ours: the signal handler cannot reach it.
        left = stop_run_containers(run_id) if runner == "docker" else []
        mark_failed(router.run_dir, f"interrupted by {stop.signal_name} during {step}")
        raise LocalRunInterrupted(step, stop.signal_name, router.run_dir, left) from None
    except OSError as error:  # kfp.local itself, e.g. starting a step or reading its outputs
        step = _running_step(router) or "pipeline"
        if error.errno in DISK_ERRNOS:
            message = disk_message(error.errno, error.filename, pipeline_root)
        else:
            message = f"{type(error).__name__}: {error}"
        raise _failed(router, step, message, None) from None
    except RuntimeError as error:
        failed = [task for task in router.tasks.values() if task.status == "failed"]
        if not failed:
            raise
        step = failed[-1].name
        message = router.last_error(step) or str(error)
        # A full disk or a refused write in the step's error; or a full disk anywhere in its
        # last lines (it may surface as another error), never a stray "Permission denied".
        found = disk_problem(message, pipeline_root)
        if found is None:
            earlier = disk_problem(router.task_output(step), pipeline_root)
            if earlier is not None and earlier[0] in (errno.ENOSPC, errno.EDQUOT):
                found = earlier
        if found is None and router.write_error is not None:
            path, _, write_error = router.write_error
            if write_error.errno in DISK_ERRNOS:
                found = (write_error.errno, str(path))
        if found is not None:  # one line: the step's log may be as cut short as the disk
            raise _failed(router, step, disk_message(*found, pipeline_root), None) from None
        raise _failed(router, step, message, router.log_path(step)) from None
    if router.write_error is not None:
        path, task_name, error = router.write_error
        step = task_name or _running_step(router) or "logs"
        if error.errno in DISK_ERRNOS:
            message = f"writing the step log: {disk_message(error.errno, str(path), pipeline_root)}"
        else:
            message = f"writing the step log {path}: {error.strerror or error}"
        raise _failed(router, step, message, None)
    return summarize_run(_latest_run_dir(pipeline_root, config.name, before))


def _failed(router: TaskLogRouter, step: str, message: str, log_path: Path | None) -> LocalRunError:
    """The run's error, after marking its folder failed (with the reason when it fits)."""
    mark_failed(router.run_dir, f"step {step} failed: {message}")
    return LocalRunError(step, message, log_path)


def _running_step(router: TaskLogRouter) -> str | None:
    running = [task.name for task in router.tasks.values() if task.status == "running"]
    return running[-1] if running else None


def _class_names(summary: LocalRunSummary) -> list[str]:
    for task in summary.tasks.values():
        for artifact in task.artifacts.values():
            classes = artifact.get("metadata", {}).get("classes")
            if isinstance(classes, list) and all(isinstance(name, str) for name in classes):
                return classes
    return []


def _metric_lines(numbers: dict[str, Any], classes: list[str]) -> list[str]:
    """One line per metric, and one per per-class statistic (``iou: pet 0.58, ...``).

    Grouping by class keeps the summary short however many classes the dataset has.
    """

    def shown(value: Any) -> str:
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        return f"{value:g}" if whole else f"{value:.4f}"

    per_class: dict[str, dict[str, Any]] = {}
    lines = []
    longest_first = sorted(classes, key=len, reverse=True)
    for key, value in sorted(numbers.items()):
        name = next((name for name in longest_first if key.endswith("_" + name)), None)
        if name is None:
            lines.append(f"    {key} = {shown(value)}")
        else:
            per_class.setdefault(key[: -len(name) - 1], {})[name] = value
    for statistic, values in sorted(per_class.items()):
        pairs = ", ".join(f"{name} {shown(values[name])}" for name in classes if name in values)
        lines.append(f"    {statistic}: {pairs}")
    return lines


def _interval_line(summary: LocalRunSummary) -> str | None:
    """The evaluation's 95% interval: of the difference to production, else of mean IoU."""
    evaluate = summary.task("evaluate")
    if evaluate is None:
        return None
    figures = evaluate.artifacts.get("metrics", {}).get("metadata", {})
    if "mean_iou_difference_low" in figures:
        low, high = figures["mean_iou_difference_low"], figures["mean_iou_difference_high"]
        return (
            f"mean IoU vs production: {figures['mean_iou_difference']:+.4f}, "
            f"95% interval {low:+.4f} to {high:+.4f}"
        )
    if "mean_iou_low" in figures:
        return (
            f"mean IoU {figures['mean_iou']:.4f}, 95% interval "
            f"{figures['mean_iou_low']:.4f} to {figures['mean_iou_high']:.4f}"
        )
    return None


def format_summary(summary: LocalRunSummary) -> str:
    """Human-readable report: every artifact's location, the metrics, the decision, the push."""
    lines = [f"run folder: {summary.run_dir}", f"step logs: {summary.run_dir / LOGS_DIR}"]
    for task_name, task in summary.tasks.items():
        logged = {
            key for artifact in task.artifacts.values() for key in artifact.get("metadata", {})
        }
        shown_parameters = {
            key: value
            for key, value in task.parameters.items()
            # Not the resolved config sections (long JSON), nor what a metric line already says.
            if not key.endswith("_config") and key not in logged
        }
        task_lines = []
        for artifact_name, artifact in task.artifacts.items():
            uri = artifact.get("uri") or ""
            # Metrics-only artifacts (Metrics, ClassificationMetrics) have a uri but no file:
            # only paths that exist are printed.
            has_file = "://" in uri or (bool(uri) and os.path.exists(uri))
            metadata = artifact.get("metadata", {})
            numbers = {
                key: value
                for key, value in metadata.items()
                if isinstance(value, int | float) and not isinstance(value, bool)
            }
            if artifact_name == "check_metrics":
                # The verdicts get their own line below; list only the checks that found something.
                numbers = {key: value for key, value in numbers.items() if value}
            if artifact_name == "metrics" and task_name == "evaluate":
                # Slices, boundary IoU and interval bounds are in the report; the interval
                # gets one line below.
                hidden = ("slice_", "mean_iou_", "boundary_iou_", "mean_boundary_iou")
                numbers = {
                    key: value for key, value in numbers.items() if not key.startswith(hidden)
                }
            figures = []
            if artifact_name in ("metrics", "eval_metrics", "check_metrics") and numbers:
                figures = _metric_lines(numbers, _class_names(summary))
            if has_file or figures:  # else neither a file nor figures: nothing to show
                task_lines.append(
                    f"  {artifact_name}: {uri}" if has_file else f"  {artifact_name}:"
                )
                task_lines.extend(figures)
        for key, value in shown_parameters.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            task_lines.append(f"  {key} = {shown}")
        if task_lines:  # else the step said how it went as it ran
            lines.extend([f"[{task_name}]", *task_lines])
    checked = summary.task("data-statistics")
    if checked is not None:
        verdicts = checked.artifacts.get("statistics", {}).get("metadata", {})
        errors = ", ".join(verdicts.get("errors") or []) or "no errors"
        warnings = ", ".join(verdicts.get("warnings") or []) or "no warnings"
        lines.append(f"data checks: {errors}, {warnings}")
    skipped, listed_in = summary.skipped_records()
    if skipped:
        lines.append(f"skipped records: {len(skipped)}, all listed in {listed_in}")
        lines.extend(
            f"  {record['split']}: {record.get('file_name')}: {record.get('reason')}"
            for record in skipped[:MAX_LISTED_SKIPPED]
        )
        if len(skipped) > MAX_LISTED_SKIPPED:
            lines.append(f"  ... and {len(skipped) - MAX_LISTED_SKIPPED} more")
    if summary.data_change_reason:
        lines.append(summary.data_change_reason)
    if summary.data_unchanged:
        lines.append(summary.data_unchanged)
        return "\n".join(lines)
    interval = _interval_line(summary)
    if interval:
        lines.append(interval)
    lines.append(f"blessed: {summary.blessed}")
    if summary.pushed_uri:
        lines.append(f"pushed model: {summary.pushed_uri}")
    else:
        lines.append(f"not pushed: {summary.push_skip_reason}")
    predict = summary.task("predict")
    if predict is not None:
        outcome = predict.artifacts.get("predictions", {})
        metadata = outcome.get("metadata", {})
        if metadata.get("skip_reason"):
            lines.append(f"no predictions: {metadata['skip_reason']}")
        else:
            lines.append(
                f"predictions: {outcome.get('uri')} ({metadata.get('predicted')} images, "
                f"{metadata.get('unreadable')} unreadable)"
            )
    return "\n".join(lines)
