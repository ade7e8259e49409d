"""Own data on gs:// (a real GCS emulator): a manifest and a folder read through the GCS API."""

import hashlib
import os

import pytest
from gcs_emulator import running_emulator

from components.data import synthetic_pets
from components.data.ingest import BadRecordError, ingest_dataset
from components.platform.config import DataConfig

pytestmark = pytest.mark.timeout(300)
FRACTIONS = {"validation_fraction": 0.25, "test_fraction": 0.25, "records_per_shard": 4}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture
def uploaded(emulator, tmp_path, monkeypatch, request):
    """A palette-mask folder dataset, written locally and uploaded to a fresh bucket.

    The bucket is named after the test, not at random: absolute ``gs://`` manifest entries
    carry the bucket in their keys, and keys place examples in splits, so a random name
    would make 10 examples carve an empty validation split now and then.
    """
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    written = synthetic_pets.write_folder_dataset(
        str(tmp_path / "local"), 10, num_classes=2, mask_format="palette", image_size=32
    )
    digest = hashlib.sha1(request.node.name.encode()).hexdigest()[:12]
    bucket = emulator.client().create_bucket(f"own-{digest}")
    for folder in ("images", "masks"):
        for name in sorted(os.listdir(os.path.join(written.root, folder))):
            blob = bucket.blob(f"data/{folder}/{name}")
            blob.upload_from_filename(os.path.join(written.root, folder, name))
    return written, bucket


def _manifest(stems, prefix: str) -> str:
    lines = ["image,mask"] + [f"{prefix}images/{s}.jpg,{prefix}masks/{s}.png" for s in stems]
    return "\n".join(lines) + "\n"


def test_gcs_manifest_and_folder_read_like_the_local_copy(uploaded, tmp_path):
    written, bucket = uploaded
    stems = written.stems[None]
    # Relative entries: the same manifest text next to the local and the gs:// copy.
    bucket.blob("data/labels.csv").upload_from_string(_manifest(stems, ""))
    with open(os.path.join(written.root, "labels.csv"), "w") as handle:
        handle.write(_manifest(stems, ""))
    # Absolute gs:// entries, as labelling tools export them.
    bucket.blob("exports/labels.csv").upload_from_string(
        _manifest(stems, f"gs://{bucket.name}/data/")
    )
    base = {**written.data_config, **FRACTIONS}

    local = ingest_dataset(
        DataConfig(**{**base, "source": "manifest", "path": f"{written.root}/labels.csv"}),
        str(tmp_path / "local"),
    )
    remote = ingest_dataset(
        DataConfig(**{**base, "source": "manifest", "path": f"gs://{bucket.name}/data/labels.csv"}),
        str(tmp_path / "remote"),
    )
    absolute = ingest_dataset(
        DataConfig(
            **{**base, "source": "manifest", "path": f"gs://{bucket.name}/exports/labels.csv"}
        ),
        str(tmp_path / "absolute"),
    )
    folder = ingest_dataset(
        DataConfig(**{**base, "source": "folder", "path": f"gs://{bucket.name}/data"}),
        str(tmp_path / "folder"),
    )
    local_folder = ingest_dataset(DataConfig(**base), str(tmp_path / "local_folder"))

    assert remote["fingerprint"] == local["fingerprint"]
    assert folder["fingerprint"] == local_folder["fingerprint"]
    assert remote["source"]["path"] == f"gs://{bucket.name}/data/labels.csv"
    for info in (local, remote, absolute, folder):
        assert sum(split["num_records"] for split in info["splits"].values()) == 10
        assert info["classes"] == ["background", "pet"]

    # Absolute URIs are other keys, so the examples may split differently; the bytes are
    # the same, so the pixel counts over all splits equal the local copy's.
    def totals(info):
        return {
            name: sum(split["pixel_counts"][name] for split in info["splits"].values())
            for name in info["classes"]
        }

    assert totals(absolute) == totals(local) and totals(local)["pet"] > 0


def test_gcs_manifest_row_whose_file_is_missing_is_a_bad_record(uploaded, tmp_path):
    written, bucket = uploaded
    stems = [*written.stems[None], "pet_09999"]
    bucket.blob("data/labels.csv").upload_from_string(_manifest(stems, ""))
    config = DataConfig(
        **{
            **written.data_config,
            **FRACTIONS,
            "source": "manifest",
            "path": f"gs://{bucket.name}/data/labels.csv",
        }
    )
    with pytest.raises(BadRecordError) as failure:
        ingest_dataset(config, str(tmp_path / "out"))
    assert failure.value.file_name == "images/pet_09999.jpg"
    assert f"gs://{bucket.name}/data/images/pet_09999.jpg does not exist" in str(failure.value)
