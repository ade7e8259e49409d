"""The disk fills up while ingest writes TFRecords, and the retry after space is freed.

Two ways to fill a disk:

* a real one: a tmpfs a few pages large, mounted in a private user and mount namespace
  (``unshare -rm``), where TensorFlow's own file writer meets ENOSPC from the kernel.
  Many CI containers forbid user namespaces; the test then says so and is skipped.
* an injected one, which runs everywhere: the TFRecord writer (or dataset.json's file)
  fails after a byte budget with the error TensorFlow raises on a full disk (as the
  tmpfs run shows: ``ResourceExhaustedError: <path>; No space left on device``), after
  putting what fitted on disk, as a real partial write does.

Either way: a clear error naming the file, no file under a final shard name, no
dataset.json, and a re-run with space gives the same dataset as a clean ingest.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tensorflow as tf

from components.data import dataset_info
from components.data.ingest import ingest_dataset

pytestmark = pytest.mark.timeout(300)
PAGE = 4096

INGEST_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from components.platform.config import DataConfig
    from components.data.ingest import ingest_dataset

    config = DataConfig.model_validate_json(sys.argv[1])
    output = sys.argv[2]
    result = {"error": None}
    try:
        ingest_dataset(config, output)
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"
    result["files"] = {}
    for root, _, names in os.walk(output):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            result["files"][os.path.relpath(path, output)] = digest
    print("RESULT " + json.dumps(result))
    """
)


def _digests(directory: Path) -> dict[str, str]:
    """sha256 of every shard and of dataset.json's splits, which must match a clean run."""
    digests = {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*.tfrecord"))
    }
    info = json.loads((directory / "dataset.json").read_text())
    digests["dataset.json splits"] = json.dumps(info["splits"], sort_keys=True)
    return digests


def _final_shards(files) -> list[str]:
    return [name for name in files if str(name).endswith(".tfrecord")]


def _user_namespaces_allowed(mount_point: Path) -> str | None:
    """None if a tmpfs can be mounted in a private namespace here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare binary"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {mount_point}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a user namespace: {probe.stderr.strip()}"
    return None


def _ingest_in_this_process(config, output: Path) -> dict:
    """INGEST_SCRIPT's result, without starting Python and TensorFlow again."""
    result: dict = {"error": None}
    try:
        ingest_dataset(config, str(output))
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"
    result["files"] = (
        {
            str(path.relative_to(output)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in output.rglob("*")
            if path.is_file()
        }
        if output.is_dir()
        else {}
    )
    return result


def _full_then_freed(prepared_source, mount_point: Path, size: int, tmp_path: Path):
    """Ingest on a full tmpfs, then again after it is remounted larger: (full, freed) results.

    As root the tmpfs is mounted here and ingest runs in this process; otherwise in a
    private user and mount namespace (``unshare -rm``), in a subprocess.
    """
    output = mount_point / "dataset"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode == 0:
        try:
            full = _ingest_in_this_process(prepared_source, output)
            subprocess.run(["mount", "-o", "remount,size=4m", str(mount_point)], check=True)
            return full, _ingest_in_this_process(prepared_source, output)
        finally:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)
    unavailable = _user_namespaces_allowed(mount_point)
    if unavailable:
        pytest.skip(f"{unavailable}; the injected full disk below covers this fault")
    script = tmp_path / "ingest_once.py"
    script.write_text(INGEST_SCRIPT)
    run = f"{sys.executable} {script} '{prepared_source.model_dump_json()}' {output}"
    shell = (
        f"mount -t tmpfs -o size={size} tmpfs {mount_point} && {run} && "
        f"mount -o remount,size=4m {mount_point} && {run}"
    )
    completed = subprocess.run(
        ["unshare", "-rm", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[2],
    )
    results = [
        json.loads(line[len("RESULT ") :])
        for line in completed.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    assert len(results) == 2, completed.stdout + completed.stderr
    return results


def test_real_full_disk_fails_cleanly_and_the_retry_completes(
    prepared_source, good_dataset, tmp_path, fault
):
    fault(
        "disk full (a real tmpfs a few pages large) while ingest writes shards",
        expected="error naming the shard and 'No space left on device'; no final-named shard, "
        "no dataset.json; after space is freed a re-run equals a clean ingest",
    )
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    info = dataset_info.load_dataset_info(str(good_dataset)).to_dict()
    # Room for the test split (written first) plus one page: the first train shard fails.
    test_pages = sum(math.ceil(size / PAGE) for size in info["splits"]["test"]["shard_sizes"])
    assert info["splits"]["train"]["shard_sizes"][0] > PAGE
    output = mount_point / "dataset"

    full, freed = _full_then_freed(prepared_source, mount_point, (test_pages + 1) * PAGE, tmp_path)

    fault.saw(f"full disk: {full['error']}; left behind: {sorted(full['files']) or 'nothing'}")
    assert full["error"].startswith("ResourceExhaustedError: ")
    assert "No space left on device" in full["error"]
    # Splits are written from one stream, so the shard that hits the limit may be any split's.
    assert re.search(
        rf"{re.escape(str(output))}/(train|validation|test)/\S+\.tfrecord", full["error"]
    )
    assert _final_shards(full["files"]) == []
    assert "dataset.json" not in full["files"]
    assert [name for name in full["files"] if name.endswith(".incomplete")] == []
    fault.saw(f"after space was freed: {freed['error'] or 'complete'}")
    assert freed["error"] is None
    clean_shards = {
        name: digest
        for name, digest in _digests(good_dataset).items()
        if name != "dataset.json splits"
    }
    assert {name: freed["files"][name] for name in _final_shards(freed["files"])} == clean_shards
    assert "dataset.json" in freed["files"]


_REAL_WRITER = tf.io.TFRecordWriter


class _DiskFullWriter:
    """tf.io.TFRecordWriter whose disk holds only ``budget`` more bytes (shared by all)."""

    budget = 0

    def __init__(self, path: str, options=None):
        self._path = path
        self._writer = _REAL_WRITER(path, options)
        self._full = False

    def write(self, record: bytes) -> None:
        framed = len(record) + 16  # TFRecord framing: length, two CRCs
        if self._full or framed > type(self).budget:
            self._full = True
            self._writer.flush()  # What fitted is on disk, as with a real partial write.
            message = f"{self._path}; No space left on device"
            raise tf.errors.ResourceExhaustedError(None, None, message)
        type(self).budget -= framed
        self._writer.write(record)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
        if self._full:  # the final flush of a full disk fails too
            raise tf.errors.ResourceExhaustedError(None, None, f"{self._path}; close failed")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def test_injected_full_disk_while_writing_shards(
    prepared_source, good_dataset, tmp_path, monkeypatch, fault
):
    fault(
        "disk full (injected, TensorFlow's own error) after as many bytes as the test split "
        "and half a train shard",
        expected="error naming the shard and 'No space left on device'; no final-named shard, "
        "no .incomplete file, no dataset.json; a re-run equals a clean ingest",
    )
    info = dataset_info.load_dataset_info(str(good_dataset)).to_dict()
    test_bytes = sum(info["splits"]["test"]["shard_sizes"])
    _DiskFullWriter.budget = test_bytes + info["splits"]["train"]["shard_sizes"][0] // 2
    monkeypatch.setattr(tf.io, "TFRecordWriter", _DiskFullWriter)
    output = tmp_path / "dataset"

    with pytest.raises(tf.errors.ResourceExhaustedError) as failure:
        ingest_dataset(prepared_source, str(output))

    fault.saw(f"{type(failure.value).__name__}: {failure.value.message}")
    assert failure.value.message.endswith("No space left on device")
    assert re.search(
        rf"{re.escape(str(output))}/(train|validation|test)/\S+\.tfrecord\.incomplete",
        failure.value.message,
    )
    left = sorted(str(path.relative_to(output)) for path in output.rglob("*") if path.is_file())
    fault.saw(f"left behind: {left or 'nothing'}")
    assert left == []

    monkeypatch.setattr(tf.io, "TFRecordWriter", _REAL_WRITER)
    ingest_dataset(prepared_source, str(output))
    assert _digests(output) == _digests(good_dataset)
    fault.saw("re-run with space: identical shards and split facts")


def test_injected_full_disk_while_writing_dataset_json(
    prepared_source, tmp_path, monkeypatch, fault
):
    fault(
        "disk full exactly when dataset.json (the completion marker) is written",
        expected="error; no dataset.json at all (never a truncated one), so no reader "
        "mistakes the dataset for complete",
    )
    from components.platform import files

    class HalfWrittenFile:
        """The files layer's handle on a disk that fills up halfway through dataset.json."""

        def __init__(self, path, mode="r"):
            self._handle = open(path, mode)  # noqa: SIM115 (closed in __exit__)
            self._path = str(path)

        def write(self, data):
            if "dataset.json" in self._path:
                self._handle.write(data[: len(data) // 2])
                self._handle.flush()
                raise OSError(errno.ENOSPC, "No space left on device", self._path)
            return self._handle.write(data)

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self._handle.close()

    monkeypatch.setattr(files, "open", HalfWrittenFile, raising=False)
    output = tmp_path / "dataset"

    with pytest.raises(OSError, match="No space left") as failure:
        ingest_dataset(prepared_source, str(output))

    fault.saw(str(failure.value))
    leftovers = sorted(str(p.relative_to(output)) for p in output.rglob("*") if p.is_file())
    fault.saw(f"files in the dataset folder: {leftovers or 'none'}")
    assert leftovers == []
    monkeypatch.delattr(files, "open")
    with pytest.raises(FileNotFoundError, match=r"dataset\.json not found"):
        dataset_info.load_dataset_info(str(output))


def _mount_small_disk(mount_point: Path, size: str) -> str | None:
    """Mounts a tmpfs (or, where that is refused, a loop-mounted ext2 image) of ``size``.

    Returns None when mounted, else why neither could be mounted.
    """
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode == 0:
        return None
    image = mount_point.parent / f"{mount_point.name}.img"
    loop = subprocess.run(
        f"truncate -s {size} {image} && mkfs.ext2 -q -F {image} && "
        f"mount -o loop {image} {mount_point}",
        shell=True,
        capture_output=True,
        text=True,
    )
    if loop.returncode == 0:
        return None
    return (
        f"cannot mount a tmpfs ({mounted.stderr.strip()}) nor a loop image ({loop.stderr.strip()})"
    )


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str):
    mount_point = tmp_path / f"disk-{size}"
    mount_point.mkdir()
    unavailable = _mount_small_disk(mount_point, size)
    if unavailable:
        pytest.skip(unavailable)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs (as root) or a loop-mounted ext2 image; skipped when neither mounts."""
    with small_disk(tmp_path, "64k") as mount_point:
        yield mount_point


def _fill(folder: Path) -> None:
    """Writes until the disk says ENOSPC: after this, any byte more fails."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * PAGE)
        except OSError as error:
            assert error.errno == errno.ENOSPC


def _broken_json(folder: Path) -> list[str]:
    """JSON files that are empty or cut short (a reader would trust or choke on them)."""
    broken = []
    for path in folder.rglob("*.json"):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            broken.append(f"{path} ({path.stat().st_size} bytes)")
    return broken


def test_a_full_log_folder_is_one_error_naming_the_log_not_a_crash_in_kfp(tiny_tmpfs, fault):
    from pipelines.tasklogs import TaskLogRouter

    fault(
        "the disk under the pipeline root fills while step logs are written",
        expected="the log writer does not raise into kfp; the error names the log and step",
    )
    router = TaskLogRouter(tiny_tmpfs, "p")
    (tiny_tmpfs / "p-2026-01-01").mkdir()
    router.write("12:00:00.000 - INFO - Executing task 'train'\n")
    for index in range(5000):  # ~400 KB into 64 KB
        router.write(f"    epoch line {index} " + "x" * 60 + "\n")
    router.write("12:00:01.000 - INFO - Task 'train' finished with status SUCCESS\n")
    router.close()

    assert router.write_error is not None
    path, task, error = router.write_error
    fault.saw(f"{path} {task} {error}")
    assert path == tiny_tmpfs / "p-2026-01-01" / "logs" / "train.log"
    assert task == "train" and error.errno == 28
    assert router.tasks["train"].status == "succeeded"  # markers still followed


def test_a_log_cut_short_by_a_full_disk_still_gives_the_steps_error_line(tiny_tmpfs, fault):
    from pipelines.tasklogs import TaskLogRouter

    fault(
        "the step log fills the disk before the step's traceback is written",
        expected="the error line is the traceback's last line (kept in memory), not the "
        "log file's cut-off text",
    )
    router = TaskLogRouter(tiny_tmpfs, "p")
    (tiny_tmpfs / "p-2026-01-01").mkdir()
    router.write("12:00:00.000 - INFO - Executing task 'train'\n")
    for index in range(2000):  # ~140 KB into 64 KB
        router.write(f"    epoch line {index} " + "x" * 50 + "\n")
    router.write("    Traceback (most recent call last):\n")
    router.write('      File "h5py/h5d.pyx", line 307, in h5py.h5d.DatasetID.write\n')
    router.write("    OSError: [Errno 28] Can't synchronously write data (file write failed:\n")
    router.write("    , filename = '/r/train/model/_training_backup/latest.partial.weights.h5')\n")
    router.write("12:00:01.000 - ERROR - Task 'train' finished with status FAILURE\n")
    router.close()

    assert router.write_error is not None and router.write_error[2].errno == errno.ENOSPC
    line = router.last_error("train")
    fault.saw(line)
    assert line.startswith("OSError: [Errno 28] Can't synchronously write data")
    assert line.endswith("filename = '/r/train/model/_training_backup/latest.partial.weights.h5')")


def test_failure_records_on_a_full_disk_are_whole_or_absent(tiny_tmpfs, tmp_path, fault):
    from components.platform import failures, retry

    fault(
        "the disk is full when train records its failure (deterministic_failure.json, "
        "failure.json)",
        expected="no 0-byte record left (a retry would choke on it); the step's own error "
        "propagates, not the record's",
    )
    _fill(tiny_tmpfs)
    model_dir = tiny_tmpfs / "train" / "model"

    def bad_data():
        raise ValueError("mask value 7 in record 3")

    with pytest.raises(ValueError, match="mask value 7"):
        retry.run_or_replay_failure(bad_data, str(model_dir), what="train")
    with pytest.raises(OSError) as failure:
        failures.write_failure(tiny_tmpfs / "train", "train", ValueError("x"))
    assert failure.value.errno == errno.ENOSPC
    left = sorted(str(path.relative_to(tiny_tmpfs)) for path in tiny_tmpfs.rglob("*.json*"))
    fault.saw(f"JSON files left: {left or 'none'}")
    assert left == []

    # A full disk is not a deterministic failure: once space is freed, the retry runs.
    def disk_full():
        raise OSError(errno.ENOSPC, "No space left on device", str(model_dir / "x.h5"))

    with pytest.raises(OSError):
        retry.run_or_replay_failure(disk_full, str(tmp_path / "model"), what="train")
    assert not (tmp_path / "model" / retry.FAILURE_RECORD).exists()
    assert retry.run_or_replay_failure(lambda: 5, str(tmp_path / "model"), what="train") == 5


def test_a_full_disk_error_names_the_file_the_step_was_writing():
    from pipelines.local import disk_problem

    root = Path("/mnt/full")
    h5py = (  # train's backup on the 30 MB tmpfs, as the step printed it
        "OSError: [Errno 28] Can't synchronously write data (file write failed: time = Sat "
        "Dec  5 06:59:06 2026 , filename = '/mnt/full/petseg-demo-1/train/model/"
        "_training_backup/latest.partial.weights.h5', file descriptor = 3, errno = 28, error "
        "message = 'No space left on device', buf = 0x55a846394090, total write size = 75360)"
    )
    assert disk_problem(h5py, root) == (
        errno.ENOSPC,
        "/mnt/full/petseg-demo-1/train/model/_training_backup/latest.partial.weights.h5",
    )
    tensorflow = (
        "ResourceExhaustedError: /mnt/full/r/ingest/d/train-0.tfrecord; No space left on device"
    )
    assert disk_problem(tensorflow, root) == (errno.ENOSPC, "/mnt/full/r/ingest/d/train-0.tfrecord")
    python = "PermissionError: [Errno 13] Permission denied: '/mnt/full/r/evaluate/report.html'"
    assert disk_problem(python, root) == (errno.EACCES, "/mnt/full/r/evaluate/report.html")
    readonly = "OSError: [Errno 30] Read-only file system: '/mnt/full/r/push/x'"
    assert disk_problem(readonly, root) == (errno.EROFS, "/mnt/full/r/push/x")
    assert disk_problem("ValueError: mask value 7 in /mnt/full/r/x.png", root) is None


def test_an_oserror_inside_kfp_local_is_one_line_naming_the_step_and_path(
    tmp_path, monkeypatch, capsys, fault
):
    from kfp.local import subprocess_task_handler

    from pipelines.cli import main

    fault(
        "kfp.local itself meets a read-only pipeline root while starting the first step",
        expected="exit 1, one line naming the step, the path and what to do; no traceback",
    )
    root = tmp_path / "root"
    target = root / "petseg-demo-x" / "resolve-config" / "executor_output.json"

    def read_only(self):
        raise OSError(errno.EROFS, "Read-only file system", str(target))

    monkeypatch.setattr(subprocess_task_handler.SubprocessTaskHandler, "run", read_only)
    monkeypatch.chdir(tmp_path)

    code = main(["run", "--local", "--preset", "demo", "--pipeline-root", str(root)])

    err = capsys.readouterr().err
    fault.saw(err.strip())
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: step resolve-config failed: read-only file system: {target}")
    assert f"make {root} writable" in err


def test_a_full_pipeline_root_ends_the_run_with_one_line_and_a_marked_run_folder(tmp_path, fault):
    from pipelines.runs import FAILED_MARKER, run_folders

    fault(
        "`petseg run --local --preset demo` with its pipeline root on a 1 MB disk (full at ingest)",
        expected="exit 1; one line naming the step, the file and what to do; no traceback; "
        "the run folder marked failed; no empty or cut-off JSON left",
    )
    with small_disk(tmp_path, "1m") as disk:
        command = [sys.executable, "-m", "pipelines.cli", "run", "--local", "--preset", "demo"]
        command += ["--set", "training.epochs=1", "--pipeline-root", str(disk)]
        ran = subprocess.run(
            command,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            capture_output=True,
            text=True,
            timeout=240,
        )
        fault.saw(ran.stderr.strip())
        assert ran.returncode == 1, ran.stdout + ran.stderr
        assert ran.stderr.count("\n") == 1, ran.stderr
        assert "Traceback" not in ran.stdout + ran.stderr
        (run_dir,) = run_folders(disk)
        assert re.fullmatch(
            rf"error: step (\S+) failed: no space left on device: {re.escape(str(run_dir))}/"
            rf"\1/\S+; free space under {re.escape(str(disk))} and run again; .*\n",
            ran.stderr,
        ), ran.stderr
        step = ran.stderr.split()[2]
        assert f"FAILED   {step}" in ran.stdout
        assert (run_dir / FAILED_MARKER).is_file()
        assert _broken_json(run_dir) == []


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [
        ("OSError: [Errno 28] No space left on device: '{root}/r/ingest/x.tfrecord'", "disk"),
        ("W tf: open '{root}/r/cache': Permission denied, continuing", "own"),
    ],
    ids=["full-disk-earlier-is-the-cause", "stray-permission-warning-is-not"],
)
def test_a_full_disk_earlier_in_a_failed_steps_output_is_named(
    tmp_path, monkeypatch, earlier, expected
):
    """A full disk may surface as another error; a stray warning must not hide the real one."""
    from kfp.local import status, subprocess_task_handler

    from components.platform.config import load_config
    from pipelines.local import LocalRunError, run_local

    root = tmp_path / "root"

    def step_output(self):
        print("step started")
        print(earlier.format(root=root))
        print("Traceback (most recent call last):")
        print('  File "x.py", line 1, in <module>')
        print("RuntimeError: the writer thread stopped")
        return status.Status.FAILURE

    monkeypatch.setattr(subprocess_task_handler.SubprocessTaskHandler, "run", step_output)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(LocalRunError) as failure:
        run_local(load_config("demo"), pipeline_root=root, out=io.StringIO())

    assert failure.value.step == "resolve-config"
    if expected == "disk":
        assert failure.value.message.startswith(
            f"no space left on device: {root}/r/ingest/x.tfrecord; free space under {root}"
        )
    else:
        assert failure.value.message == "RuntimeError: the writer thread stopped"
