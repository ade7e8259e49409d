"""Which task of a run failed, and its error line, kept next to the task's outputs.

Under kfp.local the exit handler's ``PipelineTaskFinalStatus`` names only the group it
wraps (``exit-handler-1``), so the run-end report could not say which task failed or why.
Each component therefore records its own uncaught exception as ``failure.json`` in its
task folder (the folder of the executor's output file, ``<root>/<run>/<task>/`` under
kfp.local), and the notify task reads its siblings' records. On Vertex AI the notify task
asks the job itself (``notify.vertex_failed_tasks``) and these records are only a fallback.

A record is written by an excepthook, not by wrapping each body, so a component opts in
with one line and nothing of its logic moves; the traceback is still printed and the
task still fails exactly as before.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components.platform import files

FAILURE_FILE = "failure.json"
MAX_ERROR_CHARS = 500


def task_folder(argv: Sequence[str] | None = None) -> Path | None:
    """The running task's own output folder, from the executor input KFP passed it.

    Every compiled component is started with ``--executor_input {{$}}``; its
    ``outputs.outputFile`` lies in the task's folder on kfp.local and on Vertex AI
    (``/gcs/...``). None when there is no executor input or the folder is not a local
    or mounted path (a ``gs://`` root seen from outside a container).
    """
    argv = list(sys.argv if argv is None else argv)
    try:
        executor_input = json.loads(argv[argv.index("--executor_input") + 1])
        output_file = executor_input["outputs"]["outputFile"]
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    if not output_file or "://" in output_file:
        return None
    return Path(output_file).parent


def error_line(error: BaseException) -> str:
    """``Type: message``, the traceback's last line, its message's lines joined into one."""
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    name = type(error).__name__
    return (f"{name}: {message}" if message else name)[:MAX_ERROR_CHARS]


def write_failure(folder: Path, task: str, error: BaseException) -> Path:
    """Writes ``failure.json`` {task, error_type, error_line} into the task's folder."""
    path = folder / FAILURE_FILE
    record = {"task": task, "error_type": type(error).__name__, "error_line": error_line(error)}
    files.write_json(str(path), record)  # whole or not at all, even on a full disk
    return path


def record_failures(argv: Sequence[str] | None = None) -> Path | None:
    """Records this task's uncaught exception in its folder when the process ends on one.

    Called first thing in a component body. A record left by an earlier attempt of the same
    task (a retried train) is removed, so only the attempt that ended the task counts. The
    previous excepthook still runs (the traceback is printed, the exit code is 1).

    Returns:
        The folder the record would go to, or None when the task has none (then nothing
        is recorded).
    """
    folder = task_folder(argv)
    if folder is None:
        return None
    task = _task_name(folder)
    (folder / FAILURE_FILE).unlink(missing_ok=True)
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        try:
            if not isinstance(error, KeyboardInterrupt):
                write_failure(folder, task, error)
        except OSError as write_error:  # never hide the task's own error behind ours
            print(f"could not record the failure: {write_error}", file=sys.stderr)
        previous(kind, error, trace)

    sys.excepthook = hook
    return folder


def _task_name(folder: Path) -> str:
    """The task's name from its folder: kfp.local's ``<task>``, Vertex AI's ``<task>_<id>``."""
    name = folder.name
    stem, _, suffix = name.rpartition("_")
    return stem if stem and suffix.isdigit() else name


def run_failures(folder: Path | None) -> list[dict[str, str]]:
    """``[{task, error}]`` from the failure records of a run's task folders, by task name.

    Args:
        folder: the notify task's own folder; its parent is the run's folder.
    """
    if folder is None or not folder.parent.is_dir():
        return []
    failures = []
    for path in sorted(folder.parent.glob(f"*/{FAILURE_FILE}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            failures.append({"task": str(record["task"]), "error": str(record["error_line"])})
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written or foreign file: the status still reports the run
    return failures
