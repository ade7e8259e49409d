"""Ingest: a TFDS segmentation dataset → sharded TFRecords in the project's one schema.

The output directory becomes a Dataset artifact (see components.dataset_info)::

    <output_dir>/dataset.json
    <output_dir>/train/train-00000-of-00004.tfrecord ...
    <output_dir>/test/test-00000-of-00004.tfrecord ...

Records stream from TFDS with image and mask decoding skipped, are checked
one at a time (the image decodes, the mask holds only trimap values, both have
the same size) and are written with the source's image bytes unchanged and
the mask as PNG class ids (trimap - 1). Memory does not grow with the dataset.

A bad record stops ingest with an error naming it, unless the bad-record
policy is ``skip``; then each skipped file and its reason go into dataset.json,
so nothing disappears silently. Shards are written under a temporary name and
renamed only when the whole split is written, so a crash never leaves a shard
that looks complete.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import time
import typing
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from components import dataset_info, schema, sources
from components.config import DataConfig

logger = logging.getLogger(__name__)

BAD_RECORD_POLICIES: tuple[str, ...] = typing.get_args(
    DataConfig.model_fields["bad_record_policy"].annotation
)
IMAGE_ENCODING_NOTE = (
    "image: the source's encoded bytes, unchanged (JPEG, a few PNG); decode with 3 channels "
    "(schema.decode_image). mask: PNG of class ids (source trimap - 1) at the image's size."
)
_INCOMPLETE_SUFFIX = ".incomplete"


class BadRecordError(ValueError):
    """One source record cannot be used; the message names it."""

    def __init__(self, file_name: str, reason: str):
        super().__init__(f"{file_name}: {reason}")
        self.file_name = file_name
        self.reason = reason


class EmptySplitError(ValueError):
    """A split has no usable records."""


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """One example as the source stores it, still encoded."""

    image: bytes
    mask: bytes  # Encoded PNG trimap (1 pet, 2 background, 3 border).
    file_name: str
    label: int = -1
    species: int = -1


def validate_record(record: SourceRecord) -> np.ndarray:
    """Checks one record and returns its [H, W] uint8 class-id mask.

    Raises:
        BadRecordError: the image or mask does not decode, their sizes differ,
            or the mask has a value outside the trimap set.
    """
    try:
        image_shape = schema.decode_image(tf.constant(record.image)).shape
    except (tf.errors.InvalidArgumentError, ValueError) as error:
        raise BadRecordError(
            record.file_name, f"image does not decode ({dataset_info.reader_message(error)})"
        ) from None
    try:
        trimap = tf.io.decode_png(tf.constant(record.mask), channels=1).numpy()[..., 0]
    except (tf.errors.InvalidArgumentError, ValueError) as error:
        raise BadRecordError(
            record.file_name, f"mask does not decode ({dataset_info.reader_message(error)})"
        ) from None
    if tuple(image_shape[:2]) != trimap.shape:
        raise BadRecordError(
            record.file_name,
            f"image is {image_shape[0]}x{image_shape[1]} but its mask is "
            f"{trimap.shape[0]}x{trimap.shape[1]} (height x width)",
        )
    try:
        return schema.trimap_to_class_ids(trimap)
    except ValueError as error:
        raise BadRecordError(record.file_name, str(error)) from None


def tfds_records(builder: tfds.core.DatasetBuilder, split: str) -> Iterator[SourceRecord]:
    """Streams a prepared split in file order, images and masks left encoded."""
    dataset = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders={
            "image": tfds.decode.SkipDecoding(),
            "segmentation_mask": tfds.decode.SkipDecoding(),
        },
    )
    for example in dataset.as_numpy_iterator():
        yield SourceRecord(
            image=example["image"],
            mask=example["segmentation_mask"],
            file_name=example["file_name"].decode("utf-8"),
            label=int(example.get("label", -1)),
            species=int(example.get("species", -1)),
        )


class _ShardWriter:
    """Writes records_per_shard records per shard under temporary names.

    The shard count is only known at the end (skipped records change it), so
    shards get their final ``-of-N`` names in ``finish`` and not before.
    """

    def __init__(self, split_dir: str, split: str, records_per_shard: int):
        self._split_dir = split_dir
        self._split = split
        self._records_per_shard = records_per_shard
        self._temporary_paths: list[str] = []
        self._writer: tf.io.TFRecordWriter | None = None
        self._in_shard = 0

    def write(self, serialized: bytes) -> None:
        if self._writer is None:
            path = posixpath.join(
                self._split_dir,
                f"{self._split}-{len(self._temporary_paths):05d}.tfrecord{_INCOMPLETE_SUFFIX}",
            )
            self._temporary_paths.append(path)
            self._writer = tf.io.TFRecordWriter(path)
        self._writer.write(serialized)
        self._in_shard += 1
        if self._in_shard == self._records_per_shard:
            self._close_current()

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._in_shard = 0

    def finish(self) -> list[str]:
        """Renames every shard to its final name; returns the final paths in order."""
        self._close_current()
        count = len(self._temporary_paths)
        final_paths = []
        for index, temporary in enumerate(self._temporary_paths):
            final = posixpath.join(
                self._split_dir, schema.shard_file_name(self._split, index, count)
            )
            tf.io.gfile.rename(temporary, final, overwrite=True)
            final_paths.append(final)
        self._temporary_paths = []
        return final_paths

    def abort(self) -> None:
        """Removes the unfinished shards, so a failed split leaves nothing behind."""
        try:
            self._close_current()
        except Exception as error:  # A full disk can fail the final flush too.
            logger.warning("Closing the unfinished shard failed (%s); removing it", error)
            self._writer = None
        for path in self._temporary_paths:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        self._temporary_paths = []


def _remove_quietly(path: str) -> None:
    try:
        if tf.io.gfile.exists(path):
            tf.io.gfile.rmtree(path)
    except (OSError, tf.errors.OpError) as error:
        logger.warning("Could not remove %s after a failed ingest: %s", path, error)


def write_split(
    records: Iterable[SourceRecord],
    output_dir: str,
    split: str,
    *,
    records_per_shard: int,
    bad_record_policy: str = "error",
    expected_records: int | None = None,
    progress_every: int = 1000,
) -> dict[str, Any]:
    """Validates and writes one split's records as shards under ``<output_dir>/<split>/``.

    Anything already in that split folder is removed first, so a retried run
    cannot mix old and new shards.

    Args:
        records: the split's records, streamed (never held in memory together).
        output_dir: the dataset directory.
        split: split name; also the folder and shard file prefix.
        records_per_shard: records per TFRecord file (the last may hold fewer).
        bad_record_policy: 'error' raises on the first bad record; 'skip' drops it
            and lists it in the returned ``skipped``.
        expected_records: the source's count, used only in progress logs.
        progress_every: log progress after this many records.

    Returns:
        The split's entry for dataset.json: num_records, shards (relative to
        output_dir), shard_sizes (bytes per shard), num_skipped, skipped
        ([{file_name, reason}]), num_bytes.

    Raises:
        BadRecordError: a bad record under the 'error' policy.
        EmptySplitError: no record was written.
    """
    if bad_record_policy not in BAD_RECORD_POLICIES:
        raise ValueError(
            f"bad_record_policy {bad_record_policy!r} is not one of {list(BAD_RECORD_POLICIES)}"
        )
    if records_per_shard < 1:
        raise ValueError(f"records_per_shard must be at least 1, got {records_per_shard}")
    split_dir = posixpath.join(output_dir, split)
    if tf.io.gfile.exists(split_dir):
        tf.io.gfile.rmtree(split_dir)
    tf.io.gfile.makedirs(split_dir)

    writer = _ShardWriter(split_dir, split, records_per_shard)
    skipped: list[dict[str, str]] = []
    num_records = 0
    num_bytes = 0
    seen = 0
    started = time.monotonic()
    total = f"/{expected_records}" if expected_records else ""
    try:
        for record in records:
            seen += 1
            try:
                class_ids = validate_record(record)
            except BadRecordError as error:
                if bad_record_policy == "error":
                    raise BadRecordError(
                        error.file_name,
                        f"{error.reason} (split {split!r}; set data.bad_record_policy=skip "
                        "to skip and list such records instead)",
                    ) from None
                logger.warning("Skipping %s", error)
                skipped.append({"file_name": error.file_name, "reason": error.reason})
                continue
            serialized = schema.encode_example(
                image_bytes=record.image,
                class_ids=class_ids,
                file_name=record.file_name,
                label=record.label,
                species=record.species,
            )
            writer.write(serialized)
            num_records += 1
            num_bytes += len(serialized)
            if seen % progress_every == 0:
                elapsed = max(time.monotonic() - started, 1e-9)
                logger.info(
                    "%s: %d%s records read, %d written, %d skipped, %.1f records/s",
                    split,
                    seen,
                    total,
                    num_records,
                    len(skipped),
                    seen / elapsed,
                )
        if num_records == 0:
            detail = f"all {seen} records were skipped" if seen else "the source split is empty"
            raise EmptySplitError(f"split {split!r} has no usable records: {detail}")
        final_paths = writer.finish()
    except BaseException:
        writer.abort()
        raise
    logger.info(
        "%s: wrote %d records in %d shards (%d skipped) in %.1f s",
        split,
        num_records,
        len(final_paths),
        len(skipped),
        time.monotonic() - started,
    )
    return {
        "num_records": num_records,
        "shards": [posixpath.relpath(path, output_dir) for path in final_paths],
        # Readers compare these with the files (dataset_info.shard_paths): a truncated
        # shard is refused by name instead of failing mid-read without one.
        "shard_sizes": [tf.io.gfile.stat(path).length for path in final_paths],
        "num_skipped": len(skipped),
        "skipped": skipped,
        "num_bytes": num_bytes,
    }


def ingest_dataset(
    data_config: DataConfig, output_dir: str, *, progress_every: int = 1000
) -> dict[str, Any]:
    """Prepares the configured TFDS dataset and writes every split as a Dataset directory.

    Args:
        data_config: which dataset and how to get it, shard size, bad-record policy.
        output_dir: the Dataset artifact directory (local or gs://).
        progress_every: log progress after this many records of a split.

    Returns:
        The dataset.json content it wrote.
    """
    builder = sources.prepare(data_config)
    for split in sorted(builder.info.splits):
        # Checked before anything is written; TFDS itself refuses to read an empty split
        # with a message that names neither split nor dataset.
        if builder.info.splits[split].num_examples == 0:
            raise EmptySplitError(
                f"split {split!r} has no usable records: the source {builder.name} "
                f"{builder.version} ({builder.data_dir}) holds none"
            )
    splits: dict[str, Any] = {}
    try:
        for split in sorted(builder.info.splits):
            expected = builder.info.splits[split].num_examples
            logger.info("Ingesting %s split %r (%d records)", builder.name, split, expected)
            splits[split] = None  # Its folder may hold shards from here on.
            splits[split] = write_split(
                tfds_records(builder, split),
                output_dir,
                split,
                records_per_shard=data_config.records_per_shard,
                bad_record_policy=data_config.bad_record_policy,
                expected_records=expected,
                progress_every=progress_every,
            )
        info = {
            "schema_version": schema.SCHEMA_VERSION,
            "classes": list(schema.CLASS_NAMES),
            "source": {
                "name": builder.name,
                "version": str(builder.version),
                "config": builder.builder_config.name if builder.builder_config else None,
                "data_dir": str(builder.data_dir_root),
                "manual_dir": data_config.manual_dir,
                "trimap_values": list(schema.TRIMAP_VALUES),
            },
            "splits": splits,
            "bad_record_policy": data_config.bad_record_policy,
            "records_per_shard": data_config.records_per_shard,
            "image_encoding": IMAGE_ENCODING_NOTE,
            "tensorflow_datasets_version": tfds.__version__,
        }
        dataset_info.write_dataset_info(output_dir, info)
    except BaseException:
        # A failed ingest (a bad record, a full disk) leaves no complete-looking shard of
        # any split behind, not only of the split that failed, and no dataset.json.
        for split in splits:
            _remove_quietly(posixpath.join(output_dir, split))
        raise
    return info
