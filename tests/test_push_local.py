"""push to a local folder: versions, manifest, LATEST, retries, crashes and races."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from components.platform import storage
from components.platform.storage import DestinationError, GcsStore, LocalStore, open_store
from components.publish import push as push_module
from components.publish.push import (
    ChecksumMismatchError,
    push_model,
    resolve_latest_model,
    scan_model_dir,
)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(120)


def make_model_dir(path: Path, seed: int, size: int = 4096) -> Path:
    """A stand-in for train's output: push copies files and never loads the model."""
    path.mkdir(parents=True)
    payload = bytes((seed * 31 + i * 7) % 256 for i in range(size))
    (path / "model.keras").write_bytes(payload)
    (path / "saved_model" / "variables").mkdir(parents=True)
    (path / "saved_model" / "saved_model.pb").write_bytes(payload[::-1])
    (path / "saved_model" / "variables" / "variables.data-00000-of-00001").write_bytes(payload * 2)
    (path / "summary.txt").write_text(f"model {seed}\n")
    metadata = {
        "classes": ["pet", "background", "border"],
        "image_size": 64,
        "dataset": {"uri": "/data/ds", "source": "synthetic_pets", "version": "1.0.0"},
        "seed": seed,
    }
    (path / "metadata.json").write_text(json.dumps(metadata))
    return path


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def read_latest(destination: Path) -> dict:
    return json.loads((destination / "LATEST").read_text())


@pytest.fixture
def models(tmp_path):
    return [make_model_dir(tmp_path / f"model-{i}", seed=i) for i in range(4)]


def test_first_push_writes_version_manifest_and_latest(tmp_path, models):
    destination = tmp_path / "dest"
    result = push_model(
        str(models[0]), str(destination), run_id="run-1", extra_manifest={"metrics": {"iou": 0.7}}
    )

    version_dir = destination / "versions" / "v000001"
    assert result == {
        "version": "v000001",
        "uri": str(version_dir),
        "latest": "v000001",
        "digest": result["digest"],
        "reused": False,
        "resumed": False,
    }
    assert len(result["digest"]) == 64
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["model_digest"] == result["digest"]
    assert manifest["run_id"] == "run-1"
    assert manifest["metrics"] == {"iou": 0.7}
    assert manifest["dataset"]["source"] == "synthetic_pets"
    assert manifest["model_metadata"]["seed"] == 0
    expected = {f.relative_path: f.sha256 for f in scan_model_dir(str(models[0]))}
    assert {name: entry["sha256"] for name, entry in manifest["files"].items()} == expected
    copied = files_of(version_dir)
    for name, data in files_of(models[0]).items():
        assert copied[name] == data
    assert read_latest(destination)["version"] == "v000001"
    assert read_latest(destination)["model_digest"] == result["digest"]
    # Staging leftovers never land inside a version.
    assert not [name for name in copied if name.endswith(".partial")]


def test_second_model_gets_next_version_and_earlier_version_is_untouched(tmp_path, models):
    destination = tmp_path / "dest"
    push_model(str(models[0]), str(destination), run_id="run-1")
    first = destination / "versions" / "v000001"
    before = {name: (first / name).stat().st_ino for name in files_of(first)}
    contents = files_of(first)

    result = push_model(str(models[1]), str(destination), run_id="run-2")

    assert result["version"] == "v000002"
    assert result["latest"] == "v000002"
    assert read_latest(destination)["version"] == "v000002"
    assert files_of(first) == contents
    assert {name: (first / name).stat().st_ino for name in files_of(first)} == before


def test_retrying_the_same_model_returns_the_same_version(tmp_path, models):
    destination = tmp_path / "dest"
    first = push_model(str(models[0]), str(destination), run_id="run-1")
    manifest_before = (destination / "versions" / "v000001" / "manifest.json").read_bytes()

    again = push_model(str(models[0]), str(destination), run_id="run-1-retry")

    assert again["version"] == "v000001"
    assert again["reused"] is True
    assert again["digest"] == first["digest"]
    assert sorted(os.listdir(destination / "versions")) == ["v000001"]
    # The manifest of the first push stays; the retry wrote nothing.
    assert (destination / "versions" / "v000001" / "manifest.json").read_bytes() == (
        manifest_before
    )


def test_pushing_an_older_model_again_does_not_move_latest_back(tmp_path, models):
    destination = tmp_path / "dest"
    push_model(str(models[0]), str(destination), run_id="a")
    push_model(str(models[1]), str(destination), run_id="b")

    again = push_model(str(models[0]), str(destination), run_id="a-again")

    assert (again["version"], again["reused"], again["latest"]) == ("v000001", True, "v000002")
    assert read_latest(destination)["version"] == "v000002"


CRASHING_PUSH = textwrap.dedent(
    """
    import os, sys
    from components.publish import push
    from components.platform import storage

    original = storage.LocalStore.upload_file
    calls = []

    def upload_then_crash(self, local_path, key):
        if len(calls) == 2:
            os._exit(17)  # the process dies mid-copy: no cleanup, no exception handlers
        calls.append(key)
        original(self, local_path, key)

    storage.LocalStore.upload_file = upload_then_crash
    push.push_model(sys.argv[1], sys.argv[2], run_id="crashing-run")
    """
)


def test_crash_mid_copy_keeps_latest_and_retry_resumes_the_same_version(tmp_path, models):
    destination = tmp_path / "dest"
    push_model(str(models[0]), str(destination), run_id="run-1")

    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_PUSH, str(models[1]), str(destination)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert crashed.returncode == 17, crashed.stderr
    partial = destination / "versions" / "v000002"
    assert (partial / ".claim").exists()
    assert not (partial / "manifest.json").exists()
    assert len([p for p in partial.rglob("*") if p.is_file() and p.name != ".claim"]) == 2
    assert read_latest(destination)["version"] == "v000001"
    latest = resolve_latest_model(str(destination), str(tmp_path / "cache"))
    assert latest == str(destination / "versions" / "v000001")
    inodes = {p: p.stat().st_ino for p in partial.rglob("*") if p.is_file()}

    retried = push_model(str(models[1]), str(destination), run_id="run-2-retry")

    assert (retried["version"], retried["reused"], retried["latest"]) == (
        "v000002",
        False,
        "v000002",
    )
    assert sorted(os.listdir(destination / "versions")) == ["v000001", "v000002"]
    # Files the crashed push completed were verified and kept, not copied again.
    assert {p: p.stat().st_ino for p in inodes} == inodes
    resolved = Path(resolve_latest_model(str(destination), str(tmp_path / "cache")))
    for name, data in files_of(models[1]).items():
        assert (resolved / name).read_bytes() == data


def test_an_abandoned_claim_of_another_model_is_skipped(tmp_path, models):
    destination = tmp_path / "dest"
    abandoned = destination / "versions" / "v000001"
    abandoned.mkdir(parents=True)
    (abandoned / ".claim").write_text(json.dumps({"model_digest": "0" * 64}))

    result = push_model(str(models[0]), str(destination), run_id="run")

    assert result["version"] == "v000002"
    assert read_latest(destination)["version"] == "v000002"


def _run_competitor_before_first(monkeypatch, method: str, key_suffix: str, competitor):
    """Runs a whole competing push just before our first call of store.<method>."""
    original = getattr(LocalStore, method)
    state = {"done": False}

    def interleaved(self, key, *args):
        if not state["done"] and key.endswith(key_suffix):
            state["done"] = True
            competitor()
        return original(self, key, *args)

    monkeypatch.setattr(LocalStore, method, interleaved)


def test_losing_the_race_for_a_version_number_takes_the_next_one(tmp_path, models, monkeypatch):
    destination = tmp_path / "dest"
    results = {}
    _run_competitor_before_first(
        monkeypatch,
        "create_if_absent",
        ".claim",
        lambda: results.setdefault(
            "other", push_model(str(models[1]), str(destination), run_id="b")
        ),
    )

    ours = push_model(str(models[0]), str(destination), run_id="a")

    assert results["other"]["version"] == "v000001"
    assert ours["version"] == "v000002"
    assert read_latest(destination)["version"] == "v000002"
    manifests = {
        v: json.loads((destination / "versions" / v / "manifest.json").read_text())
        for v in ("v000001", "v000002")
    }
    assert manifests["v000001"]["model_digest"] == results["other"]["digest"]
    assert manifests["v000002"]["model_digest"] == ours["digest"]


def test_a_newer_version_published_during_our_swap_stays_latest(tmp_path, models, monkeypatch):
    destination = tmp_path / "dest"
    results = {}
    _run_competitor_before_first(
        monkeypatch,
        "compare_and_swap",
        "LATEST",
        lambda: results.setdefault(
            "other", push_model(str(models[1]), str(destination), run_id="b")
        ),
    )

    ours = push_model(str(models[0]), str(destination), run_id="a")

    assert ours["version"] == "v000001"
    assert results["other"]["version"] == "v000002"
    assert ours["latest"] == "v000002"
    assert read_latest(destination)["version"] == "v000002"


def test_concurrent_pushes_all_complete_and_latest_is_the_newest(tmp_path, models):
    destination = tmp_path / "dest"
    barrier = threading.Barrier(len(models), timeout=30)
    results, errors = {}, []

    def run(index):
        try:
            barrier.wait()
            results[index] = push_model(str(models[index]), str(destination), run_id=f"r{index}")
        except Exception as error:  # reported below with the failing thread's index
            errors.append((index, error))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(models))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    versions = sorted(result["version"] for result in results.values())
    assert versions == ["v000001", "v000002", "v000003", "v000004"]
    assert read_latest(destination)["version"] == "v000004"
    for index, result in results.items():
        manifest = json.loads((Path(result["uri"]) / "manifest.json").read_text())
        assert manifest["model_digest"] == result["digest"]
        copied = files_of(Path(result["uri"]))
        for name, data in files_of(models[index]).items():
            assert copied[name] == data


def test_resolve_returns_none_before_any_push_and_creates_nothing(tmp_path):
    destination = tmp_path / "never-pushed"
    assert resolve_latest_model(str(destination), str(tmp_path / "cache")) is None
    assert not destination.exists()


def test_resolve_names_a_corrupted_file(tmp_path, models):
    destination = tmp_path / "dest"
    push_model(str(models[0]), str(destination), run_id="run")
    damaged = destination / "versions" / "v000001" / "saved_model" / "saved_model.pb"
    damaged.write_bytes(b"not the model")

    with pytest.raises(ChecksumMismatchError, match=r"saved_model/saved_model\.pb"):
        resolve_latest_model(str(destination), str(tmp_path / "cache"))


def test_resolve_rejects_latest_naming_a_version_without_manifest(tmp_path, models):
    destination = tmp_path / "dest"
    push_model(str(models[0]), str(destination), run_id="run")
    (destination / "LATEST").write_text(json.dumps({"version": "v000009"}))

    with pytest.raises(ValueError, match="v000009, which has no manifest"):
        resolve_latest_model(str(destination), str(tmp_path / "cache"))


def test_resolve_rejects_a_manifest_changed_after_publication(tmp_path, models):
    destination = tmp_path / "dest"
    push_model(str(models[0]), str(destination), run_id="run")
    manifest_path = destination / "versions" / "v000001" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["summary.txt"]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))

    with pytest.raises(ChecksumMismatchError, match=r"manifest\.json"):
        resolve_latest_model(str(destination), str(tmp_path / "cache"))


def test_model_directory_must_be_a_petseg_model(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="is empty"):
        push_model(str(empty), str(tmp_path / "dest"), run_id="r")
    (empty / "model.keras").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"no metadata\.json"):
        push_model(str(empty), str(tmp_path / "dest"), run_id="r")
    (empty / "metadata.json").write_text("{}")
    (empty / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match=r"reserved file names \['manifest.json'\]"):
        push_model(str(empty), str(tmp_path / "dest"), run_id="r")
    with pytest.raises(FileNotFoundError, match="missing-model"):
        push_model(str(tmp_path / "missing-model"), str(tmp_path / "dest"), run_id="r")


def test_arguments_are_checked_before_anything_is_written(tmp_path, models):
    destination = tmp_path / "dest"
    with pytest.raises(ValueError, match="run_id is empty"):
        push_model(str(models[0]), str(destination), run_id="")
    with pytest.raises(ValueError, match=r"own keys \['files', 'version'\]"):
        push_model(
            str(models[0]), str(destination), run_id="r", extra_manifest={"files": 1, "version": 2}
        )
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        push_model(str(models[0]), str(destination), run_id="r", extra_manifest={"x": object()})
    assert not destination.exists()


def test_destination_kinds(tmp_path):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    gcs = open_store("gs://bucket/models/petseg/")
    assert isinstance(gcs, GcsStore)
    assert (gcs.bucket_name, gcs.prefix, gcs.uri) == (
        "bucket",
        "models/petseg",
        "gs://bucket/models/petseg",
    )
    fuse = open_store("/gcs/bucket/models")
    assert isinstance(fuse, GcsStore)
    assert fuse.uri == "gs://bucket/models"
    for bad, message in [
        ("", "empty"),
        ("s3://bucket/x", "only gs://"),
        ("gs://", "names no bucket"),
        ("gs://bucket/a/../b", "invalid object prefix"),
    ]:
        with pytest.raises(DestinationError, match=message):
            open_store(bad)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DestinationError, match="not a directory"):
        push_model(str(make_model_dir(tmp_path / "m", 1)), str(a_file), run_id="r")


def test_local_compare_and_swap_refuses_a_stale_token(tmp_path):
    store = LocalStore(str(tmp_path))
    assert store.create_if_absent("LATEST", b"one")
    assert not store.create_if_absent("LATEST", b"two")
    data, token = store.read_versioned("LATEST")
    assert data == b"one"
    assert store.compare_and_swap("LATEST", b"three", token)
    assert not store.compare_and_swap("LATEST", b"four", token)
    assert store.read_bytes("LATEST") == b"three"
    assert push_module.version_number("v000123") == 123
    assert push_module.version_number("latest") is None


def test_a_push_removes_files_staged_by_killed_pushes_but_not_recent_ones(tmp_path, models):
    destination = tmp_path / "dest"
    push_model(str(models[0]), str(destination), run_id="run-1")
    staging = destination / ".staging"
    abandoned = staging / "0123abandoned.partial"  # left by a push killed an hour ago
    abandoned.write_bytes(b"half a file")
    old = abandoned.stat().st_mtime - storage.STALE_STAGED_AFTER_S - 60
    os.utime(abandoned, (old, old))
    in_flight = staging / "4567inflight.partial"  # another push writing right now
    in_flight.write_bytes(b"being written")

    push_model(str(models[1]), str(destination), run_id="run-2")

    assert not abandoned.exists()
    assert in_flight.read_bytes() == b"being written"
    assert read_latest(destination)["version"] == "v000002"
