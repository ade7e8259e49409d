"""Dataset directories with chosen images and masks, for the statistics and data-check tests.

Records are written straight through the schema's feature spec (not through ingest),
so a test can put any mask value in, including the ignore id 255.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from components.data import dataset_info, schema
from tests.recordsets import draw_example, encode_image

Example = tuple[bytes, np.ndarray, str]  # (encoded image, class ids [H, W], file name)


def serialize(image: bytes, class_ids: np.ndarray, file_name: str) -> bytes:
    height, width = class_ids.shape[:2]

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    features = {
        "image": feature(image),
        "mask": feature(schema.encode_png_mask(class_ids)),
        "height": feature(height),
        "width": feature(width),
        "file_name": feature(file_name.encode("utf-8")),
        "label": feature(-1),
        "species": feature(-1),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def draw_split(
    split: str, count: int, *, height: int = 40, width: int = 48, seed: int = 0, fmt: str = "PNG"
) -> list[Example]:
    rng = np.random.default_rng(seed)
    examples = []
    for index in range(count):
        image, class_ids = draw_example(rng, height, width)
        examples.append((encode_image(image, fmt), class_ids, f"{split}_{index:03d}.{fmt.lower()}"))
    return examples


def write_dataset(
    dataset_dir: str,
    splits: Mapping[str, Sequence[Example]],
    *,
    skipped: Mapping[str, int] | None = None,
) -> str:
    """Writes dataset.json and one shard per non-empty split; returns dataset_dir."""
    split_info = {}
    for split, examples in splits.items():
        shards = []
        if examples:
            tf.io.gfile.makedirs(posixpath.join(dataset_dir, split))
            relative = posixpath.join(split, schema.shard_file_name(split, 0, 1))
            with tf.io.TFRecordWriter(posixpath.join(dataset_dir, relative)) as writer:
                for image, class_ids, name in examples:
                    writer.write(serialize(image, class_ids, name))
            shards.append(relative)
        split_info[split] = {
            "num_records": len(examples),
            "shards": shards,
            "num_skipped": (skipped or {}).get(split, 0),
            "skipped": [],
        }
    dataset_info.write_dataset_info(
        dataset_dir,
        {
            "schema_version": schema.SCHEMA_VERSION,
            "classes": list(schema.CLASS_NAMES),
            "splits": split_info,
        },
    )
    return dataset_dir


def standard_splits(seed: int = 0, **size) -> dict[str, list[Example]]:
    return {
        "train": draw_split("train", 8, seed=seed, **size),
        "validation": draw_split("validation", 3, seed=seed + 1, **size),
        "test": draw_split("test", 4, seed=seed + 2, **size),
    }


def double_pet(class_ids: np.ndarray) -> np.ndarray:
    """The same mask with as many background pixels again turned into pet (pet x2)."""
    pet, background = 0, 1
    doubled = class_ids.copy().ravel()
    extra = np.flatnonzero(doubled == background)[: int(np.sum(doubled == pet))]
    doubled[extra] = pet
    return doubled.reshape(class_ids.shape)
