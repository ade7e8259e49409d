"""components.platform.files on gs:// (a real GCS emulator): the same calls as on a local path."""

import pytest
from gcs_emulator import running_emulator

from components.platform import files


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture
def bucket_uri(emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    from components.platform.storage import make_gcs_client

    bucket = make_gcs_client().create_bucket("files-test")
    yield f"gs://{bucket.name}"
    bucket.delete(force=True)


@pytest.mark.timeout(120)
def test_gcs_paths_read_write_list_and_remove_like_local_ones(bucket_uri):
    files.write_json(f"{bucket_uri}/run/dataset.json", {"b": 1, "a": 2})
    files.write_bytes(f"{bucket_uri}/run/train/x.bin", b"\x00\x01")
    files.write_text(f"{bucket_uri}/run/train/y.txt", "why")

    assert files.read_json(f"{bucket_uri}/run/dataset.json") == {"a": 2, "b": 1}
    assert files.read_text(f"{bucket_uri}/run/dataset.json").startswith('{\n  "a": 2')
    assert files.size(f"{bucket_uri}/run/train/x.bin") == 2
    assert files.exists(f"{bucket_uri}/run/train") and files.is_dir(f"{bucket_uri}/run/train")
    assert not files.exists(f"{bucket_uri}/run/nothing")
    assert files.listdir(f"{bucket_uri}/run") == ["dataset.json", "train"]
    assert files.list_files(f"{bucket_uri}/run") == ["dataset.json", "train/x.bin", "train/y.txt"]
    assert files.glob(f"{bucket_uri}/run/train/*.txt") == [f"{bucket_uri}/run/train/y.txt"]
    with pytest.raises(FileNotFoundError, match=r"run/missing\.json does not exist"):
        files.read_json(f"{bucket_uri}/run/missing.json")

    files.write_text(f"{bucket_uri}/run/y.txt", "old")
    files.rename(f"{bucket_uri}/run/train/y.txt", f"{bucket_uri}/run/y.txt")
    assert files.read_text(f"{bucket_uri}/run/y.txt") == "why"
    assert files.list_files(f"{bucket_uri}/run/train") == ["x.bin"]

    files.remove(f"{bucket_uri}/run/train")
    files.remove(f"{bucket_uri}/run/y.txt")
    assert files.list_files(f"{bucket_uri}/run") == ["dataset.json"]


@pytest.mark.timeout(120)
def test_a_callers_client_is_used_inside_its_block_only(emulator, tmp_path, monkeypatch):
    """predict's gcs_client=: no emulator in the environment, no credentials, still reached."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    client = emulator.client()
    bucket = client.create_bucket("files-injected")
    with files.gcs_client(client):
        files.write_text(f"gs://{bucket.name}/a.txt", "mine")
        with files.gcs_client(None):  # an inner call without a client keeps the caller's
            assert files.is_file(f"gs://{bucket.name}/a.txt")
        assert files.read_text(f"gs://{bucket.name}/a.txt") == "mine"
    with pytest.raises(Exception, match="no-such-key"):  # outside: the default (ADC) client
        files.read_text(f"gs://{bucket.name}/a.txt")
    bucket.delete(force=True)
