"""Ingest: a TFDS dataset, a folder or a manifest → sharded TFRecords in one schema.

The output directory becomes a Dataset artifact (see components.data.dataset_info)::

    <output_dir>/dataset.json
    <output_dir>/train/train-00000-of-00004.tfrecord ...
    <output_dir>/validation/...   <output_dir>/test/...

Examples stream from the source (components.data.sources) in a stable order. Each
is checked (the image decodes, every mask value or colour is in the class
table, image and mask have the same size) and its mask mapped to class ids by
one thread per core, a bounded window at a time, so output order is
deterministic and memory does not grow with the dataset. Images are
written with the source's bytes unchanged, masks as PNG class ids (255 =
ignore). A source without a validation (or test) split has one carved from
train by a hash of each example's key (components.data.splits).

Bad records fail ingest once, after every record was checked, with an error
naming them all (the first 20 in the message, every one in
``bad_records.jsonl``), unless the bad-record policy is ``skip``; then each
skipped file and its reason go into dataset.json, so nothing disappears
silently. Shards are written under a temporary name and renamed only when
every split is written, so a crash never leaves a shard that looks complete.
dataset.json also records the class table, pixel counts
and the content fingerprint of each split and of the whole dataset.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import os
import posixpath
import time
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from components.data import dataset_info, masks, schema, sources, splits
from components.data import statistics as data_statistics
from components.data.sources import EmptySplitError, SourceExample
from components.platform import contracts, files
from components.platform.config import IGNORE_ID, DataConfig

logger = logging.getLogger(__name__)

BAD_RECORD_POLICIES: tuple[str, ...] = typing.get_args(
    DataConfig.model_fields["bad_record_policy"].annotation
)
IMAGE_ENCODING_NOTE = (
    "image: the source's encoded bytes, unchanged (JPEG or PNG); decode with 3 channels "
    "(schema.decode_image). mask: PNG of class ids (the class table's order; 255 = ignore) "
    "at the image's size."
)
_INCOMPLETE_SUFFIX = ".incomplete"
_CHUNK_RECORDS = 8
_READ_THREADS = 8


class BadRecordError(ValueError):
    """One source record cannot be used; the message names it."""

    def __init__(self, file_name: str, reason: str):
        super().__init__(f"{file_name}: {reason}")
        self.file_name = file_name
        self.reason = reason


BAD_RECORDS_FILE = "bad_records.jsonl"
MAX_SHOWN_BAD_RECORDS = 20


class BadRecordsError(BadRecordError):
    """Bad records under the 'error' policy: every one, found in one pass.

    ``records`` lists them all ({file_name, split, reason}, in source order) and
    ``listing`` is the JSON Lines file holding them; the message shows the first
    ``MAX_SHOWN_BAD_RECORDS`` and that file's path, so a user fixes them all at once.
    """

    def __init__(self, records: list[dict[str, str]], listing: str):
        first = records[0]
        super().__init__(first["file_name"], first["reason"])
        self.records = records
        self.listing = listing
        advice = "set data.bad_record_policy=skip to skip and list such records instead"
        if len(records) == 1:
            message = (
                f"{first['file_name']}: {first['reason']} (split {first['split']!r}; {advice}; "
                f"listed in {listing})"
            )
        else:
            lines = [
                f"{len(records)} bad records ({advice}); all are listed in {listing}:",
                *(
                    f"  {item['file_name']}: {item['reason']} (split {item['split']!r})"
                    for item in records[:MAX_SHOWN_BAD_RECORDS]
                ),
            ]
            if len(records) > MAX_SHOWN_BAD_RECORDS:
                lines.append(f"  ... and {len(records) - MAX_SHOWN_BAD_RECORDS} more")
            message = "\n".join(lines)
        ValueError.__init__(self, message)


def raise_bad_records(records: list[dict[str, str]], output_dir: str) -> typing.NoReturn:
    """Writes every bad record to ``<output_dir>/bad_records.jsonl`` and raises one error."""
    listing = posixpath.join(output_dir, BAD_RECORDS_FILE)
    files.write_text(listing, "".join(json.dumps(item, sort_keys=True) + "\n" for item in records))
    raise BadRecordsError(records, listing)


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """One example with its bytes in hand (the unit tests' and write_split's input)."""

    image: bytes
    mask: bytes  # Encoded PNG of raw mask values (Oxford trimap by default).
    file_name: str
    label: int = -1
    species: int = -1

    def as_example(self, split: str | None = None) -> SourceExample:
        return SourceExample(
            key=self.file_name,
            file_name=self.file_name,
            split=split,
            mask_name=f"of {self.file_name}",
            image=self.image,
            mask=self.mask,
            label=self.label,
            species=self.species,
        )


def default_table() -> masks.ClassTable:
    """The Oxford default class table (trimap 1 pet, 2 background, 3 border)."""
    return masks.ClassTable.from_config(DataConfig())


def validate_record(record: SourceRecord, table: masks.ClassTable | None = None) -> np.ndarray:
    """Checks one record and returns its [H, W] uint8 class-id mask.

    Raises:
        BadRecordError: the image or mask does not decode, their sizes differ,
            or the mask has a value outside the class table.
    """
    table = table or default_table()
    try:
        checked = masks.check_record(table, record.file_name, record.image, record.mask, "")
    except masks.RecordError as error:
        raise BadRecordError(record.file_name, _short(error.reason)) from None
    return schema.decode_mask(tf.constant(checked.mask_png)).numpy()[..., 0]


def _short(reason: str) -> str:
    return masks.short_reason(reason)


# --- checking records in parallel, in order, in bounded memory -----------------------------


def worker_count(data_config: DataConfig) -> int:
    """Processes to check records with: the setting, or every core this process may use."""
    if data_config.ingest_workers:
        return data_config.ingest_workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # Not on Linux.
        return max(1, os.cpu_count() or 1)


def _load(example: SourceExample) -> None:
    """Reads an example's files (a missing one makes it a bad record, not a crash)."""
    if example.problem:
        return
    try:
        if example.image is None:
            example.image = files.read_bytes(example.image_uri)
        if example.mask is None:
            example.mask = files.read_bytes(example.mask_uri)
    except FileNotFoundError as error:
        example.problem = f"file cannot be read ({error})"
    except IsADirectoryError as error:
        example.problem = f"file cannot be read ({error})"


def check_example(example: SourceExample, table: masks.ClassTable) -> masks.CheckedRecord | str:
    """Reads and checks one example: its checked record, or why it is a bad record."""
    _load(example)
    if example.problem:
        return example.problem
    item = (example.key, example.image, example.mask, example.mask_name)
    return masks.check_chunk([item], table)[0]


def serialize_record(
    example: SourceExample, checked: masks.CheckedRecord, num_classes: int
) -> bytes:
    """The TFRecord bytes of a good example (the same bytes from either engine)."""
    return schema.encode_example(
        image_bytes=example.image,
        class_ids=np.zeros((checked.height, checked.width), np.uint8),
        file_name=example.file_name,
        label=example.label,
        species=example.species,
        num_classes=num_classes,
        mask_png=checked.mask_png,
        slice_name=example.slice,
    )


def add_to_statistics(
    collector: data_statistics.StatisticsCollector,
    split: str,
    example: SourceExample,
    checked: masks.CheckedRecord,
) -> None:
    """Adds one written record to the data statistics."""
    collector.add(
        split,
        example.image,
        example.file_name,
        mask_size=len(checked.mask_png),
        height=checked.height,
        width=checked.width,
        value_counts=checked.pixel_counts,
        digest=checked.image_digest,
    )


def _chunks(stream: Iterable[SourceExample], size: int) -> Iterator[list[SourceExample]]:
    chunk: list[SourceExample] = []
    for example in stream:
        chunk.append(example)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def checked_examples(
    stream: Iterable[SourceExample], table: masks.ClassTable, workers: int
) -> Iterator[tuple[SourceExample, masks.CheckedRecord | str]]:
    """(example, checked record or bad-record reason) for every example, in source order.

    Files are read by a few threads and records checked by ``workers`` threads: image
    and PNG codecs, hashing and NumPy release the GIL, so threads use every core with
    no process start-up and no copying of records between processes (measured in
    benchmarks/bench_ingest.py). At most 2 x workers chunks are in flight, so memory
    stays flat however large the source is.
    """
    reader = concurrent.futures.ThreadPoolExecutor(_READ_THREADS)
    checker = concurrent.futures.ThreadPoolExecutor(workers) if workers > 1 else None
    pending: collections.deque = collections.deque()
    try:
        for chunk in _chunks(stream, _CHUNK_RECORDS):
            list(reader.map(_load, chunk))
            good = [example for example in chunk if not example.problem]
            items = [(e.key, e.image, e.mask, e.mask_name) for e in good]
            if checker is None:
                future: concurrent.futures.Future = concurrent.futures.Future()
                future.set_result(masks.check_chunk(items, table))
            else:
                future = checker.submit(masks.check_chunk, items, table)
            pending.append((chunk, future))
            while pending and (len(pending) > 2 * workers or pending[0][1].done()):
                yield from _results(*pending.popleft())
        while pending:
            yield from _results(*pending.popleft())
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        if checker is not None:
            checker.shutdown(wait=True, cancel_futures=True)


def _results(chunk: list[SourceExample], future: concurrent.futures.Future):
    results = iter(future.result())
    for example in chunk:
        yield example, (example.problem if example.problem else next(results))


class _ShardWriter:
    """Writes records_per_shard records per shard under temporary names.

    The shard count is only known at the end (skipped records change it), so
    shards get their final ``-of-N`` names in ``finish`` and not before. TensorFlow
    writes the shard itself (``tf.io.TFRecordWriter``, TFRecord framing and CRCs); the
    renames and removals around it are plain file work, through ``files``.
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
            files.rename(temporary, final)
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
            files.remove(path)
        self._temporary_paths = []


def _remove_quietly(path: str) -> None:
    try:
        files.remove(path)
    except Exception as error:  # OSError or the store's: the ingest's own error is raised
        logger.warning("Could not remove %s after a failed ingest: %s", path, error)


class _SplitOutput:
    """One output split: its shard writer, counts, skips, pixel counts and fingerprint."""

    def __init__(
        self,
        output_dir: str,
        split: str,
        records_per_shard: int,
        num_classes: int,
        collector: data_statistics.StatisticsCollector | None,
    ):
        self.split = split
        self.collector = collector
        self.split_dir = posixpath.join(output_dir, split)
        files.remove(self.split_dir)
        files.makedirs(self.split_dir)
        self.writer = _ShardWriter(self.split_dir, split, records_per_shard)
        self.num_classes = num_classes
        self.num_records = 0
        self.num_bytes = 0
        self.seen = 0
        self.skipped: list[dict[str, str]] = []
        self.pixel_counts = np.zeros(256, np.int64)
        self.fingerprint = splits.Fingerprint()
        self.final_paths: list[str] = []

    def write(self, example: SourceExample, checked: masks.CheckedRecord) -> None:
        serialized = serialize_record(example, checked, self.num_classes)
        self.writer.write(serialized)
        self.num_records += 1
        self.num_bytes += len(serialized)
        self.pixel_counts += checked.pixel_counts
        self.fingerprint.add(checked.digest)
        if self.collector is not None:
            add_to_statistics(self.collector, self.split, example, checked)

    def entry(self, output_dir: str, class_names: list[str]) -> dict[str, Any]:
        return split_entry(
            output_dir,
            class_names,
            final_paths=self.final_paths,
            num_records=self.num_records,
            num_bytes=self.num_bytes,
            skipped=self.skipped,
            pixel_counts=self.pixel_counts,
            fingerprint=self.fingerprint.hexdigest(self.split),
        )


def split_entry(
    output_dir: str,
    class_names: list[str],
    *,
    final_paths: list[str],
    num_records: int,
    num_bytes: int,
    skipped: list[dict[str, str]],
    pixel_counts: np.ndarray,
    fingerprint: str,
) -> dict[str, Any]:
    """A split's entry in dataset.json (both engines write it through here)."""
    return {
        "num_records": num_records,
        "shards": [posixpath.relpath(path, output_dir) for path in final_paths],
        # Readers compare these with the files (dataset_info.shard_paths): a truncated
        # shard is refused by name instead of failing mid-read without one.
        "shard_sizes": [files.size(path) for path in final_paths],
        "num_skipped": len(skipped),
        "skipped": skipped,
        "num_bytes": num_bytes,
        "pixel_counts": {name: int(pixel_counts[index]) for index, name in enumerate(class_names)},
        "ignored_pixels": int(pixel_counts[IGNORE_ID]),
        "fingerprint": fingerprint,
    }


def _write_examples(
    checked: Iterable[tuple[SourceExample, masks.CheckedRecord | str]],
    outputs: dict[str, _SplitOutput],
    place,
    *,
    bad_record_policy: str,
    expected_records: int | None,
    progress_every: int,
) -> tuple[int, list[dict[str, str]]]:
    """Routes each checked example to its split's writer.

    Under the 'error' policy a bad record stops the writing, not the checking: every
    record is still checked, so the caller can name all bad ones at once.

    Returns:
        How many records were read, and the bad ones under the 'error' policy
        ({file_name, split, reason}, in source order).
    """
    seen = 0
    bad: list[dict[str, str]] = []
    started = time.monotonic()
    total = f"/{expected_records}" if expected_records else ""
    for example, result in checked:
        seen += 1
        output = outputs[place(example)]
        output.seen += 1
        if isinstance(result, str):
            if bad_record_policy == "error":
                bad.append(
                    {"file_name": example.file_name, "split": output.split, "reason": result}
                )
            else:
                logger.warning("Skipping %s: %s", example.file_name, result)
                output.skipped.append({"file_name": example.file_name, "reason": result})
        elif not bad:
            output.write(example, result)
        if seen % progress_every == 0:
            elapsed = max(time.monotonic() - started, 1e-9)
            logger.info(
                "%d%s records read, %s, %.1f records/s",
                seen,
                total,
                ", ".join(
                    f"{name}: {out.num_records} written, {len(out.skipped)} skipped"
                    for name, out in outputs.items()
                ),
                seen / elapsed,
            )
    return seen, bad


def _check_policy(bad_record_policy: str, records_per_shard: int) -> None:
    if bad_record_policy not in BAD_RECORD_POLICIES:
        raise ValueError(
            f"bad_record_policy {bad_record_policy!r} is not one of {list(BAD_RECORD_POLICIES)}"
        )
    if records_per_shard < 1:
        raise ValueError(f"records_per_shard must be at least 1, got {records_per_shard}")


def write_split(
    records: Iterable[SourceRecord],
    output_dir: str,
    split: str,
    *,
    records_per_shard: int,
    bad_record_policy: str = "error",
    table: masks.ClassTable | None = None,
    expected_records: int | None = None,
    progress_every: int = 1000,
) -> dict[str, Any]:
    """Validates and writes records, in this process, as one split under ``<output_dir>/<split>/``.

    Anything already in that split folder is removed first, so a retried run
    cannot mix old and new shards.

    Returns:
        The split's entry for dataset.json: num_records, shards (relative to
        output_dir), shard_sizes, num_skipped, skipped ([{file_name, reason}]),
        num_bytes, pixel_counts, ignored_pixels, fingerprint.

    Raises:
        BadRecordsError: bad records under the 'error' policy (all of them, named and
            listed in ``<output_dir>/bad_records.jsonl``).
        EmptySplitError: no record was written.
    """
    _check_policy(bad_record_policy, records_per_shard)
    table = table or default_table()
    output = _SplitOutput(output_dir, split, records_per_shard, table.num_classes, None)
    try:
        examples = (record.as_example(split) for record in records)
        _, bad = _write_examples(
            checked_examples(examples, table, workers=1),
            {split: output},
            lambda example: split,
            bad_record_policy=bad_record_policy,
            expected_records=expected_records,
            progress_every=progress_every,
        )
        if bad:
            output.writer.abort()
            raise_bad_records(bad, output_dir)
        _raise_if_empty(output, None)
        output.final_paths = output.writer.finish()
    except BaseException:
        output.writer.abort()
        raise
    return output.entry(output_dir, list(table.names))


def _raise_if_empty(output: _SplitOutput, carved: str | None) -> None:
    if output.num_records:
        return
    if output.seen:
        detail = f"all {output.seen} records were skipped"
    elif carved:
        detail = carved
    else:
        detail = "the source split is empty"
    raise EmptySplitError(f"split {output.split!r} has no usable records: {detail}")


@dataclasses.dataclass(frozen=True)
class SplitPlacement:
    """Which split each example goes to: the source's, or carved from train by key hash."""

    carved: dict[str, str]  # split → the split it is carved from (train)
    fractions: dict[str, float]
    test_fraction: float

    @classmethod
    def for_source(cls, data_config: DataConfig, description: dict) -> SplitPlacement:
        source_splits = set(description["splits"])
        return cls(
            carved={
                split: splits.TRAIN
                for split in (splits.VALIDATION, splits.TEST)
                if split not in source_splits
            },
            fractions={
                splits.VALIDATION: data_config.validation_fraction,
                splits.TEST: data_config.test_fraction,
            },
            test_fraction=data_config.test_fraction,
        )

    def place(self, example: SourceExample) -> str:
        split = example.split or splits.TRAIN
        if split != splits.TRAIN or not self.carved:
            return split
        return splits.carve(
            example.key,
            validation_fraction=(
                self.fractions[splits.VALIDATION] if splits.VALIDATION in self.carved else 0
            ),
            test_fraction=self.test_fraction,
            carve_test=splits.TEST in self.carved,
        )

    def empty_detail(self, split: str, placed: Mapping[str, int]) -> str | None:
        """Why a carved split may be empty (for EmptySplitError), None for a source split.

        Args:
            split: the empty split.
            placed: records read per split they were placed in.
        """
        if split not in self.carved:
            return None
        # Only the source's train records were candidates, not every split's.
        from_train = sum(placed.get(name, 0) for name in (splits.TRAIN, *self.carved))
        return (
            f"carved from train at {split}_fraction {self.fractions[split]} ({from_train} train "
            f"records read); raise data.{split}_fraction or add examples"
        )


def dataset_record(
    data_config: DataConfig,
    description: dict,
    carved: dict[str, str],
    split_entries: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """dataset.json's content from the split entries (both engines write it through here)."""
    class_table = data_config.class_table()
    for split in carved:
        split_entries[split]["carved_from"] = splits.TRAIN
    split_fingerprints = {split: entry["fingerprint"] for split, entry in split_entries.items()}
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "classes": data_config.class_names,
        "class_table": class_table,
        "ignore_id": IGNORE_ID,
        "mask_format": data_config.mask_format,
        "source": description,
        "split_rule": {
            "key": "hash of each example's key (file path without extension)",
            "validation_fraction": data_config.validation_fraction,
            "test_fraction": data_config.test_fraction,
            "carved": carved,
        },
        "splits": split_entries,
        "fingerprint": {
            "dataset": splits.compute_dataset_fingerprint(
                split_fingerprints, class_table, data_config.mask_format
            ),
            "splits": split_fingerprints,
        },
        "bad_record_policy": data_config.bad_record_policy,
        "records_per_shard": data_config.records_per_shard,
        "image_encoding": IMAGE_ENCODING_NOTE,
        "tensorflow_datasets_version": tfds.__version__,
    }


def write_statistics(
    collector: data_statistics.StatisticsCollector | None, info: dict[str, Any], path: str
) -> None:
    """Writes the gathered statistics (a Statistics contract), or removes a stale file."""
    if collector is not None:
        contracts.Statistics.from_dict(collector.result(info), path).write(path)
    elif files.exists(path):  # An earlier ingest's, of other records.
        files.remove(path)


def finish_dataset(output_dir: str, info: dict[str, Any]) -> None:
    """Writes dataset.json (which marks the dataset complete); drops an old bad-record list."""
    stale = posixpath.join(output_dir, BAD_RECORDS_FILE)
    if files.exists(stale):
        files.remove(stale)
    path = dataset_info.info_path(output_dir)
    contracts.DatasetInfo.from_dict(info, path).write(path)


def ingest_dataset(
    data_config: DataConfig,
    output_dir: str,
    *,
    progress_every: int = 1000,
    workers: int | None = None,
    statistics: bool = True,
) -> dict[str, Any]:
    """Reads the configured source and writes train, validation and test as a Dataset directory.

    Args:
        data_config: the source, class table, split rule, shard size, bad-record policy.
        output_dir: the Dataset artifact directory (local or gs://).
        progress_every: log progress after this many records.
        workers: threads checking records; default ``data.ingest_workers`` (0 = every core).
        statistics: gather the data statistics while writing (``statistics.json``), so the
            data-statistics step need not read the records again.

    Returns:
        The dataset.json content it wrote.

    Raises:
        sources.SourceError: the source cannot be read as configured (named).
        BadRecordsError: bad records under the 'error' policy: every record is checked
            first, then all bad ones are named (the first 20 in the message) and listed
            in ``<output_dir>/bad_records.jsonl``.
        EmptySplitError: a split would have no records.
    """
    _check_policy(data_config.bad_record_policy, data_config.records_per_shard)
    table = masks.ClassTable.from_config(data_config)
    class_names = data_config.class_names
    description, stream = sources.examples(data_config)
    placement = SplitPlacement.for_source(data_config, description)
    carved, place = placement.carved, placement.place

    outputs: dict[str, _SplitOutput] = {}
    workers = workers or worker_count(data_config)
    collector = (
        data_statistics.StatisticsCollector(class_names, IGNORE_ID, splits.SPLITS)
        if statistics
        else None
    )
    statistics_path = posixpath.join(output_dir, data_statistics.STATISTICS_FILE)
    started = time.monotonic()
    try:
        for split in splits.SPLITS:
            outputs[split] = None  # Its folder may hold shards from here on.
            outputs[split] = _SplitOutput(
                output_dir, split, data_config.records_per_shard, len(class_names), collector
            )
        expected = sum(description.get("num_examples", {}).values()) or None
        logger.info(
            "Ingesting %s with %d worker(s); carving %s from train",
            sources.describe(data_config),
            workers,
            sorted(carved) or "nothing",
        )
        _, bad = _write_examples(
            checked_examples(stream, table, workers),
            outputs,
            place,
            bad_record_policy=data_config.bad_record_policy,
            expected_records=expected,
            progress_every=progress_every,
        )
        if bad:
            raise_bad_records(bad, output_dir)
        placed = {split: output.seen for split, output in outputs.items()}
        for split, output in outputs.items():
            _raise_if_empty(output, placement.empty_detail(split, placed))
        for output in outputs.values():
            output.final_paths = output.writer.finish()
        split_entries = {
            split: output.entry(output_dir, class_names) for split, output in outputs.items()
        }
        info = dataset_record(data_config, description, carved, split_entries)
        write_statistics(collector, info, statistics_path)
        finish_dataset(output_dir, info)
    except BaseException:
        # A failed ingest (a bad record, a full disk) leaves no complete-looking shard of
        # any split behind, not only of the split that failed, and no dataset.json.
        for output in outputs.values():
            if output is not None:
                output.writer.abort()
        for split in outputs:
            _remove_quietly(posixpath.join(output_dir, split))
        _remove_quietly(statistics_path)
        raise
    log_written(logger, split_entries, started, info)
    return info


def log_written(log: logging.Logger, split_entries: dict, started: float, info: dict) -> None:
    """The one line either engine logs when a dataset is whole: records per split, time, id."""
    log.info(
        "Wrote %s in %.1f s (fingerprint %s)",
        ", ".join(f"{split} {entry['num_records']}" for split, entry in split_entries.items()),
        time.monotonic() - started,
        info["fingerprint"]["dataset"][:12],
    )
