"""Own data: folder sources with value, palette and colour masks, class tables, stable splits."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.data import dataset_info, schema, sources, splits, synthetic_pets
from components.data.ingest import BadRecordError, ingest_dataset
from components.model import train
from components.platform.config import DataConfig

SPLIT_FRACTIONS = {"validation_fraction": 0.2, "test_fraction": 0.2}


def _config(written: synthetic_pets.FolderDataset, **overrides) -> DataConfig:
    return DataConfig(
        **{**written.data_config, **SPLIT_FRACTIONS, "records_per_shard": 8, **overrides}
    )


def _records(dataset_dir, split) -> dict[str, dict]:
    return {
        example["file_name"].numpy().decode(): {
            "image": example["image"].numpy(),
            "mask": example["mask"].numpy()[..., 0],
        }
        for example in map(
            schema.decode_example,
            tf.data.TFRecordDataset(dataset_info.shard_paths(dataset_dir, split)),
        )
    }


def _all_records(dataset_dir) -> dict[str, tuple[str, dict]]:
    return {
        name: (split, record)
        for split in splits.SPLITS
        for name, record in _records(dataset_dir, split).items()
    }


def _expected_ids(root, stem, names, ignore_border) -> np.ndarray:
    index = int(stem.split("_")[1])
    example = synthetic_pets.generate_example(0, "train", index, 48)
    return synthetic_pets._class_ids(example, names, ignore_border)


@pytest.mark.parametrize(
    ("mask_format", "num_classes", "ignore_border"),
    [("values", 2, True), ("palette", 5, False), ("rgb", 3, True)],
)
def test_folder_masks_map_through_the_class_table(
    tmp_path, mask_format, num_classes, ignore_border
):
    written = synthetic_pets.write_folder_dataset(
        str(tmp_path / "data"),
        16,
        num_classes=num_classes,
        mask_format=mask_format,
        ignore_border=ignore_border,
        image_size=48,
    )
    config = _config(written)
    info = ingest_dataset(config, str(tmp_path / "out"))

    assert info["classes"] == written.class_names
    assert len(info["classes"]) == num_classes
    assert info["source"]["type"] == "folder" and info["source"]["layout"] == "flat"
    assert info["split_rule"]["carved"] == {"validation": "train", "test": "train"}
    records = _all_records(str(tmp_path / "out"))
    assert sorted(records) == [f"images/{stem}.jpg" for stem in written.stems[None]]
    ignored = 0
    for name, (split, record) in records.items():
        stem = name.split("/")[1].removesuffix(".jpg")
        expected_split = splits.carve(stem, carve_test=True, **SPLIT_FRACTIONS)
        assert split == expected_split
        expected = _expected_ids(written.root, stem, written.class_names, ignore_border)
        np.testing.assert_array_equal(record["mask"], expected)
        ignored += int((expected == schema.IGNORE_ID).sum())
        with open(os.path.join(written.root, name), "rb") as handle:
            source_image = handle.read()
        stored = _stored_image_bytes(str(tmp_path / "out"), split, name)
        assert stored == source_image  # Image bytes are kept as the source has them.
    assert sum(entry["ignored_pixels"] for entry in info["splits"].values()) == ignored
    assert (ignored > 0) == ignore_border


def _stored_image_bytes(dataset_dir, split, name) -> bytes:
    for serialized in tf.data.TFRecordDataset(dataset_info.shard_paths(dataset_dir, split)):
        parsed = schema.parse_example(serialized)
        if parsed["file_name"].numpy().decode() == name:
            return parsed["image"].numpy()
    raise AssertionError(f"{name} not in {split}")


def test_palette_masks_are_read_by_index_not_colour(tmp_path):
    # Two indices share one colour: only reading the index tells class 1 from ignore.
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.full((4, 6, 3), 90, np.uint8)
    indices = np.zeros((4, 6), np.uint8)
    indices[1, :] = 1
    indices[2, :] = 255
    mask = Image.fromarray(indices)
    palette = [0] * 768
    palette[3:6] = palette[765:768] = [200, 10, 10]
    mask.putpalette(palette)
    for stem in ("a", "b", "c", "d", "e", "f", "g", "h"):
        Image.fromarray(image).save(root / "images" / f"{stem}.png")
        mask.save(root / "masks" / f"{stem}.png")
    config = DataConfig(
        source="folder",
        path=str(root),
        classes=[{"name": "sky", "values": [0]}, {"name": "roof", "values": [1]}],
        ignore_values=[255],
        validation_fraction=0.3,
        test_fraction=0.3,
    )
    ingest_dataset(config, str(tmp_path / "out"))
    for _, record in _all_records(str(tmp_path / "out")).values():
        np.testing.assert_array_equal(record["mask"], np.where(indices == 255, 255, indices))


def _write_pair(root, stem, mask: Image.Image, size=(6, 4)):
    os.makedirs(root / "images", exist_ok=True)
    os.makedirs(root / "masks", exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 50, np.uint8)).save(
        root / "images" / f"{stem}.jpg"
    )
    mask.save(root / "masks" / f"{stem}.png")


def test_unmapped_values_and_colours_are_bad_records_naming_file_and_value(tmp_path):
    written = synthetic_pets.write_folder_dataset(
        str(tmp_path / "values"), 6, num_classes=3, mask_format="values", image_size=32
    )
    values = np.full((4, 6), 1, np.uint8)
    values[0, 0] = 7
    _write_pair(tmp_path / "values", "stray", Image.fromarray(values))
    with pytest.raises(BadRecordError) as failure:
        ingest_dataset(_config(written), str(tmp_path / "out"))
    assert failure.value.file_name == "images/stray.jpg"
    assert "mask masks/stray.png has values [7] not in the class table" in str(failure.value)
    assert not (tmp_path / "out" / "dataset.json").exists()

    coloured = synthetic_pets.write_folder_dataset(
        str(tmp_path / "rgb"), 6, num_classes=3, mask_format="rgb", image_size=32
    )
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[1, 1] = (1, 2, 3)
    _write_pair(tmp_path / "rgb", "odd", Image.fromarray(rgb))
    config = _config(coloured, bad_record_policy="skip")
    info = ingest_dataset(config, str(tmp_path / "out_rgb"))
    skipped = [entry for entry in info["splits"].values() for entry in entry["skipped"]]
    assert skipped == [
        {
            "file_name": "images/odd.jpg",
            "reason": "mask masks/odd.png has colours [#010203] not in the class table "
            "(data.classes[].colors / data.ignore_colors)",
        }
    ]
    assert sum(entry["num_records"] for entry in info["splits"].values()) == 6


def test_unpaired_files_are_bad_records_naming_them(tmp_path):
    written = synthetic_pets.write_folder_dataset(str(tmp_path / "data"), 8, image_size=32)
    os.remove(os.path.join(written.root, "masks", "pet_00002.png"))
    os.remove(os.path.join(written.root, "images", "pet_00005.jpg"))
    (tmp_path / "data" / "images" / "notes.txt").write_text("not an image")
    info = ingest_dataset(_config(written, bad_record_policy="skip"), str(tmp_path / "out"))
    reasons = {
        entry["file_name"]: entry["reason"]
        for split in info["splits"].values()
        for entry in split["skipped"]
    }
    assert reasons == {
        "images/pet_00002.jpg": "image has no mask (looked for masks/pet_00002.png)",
        "masks/pet_00005.png": "mask has no image (looked for images/pet_00005.jpg|jpeg|png)",
    }
    assert info["source"]["ignored_files"] == 1
    with pytest.raises(BadRecordError, match=r"images/pet_00002\.jpg: image has no mask"):
        ingest_dataset(_config(written), str(tmp_path / "out2"))


def test_split_folders_are_kept_and_only_missing_splits_are_carved(tmp_path):
    written = synthetic_pets.write_folder_dataset(
        str(tmp_path / "data"), {"train": 10, "test": 4}, image_size=32
    )
    info = ingest_dataset(_config(written), str(tmp_path / "out"))
    assert info["source"]["layout"] == "split folders"
    assert info["split_rule"]["carved"] == {"validation": "train"}
    records = _all_records(str(tmp_path / "out"))
    for stem in written.stems["test"]:
        assert records[f"test/images/{stem}.jpg"][0] == "test"
    for stem in written.stems["train"]:
        expected = splits.carve(stem, carve_test=False, **SPLIT_FRACTIONS)
        assert records[f"train/images/{stem}.jpg"][0] == expected


def test_adding_files_keeps_every_split_and_changes_the_fingerprint(tmp_path):
    root = str(tmp_path / "data")
    written = synthetic_pets.write_folder_dataset(root, 20, image_size=32)
    first = ingest_dataset(_config(written), str(tmp_path / "first"))
    again = ingest_dataset(_config(written), str(tmp_path / "again"))
    assert again["fingerprint"] == first["fingerprint"]

    synthetic_pets.write_folder_dataset(root, 12, image_size=32, start=20)
    grown = ingest_dataset(_config(written), str(tmp_path / "grown"))

    before = {name: split for name, (split, _) in _all_records(str(tmp_path / "first")).items()}
    after = {name: split for name, (split, _) in _all_records(str(tmp_path / "grown")).items()}
    assert len(before) == 20 and len(after) == 32
    assert {name: after[name] for name in before} == before
    assert grown["fingerprint"]["dataset"] != first["fingerprint"]["dataset"]
    changed = {
        split
        for split in splits.SPLITS
        if grown["fingerprint"]["splits"][split] != first["fingerprint"]["splits"][split]
    }
    gained = {after[name] for name in after if name not in before}
    assert changed == gained

    # One changed mask pixel changes the fingerprint too; so does a changed class table.
    mask_path = os.path.join(root, "masks", "pet_00003.png")
    mask = np.array(Image.open(mask_path))
    mask[0, 0] = 3 if mask[0, 0] != 3 else 2
    Image.fromarray(mask).save(mask_path)
    edited = ingest_dataset(_config(written), str(tmp_path / "edited"))
    assert edited["fingerprint"]["dataset"] != grown["fingerprint"]["dataset"]
    renamed = _config(written).class_table()
    renamed["classes"][0]["name"] = "ground"
    relabelled = ingest_dataset(
        _config(written, classes=renamed["classes"]), str(tmp_path / "relabelled")
    )
    assert relabelled["fingerprint"]["splits"] == edited["fingerprint"]["splits"]
    assert relabelled["fingerprint"]["dataset"] != edited["fingerprint"]["dataset"]


def test_parallel_ingest_writes_the_same_bytes_as_one_process(tmp_path):
    written = synthetic_pets.write_folder_dataset(str(tmp_path / "data"), 72, image_size=32)
    one = ingest_dataset(_config(written), str(tmp_path / "one"), workers=1)
    two = ingest_dataset(_config(written), str(tmp_path / "two"), workers=2)
    assert one["fingerprint"] == two["fingerprint"]
    assert one["splits"] == two["splits"]
    for split in splits.SPLITS:
        for shard in one["splits"][split]["shards"]:
            digests = [
                hashlib.sha256((tmp_path / run / shard).read_bytes()).hexdigest()
                for run in ("one", "two")
            ]
            assert digests[0] == digests[1], shard


def test_folder_without_images_folder_is_refused_by_name(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    config = DataConfig(source="folder", path=str(tmp_path))
    with pytest.raises(sources.SourceError, match=r"no images/ folder .*data\.images_folder"):
        ingest_dataset(config, str(tmp_path / "out"))
    with pytest.raises(sources.SourceError, match="is not a folder"):
        ingest_dataset(
            DataConfig(source="folder", path=str(tmp_path / "absent")), str(tmp_path / "out")
        )


def test_tfds_dataset_without_the_named_features_is_refused_listing_its_features(tmp_path):
    config = DataConfig(
        data_dir=str(tmp_path / "tfds"),
        synthetic_train_size=4,
        synthetic_test_size=2,
        synthetic_image_size=32,
        mask_feature="trimap",
    )
    with pytest.raises(sources.SourceError) as failure:
        ingest_dataset(config, str(tmp_path / "out"))
    message = str(failure.value)
    assert "no feature 'trimap' (data.mask_feature)" in message
    assert "'segmentation_mask'" in message and "'file_name'" in message
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


def test_manifest_csv_and_json_lines_with_explicit_splits(tmp_path):
    written = synthetic_pets.write_folder_dataset(str(tmp_path / "data"), 10, image_size=32)
    stems = written.stems[None]
    rows = [
        {
            "image": f"data/images/{stem}.jpg",
            "mask": f"data/masks/{stem}.png",
            "split": "test" if index < 3 else "",
        }
        for index, stem in enumerate(stems)
    ]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        "image,mask,split\n" + "".join(f"{r['image']},{r['mask']},{r['split']}\n" for r in rows)
    )
    jsonl_path = tmp_path / "labels.jsonl"
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {**written.data_config, **SPLIT_FRACTIONS, "source": "manifest"}
    from_csv = ingest_dataset(DataConfig(**{**fields, "path": str(csv_path)}), str(tmp_path / "a"))
    from_jsonl = ingest_dataset(
        DataConfig(**{**fields, "path": str(jsonl_path)}), str(tmp_path / "b")
    )
    assert from_csv["fingerprint"] == from_jsonl["fingerprint"]
    assert from_csv["split_rule"]["carved"] == {"validation": "train"}
    records = _all_records(str(tmp_path / "a"))
    assert {name for name, (split, _) in records.items() if split == "test"} == {
        r["image"] for r in rows[:3]
    }

    bad = tmp_path / "bad.csv"
    bad.write_text("picture,label\na.jpg,a.png\n")
    with pytest.raises(sources.SourceError, match=r"no column \['image', 'mask'\]"):
        ingest_dataset(DataConfig(**{**fields, "path": str(bad)}), str(tmp_path / "c"))
    bad.write_text("image,mask,split\na.jpg,a.png,holdout\n")
    with pytest.raises(sources.SourceError, match=r"line 2 has split 'holdout'"):
        ingest_dataset(DataConfig(**{**fields, "path": str(bad)}), str(tmp_path / "c"))


def test_splits_are_a_pure_function_of_the_key():
    keys = [f"img_{index}" for index in range(4000)]
    placed = [
        splits.carve(key, validation_fraction=0.1, test_fraction=0.2, carve_test=True)
        for key in keys
    ]
    shares = {split: placed.count(split) / len(keys) for split in splits.SPLITS}
    assert shares["validation"] == pytest.approx(0.1, abs=0.02)
    assert shares["test"] == pytest.approx(0.2, abs=0.02)
    # Not carving test never moves a validation example.
    for key, split in zip(keys, placed, strict=True):
        kept = splits.carve(key, validation_fraction=0.1, test_fraction=0.2, carve_test=False)
        assert (kept == "validation") == (split == "validation")


def test_encode_example_refuses_ids_beyond_the_classes():
    ids = np.array([[0, 1], [255, 4]], np.uint8)
    with pytest.raises(ValueError, match="class id 4 is neither below 3 nor the ignore id 255"):
        schema.encode_example(image_bytes=b"", class_ids=ids, file_name="x.png", num_classes=3)
    schema.encode_example(image_bytes=b"", class_ids=ids, file_name="x.png", num_classes=5)


def test_petseg_ingest_prints_counts_classes_frequencies_and_skips(tmp_path, capfd):
    from pipelines.cli import main

    written = synthetic_pets.write_folder_dataset(
        str(tmp_path / "data"), 12, num_classes=2, mask_format="values", image_size=32
    )
    os.remove(os.path.join(written.root, "masks", "pet_00003.png"))
    arguments = ["ingest", "-o", str(tmp_path / "out"), "--set", "data.source=folder"]
    arguments += ["--set", f"data.path={written.root}", "--set", "data.validation_fraction=0.3"]
    arguments += [
        "--set",
        "data.classes=[{name: background, values: [1]}, {name: pet, values: [2]}]",
    ]

    assert main([*arguments, "--set", "data.bad_record_policy=skip"]) == 0
    printed = capfd.readouterr().out
    info = dataset_info.load_dataset_info(str(tmp_path / "out")).to_dict()
    assert "source: folder " in printed and "(test, validation carved from train)" in printed
    assert "  0 background <- 1" in printed and "  1 pet <- 2" in printed
    for split, entry in info["splits"].items():
        assert f"{split:<10} {entry['num_records']:>8} {entry['num_skipped']:>8}" in printed
    assert "images/pet_00003.jpg: image has no mask" in printed
    assert f"fingerprint: {info['fingerprint']['dataset']}" in printed

    assert main(arguments) == 1
    captured = capfd.readouterr()
    assert "error: images/pet_00003.jpg: image has no mask" in captured.out + captured.err


def test_an_empty_carved_split_counts_the_train_records_it_was_carved_from(tmp_path):
    # train/ and test/ folders; validation is carved from train's 6 records only.
    written = synthetic_pets.write_folder_dataset(
        str(tmp_path / "data"), {"train": 6, "test": 9}, image_size=32
    )
    config = _config(written, validation_fraction=0.001)
    with pytest.raises(sources.EmptySplitError) as error:
        ingest_dataset(config, str(tmp_path / "out"))
    assert str(error.value) == (
        "split 'validation' has no usable records: carved from train at validation_fraction "
        "0.001 (6 train records read); raise data.validation_fraction or add examples"
    )
    # Ingested, the model trained on it records the folder, not `source: null`.
    info = ingest_dataset(_config(written, validation_fraction=0.5), str(tmp_path / "out"))
    facts = train.trained_on(dataset_info.DatasetInfo.from_dict(info))
    assert (facts["source"], facts["source_type"]) == (written.root, "folder")
    assert facts["fingerprint"] == info["fingerprint"]["dataset"] != ""


def test_an_empty_or_foreign_file_is_named_in_words_not_by_an_object_repr(tmp_path):
    written = synthetic_pets.write_folder_dataset(str(tmp_path / "data"), 6, image_size=32)
    root = tmp_path / "data"
    (root / "images" / "pet_00001.jpg").write_bytes(b"")  # a 0-byte upload
    (root / "masks" / "pet_00002.png").write_bytes(b"%PDF-1.4 not a picture")
    info = ingest_dataset(_config(written, bad_record_policy="skip"), str(tmp_path / "out"))
    reasons = {
        entry["file_name"]: entry["reason"]
        for split in info["splits"].values()
        for entry in split["skipped"]
    }
    assert reasons == {
        "images/pet_00001.jpg": "image does not decode (empty file, 0 bytes)",
        "images/pet_00002.jpg": "mask masks/pet_00002.png does not decode (cannot identify "
        "image file: not an image format Pillow reads)",
    }
