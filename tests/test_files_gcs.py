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

    files.remove(f"{bucket_uri}/run/train")
    assert files.list_files(f"{bucket_uri}/run") == ["dataset.json"]
