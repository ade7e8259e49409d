"""push to gs:// against a real GCS emulator server on loopback (no mocked client).

The server is fake-gcs-server, which answers 412 to a create-if-absent or a stale
``ifGenerationMatch`` on multipart uploads as GCS does, so lost races are provoked
here for real: a version claim taken by someone else, a LATEST that moved since it
was read, and two pushes released at the same moment.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from pathlib import Path

import pytest
from gcs_emulator import running_emulator

from components.platform import storage as storage_module
from components.platform.storage import CONDITIONAL_WRITE_MAX_BYTES, DestinationError, GcsStore
from components.publish.push import (
    ChecksumMismatchError,
    PushError,
    push_model,
    resolve_latest_model,
)

FAST_RETRY_S = 3.0
# A hung server or client must fail the test, not the CI job.
pytestmark = pytest.mark.timeout(120)


def make_model_dir(path: Path, seed: int, size: int = 4096) -> Path:
    """A stand-in for train's output: push copies files and never loads the model."""
    path.mkdir(parents=True)
    payload = bytes((seed * 29 + i * 13) % 256 for i in range(size))
    (path / "model.keras").write_bytes(payload)
    (path / "saved_model" / "variables").mkdir(parents=True)
    (path / "saved_model" / "saved_model.pb").write_bytes(payload[::-1])
    (path / "saved_model" / "variables" / "variables.index").write_bytes(payload[:100])
    (path / "summary.txt").write_text(f"model {seed}\n")
    (path / "metadata.json").write_text(json.dumps({"image_size": 64, "seed": seed}))
    return path


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture
def bucket(emulator):
    client = emulator.client()
    return client.create_bucket(f"petseg-{uuid.uuid4().hex[:12]}")


def store_for(emulator, bucket_name: str, prefix: str = "models/petseg") -> GcsStore:
    return GcsStore(
        f"gs://{bucket_name}/{prefix}",
        client=emulator.client(),
        timeout_s=10,
        retry_deadline_s=FAST_RETRY_S,
    )


def objects(bucket) -> dict[str, int]:
    """Object name → generation, for everything in the bucket."""
    return {blob.name: int(blob.generation) for blob in bucket.client.list_blobs(bucket.name)}


def latest_of(bucket, prefix: str = "models/petseg") -> dict:
    return json.loads(bucket.blob(f"{prefix}/LATEST").download_as_bytes())


def test_versions_manifest_and_latest_on_gcs(emulator, bucket, tmp_path):
    first_model = make_model_dir(tmp_path / "a", seed=1)
    second_model = make_model_dir(tmp_path / "b", seed=2)
    store = store_for(emulator, bucket.name)

    first = push_model(
        str(first_model),
        "unused",
        run_id="run-a",
        extra_manifest={"metrics": {"mean_iou": 0.6}},
        store=store,
    )
    after_first = objects(bucket)
    second = push_model(str(second_model), "unused", run_id="run-b", store=store)

    prefix = f"gs://{bucket.name}/models/petseg/versions"
    assert (first["version"], first["uri"], first["reused"]) == (
        "v000001",
        f"{prefix}/v000001",
        False,
    )
    assert (second["version"], second["latest"]) == ("v000002", "v000002")
    assert latest_of(bucket)["version"] == "v000002"
    expected_names = {
        f"models/petseg/versions/v000001/{name}" for name in files_of(first_model)
    } | {"models/petseg/versions/v000001/manifest.json", "models/petseg/versions/v000001/.claim"}
    assert {n for n in after_first if "/v000001/" in n} == expected_names
    # Publishing v000002 rewrote no object of v000001.
    assert {n: g for n, g in objects(bucket).items() if "/v000001/" in n} == {
        n: g for n, g in after_first.items() if "/v000001/" in n
    }
    manifest = json.loads(
        bucket.blob("models/petseg/versions/v000001/manifest.json").download_as_bytes()
    )
    assert manifest["model_digest"] == first["digest"]
    assert manifest["metrics"] == {"mean_iou": 0.6}
    assert set(manifest["files"]) == set(files_of(first_model))

    resolved = Path(resolve_latest_model("unused", str(tmp_path / "cache"), store=store))
    assert resolved.parent == tmp_path / "cache"
    for name, data in files_of(second_model).items():
        assert (resolved / name).read_bytes() == data
    # A second resolve reuses the verified cache copy.
    assert resolve_latest_model("unused", str(tmp_path / "cache"), store=store) == str(resolved)


def test_retry_of_the_same_model_is_idempotent_on_gcs(emulator, bucket, tmp_path):
    model = make_model_dir(tmp_path / "a", seed=3)
    store = store_for(emulator, bucket.name)
    first = push_model(str(model), "unused", run_id="run", store=store)
    before = objects(bucket)

    again = push_model(str(model), "unused", run_id="run-retry", store=store)

    assert (again["version"], again["reused"], again["digest"]) == (
        "v000001",
        True,
        first["digest"],
    )
    assert objects(bucket) == before  # nothing written, nothing rewritten


def test_conditional_writes_carry_generation_preconditions(emulator, bucket, tmp_path):
    store = store_for(emulator, bucket.name, prefix="conditional")
    push_model(str(make_model_dir(tmp_path / "a", seed=4)), "unused", run_id="a", store=store)
    first_latest = int(bucket.get_blob("conditional/LATEST").generation)
    push_model(str(make_model_dir(tmp_path / "b", seed=5)), "unused", run_id="b", store=store)

    log = emulator.log_text()
    # The JSON upload API names the object in the multipart body, so match by bucket and
    # by the precondition values: 0 (create only if absent) for both versions' claim and
    # manifest plus the first LATEST, and the first LATEST's generation for the swap.
    uploads = re.findall(rf"POST /upload/storage/v1/b/{bucket.name}/o\?(\S+)", log)
    conditions = [re.search(r"ifGenerationMatch=(\d+)", query) for query in uploads]
    values = [int(match.group(1)) for match in conditions if match]
    assert values.count(0) == 5
    assert first_latest in values


def test_server_outage_mid_push_keeps_latest_and_retry_completes(tmp_path, monkeypatch):
    with running_emulator(tmp_path / "gcs") as server:
        bucket = server.client().create_bucket("petseg-outage")
        store = store_for(server, bucket.name)
        old_model = make_model_dir(tmp_path / "old", seed=6)
        new_model = make_model_dir(tmp_path / "new", seed=7)
        push_model(str(old_model), "unused", run_id="old", store=store)

        original_upload = GcsStore.upload_file
        uploaded = []

        def upload_then_outage(self, local_path, key):
            if len(uploaded) == 2:
                server.stop()  # the real server goes away; the client sees refused connections
            original_upload(self, local_path, key)
            uploaded.append(key)

        monkeypatch.setattr(GcsStore, "upload_file", upload_then_outage)
        with pytest.raises(PushError, match=r"versions/v000002/.*resumes v000002") as failure:
            push_model(str(new_model), "unused", run_id="new", store=store)
        monkeypatch.setattr(GcsStore, "upload_file", original_upload)
        assert len(uploaded) == 2
        assert "Failed to establish a new connection" in str(failure.value.__cause__)

        server.start()  # same port, same on-disk data
        names = objects(bucket)
        assert "models/petseg/versions/v000002/.claim" in names
        assert "models/petseg/versions/v000002/manifest.json" not in names
        assert latest_of(bucket)["version"] == "v000001"
        baseline = Path(resolve_latest_model("unused", str(tmp_path / "cache"), store=store))
        assert baseline.name.startswith("v000001-")
        for name, data in files_of(old_model).items():
            assert (baseline / name).read_bytes() == data
        kept = {n: g for n, g in names.items() if "/v000002/" in n and not n.endswith(".claim")}
        assert len(kept) == 2

        retried = push_model(str(new_model), "unused", run_id="new-retry", store=store)

        assert (retried["version"], retried["reused"], retried["latest"]) == (
            "v000002",
            False,
            "v000002",
        )
        after = objects(bucket)
        assert not any("/v000003/" in name for name in after)
        # The two files uploaded before the outage were verified and kept.
        assert {n: after[n] for n in kept} == kept
        resolved = Path(resolve_latest_model("unused", str(tmp_path / "cache"), store=store))
        for name, data in files_of(new_model).items():
            assert (resolved / name).read_bytes() == data


def test_missing_bucket_is_a_clear_error(emulator, tmp_path):
    store = store_for(emulator, "no-such-bucket")
    model = make_model_dir(tmp_path / "a", seed=8)
    with pytest.raises(DestinationError, match="bucket 'no-such-bucket' does not exist"):
        push_model(str(model), "unused", run_id="r", store=store)
    with pytest.raises(DestinationError, match="bucket 'no-such-bucket' does not exist"):
        resolve_latest_model("unused", str(tmp_path / "cache"), store=store)


def test_resolve_on_gcs_names_a_corrupted_object(emulator, bucket, tmp_path):
    store = store_for(emulator, bucket.name)
    push_model(str(make_model_dir(tmp_path / "a", seed=9)), "unused", run_id="r", store=store)
    bucket.blob("models/petseg/versions/v000001/summary.txt").upload_from_string(b"tampered")

    with pytest.raises(ChecksumMismatchError, match=r"versions/v000001/summary\.txt"):
        resolve_latest_model("unused", str(tmp_path / "cache"), store=store)
    assert not [p for p in (tmp_path / "cache").iterdir()]  # no half-verified copy is left


def test_resolve_is_none_for_an_empty_prefix(emulator, bucket, tmp_path):
    store = store_for(emulator, bucket.name, prefix="nothing/here")
    assert resolve_latest_model("unused", str(tmp_path / "cache"), store=store) is None


def test_destination_string_uses_the_emulator_from_the_environment(
    emulator, bucket, tmp_path, monkeypatch
):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    destination = f"gs://{bucket.name}/from-env"
    model = make_model_dir(tmp_path / "a", seed=10)

    result = push_model(str(model), destination, run_id="env")

    assert result["uri"] == f"{destination}/versions/v000001"
    assert latest_of(bucket, "from-env")["version"] == "v000001"
    assert resolve_latest_model(destination, str(tmp_path / "cache")) is not None
    assert storage_module.make_gcs_client().project == "test"


class StaleListing(GcsStore):
    """Lists no versions the first time: a rival claimed v000001 after this push looked."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stale_listings = 1

    def list_children(self, prefix):
        if self.stale_listings:
            self.stale_listings -= 1
            return []
        return super().list_children(prefix)


def test_a_claim_taken_by_another_push_is_refused_and_the_next_version_taken(
    emulator, bucket, tmp_path
):
    first = make_model_dir(tmp_path / "a", seed=11)
    second = make_model_dir(tmp_path / "b", seed=12)
    push_model(str(first), "unused", run_id="a", store=store_for(emulator, bucket.name))
    before = {n: g for n, g in objects(bucket).items() if "/v000001/" in n}
    stale = StaleListing(
        f"gs://{bucket.name}/models/petseg", client=emulator.client(), timeout_s=10
    )

    result = push_model(str(second), "unused", run_id="b", store=stale)

    assert stale.stale_listings == 0  # the push did try v000001 first
    assert (result["version"], result["latest"]) == ("v000002", "v000002")
    # The server refused the overwrite of v000001's claim: nothing of v000001 changed.
    assert {n: g for n, g in objects(bucket).items() if "/v000001/" in n} == before
    claim = json.loads(bucket.blob("models/petseg/versions/v000001/.claim").download_as_bytes())
    assert claim["run_id"] == "a"
    refused = (
        rf"POST /upload/storage/v1/b/{bucket.name}/o\?\S*ifGenerationMatch=0 HTTP/1.1\\?\" 412"
    )
    assert len(re.findall(refused, emulator.log_text())) == 1


def test_latest_is_not_replaced_from_a_stale_read(emulator, bucket, tmp_path):
    store = store_for(emulator, bucket.name, prefix="stale")
    push_model(str(make_model_dir(tmp_path / "a", seed=13)), "unused", run_id="a", store=store)
    stale_bytes, stale_generation = store.read_versioned("LATEST")
    push_model(str(make_model_dir(tmp_path / "b", seed=14)), "unused", run_id="b", store=store)
    current = bucket.blob("stale/LATEST").download_as_bytes()

    assert not store.compare_and_swap("LATEST", stale_bytes, stale_generation)
    assert not store.create_if_absent("LATEST", stale_bytes)
    assert bucket.blob("stale/LATEST").download_as_bytes() == current
    assert json.loads(current)["version"] == "v000002"


def test_conditional_writes_refuse_what_would_need_a_resumable_upload(emulator, bucket):
    store = store_for(emulator, bucket.name, prefix="big")
    with pytest.raises(ValueError, match=r"big/LATEST: a conditional write holds at most"):
        store.create_if_absent("LATEST", b"x" * (CONDITIONAL_WRITE_MAX_BYTES + 1))
    assert objects(bucket) == {}


def race(emulator, bucket_name: str, models: list[Path], prefix: str) -> list[dict]:
    """Pushes every model from its own thread, client and store, released together."""
    start = threading.Barrier(len(models))
    results: list[dict] = []
    errors: list[BaseException] = []

    def push(model: Path, run_id: str) -> None:
        store = store_for(emulator, bucket_name, prefix=prefix)
        start.wait()
        try:
            results.append(push_model(str(model), "unused", run_id=run_id, store=store))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=push, args=(model, f"run-{model.name}")) for model in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == len(models)
    return results


def test_two_concurrent_pushes_to_one_gs_destination_both_complete(emulator, bucket, tmp_path):
    rounds = 3
    models = [make_model_dir(tmp_path / f"m{i}", seed=20 + i) for i in range(2 * rounds)]
    by_version: dict[str, Path] = {}
    for round_index in range(rounds):
        pair = models[2 * round_index : 2 * round_index + 2]

        results = race(emulator, bucket.name, pair, prefix="race")

        versions = sorted(result["version"] for result in results)
        assert versions == [f"v{2 * round_index + 1:06d}", f"v{2 * round_index + 2:06d}"]
        for result in results:
            manifest_blob = bucket.blob(f"race/versions/{result['version']}/manifest.json")
            source = json.loads(manifest_blob.download_as_bytes())["source_model_dir"]
            by_version[result["version"]] = {str(model): model for model in pair}[source]
        pointer = latest_of(bucket, "race")
        assert pointer["version"] == versions[-1]
        manifest_bytes = bucket.blob(
            f"race/versions/{versions[-1]}/manifest.json"
        ).download_as_bytes()
        assert pointer["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()

    # Every version holds exactly one model's files: no claim was shared.
    for version, model in by_version.items():
        for name, data in files_of(model).items():
            assert bucket.blob(f"race/versions/{version}/{name}").download_as_bytes() == data
    resolved = Path(
        resolve_latest_model(
            "unused", str(tmp_path / "cache"), store=store_for(emulator, bucket.name, "race")
        )
    )
    newest = files_of(by_version[f"v{2 * rounds:06d}"])
    assert {k: v for k, v in files_of(resolved).items() if k != "manifest.json"} == newest


def test_concurrent_pushes_of_the_same_model_share_one_version_on_gcs(emulator, bucket, tmp_path):
    model = make_model_dir(tmp_path / "same", seed=30)

    results = race(emulator, bucket.name, [model, model], prefix="same")

    assert {result["version"] for result in results} == {"v000001"}
    assert {name.split("/")[2] for name in objects(bucket) if "/versions/" in name} == {"v000001"}
    assert latest_of(bucket, "same")["version"] == "v000001"
