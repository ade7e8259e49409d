"""A task's uncaught exception is recorded in its folder, where the notify task reads it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from components.platform import failures

ROOT = Path(__file__).resolve().parents[1]


def executor_argv(output_file: str) -> list[str]:
    executor_input = {"inputs": {}, "outputs": {"outputFile": output_file}}
    return ["executor_main", "--executor_input", json.dumps(executor_input), "--x", "y"]


def run_task(task_dir: Path, body: str) -> subprocess.CompletedProcess:
    """Runs ``body`` as a component's process would: a fresh interpreter with its argv."""
    script = (
        f"from components.platform.failures import record_failures\nrecord_failures()\n{body}\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, *executor_argv(str(task_dir / "executor_output.json"))[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_task_folder_is_the_executor_output_files_folder():
    assert failures.task_folder(executor_argv("/r/run-1/ingest/executor_output.json")) == Path(
        "/r/run-1/ingest"
    )
    assert failures.task_folder(["python", "-m", "pytest"]) is None
    assert failures.task_folder(["x", "--executor_input", "not json"]) is None
    assert failures.task_folder(executor_argv("gs://bucket/root/run/ingest/out.json")) is None


def test_an_uncaught_error_is_recorded_and_the_task_still_fails_with_its_traceback(tmp_path):
    task_dir = tmp_path / "run-1" / "train_8123"  # Vertex AI's <task>_<id> folder
    task_dir.mkdir(parents=True)
    (task_dir / "failure.json").write_text('{"task": "train", "error_line": "stale"}')

    done = run_task(task_dir, "raise ValueError('dataset has 3 classes\\n  model has 4')")

    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: dataset has 3 classes" in done.stderr
    record = json.loads((task_dir / "failure.json").read_text())
    assert record == {
        "task": "train",
        "error_type": "ValueError",
        "error_line": "ValueError: dataset has 3 classes model has 4",
    }


def test_a_task_that_succeeds_leaves_no_record_not_even_an_earlier_attempts(tmp_path):
    task_dir = tmp_path / "run-1" / "train"
    task_dir.mkdir(parents=True)
    (task_dir / "failure.json").write_text('{"task": "train", "error_line": "preempted"}')

    done = run_task(task_dir, "print('trained')")

    assert (done.returncode, done.stdout) == (0, "trained\n")
    assert not (task_dir / "failure.json").exists()


def test_run_failures_reads_the_sibling_tasks_records(tmp_path):
    run = tmp_path / "petseg-demo-1"
    for task in ("resolve-config", "ingest", "notify-run-end"):
        (run / task).mkdir(parents=True)
    failures.write_failure(run / "ingest", "ingest", FileNotFoundError("no folder /data/pets"))
    (run / "resolve-config" / "failure.json").write_text("{half")  # unreadable: skipped

    assert failures.run_failures(run / "notify-run-end") == [
        {"task": "ingest", "error": "FileNotFoundError: no folder /data/pets"}
    ]
    assert failures.run_failures(None) == []
    assert failures.run_failures(tmp_path / "gone" / "notify") == []


def _component_bodies():
    for path in sorted((Path(__file__).resolve().parents[1] / "components" / "ops").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            decorators = [
                ast.unparse(decorator) for decorator in getattr(node, "decorator_list", [])
            ]
            if any(decorator.startswith("dsl.component") for decorator in decorators):
                yield f"{path.stem}.{node.name}", node


def _first_statement(node: ast.FunctionDef) -> str:
    """The body's first statement other than the docstring, imports and assignments.

    (resolve_config captures its arguments with ``dict(locals())`` before anything else.)
    """
    for statement in node.body:
        if isinstance(statement, ast.Import | ast.ImportFrom | ast.Assign):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # the docstring
        return ast.unparse(statement)
    return ""


def test_every_component_records_its_failures_first():
    """KFP ships only the body (it drops decorators), so each body makes the call itself.

    Without it, the run-end report says that the run failed but not which task or why.
    """
    bodies = dict(_component_bodies())
    assert len(bodies) == 11
    first = {name: _first_statement(node) for name, node in bodies.items()}
    assert {name: call for name, call in first.items() if call != "start_task()"} == {}


def test_start_task_records_failures(monkeypatch):
    from components.ops import start_task

    calls = []
    monkeypatch.setattr(failures, "record_failures", lambda: calls.append("recorded"))
    start_task()
    assert calls == ["recorded"]
