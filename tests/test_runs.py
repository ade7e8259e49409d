"""petseg runs gc: old local run folders are pruned, newest kept, nothing else touched."""

from __future__ import annotations

import pytest

from pipelines.cli import main
from pipelines.runs import FAILED_MARKER, mark_failed, run_folders


def test_runs_gc_keeps_the_newest_run_folders_and_nothing_else_goes(tmp_path, capsys):
    root = tmp_path / "root"
    stamps = ["2026-01-02-10-00-00-000001", "2026-01-01-09-00-00-000000", "2026-01-03-08-00-00-5"]
    for stamp in stamps[:2]:
        (root / f"petseg-demo-{stamp}" / "train").mkdir(parents=True)
    (root / "models" / "versions").mkdir(parents=True)  # a push destination under the root
    (root / "petseg-demo-notes").mkdir()  # not a run folder name

    assert main(["runs", "gc", "--keep", "1", "--pipeline-root", str(root)]) == 0

    out = capsys.readouterr().out
    assert "petseg-demo-2026-01-01-09-00-00-000000" in out
    assert [path.name for path in run_folders(root)] == ["petseg-demo-2026-01-02-10-00-00-000001"]
    assert (root / "models" / "versions").is_dir() and (root / "petseg-demo-notes").is_dir()
    with pytest.raises(ValueError, match="keep at least 1"):
        from pipelines.runs import prune_runs

        prune_runs(root, keep=0)


def test_a_failed_run_folder_is_marked_with_its_reason(tmp_path):
    run_dir = tmp_path / "petseg-demo-2026-01-01-09-00-00-000000"
    run_dir.mkdir()
    marker = mark_failed(run_dir, "step train failed: No space left on device: /x")
    assert marker == run_dir / FAILED_MARKER
    assert "No space left" in marker.read_text()
    assert mark_failed(tmp_path / "missing", "x") is None


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "gc", "--keep", "0"],
        ["runs", "gc", "--keep", "two"],
        ["models", "gc", "--keep", "0", "--destination", "d"],
        ["models", "gc", "--older-than", "-5", "--destination", "d"],
    ],
)
def test_a_bad_keep_or_age_is_a_bad_command_line_exit_2(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[2]}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing created, nothing removed
