"""ingest core: TFDS → validated, sharded TFRecords with dataset.json; bad input never silent."""

import io
import json
import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from components.data import dataset_info, schema, sources, splits
from components.data.ingest import (
    BAD_RECORDS_FILE,
    BadRecordError,
    BadRecordsError,
    EmptySplitError,
    SourceRecord,
    ingest_dataset,
    validate_record,
    write_split,
)
from components.platform.config import DataConfig


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


def _record(name: str, height=6, width=5, trimap_value=None, mask_shape=None) -> SourceRecord:
    trimap = np.ones((height, width), np.uint8)
    trimap[height // 2 :] = 2
    trimap[:, 0] = 3
    if trimap_value is not None:
        trimap[0, 0] = trimap_value
    if mask_shape is not None:
        trimap = np.full(mask_shape, 2, np.uint8)
    image = np.full((height, width, 3), 120, np.uint8)
    return SourceRecord(image=_jpeg(image), mask=_png(trimap), file_name=name, label=3, species=1)


def _read_split(dataset_dir, split):
    paths = dataset_info.shard_paths(dataset_dir, split)
    return [
        {key: value.numpy() for key, value in schema.decode_example(serialized).items()}
        for serialized in tf.data.TFRecordDataset(paths)
    ]


@pytest.fixture(scope="module")
def synthetic_config(tmp_path_factory):
    return DataConfig(
        data_dir=str(tmp_path_factory.mktemp("tfds")),
        synthetic_train_size=12,
        synthetic_test_size=6,
        synthetic_image_size=64,
        records_per_shard=5,
        validation_fraction=0.25,
    )


@pytest.fixture(scope="module")
def ingested(synthetic_config, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("dataset"))
    return output_dir, ingest_dataset(synthetic_config, output_dir, progress_every=4)


def _expected_split(name: str, config: DataConfig) -> str:
    return splits.carve(
        name,
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction,
        carve_test=False,
    )


def test_dataset_json_describes_what_was_written(ingested, synthetic_config):
    output_dir, info = ingested
    assert dataset_info.load_dataset_info(output_dir).to_dict() == json.loads(json.dumps(info))
    assert info["schema_version"] == schema.SCHEMA_VERSION
    assert info["classes"] == ["pet", "background", "border"]
    assert info["class_table"] == synthetic_config.class_table()
    assert info["ignore_id"] == schema.IGNORE_ID == 255
    assert info["source"]["type"] == "tfds"
    assert info["source"]["name"] == "synthetic_pets"
    assert info["source"]["version"] == "1.0.0"
    assert info["source"]["config"] == "train12-test6-size64-seed0"
    assert info["split_rule"]["carved"] == {"validation": "train"}
    assert info["bad_record_policy"] == "error"
    assert "PNG" in info["image_encoding"]
    assert sorted(info["splits"]) == ["test", "train", "validation"]
    train, validation, test = (info["splits"][s] for s in ("train", "validation", "test"))
    # Validation is carved from train by the hash of each file name; test stays test.
    builder = sources.get_builder(synthetic_config)
    names = [
        example["file_name"].decode()
        for example in tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False))
    ]
    expected_validation = [n for n in names if _expected_split(n, synthetic_config) != "train"]
    assert 0 < len(expected_validation) < 12
    assert validation["num_records"] == len(expected_validation)
    assert validation["carved_from"] == "train"
    assert train["num_records"] == 12 - len(expected_validation)
    assert test["num_records"] == 6 and "carved_from" not in test
    assert (train["num_skipped"], train["skipped"]) == (0, [])
    count = -(-train["num_records"] // 5)
    assert train["shards"] == [f"train/train-{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]
    assert test["shards"] == [
        "test/test-00000-of-00002.tfrecord",
        "test/test-00001-of-00002.tfrecord",
    ]
    assert train["num_bytes"] > 0
    listed = sorted(tf.io.gfile.listdir(f"{output_dir}/train"))
    assert listed == [path.split("/")[1] for path in train["shards"]]  # no leftover temp files
    stored = {
        split: sorted(r["file_name"].decode() for r in _read_split(output_dir, split))
        for split in ("train", "validation")
    }
    assert stored["validation"] == sorted(expected_validation)
    assert sorted(stored["train"] + stored["validation"]) == sorted(names)
    # Pixel counts per class add up to every pixel of the split.
    pixels = sum(int(r["mask"].size) for r in _read_split(output_dir, "test"))
    assert sum(test["pixel_counts"].values()) == pixels and test["ignored_pixels"] == 0
    assert set(test["pixel_counts"]) == {"pet", "background", "border"}
    fingerprint = info["fingerprint"]
    assert set(fingerprint["splits"]) == {"train", "validation", "test"}
    assert all(len(value) == 64 for value in fingerprint["splits"].values())
    assert dataset_info.DatasetInfo.from_dict(info).dataset_fingerprint == fingerprint["dataset"]
    assert len(fingerprint["dataset"]) == 64


def test_records_keep_source_bytes_and_shift_the_masks(ingested, synthetic_config):
    output_dir, _ = ingested
    builder = sources.get_builder(synthetic_config)
    source = {
        example["file_name"].decode(): example
        for example in tfds.as_numpy(builder.as_dataset(split="train"))
    }
    raw = tfds.as_numpy(
        builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
    )
    source_bytes = {example["file_name"].decode(): example["image"] for example in raw}
    records = _read_split(output_dir, "train") + _read_split(output_dir, "validation")
    assert sorted(record["file_name"].decode() for record in records) == sorted(source)
    paths = dataset_info.shard_paths(output_dir, "train") + dataset_info.shard_paths(
        output_dir, "validation"
    )
    stored_bytes = {
        schema.parse_example(s)["file_name"].numpy().decode(): schema.parse_example(s)[
            "image"
        ].numpy()
        for s in tf.data.TFRecordDataset(paths)
    }
    for record in records:
        name = record["file_name"].decode()
        expected = source[name]
        assert stored_bytes[name] == source_bytes[name]
        np.testing.assert_array_equal(record["image"], expected["image"])
        np.testing.assert_array_equal(record["mask"], expected["segmentation_mask"] - 1)
        assert set(np.unique(record["mask"])) <= {0, 1, 2}
        assert (record["label"], record["species"]) == (expected["label"], expected["species"])


def test_progress_is_logged(synthetic_config, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="components.data.ingest"):
        ingest_dataset(synthetic_config, str(tmp_path / "out"), progress_every=4)
    progress = [r.getMessage() for r in caplog.records if "records read" in r.getMessage()]
    assert [message.split(" ")[0] for message in progress] == ["4/18", "8/18", "12/18", "16/18"]
    assert "train: " in progress[0] and "validation: " in progress[0]


def test_ignored_value_becomes_the_ignore_id_and_is_counted(synthetic_config, tmp_path):
    config = synthetic_config.model_copy(
        update={
            "classes": synthetic_config.classes[:2],
            "ignore_values": [3],
        }
    )
    info = ingest_dataset(config, str(tmp_path / "out"))
    assert info["classes"] == ["pet", "background"]
    assert info["class_table"]["ignore_values"] == [3]
    test = info["splits"]["test"]
    masks = [r["mask"] for r in _read_split(str(tmp_path / "out"), "test")]
    values = np.concatenate([m.ravel() for m in masks])
    assert set(np.unique(values)) == {0, 1, 255}
    assert test["ignored_pixels"] == int((values == 255).sum()) > 0
    assert test["pixel_counts"] == {
        "pet": int((values == 0).sum()),
        "background": int((values == 1).sum()),
    }


def test_not_prepared_with_download_off_names_the_dataset(tmp_path):
    config = DataConfig(data_dir=str(tmp_path), download=False, synthetic_train_size=3)
    with pytest.raises(sources.DatasetNotPreparedError, match="'synthetic_pets' is not prepared"):
        ingest_dataset(config, str(tmp_path / "out"))
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_prepared_data_is_reused_with_download_off(synthetic_config, tmp_path):
    config = synthetic_config.model_copy(update={"download": False})
    info = ingest_dataset(config, str(tmp_path / "out"))
    assert sum(info["splits"][s]["num_records"] for s in ("train", "validation")) == 12


def test_valid_record_gives_class_ids():
    class_ids = validate_record(_record("cat_1.jpg"))
    assert class_ids.shape == (6, 5) and class_ids.dtype == np.uint8
    assert class_ids[0, 1] == 0 and class_ids[5, 1] == 1 and class_ids[0, 0] == 2


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_record("bad_mask_7.jpg", trimap_value=4), r"bad_mask_7\.jpg: mask has values \[4\]"),
        (_record("zero_7.jpg", trimap_value=0), r"zero_7\.jpg: mask has values \[0\]"),
        (
            SourceRecord(
                image=b"not an image", mask=_png(np.ones((6, 5), np.uint8)), file_name="junk_1.jpg"
            ),
            r"junk_1\.jpg: image does not decode",
        ),
        (
            SourceRecord(
                image=_jpeg(np.zeros((6, 5, 3), np.uint8)),
                mask=b"\x89PNG broken",
                file_name="m_1.jpg",
            ),
            r"m_1\.jpg: mask does not decode",
        ),
        (
            _record("size_3.jpg", mask_shape=(6, 4)),
            r"size_3\.jpg: image is 6x5 but its mask is 6x4",
        ),
    ],
)
def test_bad_records_are_errors_naming_the_record(record, message):
    with pytest.raises(BadRecordError, match=message):
        validate_record(record)


def test_bad_record_stops_the_split_and_leaves_no_shard(tmp_path):
    records = [_record(f"ok_{i}.jpg") for i in range(5)] + [_record("bad_9.jpg", trimap_value=7)]
    with pytest.raises(BadRecordError, match=r"bad_9\.jpg.*split 'train'.*bad_record_policy=skip"):
        write_split(iter(records), str(tmp_path), "train", records_per_shard=2)
    assert list((tmp_path / "train").iterdir()) == []


def test_skip_policy_lists_every_skipped_record(tmp_path):
    records = [
        _record("ok_1.jpg"),
        _record("bad_value_2.jpg", trimap_value=9),
        _record("ok_3.jpg"),
        SourceRecord(image=b"xx", mask=_png(np.ones((6, 5), np.uint8)), file_name="junk_4.jpg"),
        _record("mismatch_5.jpg", mask_shape=(3, 3)),
        _record("ok_6.jpg"),
    ]
    entry = write_split(
        iter(records), str(tmp_path), "test", records_per_shard=2, bad_record_policy="skip"
    )
    assert entry["num_records"] == 3
    assert entry["num_skipped"] == 3
    assert [item["file_name"] for item in entry["skipped"]] == [
        "bad_value_2.jpg",
        "junk_4.jpg",
        "mismatch_5.jpg",
    ]
    assert "not in the class table" in entry["skipped"][0]["reason"]
    assert "does not decode" in entry["skipped"][1]["reason"]
    assert "6x5" in entry["skipped"][2]["reason"]
    assert entry["shards"] == [
        "test/test-00000-of-00002.tfrecord",
        "test/test-00001-of-00002.tfrecord",
    ]
    names = [
        schema.parse_example(s)["file_name"].numpy().decode()
        for s in tf.data.TFRecordDataset([str(tmp_path / p) for p in entry["shards"]])
    ]
    assert names == ["ok_1.jpg", "ok_3.jpg", "ok_6.jpg"]


def test_empty_split_is_an_error(tmp_path):
    with pytest.raises(EmptySplitError, match=r"split 'test'.*source split is empty"):
        write_split(iter([]), str(tmp_path), "test", records_per_shard=4)


def test_all_records_skipped_is_an_error(tmp_path):
    records = [_record("bad_1.jpg", trimap_value=5), _record("bad_2.jpg", trimap_value=5)]
    with pytest.raises(EmptySplitError, match="all 2 records were skipped"):
        write_split(
            iter(records), str(tmp_path), "train", records_per_shard=4, bad_record_policy="skip"
        )
    assert list((tmp_path / "train").iterdir()) == []


def test_rewriting_a_split_replaces_stale_shards(tmp_path):
    stale = tmp_path / "train" / "train-00000-of-00009.tfrecord"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    entry = write_split(iter([_record("ok_1.jpg")]), str(tmp_path), "train", records_per_shard=4)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [
        "train-00000-of-00001.tfrecord"
    ]
    assert entry["shards"] == ["train/train-00000-of-00001.tfrecord"]


def test_invalid_policy_and_shard_size_are_errors(tmp_path):
    with pytest.raises(ValueError, match="bad_record_policy 'drop'"):
        write_split(iter([]), str(tmp_path), "train", records_per_shard=4, bad_record_policy="drop")
    with pytest.raises(ValueError, match="records_per_shard"):
        write_split(iter([]), str(tmp_path), "train", records_per_shard=0)


def test_error_policy_checks_every_record_then_names_all_bad_ones(tmp_path):
    bad_names = [f"bad_{i:02d}.jpg" for i in range(23)]
    records = [_record("ok_0.jpg")] + [_record(name, trimap_value=7) for name in bad_names]
    records.append(_record("ok_1.jpg"))
    with pytest.raises(BadRecordsError) as failure:
        write_split(iter(records), str(tmp_path), "train", records_per_shard=2)
    message = str(failure.value)
    listing = tmp_path / BAD_RECORDS_FILE
    assert message.startswith("23 bad records") and str(listing) in message
    shown = [line for line in message.splitlines() if line.startswith("  bad_")]
    assert [line.split(":")[0].strip() for line in shown] == bad_names[:20]
    assert "values [7] not in the class table" in shown[0] and "(split 'train')" in shown[0]
    assert message.splitlines()[-1] == "  ... and 3 more"
    listed = [json.loads(line) for line in listing.read_text().splitlines()]
    assert [item["file_name"] for item in listed] == bad_names
    assert {item["split"] for item in listed} == {"train"}
    assert [item["file_name"] for item in failure.value.records] == bad_names
    assert list((tmp_path / "train").iterdir()) == []
