"""Bad data, from the source to the readers: named errors, or skips that are written down.

The source is a prepared TFDS dataset whose files are edited, so ingest meets a corrupt
JPEG exactly where the real Oxford set would hand it one. Damaged datasets for the
readers (class weights, evaluation) are made from a good ingest, as a bad copy or a
stale file would be.
"""

# No `from __future__ import annotations`: KFP reads the pipeline's output types at run time.
import io
import json
import re
import shutil
from pathlib import Path

import faultkit
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.data import dataset_info, schema, splits
from components.data.ingest import BadRecordError, EmptySplitError, ingest_dataset
from components.evaluation import evaluate
from components.model import class_weights

pytestmark = [
    pytest.mark.timeout(300),
    # kfp.local runs component bodies in this interpreter, which is what the warning is about.
    pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning"),
]


@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory):
    return str(faultkit.write_pixel_model(tmp_path_factory.mktemp("model") / "model"))


@pytest.fixture
def source(prepared_source, tmp_path):
    return faultkit.copy_source(prepared_source, tmp_path / "tfds")


@pytest.fixture
def dataset(good_dataset, tmp_path):
    copy = tmp_path / "dataset"
    shutil.copytree(good_dataset, copy)
    return copy


def _truncated_jpeg(image: bytes, mask: bytes) -> tuple[bytes, bytes]:
    return image[: len(image) // 2], mask


def _html_page(image: bytes, mask: bytes) -> tuple[bytes, bytes]:
    # What a failed download saved under a .jpg name looks like.
    return b"<html><body>502 Bad Gateway</body></html>", mask


def _mask_value(value: int):
    def change(image: bytes, mask: bytes) -> tuple[bytes, bytes]:
        trimap = faultkit.decode_array(mask).copy()
        trimap[0, :3] = value
        return image, faultkit.encode(Image.fromarray(trimap), "PNG")

    return change


def _mask_cropped(image: bytes, mask: bytes) -> tuple[bytes, bytes]:
    trimap = faultkit.decode_array(mask)
    return image, faultkit.encode(Image.fromarray(trimap[:-5, :-3]), "PNG")


BAD_RECORDS = {
    "corrupt JPEG (truncated)": (_truncated_jpeg, "image does not decode"),
    "not an image (HTML page)": (_html_page, "image does not decode"),
    "mask value 4 (out of range)": (
        _mask_value(4),
        r"mask .* has values \[4\] not in the class table",
    ),
    "mask value 0 (out of range)": (
        _mask_value(0),
        r"mask .* has values \[0\] not in the class table",
    ),
    "image/mask size mismatch": (_mask_cropped, r"image is \d+x\d+ but its mask is \d+x\d+"),
}


def _shard_files(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*.tfrecord*"))


@pytest.mark.parametrize("kind", list(BAD_RECORDS))
def test_bad_record_stops_ingest_with_an_error_naming_it(kind, source, tmp_path, fault):
    change, reason = BAD_RECORDS[kind]
    fault(
        f"source record: {kind}; bad_record_policy=error",
        expected="ingest fails naming the file, the reason and the split; no dataset.json, "
        "no shard left",
    )
    victim = faultkit.file_names(source, "train")[1]
    faultkit.tamper_source(source, "train", victim, change)
    output = tmp_path / "dataset"

    with pytest.raises(BadRecordError) as failure:
        ingest_dataset(source, str(output))

    message = str(failure.value)
    fault.saw(message)
    assert message.startswith(f"{victim}: ")
    assert failure.value.file_name == victim
    assert failure.match(reason)
    split = splits.carve(victim, validation_fraction=0.4, test_fraction=0.1, carve_test=False)
    assert f"split '{split}'" in message and "bad_record_policy=skip" in message
    assert not (output / "dataset.json").exists()
    # The test split was complete before train failed; it is removed too.
    assert _shard_files(output) == []


def test_skip_policy_records_every_skipped_file_and_drops_nothing_silently(
    kfp_local, source, fault
):
    from kfp import dsl

    from components.ops.ingest import ingest

    fault(
        "one record of each bad kind in train and test; bad_record_policy=skip (ingest component)",
        expected="every bad file listed in dataset.json and the artifact with its reason; "
        "written + skipped = source count",
    )
    train_names = faultkit.file_names(source, "train")
    test_names = faultkit.file_names(source, "test")
    planted = {}
    for (kind, (change, reason)), (split, name) in zip(
        BAD_RECORDS.items(),
        [
            ("train", train_names[0]),
            ("train", train_names[3]),
            ("test", test_names[1]),
            ("train", train_names[5]),
            ("test", test_names[2]),
        ],
        strict=True,
    ):
        faultkit.tamper_source(source, split, name, change)
        planted[name] = (split, kind, reason)
    config = source.model_copy(update={"bad_record_policy": "skip"})

    @dsl.pipeline(name="ingest-skip")
    def pipeline() -> dsl.Dataset:
        return ingest(data_config=config.model_dump_json()).outputs["dataset"]

    artifact = pipeline().output
    info = dataset_info.load_dataset_info(artifact.path).to_dict()

    skipped = {
        entry["file_name"]: (split, entry["reason"])
        for split in ("train", "validation", "test")
        for entry in info["splits"][split]["skipped"]
    }
    fault.saw(f"skipped: {sorted(skipped)}")
    assert set(skipped) == set(planted)

    def split_of(name, source_split):
        # Validation is carved from train by the hash of the file name.
        if source_split == "test":
            return "test"
        return splits.carve(
            name,
            validation_fraction=config.validation_fraction,
            test_fraction=config.test_fraction,
            carve_test=False,
        )

    for name, (split, kind, reason) in planted.items():
        assert skipped[name][0] == split_of(name, split), kind
        assert re.search(reason, skipped[name][1]), (kind, skipped[name][1])
    sources = {"train": train_names, "test": test_names}
    expected = {
        split: [
            n for source, names in sources.items() for n in names if split_of(n, source) == split
        ]
        for split in ("train", "validation", "test")
    }
    for split, names in expected.items():
        entry = info["splits"][split]
        assert entry["num_records"] + entry["num_skipped"] == len(names)
        stored = [
            schema.parse_example(record)["file_name"].numpy().decode()
            for record in tf.data.TFRecordDataset(dataset_info.shard_paths(artifact.path, split))
        ]
        assert sorted(stored) == sorted(n for n in names if n not in planted)
    assert sum(artifact.metadata["num_skipped"].values()) == 5
    assert artifact.metadata["num_skipped"]["test"] == 2
    assert info["bad_record_policy"] == "skip"


def test_grayscale_rgba_and_cmyk_images_are_kept_as_rgb(source, tmp_path, fault):
    fault(
        "grayscale JPEG, RGBA PNG and CMYK JPEG images in the source (Oxford has such files)",
        expected="kept (not skipped) under policy=error; decoded as 3-channel RGB everywhere",
    )
    names = faultkit.file_names(source, "train")
    originals = {}

    def convert(mode: str, image_format: str):
        def change(image: bytes, mask: bytes) -> tuple[bytes, bytes]:
            converted = Image.open(io.BytesIO(image)).convert(mode)
            originals[mode] = converted
            return faultkit.encode(converted, image_format), mask

        return change

    faultkit.tamper_source(source, "train", names[0], convert("L", "JPEG"))
    faultkit.tamper_source(source, "train", names[1], convert("RGBA", "PNG"))
    faultkit.tamper_source(source, "train", names[2], convert("CMYK", "JPEG"))
    output = tmp_path / "dataset"

    info = ingest_dataset(source, str(output))

    kept = info["splits"]["train"]["num_records"] + info["splits"]["validation"]["num_records"]
    assert info["splits"]["train"]["num_skipped"] + info["splits"]["validation"]["num_skipped"] == 0
    assert kept == len(names)
    decoded = {}
    paths = dataset_info.shard_paths(str(output), "train")
    paths += dataset_info.shard_paths(str(output), "validation")
    for record in tf.data.TFRecordDataset(paths):
        example = schema.decode_example(record)
        decoded[example["file_name"].numpy().decode()] = example["image"].numpy()
    gray, rgba, cmyk = decoded[names[0]], decoded[names[1]], decoded[names[2]]
    assert gray.shape[-1] == rgba.shape[-1] == cmyk.shape[-1] == 3
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    # PNG is lossless: the RGB channels of the RGBA file come back exactly.
    np.testing.assert_array_equal(rgba, np.asarray(originals["RGBA"])[..., :3])
    # CMYK is inverted by some decoders; the colours must match PIL's conversion, not invert.
    expected_cmyk = np.asarray(originals["CMYK"].convert("RGB")).astype(int)
    assert np.abs(cmyk.astype(int) - expected_cmyk).mean() < 8
    weights = class_weights.compute_class_weights(str(output), 32, "inverse_frequency")
    assert weights.num_images == info["splits"]["train"]["num_records"]
    fault.saw(
        f"kept {len(names)}/{len(names)} train records; shapes {gray.shape}, {rgba.shape}, "
        f"{cmyk.shape}; class weights counted {weights.num_images} images"
    )


def test_empty_source_split_is_refused_by_name(source, tmp_path, fault):
    fault(
        "the source's test split is empty",
        expected="ingest fails naming the split and the source before writing anything",
    )
    faultkit.empty_source_split(source, "test")
    output = tmp_path / "dataset"

    with pytest.raises(EmptySplitError, match=r"split 'test' has no usable records") as failure:
        ingest_dataset(source, str(output))

    fault.saw(failure.value)
    assert "synthetic_pets" in str(failure.value)
    assert not (output / "dataset.json").exists() and _shard_files(output) == []


def test_split_left_empty_by_skips_is_an_error(source, tmp_path, fault):
    fault(
        "every record of the test split is bad; bad_record_policy=skip",
        expected="ingest fails: the split would be empty; no dataset.json",
    )
    for name in faultkit.file_names(source, "test"):
        faultkit.tamper_source(source, "test", name, _html_page)
    config = source.model_copy(update={"bad_record_policy": "skip"})
    output = tmp_path / "dataset"

    with pytest.raises(EmptySplitError, match="all 3 records were skipped") as failure:
        ingest_dataset(config, str(output))

    fault.saw(failure.value)
    assert "split 'test'" in str(failure.value)
    assert not (output / "dataset.json").exists()


def _edit_info(dataset: Path, edit) -> None:
    path = dataset / "dataset.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))


def test_empty_split_in_a_dataset_is_refused_by_its_readers(dataset, pixel_model, fault):
    fault(
        "a dataset whose train and test splits list no records (hand-made or filtered copy)",
        expected="class weights and evaluation fail saying the split has no records",
    )

    def empty(info):
        for split in ("train", "test"):
            info["splits"][split].update(num_records=0, shards=[], shard_sizes=[])

    _edit_info(dataset, empty)

    with pytest.raises(class_weights.ClassWeightsError, match="'train' split has no records") as a:
        class_weights.compute_class_weights(str(dataset), 32, "inverse_frequency")
    with pytest.raises(ValueError, match="split 'test' has no records to evaluate") as b:
        evaluate.evaluate_model(pixel_model, str(dataset))
    fault.saw(f"class weights: {a.value}")
    fault.saw(f"evaluate: {b.value}")


@pytest.mark.parametrize(
    "classes",
    [
        ["pet", "background"],
        ["background", "pet", "border"],
        ["pet", "background", "border", "toy"],
    ],
    ids=["fewer", "reordered", "more"],
)
def test_dataset_with_other_classes_than_the_model_is_refused(dataset, pixel_model, classes, fault):
    fault(
        f"dataset.json classes {classes}, the model predicts {list(schema.CLASS_NAMES)}",
        expected="evaluation refuses the model naming metadata.json and both lists; class "
        "weights follow the dataset's list and refuse mask values outside it",
    )
    _edit_info(dataset, lambda info: info.update(classes=classes))

    with pytest.raises(evaluate.ModelMismatchError) as evaluate_error:
        evaluate.evaluate_model(pixel_model, str(dataset))
    message = str(evaluate_error.value)
    assert "metadata.json" in message
    assert str(classes) in message and str(list(schema.CLASS_NAMES)) in message
    fault.saw(evaluate_error.value)

    if len(classes) < schema.NUM_CLASSES:
        with pytest.raises(dataset_info.DatasetMismatchError, match=r"values \[2\]") as error:
            class_weights.compute_class_weights(str(dataset), 32, "none")
        assert str(classes) in str(error.value)
        fault.saw(error.value)
    else:
        weights = class_weights.compute_class_weights(str(dataset), 32, "none")
        assert weights.classes == classes and len(weights.pixel_counts) == len(classes)


def _truncate(path: Path, num_bytes: int = 100) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-num_bytes])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate, r"bytes, but ingest wrote \d+ \(dataset\.json\); the shard is truncated"),
        (_flip_a_byte, r"damaged records in .*\((corrupted record|truncated record)"),
    ],
    ids=["truncated", "bit-flipped"],
)
def test_damaged_shard_is_refused_naming_it(dataset, pixel_model, damage, message, fault):
    name = "truncated" if damage is _truncate else "one byte flipped in the middle of"
    fault(
        f"a {name} TFRecord shard read by class weights and evaluation",
        expected="both fail with an error naming the shard (not a bare DataLossError offset)",
    )
    info = dataset_info.load_dataset_info(str(dataset)).to_dict()
    train_shard = dataset / info["splits"]["train"]["shards"][0]
    test_shard = dataset / info["splits"]["test"]["shards"][-1]
    damage(train_shard)
    damage(test_shard)

    with pytest.raises(dataset_info.ShardIntegrityError, match=message) as weights_error:
        class_weights.compute_class_weights(str(dataset), 32, "none")
    with pytest.raises(dataset_info.ShardIntegrityError, match=message) as evaluate_error:
        evaluate.evaluate_model(pixel_model, str(dataset))

    assert str(train_shard) in str(weights_error.value)
    assert str(test_shard) in str(evaluate_error.value)
    fault.saw(weights_error.value)
