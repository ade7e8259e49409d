"""Files kfp.local's output per task and reports each step as it starts and ends.

kfp.local (any runner: Subprocess or Docker) writes everything a run produces to
``sys.stdout`` of this process: its own log records ("Executing task 'x'", "Task 'x'
finished with status SUCCESS", the outputs), and every line of the task's process
(TensorFlow banners, the executor's JSON, tracebacks), printed from the thread that runs
the task. So instead of patching kfp, a run swaps ``sys.stdout``/``sys.stderr`` for a
``TaskLogRouter``: it follows kfp's task markers per thread, writes each task's lines to
``<run folder>/logs/<task>.log`` and everything else to ``logs/pipeline.log``, and calls
back when a task starts or ends.

The run folder (``<pipeline_root>/<pipeline>-<timestamp>``) is created by the first task's
process, so lines are held in memory until it appears.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

LOGS_DIR = "logs"
PIPELINE_LOG = "pipeline.log"

# Colours and the cursor moves progress bars (tqdm) make: none belongs in a log file.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# kfp.local's own log records ("07:45:20.771 - INFO - ..."); a task's lines are indented.
_KFP_RECORD = re.compile(r"^\d\d:\d\d:\d\d\.\d+ - [A-Z]+ - (.*)")
_STARTED = re.compile(r"^Executing task '([^']+)'")
_FINISHED = re.compile(r"^Task '([^']+)' finished with status (SUCCESS|FAILURE)")
_SKIPPED = re.compile(r"^Skipping (?:conditional )?task ([^\s:]+)")
_CACHED = re.compile(r"^Task (\S+) cache hit")
# kfp.local indents the task process's lines by four spaces.
_TASK_INDENT = "    "
_RUN_DIR_POLL_SECONDS = 0.5
# A task's last lines are also kept in memory: its error line must be found even when its
# log file could not be written (a full disk truncates it mid-traceback).
TAIL_LINES = 300


@dataclass
class TaskRecord:
    name: str
    started: float
    ended: float | None = None
    status: str = "running"  # running, succeeded, failed, skipped, cached
    log_lines: list[str] = field(default_factory=list)  # held until the run folder exists
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


StartCallback = Callable[[TaskRecord], None]
EndCallback = Callable[[TaskRecord, Path | None], None]


class TaskLogRouter:
    """Splits one pipeline run's output into per-task log files.

    Args:
        pipeline_root: the kfp.local pipeline root of the run.
        pipeline_name: the compiled pipeline's name (the run folder is ``<name>-<timestamp>``).
        on_start: called with the task when kfp starts it.
        on_end: called with the task and the run folder when it succeeds, fails, is skipped
            or comes from kfp's cache.
        echo: also copy every line here (``--verbose``); None keeps them in the files only.
    """

    def __init__(
        self,
        pipeline_root: Path,
        pipeline_name: str,
        on_start: StartCallback | None = None,
        on_end: EndCallback | None = None,
        echo: TextIO | None = None,
    ) -> None:
        self.pipeline_root = Path(pipeline_root)
        self.pipeline_name = pipeline_name
        self.on_start = on_start
        self.on_end = on_end
        self.echo = echo
        self.tasks: dict[str, TaskRecord] = {}
        self.run_dir: Path | None = None
        self._before = set(self.pipeline_root.glob(f"{pipeline_name}-*"))
        self._lock = threading.RLock()
        self._thread_task: dict[int, str] = {}
        self._partial: dict[int, str] = {}
        self._pipeline_lines: list[str] = []
        self._files: dict[str, TextIO] = {}
        self._last_poll = 0.0
        # (log file, task, OSError) of the first write that failed (a full disk, no permission).
        self.write_error: tuple[Path | None, str | None, OSError] | None = None

    # -- where lines go ------------------------------------------------------------------

    def log_path(self, task_name: str | None) -> Path | None:
        """The file a task's lines go to (None: the run folder does not exist yet)."""
        if self.run_dir is None:
            return None
        name = PIPELINE_LOG if task_name is None else f"{task_name}.log"
        return self.run_dir / LOGS_DIR / name

    def _find_run_dir(self, force: bool = False) -> Path | None:
        if self.run_dir is not None:
            return self.run_dir
        now = time.monotonic()
        if not force and now - self._last_poll < _RUN_DIR_POLL_SECONDS:
            return None
        self._last_poll = now
        new = [
            path
            for path in self.pipeline_root.glob(f"{self.pipeline_name}-*")
            if path.is_dir() and path not in self._before
        ]
        if new:
            self.run_dir = max(new, key=lambda path: path.stat().st_mtime)
            self._flush_held()
        return self.run_dir

    def _file(self, task_name: str | None) -> TextIO:
        key = task_name or ""
        if key not in self._files:
            path = self.log_path(task_name)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files[key] = path.open("a", encoding="utf-8")
        return self._files[key]

    def _flush_held(self) -> None:
        try:
            self._write_held()
        except OSError as error:
            if self.write_error is None:
                self.write_error = (self.log_path(None), None, error)
            self._pipeline_lines.clear()
            for task in self.tasks.values():
                task.log_lines.clear()

    def _write_held(self) -> None:
        if self._pipeline_lines:
            self._file(None).writelines(self._pipeline_lines)
            self._pipeline_lines.clear()
        for task in self.tasks.values():
            if task.log_lines:
                self._file(task.name).writelines(task.log_lines)
                task.log_lines.clear()

    def _store(self, task_name: str | None, line: str) -> None:
        if task_name is not None and task_name in self.tasks:
            self.tasks[task_name].tail.append(line)
        if self.write_error is not None:
            return  # the log folder is full or read-only: the run reports it once, at its end
        if self._find_run_dir() is not None:
            try:
                handle = self._file(task_name)
                handle.write(line)
                handle.flush()
            except OSError as error:
                # Raising here would raise inside kfp's print of the step's output.
                self.write_error = (self.log_path(task_name), task_name, error)
        elif task_name is None:
            self._pipeline_lines.append(line)
        else:
            self.tasks[task_name].log_lines.append(line)

    # -- reading kfp's markers ----------------------------------------------------------

    def _line(self, raw: str, thread_id: int) -> None:
        line = _ANSI.sub("", raw)
        record = _KFP_RECORD.match(line)
        message = record.group(1) if record else ""
        started = _STARTED.match(message)
        if started:
            name = started.group(1)
            self.tasks[name] = TaskRecord(name=name, started=time.monotonic())
            self._thread_task[thread_id] = name
            if self.on_start:
                self.on_start(self.tasks[name])
        task_name = self._thread_task.get(thread_id)
        if task_name is not None and line.startswith(_TASK_INDENT):
            line = line[len(_TASK_INDENT) :]
        self._store(task_name, line)
        finished = _FINISHED.match(message)
        if finished and finished.group(1) in self.tasks:
            self._thread_task.pop(thread_id, None)
            self._end(
                finished.group(1), "succeeded" if finished.group(2) == "SUCCESS" else "failed"
            )
            return
        for pattern, status in ((_SKIPPED, "skipped"), (_CACHED, "cached")):
            match = pattern.match(message)
            if match:
                name = match.group(1).strip("'")
                self.tasks[name] = TaskRecord(name=name, started=time.monotonic())
                self._end(name, status)

    def _end(self, name: str, status: str) -> None:
        task = self.tasks[name]
        task.ended, task.status = time.monotonic(), status
        run_dir = self._find_run_dir(force=True)
        if task.log_lines and run_dir is not None:
            self._flush_held()
        if self.on_end:
            self.on_end(task, run_dir)

    def write(self, text: str) -> None:
        """Takes what kfp printed; whole lines are routed, a partial line waits for its end."""
        thread_id = threading.get_ident()
        with self._lock:
            if self.echo is not None:
                self.echo.write(text)
                self.echo.flush()
            pending = self._partial.pop(thread_id, "") + text
            # A carriage return (a progress bar redrawing its line) ends a line too, so a
            # kfp record written after a bar still starts its line and is recognised.
            pending = pending.replace("\r\n", "\n")
            if pending.endswith("\r"):
                pending, carried = pending[:-1], "\r"  # may be the first half of \r\n
            else:
                carried = ""
            *lines, rest = pending.replace("\r", "\n").split("\n")
            rest += carried
            for line in lines:
                self._line(line + "\n", thread_id)
            if rest:
                self._partial[thread_id] = rest

    def close(self) -> None:
        """Writes out what is still held (creating the run folder if no task did) and closes."""
        with self._lock:
            for thread_id, rest in list(self._partial.items()):
                self._line(rest.rstrip("\r") + "\n", thread_id)
            self._partial.clear()
            if self._find_run_dir(force=True) is None and (
                self._pipeline_lines or any(task.log_lines for task in self.tasks.values())
            ):
                # No task got far enough to create the run folder: make one like kfp's.
                stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S-%f")
                self.run_dir = self.pipeline_root / f"{self.pipeline_name}-{stamp}"
                self._flush_held()
            for handle in self._files.values():
                try:
                    handle.close()
                except OSError as error:  # flushing into a full disk
                    if self.write_error is None:
                        self.write_error = (Path(handle.name), None, error)
            self._files.clear()

    def task_output(self, task_name: str) -> str:
        """The task's last lines, as it printed them (kept here, not read back from its log)."""
        task = self.tasks.get(task_name)
        return "".join(task.tail) if task is not None else ""

    def last_error(self, task_name: str) -> str | None:
        """The task's exception line (not its traceback), or its last line when it has none."""
        text = self.task_output(task_name)
        if not text:
            path = self.log_path(task_name)
            if path is None or not path.is_file():
                return None
            text = path.read_text(encoding="utf-8", errors="replace")
        return last_exception_line(text)

    @contextlib.contextmanager
    def capturing(self) -> Iterator[TaskLogRouter]:
        """Routes sys.stdout and sys.stderr here for the duration of the run."""
        stream = _RouterStream(self)
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield self
        finally:
            self.close()


class _RouterStream(io.TextIOBase):
    """The file object that stands in for sys.stdout/sys.stderr."""

    def __init__(self, router: TaskLogRouter) -> None:
        super().__init__()
        self._router = router

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._router.write(text)
        return len(text)

    def isatty(self) -> bool:
        return False


def last_exception_line(text: str) -> str | None:
    """The ``Type: message`` that ends the last traceback in a log, else the log's last line.

    kfp.local's own records come after the task's lines, so the fallback skips them.
    """
    lines = [line.rstrip() for line in text.splitlines()]
    last_traceback = max(
        (index for index, line in enumerate(lines) if line.startswith("Traceback (")), default=None
    )
    if last_traceback is not None:
        message: list[str] = []
        for line in lines[last_traceback + 1 :]:
            if message and (not line.strip() or _KFP_RECORD.match(line)):
                break
            if message or (line and not line[0].isspace()):
                message.append(line.strip())  # a message may go on over several lines
        if message:
            return " ".join(message)
    own = [
        line
        for line in lines
        if line.strip() and not _KFP_RECORD.match(line) and set(line.strip()) != {"-"}
    ]
    return own[-1].strip() if own else None
