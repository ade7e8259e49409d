"""Ctrl-C and SIGTERM stop `petseg run --local`: real signals to a real run.

The run is a subprocess in its own process group. SIGINT goes to the whole group, as a
terminal's Ctrl-C does; SIGTERM goes to petseg alone, as `kill` or a supervisor sends it,
so only petseg can stop the step process it started. Either way: one line naming the
step, exit code 130, no traceback, and no step process left alive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.local import _descendants
from pipelines.runs import FAILED_MARKER, run_folders

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "data.synthetic_train_size=16",
    "data.synthetic_test_size=4",
    "data.synthetic_image_size=32",
    "model.image_size=32",
    "training.batch_size=8",
    "training.epochs=1",
    "evaluation.report_images=1",
]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _backup_written(root: Path) -> bool:
    """True once train has written its backup at least once (it is inside model.fit)."""
    return any(root.glob("*/train/model/_training_backup/training_metadata.json"))


def _interrupt(tmp_path: Path, *, at_step: str, signum: int, whole_group: bool):
    root = tmp_path / "root"
    command = [sys.executable, "-m", "pipelines.cli", "run", "--local", "--preset", "demo"]
    # Enough epochs that train is still fitting (and rewriting its backup) when the signal comes.
    settings = [*TINY, "training.epochs=500"] if at_step == "train" else TINY
    command += [arg for item in settings for arg in ("--set", item)]
    command += ["--pipeline-root", str(root)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if f"started  {at_step}" in line:
                break
        else:
            pytest.fail(f"the run ended before {at_step} started: {''.join(lines)}")
        deadline = time.monotonic() + 120
        steps = []
        while not steps and time.monotonic() < deadline:  # the step's own process
            steps = _descendants(process.pid)
            time.sleep(0.2)
        if at_step == "train":  # well inside model.fit: its backup has been written
            while not _backup_written(root) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _backup_written(root), "train wrote no backup"
            time.sleep(0.5)
        else:
            time.sleep(2.0)  # well inside the step
        steps = _descendants(process.pid)
        assert steps, "no step process found"
        if whole_group:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
        out, err = process.communicate(timeout=60)
        return process.returncode, "".join(lines) + out, err, steps, root
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in _descendants(process.pid):
            os.kill(pid, signal.SIGKILL)


def _untrusted_backup_files(run_dir: Path) -> list[str]:
    """Backup files under their final names that a resumed train would load but cannot.

    Keras resumes from ``latest.weights.h5`` and ``training_metadata.json``; a ``.partial``
    name is never read.
    """
    import h5py

    bad = []
    for folder in run_dir.glob("train/model/_training_backup*"):
        for path in folder.iterdir():
            if ".partial" in path.name:
                continue
            try:
                if path.name.endswith(".json"):
                    json.loads(path.read_text())
                elif path.name.endswith(".h5"):
                    with h5py.File(path, "r") as weights:
                        weights.visititems(
                            lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None
                        )
            except (OSError, ValueError) as error:
                bad.append(f"{path.name} ({path.stat().st_size} bytes): {error}")
    return bad


@pytest.mark.parametrize(
    ("at_step", "signum", "whole_group"),
    [("train", signal.SIGINT, True), ("ingest", signal.SIGTERM, False)],
    ids=["ctrl-c-to-the-group-during-train", "sigterm-to-petseg-alone-during-ingest"],
)
def test_a_signal_stops_the_run_with_one_line_and_no_process_left(
    tmp_path, fault, at_step, signum, whole_group
):
    name = signal.Signals(signum).name
    fault(
        f"{name} to {'the process group' if whole_group else 'petseg alone'} during {at_step}",
        expected="exit 130, one line naming the step and what a rerun does, step processes "
        "reaped, run marked failed, no cut-off backup under a name a resume trusts",
    )
    code, out, err, steps, root = _interrupt(
        tmp_path, at_step=at_step, signum=signum, whole_group=whole_group
    )
    fault.saw(err.strip())

    assert code == 130, err
    assert err.count("\n") == 1, err
    assert f"interrupted by {name} during step {at_step}" in err
    assert "every step runs again" in err
    assert "Traceback" not in err + out and "KeyboardInterrupt" not in err + out
    time.sleep(0.5)
    assert [pid for pid in steps if _alive(pid)] == []
    (run_dir,) = run_folders(root)
    assert str(run_dir) in err
    assert f"interrupted by {name}" in (run_dir / FAILED_MARKER).read_text()
    assert _untrusted_backup_files(run_dir) == []
    if at_step == "train":
        backup = run_dir / "train" / "model" / "_training_backup"
        fault.saw(f"backup left: {sorted(path.name for path in backup.iterdir())}")
