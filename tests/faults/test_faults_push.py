"""Push under faults: the storage server going away mid-upload, and pushes racing each other.

The outage is real at the network level: a relay in front of the GCS emulator resets
every connection once a set number of request bytes has passed (mid-upload, the same
point every run) and then refuses connections until it is restored. Nothing in petseg
or the storage client is patched. Racing pushes are separate OS processes released at
the same moment.

The emulator is fake-gcs-server, which refuses a lost create-if-absent or a stale
``ifGenerationMatch`` with 412 as GCS does, so the races run on gs:// as well.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import faultkit
import pytest
from gcs_emulator import running_emulator

from components.platform.storage import GcsStore
from components.publish.push import PushError, push_model, resolve_latest_model

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]
MEGABYTE = 1 << 20


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture
def link(emulator):
    relay = faultkit.CuttableLink(emulator.port)
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture
def bucket(emulator):
    return emulator.client().create_bucket(f"petseg-{uuid.uuid4().hex[:10]}")


def _stored_version_is_intact(bucket, version: str, model: Path) -> bool:
    """Reads the server's stored objects directly (not through the relay), by object name.

    The emulator's mediaLinks name the address an object was uploaded through (the
    relay, down during the outage), so these reads build their URLs from the name.
    """
    prefix = f"models/versions/{version}"
    manifest = json.loads(bucket.blob(f"{prefix}/manifest.json").download_as_bytes())
    stored = {
        name: bucket.blob(f"{prefix}/{name}").download_as_bytes() for name in manifest["files"]
    }
    return all(
        hashlib.sha256(data).hexdigest() == manifest["files"][name]["sha256"]
        for name, data in stored.items()
    ) and stored == faultkit.files_of(model)


def _names(bucket) -> list[str]:
    return sorted(blob.name for blob in bucket.client.list_blobs(bucket.name))


def _latest(bucket) -> dict:
    return json.loads(bucket.blob("models/LATEST").download_as_bytes())


def _client_through(link):
    """A storage client whose requests all cross the link (what the pushing job sees)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": link.endpoint},
    )


def test_short_outage_mid_push_keeps_latest_and_the_push_completes(
    emulator, link, bucket, tmp_path, fault
):
    fault(
        "GCS unreachable for ~2 s in the middle of uploading a model file (connections "
        "reset, then refused)",
        expected="during the outage LATEST still names the previous version and it verifies; "
        "the push completes when the server is back; exactly one new version",
    )
    destination = f"gs://{bucket.name}/models"
    # The store open_store builds for a gs:// destination (default timeouts and retry
    # deadline), on a client whose requests cross the link.
    pushing = GcsStore(destination, client=_client_through(link))
    old_model = faultkit.write_model_files(tmp_path / "old", seed=1)
    new_model = faultkit.write_model_files(tmp_path / "new", seed=2, file_size=MEGABYTE)
    push_model(str(old_model), destination, run_id="weekly-1", store=pushing)
    outcome: dict = {}

    def push_new() -> None:
        try:
            outcome["result"] = push_model(
                str(new_model), destination, run_id="weekly-2", store=pushing
            )
        except Exception as error:  # reported by the assertion below
            outcome["error"] = error

    link.cut_after(int(1.5 * MEGABYTE))  # mid-way through the second 1 MiB file
    pusher = threading.Thread(target=push_new)
    pusher.start()
    assert link.cut_event.wait(60), "the push never sent 1.5 MiB"

    assert _latest(bucket)["version"] == "v000001"
    assert _stored_version_is_intact(bucket, "v000001", old_model)
    assert "models/versions/v000002/manifest.json" not in _names(bucket)
    fault.saw("while down: stored LATEST=v000001, whose files match its manifest")
    time.sleep(2.0)
    link.restore()
    pusher.join(timeout=200)

    assert not pusher.is_alive(), "push still running after the outage"
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    fault.saw(f"push returned {result['version']}, LATEST={result['latest']}")
    assert (result["version"], result["latest"], result["reused"]) == ("v000002", "v000002", False)
    assert {name.split("/")[2] for name in _names(bucket) if "/versions/" in name} == {
        "v000001",
        "v000002",
    }
    resolved = Path(resolve_latest_model(destination, str(tmp_path / "cache"), store=pushing))
    assert faultkit.files_of(resolved) == faultkit.files_of(new_model)


def test_long_outage_fails_the_push_cleanly_and_a_rerun_resumes(
    emulator, link, bucket, tmp_path, fault
):
    fault(
        "GCS unreachable for longer than the client's retry deadline, mid-upload",
        expected="PushError saying LATEST is unchanged; LATEST stays the previous version; "
        "re-running the push when GCS is back completes that same version",
    )
    destination = f"gs://{bucket.name}/models"
    impatient = GcsStore(destination, client=_client_through(link), timeout_s=5, retry_deadline_s=2)
    old_model = faultkit.write_model_files(tmp_path / "old", seed=3)
    new_model = faultkit.write_model_files(tmp_path / "new", seed=4, file_size=MEGABYTE)
    push_model(str(old_model), destination, run_id="weekly-1", store=impatient)

    link.cut_after(int(1.5 * MEGABYTE))
    with pytest.raises(PushError) as failure:
        push_model(str(new_model), destination, run_id="weekly-2", store=impatient)

    fault.saw(f"PushError: {failure.value}")
    assert "LATEST is unchanged" in str(failure.value)
    assert "resumes v000002" in str(failure.value)
    assert _latest(bucket)["version"] == "v000001"
    assert "models/versions/v000002/manifest.json" not in _names(bucket)
    link.restore()
    baseline = Path(resolve_latest_model(destination, str(tmp_path / "cache"), store=impatient))
    assert faultkit.files_of(baseline) == faultkit.files_of(old_model)

    retried = push_model(str(new_model), destination, run_id="weekly-2-retry", store=impatient)

    fault.saw(
        f"re-run: {retried['version']} (reused={retried['reused']}), LATEST={retried['latest']}"
    )
    assert (retried["version"], retried["latest"]) == ("v000002", "v000002")
    assert not any("/v000003/" in name for name in _names(bucket))
    resolved = Path(resolve_latest_model(destination, str(tmp_path / "cache"), store=impatient))
    assert faultkit.files_of(resolved) == faultkit.files_of(new_model)


RACING_PUSH = textwrap.dedent(
    """
    import json, os, sys, time
    from components.publish.push import push_model

    model_dir, destination, go_file, run_id = sys.argv[1:5]
    print("READY", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.0005)
    print("RESULT " + json.dumps(push_model(model_dir, destination, run_id=run_id)), flush=True)
    """
)


def _race(
    models: list[Path], destination: Path | str, go_file: Path, env: dict | None = None
) -> list[dict]:
    """Starts one process per model, releases them together, returns their results."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACING_PUSH, str(m), str(destination), str(go_file), f"r{i}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for i, m in enumerate(models)
    ]
    for process in processes:
        assert process.stdout.readline().strip() == "READY", process.stderr.read()
    go_file.touch()
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        results.append(json.loads(stdout.split("RESULT ", 1)[1]))
    go_file.unlink()
    return results


def _manifest(destination: Path, version: str) -> dict:
    return json.loads((destination / "versions" / version / "manifest.json").read_text())


def test_racing_pushes_of_different_models_all_complete(tmp_path, fault):
    rounds = 3
    fault(
        f"{rounds} rounds of two processes pushing different models to one destination at "
        "the same instant",
        expected="every push completes its own version; LATEST names the newest complete "
        "version and its manifest checksum; no version mixes two models",
    )
    destination = tmp_path / "models"
    models = [
        faultkit.write_model_files(tmp_path / f"m{i}", seed=10 + i) for i in range(2 * rounds)
    ]
    by_version: dict[str, Path] = {}
    for round_index in range(rounds):
        pair = models[2 * round_index : 2 * round_index + 2]
        results = _race(pair, destination, tmp_path / "go")
        versions = sorted(result["version"] for result in results)
        assert versions == [f"v{2 * round_index + 1:06d}", f"v{2 * round_index + 2:06d}"]
        for model, result in zip(pair, results, strict=True):
            by_version[result["version"]] = model
        pointer = json.loads((destination / "LATEST").read_text())
        assert pointer["version"] == versions[-1]
        manifest_bytes = (destination / "versions" / versions[-1] / "manifest.json").read_bytes()
        assert pointer["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()

    fault.saw(f"versions {sorted(by_version)}; LATEST={pointer['version']}")
    for version, model in by_version.items():
        copied = faultkit.files_of(destination / "versions" / version)
        assert copied == faultkit.files_of(model), f"{version} is not one model's files"
        assert _manifest(destination, version)["files"].keys() == faultkit.files_of(model).keys()
    latest = Path(resolve_latest_model(str(destination), str(tmp_path / "cache")))
    assert latest == destination / "versions" / pointer["version"]
    assert faultkit.files_of(latest) == faultkit.files_of(by_version[pointer["version"]])


def test_racing_retries_of_the_same_model_make_one_version(tmp_path, fault):
    fault(
        "two processes pushing the same model at the same instant (a retried task racing "
        "its original)",
        expected="both succeed with the same version; one version only; LATEST names it",
    )
    destination = tmp_path / "models"
    model = faultkit.write_model_files(tmp_path / "model", seed=20)

    results = _race([model, model], destination, tmp_path / "go")

    fault.saw(", ".join(f"{r['version']} (reused={r['reused']})" for r in results))
    assert {result["version"] for result in results} == {"v000001"}
    assert sorted(path.name for path in (destination / "versions").iterdir()) == ["v000001"]
    assert json.loads((destination / "LATEST").read_text())["version"] == "v000001"
    assert faultkit.files_of(destination / "versions" / "v000001") == faultkit.files_of(model)


def test_racing_pushes_to_one_gs_destination_all_complete(emulator, bucket, tmp_path, fault):
    rounds = 2
    fault(
        f"{rounds} rounds of two processes pushing different models to one gs:// destination "
        "at the same instant",
        expected="every push completes its own version; LATEST names the newest version and "
        "its manifest checksum; each version holds one model's files",
    )
    destination = f"gs://{bucket.name}/models"
    env = {"STORAGE_EMULATOR_HOST": emulator.endpoint}
    models = [
        faultkit.write_model_files(tmp_path / f"m{i}", seed=30 + i) for i in range(2 * rounds)
    ]
    by_version: dict[str, Path] = {}
    for round_index in range(rounds):
        pair = models[2 * round_index : 2 * round_index + 2]
        results = _race(pair, destination, tmp_path / "go", env)
        versions = sorted(result["version"] for result in results)
        assert versions == [f"v{2 * round_index + 1:06d}", f"v{2 * round_index + 2:06d}"]
        for model, result in zip(pair, results, strict=True):
            by_version[result["version"]] = model
        pointer = _latest(bucket)
        assert pointer["version"] == versions[-1]
        manifest_bytes = bucket.blob(
            f"models/versions/{versions[-1]}/manifest.json"
        ).download_as_bytes()
        assert pointer["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()

    fault.saw(f"versions {sorted(by_version)}; LATEST={pointer['version']}")
    for version, model in by_version.items():
        assert _stored_version_is_intact(bucket, version, model), version
