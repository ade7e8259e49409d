"""Tiny Dataset artifact directories written straight through the schema (no ingest needed).

Each image shows one ellipse "pet" on a background with a border ring around it, like an
Oxford trimap. Pet, background and border get distinct colour ranges plus noise, so a
model can learn the classes, and the mask is known exactly for every pixel.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Sequence

import numpy as np
from PIL import Image

from components import dataset_info, schema

CLASS_COLOURS = np.array([[200, 120, 40], [40, 90, 200], [120, 200, 120]], dtype=np.float32)


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

    Returns:
        For each split, the (image, class_ids) pairs in stored order.
    """
    import tensorflow as tf

    splits = splits or {"train": 8, "test": 4}
    rng = np.random.default_rng(seed)
    contents: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    split_info = {}
    for split, count in splits.items():
        pairs = [draw_example(rng, height, width) for _ in range(count)]
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
            "classes": list(schema.CLASS_NAMES),
            "source": {"name": "tests.recordsets", "version": "0", "data_dir": ""},
            "splits": split_info,
            "bad_record_policy": "error",
            "image_encoding": f"{image_format} as drawn by tests/recordsets.py",
        },
    )
    return contents


def class_pixel_fractions(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Fraction of pixels per class over some masks."""
    counts = np.bincount(np.concatenate([mask.ravel() for mask in masks]), minlength=3)
    return counts / counts.sum()
