"""petseg models list|verify|rollback|gc and petseg push, on a local folder and on gs://.

gs:// runs against fake-gcs-server (tests/gcs_emulator.py), which enforces generation
preconditions as GCS does, so a rollback racing a push is refused for real. An
interrupted push is reproduced as the issue saw it: the upload fails after the first
file, leaving a claimed version without a manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest
from gcs_emulator import running_emulator

from components.evaluation.evaluate import resolve_baseline
from components.platform import files, storage
from components.platform.contracts import ContractError, ContractVersionError
from components.publish import push, versions
from components.publish.predict import PredictError, resolve_model
from pipelines.cli import main

pytestmark = pytest.mark.timeout(120)


def make_model_dir(path: Path, seed: int) -> Path:
    """A stand-in for train's output: these commands copy and checksum, never load."""
    payload = bytes((seed * 31 + i * 7) % 256 for i in range(2048))
    (path / "saved_model").mkdir(parents=True)
    (path / "model.keras").write_bytes(payload)
    (path / "saved_model" / "saved_model.pb").write_bytes(payload[::-1])
    (path / "metadata.json").write_text(
        json.dumps({"seed": seed, "dataset": {"fingerprint": f"{seed:02d}" * 32}})
    )
    return path


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture(params=["local", "gcs"])
def destination(request, tmp_path, monkeypatch):
    if request.param == "local":
        return str(tmp_path / "dest")
    server = request.getfixturevalue("emulator")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
    bucket = server.client().create_bucket(f"petseg-{uuid.uuid4().hex[:12]}")
    return f"gs://{bucket.name}/models"


def interrupted_push(model_dir: Path, destination: str, monkeypatch) -> str:
    """A push whose upload dies after its first file; returns its error message."""
    store_class = type(storage.open_store(destination))
    original = store_class.upload_file
    calls = []

    def upload_then_fail(self, local_path, key):
        if calls:
            raise OSError(28, "No space left on device")
        calls.append(key)
        original(self, local_path, key)

    with monkeypatch.context() as patch:
        patch.setattr(store_class, "upload_file", upload_then_fail)
        with pytest.raises(push.PushError) as failure:
            push.push_model(str(model_dir), destination, run_id="killed")
    return str(failure.value)


@pytest.fixture
def three_versions(tmp_path, destination, monkeypatch):
    """v000001 and v000002 complete (LATEST v000002), v000003 interrupted."""
    for seed in (1, 2):
        model = make_model_dir(tmp_path / f"model{seed}", seed)
        push.push_model(
            str(model),
            destination,
            run_id=f"run-{seed}",
            extra_manifest={"metrics": {"mean_iou": 0.5 + seed / 10, "pixel_accuracy": 0.8}},
        )
    message = interrupted_push(make_model_dir(tmp_path / "model3", 3), destination, monkeypatch)
    return destination, message


def tamper(destination: str, key: str) -> None:
    store = storage.open_store(destination)
    store.write_bytes(key, b"not what the manifest says")


def test_list_shows_complete_incomplete_metrics_fingerprint_and_latest(three_versions):
    destination, _ = three_versions
    listed = {info.version: info for info in versions.list_versions(destination)}

    assert sorted(listed) == ["v000001", "v000002", "v000003"]
    assert [listed[v].complete for v in sorted(listed)] == [True, True, False]
    assert [listed[v].latest for v in sorted(listed)] == [False, True, False]
    assert listed["v000002"].metrics == {"mean_iou": pytest.approx(0.7), "pixel_accuracy": 0.8}
    assert listed["v000001"].fingerprint == "01" * 32
    assert listed["v000003"].created  # from the claim
    line = listed["v000002"].line()
    assert "complete, LATEST" in line and "mean_iou 0.7000" in line and "data 020202020202" in line
    assert "INCOMPLETE" in listed["v000003"].line()


def test_verify_names_a_damaged_file_and_an_incomplete_version(three_versions, capsys):
    destination, _ = three_versions
    assert versions.verify_version(destination) == ("v000002", [])
    tamper(destination, "versions/v000001/model.keras")

    version, problems = versions.verify_version(destination, "v000001")
    assert version == "v000001"
    assert len(problems) == 1 and "versions/v000001/model.keras" in problems[0]
    assert "incomplete" in versions.verify_version(destination, "v000003")[1][0]
    with pytest.raises(versions.VersionError, match="v000009 does not exist"):
        versions.verify_version(destination, "v000009")

    assert main(["models", "verify", "v000001", "--destination", destination]) == 1
    assert "damaged: " in capsys.readouterr().err
    assert main(["models", "verify", "--destination", destination]) == 0
    assert "v000002: every file matches" in capsys.readouterr().out


def test_rollback_moves_latest_back_only_to_a_complete_verified_version(three_versions, capsys):
    destination, _ = three_versions
    store = storage.open_store(destination)
    with pytest.raises(versions.VersionError, match="earlier version"):
        versions.rollback(destination, "v000003")
    tamper(destination, "versions/v000001/saved_model/saved_model.pb")
    with pytest.raises(versions.VersionError, match=r"saved_model\.pb"):
        versions.rollback(destination, "v000001")
    assert versions.latest_version(store) == "v000002"
    store.write_bytes("versions/v000001/saved_model/saved_model.pb", _original_pb(1))  # repaired

    assert main(["models", "rollback", "v000001", "--destination", destination]) == 0
    assert "LATEST: v000002 -> v000001" in capsys.readouterr().out
    pointer = json.loads(store.read_bytes("LATEST"))
    assert pointer["version"] == "v000001" and pointer["rolled_back_from"] == "v000002"
    # The pointer is one push understands: the baseline is now v000001, verified.
    version, manifest = push.latest_manifest(destination)
    assert version == "v000001" and manifest.model_metadata["seed"] == 1


def _rewrite(store: storage.Store, key: str, change) -> bytes:
    """Rewrites the JSON object under key as change(object) leaves it; returns the new bytes."""
    payload = json.loads(store.read_bytes(key))
    change(payload)
    data = json.dumps(payload).encode()
    store.write_bytes(key, data)
    return data


def test_files_of_an_earlier_petseg_without_format_fields_still_read(three_versions, capsys):
    """LATEST, manifests and claims as petseg wrote them before they had a format field."""
    destination, _ = three_versions
    store = storage.open_store(destination)
    for key in ("versions/v000001/manifest.json", "versions/v000002/manifest.json"):
        _rewrite(store, key, lambda manifest: manifest.pop("manifest_format"))
    _rewrite(store, "versions/v000003/.claim", lambda claim: claim.pop("claim_format"))
    manifest_sha256 = hashlib.sha256(store.read_bytes("versions/v000002/manifest.json"))

    def old_pointer(pointer):
        del pointer["pointer_format"]
        pointer["manifest_sha256"] = manifest_sha256.hexdigest()

    _rewrite(store, "LATEST", old_pointer)

    assert main(["models", "list", "--destination", destination]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "complete, LATEST" in listed[1] and "mean_iou 0.7000" in listed[1]
    assert "INCOMPLETE" in listed[2]
    assert versions.list_versions(destination)[2].run_id == "killed"  # from the claim
    assert main(["models", "verify", "--destination", destination]) == 0
    assert "v000002: every file matches its manifest" in capsys.readouterr().out
    version, manifest = push.latest_manifest(destination)
    assert (version, manifest.model_metadata["seed"]) == ("v000002", 2)
    assert versions.rollback(destination, "v000001") == ("v000002", "v000001")


def test_a_newer_pointer_or_manifest_format_is_refused_naming_its_version(
    three_versions, tmp_path, capsys
):
    destination, _ = three_versions
    store = storage.open_store(destination)
    latest = store.read_bytes("LATEST")
    _rewrite(store, "LATEST", lambda pointer: pointer.update(pointer_format=2))

    with pytest.raises(ContractVersionError, match=r"LATEST: pointer_format 2, this code reads 1"):
        push.resolve_latest_model(destination, str(tmp_path / "cache"))
    assert main(["models", "verify", "--destination", destination]) == 1
    assert "pointer_format 2, this code reads 1; fix or remove it" in capsys.readouterr().err

    store.write_bytes("LATEST", latest)
    _rewrite(store, "versions/v000001/manifest.json", lambda m: m.update(manifest_format=7))
    _, problems = versions.verify_version(destination, "v000001")
    manifest_uri = store.key_uri("versions/v000001/manifest.json")
    assert problems == [
        f"{manifest_uri}: manifest_format 7, this code reads 1; "
        "roll back to a good version (`petseg models rollback`) or push again"
    ]
    # Still a complete version (it has a manifest), so gc never takes it for an interrupted one.
    assert [info.complete for info in versions.list_versions(destination)] == [True, True, False]
    versions.collect_garbage(destination, incomplete_after_s=0)
    assert [info.version for info in versions.list_versions(destination)] == ["v000001", "v000002"]


def test_a_malformed_manifest_entry_is_named_with_its_field(three_versions, tmp_path):
    destination, _ = three_versions
    store = storage.open_store(destination)
    key = "versions/v000002/manifest.json"

    def damage(manifest):
        manifest["files"]["model.keras"] = {"size": 2048}

    data = _rewrite(store, key, damage)
    _rewrite(store, "LATEST", lambda p: p.update(manifest_sha256=hashlib.sha256(data).hexdigest()))

    version, problems = versions.verify_version(destination)
    assert version == "v000002" and len(problems) == 1
    assert problems[0].startswith(f"{store.key_uri(key)}: files.model.keras.sha256: Field required")
    with pytest.raises(ContractError, match=r"manifest\.json: files\.model\.keras\.sha256"):
        push.resolve_latest_model(destination, str(tmp_path / "cache"))
    with pytest.raises(versions.BaselineUnusableError, match=r"files\.model\.keras\.sha256"):
        versions.resolve_production_model(destination, str(tmp_path / "cache"))
    _rewrite(
        store, key, lambda manifest: manifest.update(files={"../x": {"sha256": "", "size": 1}})
    )
    store.write_bytes("LATEST", json.dumps({"version": "v000002"}).encode())
    with pytest.raises(ContractError, match=r"files holds an unsafe path '\.\./x'"):
        push.resolve_latest_model(destination, str(tmp_path / "cache"))
    store.write_bytes("LATEST", b'{"version": "2"}')
    with pytest.raises(ContractError, match=r"LATEST: version '2' is not a petseg version name"):
        versions.latest_version(store)


def _original_pb(seed: int) -> bytes:
    return bytes((seed * 31 + i * 7) % 256 for i in range(2048))[::-1]


def test_rollback_refuses_when_latest_moved_since_it_was_read(three_versions, monkeypatch):
    destination, _ = three_versions
    store = storage.open_store(destination)
    real_read = type(store).read_versioned

    def read_then_a_push_lands(self, key):
        data, token = real_read(self, key)
        if key == "LATEST":  # a push moves LATEST between our read and our swap
            self.write_bytes("LATEST", data.replace(b"updated_at", b"moved_at"))
        return data, token

    monkeypatch.setattr(type(store), "read_versioned", read_then_a_push_lands)
    with pytest.raises(versions.VersionError, match="changed while rolling back"):
        versions.rollback(destination, "v000001", store=store)
    assert b"v000001" not in store.read_bytes("LATEST")


def test_gc_removes_incomplete_versions_and_stale_staging_never_latest(three_versions, capsys):
    destination, _ = three_versions
    store = storage.open_store(destination)
    stale = None
    if isinstance(store, storage.LocalStore):  # what a SIGKILLed local push leaves
        stale = Path(store.root) / ".staging" / "dead.partial"
        stale.write_bytes(b"x" * 1000)
        os.utime(stale, (time.time() - 7200, time.time() - 7200))
    # A young incomplete version may be a push in progress: kept by default.
    assert versions.collect_garbage(destination, dry_run=True) == []

    assert main(["models", "gc", "--older-than", "0", "--destination", destination]) == 0
    out = capsys.readouterr().out
    assert "versions/v000003" in out
    assert [v.version for v in versions.list_versions(destination)] == ["v000001", "v000002"]
    assert store.list_keys("versions/v000003") == []
    if stale is not None:
        assert not stale.exists()
    versions.rollback(destination, "v000001")

    removed = versions.collect_garbage(destination, keep=1)
    # keep=1 keeps the newest complete version and LATEST (rolled back to v000001).
    assert removed == []
    assert [v.version for v in versions.list_versions(destination)] == ["v000001", "v000002"]


def test_gc_keep_removes_old_complete_versions_but_not_latest(tmp_path, destination):
    for seed in (1, 2, 3):
        push.push_model(str(make_model_dir(tmp_path / f"m{seed}", seed)), destination, run_id="r")
    removed = versions.collect_garbage(destination, keep=1)
    assert [uri.rsplit("/", 1)[-1] for uri in removed] == ["v000001", "v000002"]
    assert [v.version for v in versions.list_versions(destination)] == ["v000003"]
    assert versions.verify_version(destination) == ("v000003", [])
    with pytest.raises(ValueError, match="keep at least 1"):
        versions.collect_garbage(destination, keep=0)


def test_push_cli_resumes_the_interrupted_version_its_error_names(three_versions, tmp_path, capsys):
    destination, message = three_versions
    command = message.split("resumes v000003: ", 1)[1]
    assert command.startswith("petseg push --model ") and destination in command
    argv = command.split()[1:]

    capsys.readouterr()
    assert main(argv) == 0
    assert "pushed v000003 " in (out := capsys.readouterr().out)
    assert "(resumed an interrupted push)" in out
    listed = versions.list_versions(destination)
    assert [(v.version, v.complete, v.latest) for v in listed][-1] == ("v000003", True, True)
    assert len(listed) == 3  # resumed, not a fourth version
    assert main(argv) == 0  # again: reused
    assert "(already there)" in capsys.readouterr().out


def test_a_damaged_production_model_stops_evaluate_with_the_ways_out(three_versions, tmp_path):
    destination, _ = three_versions
    tamper(destination, "versions/v000002/model.keras")

    with pytest.raises(versions.BaselineUnusableError) as failure:
        resolve_baseline("latest", destination, str(tmp_path / "cache"))
    line = str(failure.value)
    assert "\n" not in line
    assert "production model v000002" in line and "model.keras" in line
    assert "petseg models verify" in line and "petseg models rollback" in line
    assert "--set evaluation.baseline=none" in line
    assert resolve_baseline("none", destination, str(tmp_path / "cache"))[0] is None


def test_an_incomplete_version_is_never_a_baseline_nor_predicted_from(three_versions, tmp_path):
    destination, _ = three_versions
    incomplete = f"{destination}/versions/v000003"

    with pytest.raises(versions.VersionError, match="incomplete push: version v000003"):
        resolve_baseline(incomplete, destination, str(tmp_path / "cache"))
    with pytest.raises(PredictError, match="incomplete push: version v000003"):
        resolve_model(incomplete, str(tmp_path / "cache"))
    # LATEST stayed on the complete v000002, which is what 'latest' resolves to.
    baseline, _ = resolve_baseline("latest", destination, str(tmp_path / "cache"))
    assert json.loads(Path(baseline, "metadata.json").read_text())["seed"] == 2


def test_an_incomplete_gs_version_is_refused_through_the_callers_client(
    emulator, tmp_path, monkeypatch
):
    """predict's own client checks the version: no default client (ADC) is made for it."""
    with monkeypatch.context() as setup:
        setup.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
        bucket = emulator.client().create_bucket(f"petseg-{uuid.uuid4().hex[:12]}")
        destination = f"gs://{bucket.name}/models"
        push.push_model(str(make_model_dir(tmp_path / "model1", 1)), destination, run_id="r1")
        interrupted_push(make_model_dir(tmp_path / "model2", 2), destination, monkeypatch)
    # No emulator in the environment and no credentials: a default client cannot be made.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    client = emulator.client()

    with pytest.raises(PredictError, match="incomplete push: version v000002"):
        resolve_model(f"{destination}/versions/v000002", str(tmp_path / "c"), gcs_client=client)
    with files.gcs_client(client), pytest.raises(versions.VersionError, match="v000002"):
        versions.check_not_incomplete(f"{destination}/versions/v000002")
    with files.gcs_client(client):  # push's Store reads through the caller's client too
        baseline = versions.resolve_production_model(destination, str(tmp_path / "c"))
    assert json.loads(Path(baseline, "metadata.json").read_text())["seed"] == 1


def test_without_the_versions_module_the_error_names_what_could_not_be_imported(
    tmp_path, monkeypatch
):
    monkeypatch.setitem(
        sys.modules, "components.publish.versions", None
    )  # import raises ImportError
    with pytest.raises(RuntimeError) as failure:
        resolve_baseline("latest", str(tmp_path / "dest"), str(tmp_path / "cache"))
    assert "components.publish.versions.resolve_production_model is not available" in str(
        failure.value
    )
    assert "evaluation.baseline to 'none'" in str(failure.value)
