"""Reading the facts an ingested dataset carries (``dataset.json`` beside its shards).

Layout of a Dataset artifact directory written by ingest::

    <dataset_dir>/dataset.json
    <dataset_dir>/<split>/<split>-00000-of-00004.tfrecord ...

Every consumer checks these facts (schema version, classes) before reading
records, so a mismatch fails with a clear error instead of wrong numbers.
The class list is the dataset's own (``class_names``, ``num_classes``);
``schema.CLASS_NAMES`` is only Oxford's default.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from components.platform import files
from components.platform.contracts import DatasetInfo, DatasetMismatchError

DATASET_INFO_FILE = DatasetInfo.FILE_NAME

__all__ = ["DatasetInfo", "DatasetMismatchError", "ShardIntegrityError"]


class ShardIntegrityError(DatasetMismatchError):
    """A shard differs from what ingest wrote (truncated, corrupted or replaced)."""


def info_path(dataset_dir: str) -> str:
    return posixpath.join(dataset_dir, DATASET_INFO_FILE)


def write_dataset_info(dataset_dir: str, info: DatasetInfo | Mapping[str, Any]) -> None:
    """Writes dataset.json whole or not at all: it marks the dataset complete.

    ``components.platform.files`` writes it to a temporary name and renames it into place, so
    a failure mid-write (a full disk) never leaves a truncated dataset.json.
    """
    if not isinstance(info, DatasetInfo):
        info = DatasetInfo.from_dict(dict(info), info_path(dataset_dir))
    info.write(info_path(dataset_dir))


def load_dataset_info(
    dataset_dir: str, expected_classes: list[str] | tuple[str, ...] | None = None
) -> DatasetInfo:
    """Loads and checks dataset.json: schema version, a well-formed class list, ignore id.

    Args:
        dataset_dir: the Dataset directory.
        expected_classes: when given (a model's classes), the dataset's must equal them.
    """
    path = info_path(dataset_dir)
    if not files.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {dataset_dir!r} is not a dataset written by petseg's ingest"
        )
    info = DatasetInfo.read(path)
    if expected_classes is not None:
        info.check_classes(expected_classes, path)
    return info


def shard_paths(dataset_dir: str, split: str, info: DatasetInfo | None = None) -> list[str]:
    """Absolute shard paths of a split, in order; a missing split or shard is an error."""
    entry = _split(dataset_dir, split, info)
    paths = [posixpath.join(dataset_dir, shard) for shard in entry.shards]
    missing = [path for path in paths if not files.exists(path)]
    if missing:
        raise FileNotFoundError(f"split {split!r}: shards missing: {missing}")
    _check_shard_sizes(dataset_dir, split, paths, entry.shard_sizes)
    return paths


def _split(dataset_dir: str, split: str, info: DatasetInfo | None):
    info = info or load_dataset_info(dataset_dir)
    if split not in info.splits:
        raise DatasetMismatchError(
            f"{info_path(dataset_dir)}: no split {split!r}; it has {sorted(info.splits)}"
        )
    return info.splits[split]


def _check_shard_sizes(
    dataset_dir: str, split: str, paths: list[str], sizes: list[int] | None
) -> None:
    """Compares each shard's size with the one ingest recorded (a stat per shard, no read).

    A truncated copy or a shard cut short by a full disk is caught here, before any
    step reads a record; datasets written before sizes were recorded are not checked.
    """
    if sizes is None:
        return
    if len(sizes) != len(paths):
        raise ShardIntegrityError(
            f"{info_path(dataset_dir)}: split {split!r} lists {len(paths)} shards "
            f"but {len(sizes)} shard sizes"
        )
    for path, expected in zip(paths, sizes, strict=True):
        actual = files.size(path)
        if actual != expected:
            raise ShardIntegrityError(
                f"{path}: {actual} bytes, but ingest wrote {expected} (dataset.json); the shard "
                "is truncated or was replaced after ingest; re-run ingest"
            )


def damaged_shard_error(
    dataset_dir: str, split: str, paths: list[str], error: Exception
) -> ShardIntegrityError:
    """Turns a record-level read failure (no file name in it) into an error naming the shards.

    TFRecord readers check each record's CRC but report only an offset. Each shard
    is read once more on this error path to say which ones are damaged.
    """
    damaged = [f"{path} ({problem})" for path, problem in find_damaged_shards(paths)]
    where = "; ".join(damaged) if damaged else "one of " + ", ".join(paths)
    return ShardIntegrityError(
        f"{dataset_dir}: split {split!r} has damaged records in {where}; re-run ingest "
        f"(reader said: {reader_message(error)})"
    )


def find_damaged_shards(paths: list[str]) -> list[tuple[str, str]]:
    """(path, reader's complaint) for every shard whose records fail their CRC check."""
    damaged = []
    for path in paths:
        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except tf.errors.DataLossError as shard_error:
            damaged.append((path, reader_message(shard_error)))
    return damaged


def reader_message(error: Exception) -> str:
    """The useful part of a TensorFlow op error: no function-node prefix, no op suffix."""
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:[^\]]*\].*$", "", message, flags=re.DOTALL)
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    # Errors raised inside Keras' fit start with "Graph execution error:" and bury the cause.
    specific = [line for line in lines if re.search(r"(corrupted|truncated) record", line)]
    return (specific or lines or [type(error).__name__])[0]


def split_size(dataset_dir: str, split: str, info: DatasetInfo | None = None) -> int:
    return _split(dataset_dir, split, info).num_records


def _table_entry(spec: dict[str, Any]) -> str:
    parts = [str(value) for value in spec.get("values", [])]
    parts += ["#{:02x}{:02x}{:02x}".format(*colour) for colour in spec.get("colors", [])]
    return ", ".join(parts) or "-"


def describe(info: DatasetInfo, dataset_dir: str = "") -> str:
    """A dataset.json as a few lines a person checks before training on it.

    Counts per split, the class table, pixel frequencies per class (and ignored),
    skipped records with their reasons, and the fingerprint.
    """
    source = info.source
    what = source.get("name") or source.get("path", "")
    carved = info.split_rule.get("carved", {})
    lines = [f"source: {source.get('type', '?')} {what}".rstrip()]
    if carved:
        lines[-1] += f" ({', '.join(sorted(carved))} carved from train)"
    table = info.table()
    lines.append("classes (id name <- mask values/colours):")
    for class_id, spec in enumerate(table["classes"]):
        lines.append(f"  {class_id:>3} {spec['name']} <- {_table_entry(spec)}")
    ignored = _table_entry(
        {"values": table.get("ignore_values", []), "colors": table.get("ignore_colors", [])}
    )
    if ignored != "-":
        lines.append(f"  {info.ignore_id:>3} (ignored) <- {ignored}")
    names = info.classes
    width = max([len(name) for name in names] + [7])
    header = f"{'split':<10} {'records':>8} {'skipped':>8} " + " ".join(
        f"{name:>{width}}" for name in [*names, "ignored"]
    )
    lines += ["pixel frequencies:", header]
    skipped_lines = []
    for split, entry in info.splits.items():
        counts = [entry.pixel_counts.get(name, 0) for name in names]
        counts.append(entry.ignored_pixels)
        total = max(sum(counts), 1)
        shares = " ".join(f"{100 * count / total:>{width - 1}.1f}%" for count in counts)
        lines.append(f"{split:<10} {entry.num_records:>8} {entry.num_skipped:>8} {shares}")
        skipped_lines += [
            f"  {split}: {item['file_name']}: {item['reason']}" for item in entry.skipped
        ]
    if skipped_lines:
        lines += [f"skipped records ({len(skipped_lines)}):", *skipped_lines]
    lines.append(f"fingerprint: {info.dataset_fingerprint or '-'}")
    if dataset_dir:
        lines.append(f"written to: {dataset_dir}")
    return "\n".join(lines)
