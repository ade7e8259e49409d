"""pipelines.tasklogs: kfp.local's output split per task, steps reported as they happen.

Tiny pure-Python components run through the real kfp.local subprocess runner, so the
markers the router follows are kfp's own, not a copy of them.
"""

# No `from __future__ import annotations`: KFP reads the component annotations at run time.
import io
import re
from pathlib import Path

import pytest
from kfp import dsl

from pipelines.tasklogs import TaskLogRouter, last_exception_line

pytestmark = pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")


@dsl.component(install_kfp_package=False)
def chatty(number: int) -> int:
    print("I0000 00:00:1.0 port.cc:153] oneDNN custom operations are on (a fake banner)")
    return number + 1


@dsl.component(install_kfp_package=False)
def broken(number: int) -> int:
    print(f"about to fail on {number}")
    raise ValueError(f"number {number} is not welcome")


@dsl.pipeline(name="chain")
def chain() -> int:
    first = chatty(number=1)
    return chatty(number=first.output).output


@dsl.pipeline(name="failing")
def failing():
    first = chatty(number=1)
    broken(number=first.output)


def _route(pipeline_root, name, pipeline, echo=None):
    events = []
    router = TaskLogRouter(
        pipeline_root,
        name,
        on_start=lambda task: events.append(("start", task.name)),
        on_end=lambda task, run_dir: events.append((task.status, task.name, run_dir)),
        echo=echo,
    )
    error = None
    with router.capturing():
        try:
            pipeline()
        except RuntimeError as caught:
            error = caught
    return router, events, error


def test_each_task_gets_its_log_and_nothing_reaches_the_terminal(kfp_local, capsys):
    router, events, error = _route(kfp_local, "chain", chain)
    assert error is None
    run_dir = router.run_dir
    assert run_dir is not None and run_dir.parent == kfp_local
    assert events == [
        ("start", "chatty"),
        ("succeeded", "chatty", run_dir),
        ("start", "chatty-2"),
        ("succeeded", "chatty-2", run_dir),
    ]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    for task in ("chatty", "chatty-2"):
        log = (run_dir / "logs" / f"{task}.log").read_text()
        # The task's own line, un-indented, and kfp's executor output, without colour codes.
        assert "\nI0000 00:00:1.0 port.cc:153] oneDNN" in log
        assert "KFP Executor" in log and "\x1b[" not in log
        assert f"Task '{task}' finished with status SUCCESS" in log
    first_log = (run_dir / "logs" / "chatty.log").read_text()
    assert "chatty-2" not in first_log
    assert "Running pipeline: 'chain'" in (run_dir / "logs" / "pipeline.log").read_text()


def test_a_failing_task_is_reported_with_its_exception_line(kfp_local):
    router, events, error = _route(kfp_local, "failing", failing)
    assert error is not None
    assert [event[:2] for event in events] == [
        ("start", "chatty"),
        ("succeeded", "chatty"),
        ("start", "broken"),
        ("failed", "broken"),
    ]
    assert router.last_error("broken") == "ValueError: number 2 is not welcome"
    log = router.log_path("broken").read_text()
    assert "about to fail on 2" in log and "Traceback (most recent call last):" in log


def test_verbose_copies_everything_it_files(kfp_local):
    echo = io.StringIO()
    router, _, _ = _route(kfp_local, "chain", chain, echo=echo)
    shown = echo.getvalue()
    assert "oneDNN custom operations" in shown and "Executing task" in shown
    assert "oneDNN custom operations" in (router.run_dir / "logs" / "chatty.log").read_text()


def test_lines_written_in_pieces_and_from_threads_land_in_their_task(tmp_path):
    import threading

    run_dir = tmp_path / "p-2026-01-01"
    router = TaskLogRouter(tmp_path, "p")
    run_dir.mkdir()
    starts = threading.Barrier(2)

    def task(name):
        router.write(f"12:00:00.000 - INFO - Executing task '{name}'\n")
        starts.wait()
        for index in range(50):
            router.write("    ")
            router.write(f"{name} line {index}\n")
        router.write(f"12:00:01.000 - INFO - Task '{name}' finished with status SUCCESS\n")

    threads = [threading.Thread(target=task, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    router.close()
    for name, other in (("a", "b"), ("b", "a")):
        lines = (run_dir / "logs" / f"{name}.log").read_text().splitlines()
        assert [line for line in lines if " line " in line] == [
            f"{name} line {index}" for index in range(50)
        ]
        assert not any(line.startswith(other) for line in lines)
    assert {task.status for task in router.tasks.values()} == {"succeeded"}


def test_the_run_folder_is_created_when_no_task_made_one(tmp_path):
    router = TaskLogRouter(tmp_path, "p")
    router.write("12:00:00.000 - INFO - Executing task 'ingest'\n")
    router.write("    Traceback (most recent call last):\n")
    router.write("    ModuleNotFoundError: No module named 'nothing'\n")
    router.write("12:00:01.000 - ERROR - Task 'ingest' finished with status FAILURE\n")
    router.close()
    assert router.run_dir is not None and router.run_dir.name.startswith("p-")
    assert router.last_error("ingest") == "ModuleNotFoundError: No module named 'nothing'"


def test_last_exception_line_takes_the_final_traceback_not_its_frames():
    log = "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "a.py", line 1, in <module>',
            "KeyError: 'first'",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            '  File "b.py", line 2, in <module>',
            "    raise ValueError('data.folder: no such folder /x')",
            "ValueError: data.folder: no such folder /x",
            "",
            "12:00:01.000 - ERROR - Task 'ingest' finished with status FAILURE",
        ]
    )
    assert last_exception_line(log) == "ValueError: data.folder: no such folder /x"
    several = [
        "Traceback (most recent call last):",
        '  File "c.py", line 3, in <module>',
        "ConfigError: invalid configuration (run-time parameters epochs=0):",
        "  training.epochs: Input should be greater than 0 (got 0)",
        "",
        "",
        "12:00:01.000 - ERROR - Task 'resolve-config' finished with status FAILURE",
    ]
    assert last_exception_line("\n".join(several)) == (
        "ConfigError: invalid configuration (run-time parameters epochs=0): "
        "training.epochs: Input should be greater than 0 (got 0)"
    )
    assert last_exception_line("starting\nkilled by signal 9\n") == "killed by signal 9"
    assert last_exception_line("") is None


def test_summary_groups_per_class_metrics_and_step_lines_say_why_push_did_nothing(tmp_path):
    from pipelines.local import LocalRunSummary, TaskResult, format_summary, key_figures

    classes = ["pet", "hot_dog", "dog"]
    evaluate = TaskResult(
        name="evaluate",
        artifacts={
            "metrics": {
                "uri": "/run/evaluate/metrics",
                "metadata": {
                    "mean_iou": 0.5,
                    "num_images": 48.0,
                    "iou_pet": 0.25,
                    "iou_hot_dog": 0.5,
                    "iou_dog": 0.75,
                    "recall_dog": 1.0,
                },
            }
        },
        parameters={
            "blessed": False,
            "reason": "mean IoU 0.5000 < min_mean_iou 0.6000",
            "mean_iou": 0.5000123,
        },
    )
    push = TaskResult(
        name="push",
        artifacts={
            "pushed_model": {
                "uri": "/run/push/pushed_model",
                "metadata": {"pushed": False, "skip_reason": "the model is not blessed"},
            }
        },
    )
    ingest = TaskResult(
        name="ingest",
        artifacts={
            "dataset": {
                "uri": "/run/ingest/dataset",
                "metadata": {"classes": classes, "num_records": {"test": 4.0, "train": 9.0}},
            }
        },
    )
    resolved = TaskResult(name="resolve-config", parameters={"data_config": "{}"})
    summary = LocalRunSummary(
        run_dir=tmp_path,
        tasks={"resolve-config": resolved, "ingest": ingest, "evaluate": evaluate, "push": push},
    )
    lines = format_summary(summary).splitlines()
    assert "[resolve-config]" not in lines  # nothing to show but config JSON
    assert "  mean_iou = 0.5000" not in lines  # the output repeats the metric: shown once
    assert "  reason = mean IoU 0.5000 < min_mean_iou 0.6000" in lines
    assert lines[1] == f"step logs: {tmp_path / 'logs'}"
    assert "    iou: pet 0.2500, hot_dog 0.5000, dog 0.7500" in lines
    assert "    recall: dog 1" in lines and "    num_images = 48" in lines
    assert "    mean_iou = 0.5000" in lines
    assert lines[-2:] == ["blessed: False", "not pushed: the model is not blessed"]
    assert key_figures(ingest) == "records train 9, test 4"
    assert key_figures(evaluate) == "mean_iou 0.500, not blessed"
    assert key_figures(push) == "not pushed: the model is not blessed"


def test_a_progress_bar_carriage_return_does_not_hide_the_finished_line(tmp_path):
    """Under --runner docker a tqdm bar leaves '\\r' and no newline before kfp's record."""
    ended = []
    router = TaskLogRouter(tmp_path, "p", on_end=lambda task, _: ended.append(task.status))
    (tmp_path / "p-2026-01-01").mkdir()
    router.write("12:00:00.000 - INFO - Executing task 'ingest'\n")
    router.write("    Generating splits:  50%|\x1b[32m#####\x1b[0m     | 1/2\r")
    router.write("    Generating splits: 100%|##########| 2/2\x1b[A\r")
    router.write("12:00:01.000 - INFO - Task 'ingest' finished with status SUCCESS\r\n")
    router.close()

    assert ended == ["succeeded"]
    assert router.tasks["ingest"].status == "succeeded"
    log = (tmp_path / "p-2026-01-01" / "logs" / "ingest.log").read_text()
    assert "Generating splits: 100%|##########| 2/2\n" in log
    assert "\r" not in log and "\x1b" not in log


def test_the_summary_prints_only_paths_that_exist(tmp_path):
    """Metrics-only artifacts (Metrics, ClassificationMetrics) have a uri but no file."""
    from pipelines.local import LocalRunSummary, TaskResult, format_summary

    report = tmp_path / "evaluate" / "report.html"
    report.parent.mkdir()
    report.write_text("<html></html>")
    (tmp_path / "logs").mkdir()
    evaluate = TaskResult(
        name="evaluate",
        artifacts={
            "metrics": {
                "uri": str(tmp_path / "evaluate" / "metrics"),
                "metadata": {"mean_iou": 0.5},
            },
            "confusion": {"uri": str(tmp_path / "evaluate" / "confusion"), "metadata": {}},
            "report": {"uri": str(report), "metadata": {}},
        },
        parameters={"blessed": True},
    )
    train = TaskResult(
        name="train", artifacts={"metrics": {"uri": str(tmp_path / "train" / "m"), "metadata": {}}}
    )
    text = format_summary(
        LocalRunSummary(run_dir=tmp_path, tasks={"train": train, "evaluate": evaluate})
    )

    printed = re.findall(rf"{re.escape(str(tmp_path))}/\S+", text)
    assert str(report) in printed
    assert [path for path in printed if not Path(path).exists()] == []
    lines = text.splitlines()
    assert "  metrics:" in lines and "    mean_iou = 0.5000" in lines  # figures, no path
    assert "[train]" not in lines  # nothing to show: no file, no figures
    assert not any(line.startswith("  confusion") for line in lines)
