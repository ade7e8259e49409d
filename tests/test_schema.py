"""The one TFRecord schema: what encode_example writes, decode_example reads back."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.data import schema


def _encoded(array: np.ndarray, image_format: str, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=image_format)
    return buffer.getvalue()


def _round_trip(image_bytes: bytes, class_ids: np.ndarray, **kwargs) -> dict:
    serialized = schema.encode_example(
        image_bytes=image_bytes, class_ids=class_ids, file_name="cat_1.jpg", **kwargs
    )
    return {key: value.numpy() for key, value in schema.decode_example(serialized).items()}


@pytest.fixture
def class_ids():
    rng = np.random.default_rng(0)
    return rng.integers(0, schema.NUM_CLASSES, size=(6, 5), dtype=np.uint8)


def test_rgb_png_round_trip_is_exact(class_ids):
    rgb = np.random.default_rng(1).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    decoded = _round_trip(_encoded(rgb, "PNG"), class_ids, label=4, species=1)
    np.testing.assert_array_equal(decoded["image"], rgb)
    np.testing.assert_array_equal(decoded["mask"][..., 0], class_ids)
    assert decoded["mask"].shape == (6, 5, 1)
    assert decoded["file_name"] == b"cat_1.jpg"
    assert (decoded["label"], decoded["species"]) == (4, 1)


def test_label_and_species_default_to_minus_one(class_ids):
    rgb = np.zeros((6, 5, 3), np.uint8)
    decoded = _round_trip(_encoded(rgb, "PNG"), class_ids)
    assert (decoded["label"], decoded["species"]) == (-1, -1)


def test_jpeg_keeps_source_bytes_and_decodes_close(class_ids):
    rgb = np.full((6, 5, 3), (200, 100, 50), np.uint8)
    jpeg = _encoded(rgb, "JPEG")
    serialized = schema.encode_example(image_bytes=jpeg, class_ids=class_ids, file_name="x.jpg")
    assert schema.parse_example(serialized)["image"].numpy() == jpeg
    decoded = schema.decode_example(serialized)["image"].numpy()
    assert decoded.shape == (6, 5, 3)
    assert np.abs(decoded.astype(int) - rgb).max() <= 4


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_grayscale_image_becomes_three_equal_channels(class_ids, image_format):
    gray = np.arange(30, dtype=np.uint8).reshape(6, 5) * 8
    decoded = _round_trip(_encoded(gray, image_format), class_ids)["image"]
    assert decoded.shape == (6, 5, 3)
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 1])
    np.testing.assert_array_equal(decoded[..., 1], decoded[..., 2])
    if image_format == "PNG":
        np.testing.assert_array_equal(decoded[..., 0], gray)


def test_rgba_image_drops_alpha(class_ids):
    rgba = np.zeros((6, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 128
    decoded = _round_trip(_encoded(rgba, "PNG"), class_ids)["image"]
    assert decoded.shape == (6, 5, 3)
    np.testing.assert_array_equal(decoded[0, 0], [10, 20, 30])


def test_png_bytes_named_jpg_decode(class_ids):
    # Oxford has PNG data in .jpg files; the decoder sniffs the format.
    rgb = np.full((6, 5, 3), 77, np.uint8)
    decoded = _round_trip(_encoded(rgb, "PNG"), class_ids)["image"]
    np.testing.assert_array_equal(decoded, rgb)


def test_mask_accepts_trailing_channel(class_ids):
    rgb = np.zeros((6, 5, 3), np.uint8)
    decoded = _round_trip(_encoded(rgb, "PNG"), class_ids[..., None])
    np.testing.assert_array_equal(decoded["mask"][..., 0], class_ids)


def test_trimap_values_shift_to_class_ids():
    trimap = np.array([[1, 2], [3, 1]], np.uint8)
    np.testing.assert_array_equal(schema.trimap_to_class_ids(trimap), [[0, 1], [2, 0]])
    assert schema.CLASS_NAMES[0] == "pet" and schema.CLASS_NAMES[2] == "border"


@pytest.mark.parametrize("bad_value", [0, 4, 255])
def test_trimap_value_outside_the_set_is_an_error(bad_value):
    trimap = np.array([[1, 2], [3, bad_value]], np.uint8)
    with pytest.raises(ValueError, match=rf"\[{bad_value}\]"):
        schema.trimap_to_class_ids(trimap)


def test_class_id_out_of_range_is_an_error_naming_the_file():
    with pytest.raises(ValueError, match=r"dog_2\.jpg.*class id 3"):
        schema.encode_example(
            image_bytes=b"", class_ids=np.array([[0, 3]], np.uint8), file_name="dog_2.jpg"
        )
    with pytest.raises(ValueError, match=r"cat\.png: class id 7 is neither below 2.*255"):
        schema.encode_example(
            image_bytes=b"",
            class_ids=np.array([[0, 1], [7, 255]], np.uint8),
            file_name="cat.png",
            num_classes=2,
        )


def test_any_number_of_classes_and_the_ignore_id_round_trip():
    class_ids = np.array([[0, 4, schema.IGNORE_ID], [3, 1, 2]], np.uint8)
    image = tf.io.encode_png(np.zeros((2, 3, 3), np.uint8)).numpy()
    serialized = schema.encode_example(
        image_bytes=image, class_ids=class_ids, file_name="five.png", num_classes=5
    )
    decoded = schema.decode_example(tf.constant(serialized))
    np.testing.assert_array_equal(decoded["mask"].numpy()[..., 0], class_ids)


def test_shard_file_name():
    assert schema.shard_file_name("train", 2, 10) == "train-00002-of-00010.tfrecord"


def test_parse_fails_on_a_record_without_the_schema_fields():
    empty = tf.train.Example().SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError):
        schema.parse_example(empty)
