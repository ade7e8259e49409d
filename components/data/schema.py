"""The one definition of petseg's classes and TFRecord format.

Every step that writes or reads records (ingest, class weights, the tf.data
input, evaluation) goes through this module, so the on-disk format and the
class list cannot drift apart between steps.

Records store class ids 0..C-1 (the dataset's class table, in dataset.json)
and ``IGNORE_ID`` (255) for pixels left out of the loss and every metric.
The Oxford default: trimaps store 1 = pet, 2 = background, 3 = border ("not
classified"), per the dataset's own README, so records hold 0 pet,
1 background, 2 border. (The TensorFlow tutorial's text swaps background and
border; it is wrong.) ``CLASS_NAMES`` is only that default: readers take the
class list from dataset.json (components.data.dataset_info).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Re-exported: readers of records take the class list from here.
from components.platform.config import (  # noqa: F401
    CLASS_NAMES,
    IGNORE_ID,
    NUM_CLASSES,
    TRIMAP_OFFSET,
    TRIMAP_VALUES,
)
from components.platform.contracts import DATASET_SCHEMA_VERSION as SCHEMA_VERSION  # noqa: F401

RECORD_FILE_PATTERN = "{split}-{index:05d}-of-{count:05d}.tfrecord"

# The feature spec is the schema: parse_example reads exactly what encode_example writes.
FEATURE_SPEC: dict[str, tf.io.FixedLenFeature] = {
    "image": tf.io.FixedLenFeature([], tf.string),  # encoded JPEG/PNG as in the source
    "mask": tf.io.FixedLenFeature([], tf.string),  # PNG, uint8 class ids 0..C-1 or IGNORE_ID
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "file_name": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),  # breed, -1 if unknown
    "species": tf.io.FixedLenFeature([], tf.int64, default_value=-1),  # 0 cat, 1 dog
    # Own data's slice (first folder under images/, or a manifest's `slice`); "" = none.
    # Written only when set, so records without one keep their bytes.
    "slice": tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def trimap_to_class_ids(trimap: np.ndarray) -> np.ndarray:
    """Maps Oxford trimap values (1, 2, 3) to class ids (0, 1, 2).

    Raises:
        ValueError: if any value is outside the trimap set; the message lists them.
    """
    trimap = np.asarray(trimap)
    bad = np.setdiff1d(np.unique(trimap), TRIMAP_VALUES)
    if bad.size:
        raise ValueError(
            f"mask has values {bad.tolist()} outside the trimap set {list(TRIMAP_VALUES)}"
        )
    return (trimap - TRIMAP_OFFSET).astype(np.uint8)


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def encode_png_mask(class_ids: np.ndarray) -> bytes:
    """PNG-encodes a [H, W] or [H, W, 1] uint8 class-id mask (lossless, small)."""
    class_ids = np.asarray(class_ids, dtype=np.uint8)
    if class_ids.ndim == 2:
        class_ids = class_ids[..., None]
    return tf.io.encode_png(class_ids).numpy()


def encode_example(
    *,
    image_bytes: bytes,
    class_ids: np.ndarray,
    file_name: str,
    label: int = -1,
    species: int = -1,
    num_classes: int = NUM_CLASSES,
    mask_png: bytes | None = None,
    slice_name: str = "",
) -> bytes:
    """Serialises one record.

    Args:
        image_bytes: the encoded image as the source holds it (JPEG or PNG).
        class_ids: [H, W] or [H, W, 1] mask of class ids in 0..num_classes-1 or
            IGNORE_ID, the same height and width as the image.
        file_name: the source file name, so errors and reports can name the record.
        label: breed id, -1 if unknown.
        species: 0 cat, 1 dog, -1 if unknown.
        num_classes: how many classes the dataset has.
        mask_png: ``class_ids`` already PNG-encoded (ingest's workers do it), so it
            is not encoded twice.
        slice_name: the group evaluation reports this record in ('' = none).
    """
    class_ids = np.asarray(class_ids)
    invalid = class_ids[(class_ids >= num_classes) & (class_ids != IGNORE_ID)]
    if invalid.size:
        raise ValueError(
            f"{file_name}: class id {int(invalid.max())} is neither below {num_classes} "
            f"nor the ignore id {IGNORE_ID}"
        )
    height, width = class_ids.shape[:2]
    features = {
        "image": _bytes(image_bytes),
        "mask": _bytes(mask_png if mask_png is not None else encode_png_mask(class_ids)),
        "height": _int(height),
        "width": _int(width),
        "file_name": _bytes(file_name.encode("utf-8")),
        "label": _int(label),
        "species": _int(species),
    }
    if slice_name:
        features["slice"] = _bytes(slice_name.encode("utf-8"))
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # Sorted map keys: the same record is the same bytes in every process (protobuf map
    # order otherwise varies), so a re-run ingest reproduces its shards byte for byte.
    return example.SerializeToString(deterministic=True)


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialised record into its raw (still encoded) features."""
    return tf.io.parse_single_example(serialized, FEATURE_SPEC)


def decode_image(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes to [H, W, 3] uint8; grayscale and RGBA sources become RGB."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_mask(mask_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes to [H, W, 1] uint8 class ids (IGNORE_ID for ignored pixels)."""
    mask = tf.io.decode_png(mask_bytes, channels=1)
    mask.set_shape([None, None, 1])
    return mask


def decode_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses and decodes one record: image [H, W, 3] uint8, mask [H, W, 1] uint8."""
    parsed = parse_example(serialized)
    return {
        "image": decode_image(parsed["image"]),
        "mask": decode_mask(parsed["mask"]),
        "file_name": parsed["file_name"],
        "label": parsed["label"],
        "species": parsed["species"],
        "slice": parsed["slice"],
    }


def shard_file_name(split: str, index: int, count: int) -> str:
    return RECORD_FILE_PATTERN.format(split=split, index=index, count=count)
