"""Reading the facts an ingested dataset carries (``dataset.json`` beside its shards).

Layout of a Dataset artifact directory written by ingest::

    <dataset_dir>/dataset.json
    <dataset_dir>/<split>/<split>-00000-of-00004.tfrecord ...

Every consumer checks these facts (schema version, classes) before reading
records, so a mismatch fails with a clear error instead of wrong numbers.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import tensorflow as tf

from components import schema

DATASET_INFO_FILE = "dataset.json"


class DatasetMismatchError(ValueError):
    """The dataset is not what this step was configured for."""


def info_path(dataset_dir: str) -> str:
    return posixpath.join(dataset_dir, DATASET_INFO_FILE)


def write_dataset_info(dataset_dir: str, info: dict[str, Any]) -> None:
    tf.io.gfile.makedirs(dataset_dir)
    with tf.io.gfile.GFile(info_path(dataset_dir), "w") as handle:
        json.dump(info, handle, indent=2, sort_keys=True)


def load_dataset_info(dataset_dir: str) -> dict[str, Any]:
    """Loads and checks dataset.json: schema version and class list must match ours."""
    path = info_path(dataset_dir)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {dataset_dir!r} is not a dataset written by petseg's ingest"
        )
    with tf.io.gfile.GFile(path) as handle:
        info = json.load(handle)
    if info.get("schema_version") != schema.SCHEMA_VERSION:
        raise DatasetMismatchError(
            f"{path}: schema_version {info.get('schema_version')!r}, "
            f"this code reads {schema.SCHEMA_VERSION}; re-run ingest"
        )
    if list(info.get("classes", [])) != list(schema.CLASS_NAMES):
        raise DatasetMismatchError(
            f"{path}: classes {info.get('classes')} differ from {list(schema.CLASS_NAMES)}"
        )
    return info


def shard_paths(dataset_dir: str, split: str, info: dict[str, Any] | None = None) -> list[str]:
    """Absolute shard paths of a split, in order; a missing split or shard is an error."""
    info = info or load_dataset_info(dataset_dir)
    splits = info.get("splits", {})
    if split not in splits:
        raise DatasetMismatchError(
            f"{info_path(dataset_dir)}: no split {split!r}; it has {sorted(splits)}"
        )
    paths = [posixpath.join(dataset_dir, shard) for shard in splits[split]["shards"]]
    missing = [path for path in paths if not tf.io.gfile.exists(path)]
    if missing:
        raise FileNotFoundError(f"split {split!r}: shards missing: {missing}")
    return paths


def split_size(dataset_dir: str, split: str, info: dict[str, Any] | None = None) -> int:
    info = info or load_dataset_info(dataset_dir)
    return int(info["splits"][split]["num_records"])
