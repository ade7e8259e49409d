"""The real oxford_iiit_pet TFDS builder, offline, from small archives in the official layout.

The test writes images.tar.gz (images/<Breed>_<n>.jpg) and annotations.tar.gz
(annotations/trimaps/*.png, xmls/, list.txt, trainval.txt, test.txt) into a
manual_dir. TFDS finds them there by file name and verifies their checksums
against the ones it ships for the official archives; like TFDS's own checksum
registration, the test substitutes the checksums of its archives (patching the
builder's ``url_infos``), so everything after that is TFDS's unmodified
builder: extraction, the corrupt-image rewrite, feature encoding. Any attempt
to download fails the test.
"""

import io
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core.download import checksums, download_manager

from components.data import dataset_info, schema, sources
from components.data.ingest import BadRecordError, ingest_dataset
from components.platform.config import DataConfig

BASE_URL = "https://thor.robots.ox.ac.uk/~vgg/data/pets"
# (name, class id 1..37, species 1 cat / 2 dog, split, kind)
SAMPLES = [
    ("Abyssinian_1", 1, 1, "trainval", "rgb"),
    ("american_bulldog_2", 2, 2, "trainval", "gray"),
    # Listed by TFDS as corrupt (RGBA/PNG data in a .jpg); the builder re-encodes it.
    ("Abyssinian_5", 1, 1, "trainval", "rgba_png"),
    ("beagle_3", 5, 2, "test", "rgb"),
    ("Bengal_4", 6, 1, "test", "png"),
    # Bad input the builder passes through untouched; ingest must catch it.
    ("Bengal_9", 6, 1, "trainval", "bad_trimap"),
    ("beagle_8", 5, 2, "test", "mismatch"),
    ("boxer_7", 9, 2, "trainval", "junk"),
]
BAD = {"Bengal_9.jpg", "beagle_8.jpg", "boxer_7.jpg"}


def _encoded(array, image_format, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=image_format)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    archive.addfile(member, io.BytesIO(data))


def _trimap(rng, height, width):
    trimap = np.full((height, width), 2, np.uint8)
    top, left = rng.integers(2, 6, size=2)
    trimap[top : height - 3, left : width - 3] = 3
    trimap[top + 2 : height - 5, left + 2 : width - 5] = 1
    return trimap


def _write_archives(manual_dir):
    rng = np.random.default_rng(0)
    trimaps = {}
    with (
        tarfile.open(manual_dir / "images.tar.gz", "w:gz") as images,
        tarfile.open(manual_dir / "annotations.tar.gz", "w:gz") as annotations,
    ):
        for name, _, _, _, kind in SAMPLES:
            height, width = int(rng.integers(20, 30)), int(rng.integers(20, 30))
            rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            image = {
                "rgb": lambda rgb=rgb: _encoded(rgb, "JPEG"),
                "gray": lambda rgb=rgb: _encoded(rgb[..., 0], "JPEG"),
                "rgba_png": lambda rgb=rgb: _encoded(
                    np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 200, np.uint8)], -1), "PNG"
                ),
                "png": lambda rgb=rgb: _encoded(rgb, "PNG"),
                "bad_trimap": lambda rgb=rgb: _encoded(rgb, "JPEG"),
                "mismatch": lambda rgb=rgb: _encoded(rgb, "JPEG"),
                "junk": lambda: b"this is not a JPEG",
            }[kind]()
            _add(images, f"images/{name}.jpg", image)
            trimap = _trimap(rng, height, width)
            if kind == "bad_trimap":
                trimap[0, 0] = 4
            if kind == "mismatch":
                trimap = trimap[:-2]
            trimaps[f"{name}.jpg"] = trimap
            _add(annotations, f"annotations/trimaps/{name}.png", _encoded(trimap, "PNG"))
        xml = (
            "<annotation><size><width>25</width><height>25</height></size><object><bndbox>"
            "<xmin>2</xmin><ymin>3</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>"
            "</annotation>"
        )
        _add(annotations, "annotations/xmls/Abyssinian_1.xml", xml.encode())
        header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n"
        lines = {split: [] for split in ("trainval", "test")}
        for name, class_id, species, split, _ in SAMPLES:
            lines[split].append(f"{name} {class_id} {species} 1\n")
        _add(
            annotations,
            "annotations/list.txt",
            (header + "".join(lines["trainval"] + lines["test"])).encode(),
        )
        for split, split_lines in lines.items():
            _add(annotations, f"annotations/{split}.txt", "".join(split_lines).encode())
    return trimaps


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("manual")
    return directory, _write_archives(directory)


@pytest.fixture
def offline(monkeypatch, manual_dir):
    """Points TFDS's checksums at the test archives and forbids downloading."""
    directory, _ = manual_dir
    builder_class = tfds.builder_cls("oxford_iiit_pet")
    url_infos = {
        f"{BASE_URL}/{name}": checksums.compute_url_info(directory / name)
        for name in ("images.tar.gz", "annotations.tar.gz")
    }
    monkeypatch.setattr(builder_class, "url_infos", url_infos)

    def no_download(self, resource):
        raise AssertionError(f"tried to download {resource.url}")

    monkeypatch.setattr(download_manager.DownloadManager, "_download", no_download)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(manual_dir, data_dir, **overrides):
    return DataConfig(
        dataset="oxford_iiit_pet",
        version="4.*.*",
        data_dir=data_dir,
        manual_dir=str(manual_dir[0]),
        download=False,
        records_per_shard=2,
        **overrides,
    )


def test_archives_with_other_checksums_are_rejected(manual_dir, tmp_path, monkeypatch):
    # Without the test's checksums TFDS compares against the official archives' and refuses.
    def no_download(self, resource):
        raise AssertionError(f"tried to download {resource.url}")

    monkeypatch.setattr(download_manager.DownloadManager, "_download", no_download)
    with pytest.raises(
        download_manager.NonMatchingChecksumError, match=r"(images|annotations)\.tar\.gz"
    ):
        sources.prepare(_config(manual_dir, str(tmp_path)))


def test_manual_dir_without_the_archives_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = _config((empty, None), str(tmp_path / "tfds"))
    with pytest.raises(FileNotFoundError, match=r"annotations\.tar\.gz.*images\.tar\.gz"):
        sources.prepare(config)


def test_bad_record_from_the_real_builder_is_an_error_naming_it(
    offline, manual_dir, data_dir, tmp_path
):
    with pytest.raises(BadRecordError, match=r"(Bengal_9|beagle_8|boxer_7)\.jpg"):
        ingest_dataset(_config(manual_dir, data_dir), str(tmp_path / "dataset"))


def test_real_builder_ingests_offline_with_skips_recorded(offline, manual_dir, data_dir, tmp_path):
    output_dir = str(tmp_path / "dataset")
    info = ingest_dataset(_config(manual_dir, data_dir, bad_record_policy="skip"), output_dir)

    assert info["source"]["name"] == "oxford_iiit_pet"
    assert info["source"]["version"] == "4.0.0"
    train, test = info["splits"]["train"], info["splits"]["test"]
    validation = info["splits"]["validation"]
    # Oxford has no validation split: it is carved from train by the hash of each file
    # name (Abyssinian_1.jpg falls in the top 10%); test stays Oxford's test.
    assert info["split_rule"]["carved"] == {"validation": "train"}
    assert (train["num_records"], train["num_skipped"]) == (2, 2)
    assert (validation["num_records"], validation["num_skipped"]) == (1, 0)
    assert (test["num_records"], test["num_skipped"]) == (2, 1)
    skipped = {item["file_name"]: item["reason"] for item in train["skipped"] + test["skipped"]}
    assert set(skipped) == BAD
    assert "[4]" in skipped["Bengal_9.jpg"]
    assert "mask is" in skipped["beagle_8.jpg"]
    assert "does not decode" in skipped["boxer_7.jpg"]
    assert dataset_info.load_dataset_info(output_dir).splits["train"].shards == [
        "train/train-00000-of-00001.tfrecord",
    ]

    _, trimaps = manual_dir
    seen = {}
    for split in ("train", "validation", "test"):
        for serialized in tf.data.TFRecordDataset(dataset_info.shard_paths(output_dir, split)):
            record = schema.decode_example(serialized)
            name = record["file_name"].numpy().decode()
            seen[name] = split
            image, mask = record["image"].numpy(), record["mask"].numpy()[..., 0]
            assert image.shape == (*trimaps[name].shape, 3)
            np.testing.assert_array_equal(mask, trimaps[name] - 1)
            if name == "american_bulldog_2.jpg":  # grayscale source
                np.testing.assert_array_equal(image[..., 0], image[..., 2])
            if name == "Abyssinian_1.jpg":
                assert (record["label"].numpy(), record["species"].numpy()) == (0, 0)
    assert seen == {
        "Abyssinian_1.jpg": "validation",
        "american_bulldog_2.jpg": "train",
        "Abyssinian_5.jpg": "train",
        "beagle_3.jpg": "test",
        "Bengal_4.jpg": "test",
    }


def test_a_prepared_data_dir_is_reused_by_later_runs_without_downloading(
    offline, manual_dir, data_dir, tmp_path
):
    """Oxford is prepared once into data_dir; a later (scheduled) run only reads it."""
    ingest_dataset(_config(manual_dir, data_dir, bad_record_policy="skip"), str(tmp_path / "a"))
    # The cloud config of a later run: no archives, download allowed; any download would
    # fail the `offline` fixture, so this passes only by reading the prepared copy.
    later = DataConfig(
        dataset="oxford_iiit_pet",
        version="4.*.*",
        data_dir=data_dir,
        download=True,
        bad_record_policy="skip",
        records_per_shard=2,
    )
    info = ingest_dataset(later, str(tmp_path / "b"))
    kept = {split: entry["num_records"] for split, entry in info["splits"].items()}
    assert kept == {"train": 2, "validation": 1, "test": 2}
