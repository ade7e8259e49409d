"""Tiny Dataset artifact directories written straight through the schema (no ingest needed).

Each image shows one ellipse "pet" on a background with a border ring around it, like an
Oxford trimap. Pet, background and border get distinct colour ranges plus noise, so a
model can learn the classes, and the mask is known exactly for every pixel.

Other class counts draw nested rings instead: class 0 is the background and class
k > 0 the k-th ring from the outside, each class its own colour. With ``ignore`` a
rectangle of each mask is labelled the ignore id (the image under it is unchanged,
as with unlabelled pixels in real data).
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Sequence

import numpy as np
from PIL import Image

from components.data import dataset_info, schema

CLASS_COLOURS = np.array([[200, 120, 40], [40, 90, 200], [120, 200, 120]], dtype=np.float32)
# Colours of the generic N-class drawing, index = class id (at most 6 classes).
RING_COLOURS = np.array(
    [[40, 90, 200], [200, 120, 40], [120, 200, 120], [220, 220, 60], [150, 40, 150], [20, 20, 20]],
    dtype=np.float32,
)


def class_names_for(num_classes: int) -> list[str]:
    """Oxford's names for 3 classes, else background, ring_1, ring_2, ..."""
    if num_classes == schema.NUM_CLASSES:
        return list(schema.CLASS_NAMES)
    return ["background", *(f"ring_{index}" for index in range(1, num_classes))]


def draw_rings(
    rng: np.random.Generator, height: int, width: int, num_classes: int, ignore: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One (image, class ids) pair of the generic drawing; see the module docstring."""
    if not 2 <= num_classes <= len(RING_COLOURS):
        raise ValueError(f"draw_rings draws 2 to {len(RING_COLOURS)} classes, not {num_classes}")
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.sqrt(
        ((rows - rng.uniform(0.4, 0.6) * height) / (rng.uniform(0.3, 0.4) * height)) ** 2
        + ((cols - rng.uniform(0.4, 0.6) * width) / (rng.uniform(0.3, 0.4) * width)) ** 2
    )
    class_ids = np.zeros((height, width), dtype=np.uint8)
    for class_id in range(1, num_classes):
        class_ids[distance <= 1.0 - (class_id - 1) / (num_classes - 1)] = class_id
    image = RING_COLOURS[class_ids] + rng.normal(0.0, 15.0, size=(height, width, 3))
    if ignore:
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        class_ids[top : top + height // 4, left : left + width // 4] = schema.IGNORE_ID
    return np.clip(image, 0, 255).astype(np.uint8), class_ids


def draw_example(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 [H, W, 3], class ids uint8 [H, W]) pair."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    centre_row = rng.uniform(0.3, 0.7) * height
    centre_col = rng.uniform(0.3, 0.7) * width
    radius_row = rng.uniform(0.15, 0.3) * height
    radius_col = rng.uniform(0.15, 0.3) * width
    distance = np.sqrt(
        ((rows - centre_row) / radius_row) ** 2 + ((cols - centre_col) / radius_col) ** 2
    )
    class_ids = np.full((height, width), 1, dtype=np.uint8)  # background
    class_ids[distance <= 1.25] = 2  # border ring
    class_ids[distance <= 1.0] = 0  # pet
    image = CLASS_COLOURS[class_ids] + rng.normal(0.0, 20.0, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), class_ids


def encode_image(image: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return buffer.getvalue()


def write_recordset(
    dataset_dir: str,
    splits: dict[str, int] | None = None,
    *,
    height: int = 48,
    width: int = 40,
    shards_per_split: int = 2,
    seed: int = 0,
    image_format: str = "PNG",
    num_classes: int = schema.NUM_CLASSES,
    ignore: bool = False,
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Writes a Dataset artifact directory and returns what it holds.

    Args:
        dataset_dir: directory to write dataset.json and <split>/ shards into.
        splits: records per split; default 8 train and 4 test.
        height: image height in pixels (the source resolution, before any resize).
        width: image width in pixels.
        shards_per_split: shards per split, each a contiguous run of records in order.
        seed: numpy seed for the drawn images.
        image_format: 'PNG' (lossless, exact pixels) or 'JPEG' (like Oxford).
        num_classes: 3 draws the Oxford-like pets; any other number nested rings.
        ignore: label a rectangle of every mask with the ignore id.

    Returns:
        For each split, the (image, class_ids) pairs in stored order.
    """
    import tensorflow as tf

    splits = splits or {"train": 8, "test": 4}
    rng = np.random.default_rng(seed)
    contents: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    split_info = {}
    for split, count in splits.items():
        if num_classes == schema.NUM_CLASSES and not ignore:
            pairs = [draw_example(rng, height, width) for _ in range(count)]
        else:
            pairs = [draw_rings(rng, height, width, num_classes, ignore) for _ in range(count)]
        contents[split] = pairs
        shard_count = max(1, min(shards_per_split, count))
        bounds = np.linspace(0, count, shard_count + 1).astype(int)
        shards = []
        tf.io.gfile.makedirs(posixpath.join(dataset_dir, split))
        for index in range(shard_count):
            relative = posixpath.join(split, schema.shard_file_name(split, index, shard_count))
            with tf.io.TFRecordWriter(posixpath.join(dataset_dir, relative)) as writer:
                for number in range(bounds[index], bounds[index + 1]):
                    image, class_ids = pairs[number]
                    writer.write(
                        schema.encode_example(
                            image_bytes=encode_image(image, image_format),
                            class_ids=class_ids,
                            file_name=f"{split}_{number:04d}.{image_format.lower()}",
                            num_classes=num_classes,
                        )
                    )
            shards.append(relative)
        split_info[split] = {
            "num_records": count,
            "shards": shards,
            "num_skipped": 0,
            "skipped": [],
        }
    dataset_info.write_dataset_info(
        dataset_dir,
        {
            "schema_version": schema.SCHEMA_VERSION,
            "classes": class_names_for(num_classes),
            "ignore_id": schema.IGNORE_ID,
            "source": {"name": "tests.recordsets", "version": "0", "data_dir": ""},
            "splits": split_info,
            "bad_record_policy": "error",
            "image_encoding": f"{image_format} as drawn by tests/recordsets.py",
        },
    )
    return contents


def write_masks(
    dataset_dir: str,
    masks: dict[str, Sequence[np.ndarray]],
    classes: Sequence[str],
    images: dict[str, Sequence[np.ndarray]] | None = None,
) -> str:
    """Writes a Dataset directory holding exactly the given class-id masks, one shard a split.

    Args:
        dataset_dir: directory to write dataset.json and <split>/ shards into.
        masks: per split, [H, W] uint8 masks of class ids (or the ignore id).
        classes: the dataset's class names, in class-id order.
        images: per split, the matching uint8 [H, W, 3] images; default black.
    """
    import tensorflow as tf

    split_info = {}
    for split, split_masks in masks.items():
        relative = posixpath.join(split, schema.shard_file_name(split, 0, 1))
        tf.io.gfile.makedirs(posixpath.join(dataset_dir, split))
        with tf.io.TFRecordWriter(posixpath.join(dataset_dir, relative)) as writer:
            for number, mask in enumerate(split_masks):
                image = (
                    images[split][number]
                    if images is not None
                    else np.zeros((*mask.shape, 3), np.uint8)
                )
                writer.write(
                    schema.encode_example(
                        image_bytes=encode_image(image, "PNG"),
                        class_ids=mask,
                        file_name=f"{split}_{number:04d}.png",
                        num_classes=len(classes),
                    )
                )
        split_info[split] = {
            "num_records": len(split_masks),
            "shards": [relative],
            "num_skipped": 0,
            "skipped": [],
        }
    dataset_info.write_dataset_info(
        dataset_dir,
        {
            "schema_version": schema.SCHEMA_VERSION,
            "classes": list(classes),
            "ignore_id": schema.IGNORE_ID,
            "source": {"name": "tests.recordsets", "version": "0", "data_dir": ""},
            "splits": split_info,
            "bad_record_policy": "error",
        },
    )
    return dataset_dir


def class_pixel_fractions(
    masks: Sequence[np.ndarray], num_classes: int = schema.NUM_CLASSES
) -> np.ndarray:
    """Fraction of pixels per class over some masks (ignored pixels left out)."""
    values = np.concatenate([mask.ravel() for mask in masks])
    counts = np.bincount(values[values != schema.IGNORE_ID], minlength=num_classes)
    return counts / counts.sum()
