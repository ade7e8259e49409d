"""Image and mask statistics of an ingested dataset: one streaming pass per split.

TFDV summarises tables and cannot look inside an encoded image; this module does
it for segmentation records. Ingest gathers them as it writes each record
(``StatisticsCollector``, stored as the dataset's ``statistics.json``), so they
cost no second read; ``compute_statistics`` gathers the same from the shards of
a dataset written without them. For each split:

- record count, skipped records (from dataset.json) and bytes (images, masks);
- image height, width and aspect ratio (width / height): min, 5th percentile,
  median, 95th percentile and max, plus a coarse size histogram for drift checks;
- channel count and encoding (JPEG, PNG, ...) counts, read from the image header
  without decoding the pixels;
- per-class pixel counts and frequencies, and the number of images each class
  appears in; ignored pixels (``ignore_id``, 255) are left out of both;
- masks holding a single class (e.g. only background);
- exact duplicate images by content hash (BLAKE2b of the encoded bytes), within a
  split and across splits, with file names. A test (or validation) image that
  also occurs in another split is leakage and is flagged as such.

Memory: percentiles are exact, computed from histograms of the integer heights
and widths and of the aspect ratio rounded to 0.001, so memory grows with the
number of distinct sizes, not of images. Duplicate detection keeps one 16-byte
digest per image (about 100 bytes with Python's overhead): 1M images cost about
100 MB; nothing else grows with the split.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import math
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import PIL.Image
import tensorflow as tf

from components.data import dataset_info, schema
from components.data.masks import image_digest
from components.platform import files
from components.platform.contracts import DatasetInfo, Statistics

logger = logging.getLogger(__name__)

STATISTICS_FORMAT = Statistics.VERSION
STATISTICS_FILE = Statistics.FILE_NAME
STATISTICS_VIEW_FILE = "statistics.md"
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("min", 0.0),
    ("p5", 0.05),
    ("median", 0.5),
    ("p95", 0.95),
    ("max", 1.0),
)
ASPECT_RESOLUTION = 1000  # aspect ratios are counted in steps of 1/1000
SIZE_BINS_PER_OCTAVE = 4  # size histogram bins are 2**(1/4) (19%) wide in height and width
MAX_LISTED_FILES = 20  # file names listed per finding; counts are always complete
_LEAKY_SPLITS = ("test", "validation")  # an image here that is also elsewhere leaked


def percentiles(histogram: Mapping[float, int]) -> dict[str, float | None]:
    """min, p5, median, p95, max of a value → count histogram (nearest rank, exact)."""
    total = sum(histogram.values())
    if total == 0:
        return {name: None for name, _ in PERCENTILES}
    values = sorted(histogram)
    cumulative = np.cumsum([histogram[value] for value in values])
    result = {}
    for name, fraction in PERCENTILES:
        rank = max(1, math.ceil(fraction * total))  # nearest-rank definition
        result[name] = values[int(np.searchsorted(cumulative, rank))]
    return result


_ENCODINGS = {"PNG": "png", "JPEG": "jpeg", "GIF": "gif", "BMP": "bmp", "WEBP": "webp"}


def encoding_and_channels(image: bytes) -> tuple[str, int | None]:
    """The image's format and channel count, read from its header by Pillow (no pixel decode).

    Palette images count as 3 channels (4 with alpha), as they decode to colour; a
    JPEG's channels are its frame's components (1 grey, 3 colour, 4 CMYK).
    """
    try:
        with PIL.Image.open(io.BytesIO(image)) as opened:
            encoding, mode, bands = opened.format, opened.mode, opened.getbands()
    except (PIL.UnidentifiedImageError, OSError, ValueError):
        return "unknown", None
    if encoding not in _ENCODINGS:
        return "unknown", None
    return _ENCODINGS[encoding], {"P": 3, "PA": 4}.get(mode, len(bands))


def size_bin(height: int, width: int) -> str:
    """The size-histogram key of an image: quarter-octave bins of height and width."""
    return (
        f"{round(SIZE_BINS_PER_OCTAVE * math.log2(max(height, 1)))},"
        f"{round(SIZE_BINS_PER_OCTAVE * math.log2(max(width, 1)))}"
    )


class _SplitAccumulator:
    """Running totals of one split; memory bounded by distinct sizes (plus digests)."""

    def __init__(self, classes: Sequence[str], ignore: int):
        self.classes = list(classes)
        self.ignore = ignore
        self.num_records = 0
        self.image_bytes = 0
        self.mask_bytes = 0
        self.heights: collections.Counter[int] = collections.Counter()
        self.widths: collections.Counter[int] = collections.Counter()
        self.aspects: collections.Counter[int] = collections.Counter()
        self.size_bins: collections.Counter[str] = collections.Counter()
        self.channels: collections.Counter[str] = collections.Counter()
        self.encodings: collections.Counter[str] = collections.Counter()
        self.value_pixels = np.zeros(256, np.int64)
        self.value_images = np.zeros(256, np.int64)
        self.single_class: collections.Counter[str] = collections.Counter()
        self.single_class_files: list[str] = []
        self.empty_masks = 0

    def add_batch(
        self,
        images: Sequence[bytes],
        names: Sequence[str],
        mask_bytes: np.ndarray,
        heights: np.ndarray,
        widths: np.ndarray,
        value_counts: np.ndarray,
    ) -> None:
        """Adds records given as parallel arrays; ``value_counts`` is [N, 256] pixels per value."""
        self.num_records += len(images)
        self.mask_bytes += int(mask_bytes.sum())
        for image, height, width in zip(images, heights.tolist(), widths.tolist(), strict=True):
            self.image_bytes += len(image)
            encoding, channels = encoding_and_channels(image)
            self.encodings[encoding] += 1
            self.channels[str(channels) if channels is not None else "unknown"] += 1
            self.heights[height] += 1
            self.widths[width] += 1
            self.aspects[round(ASPECT_RESOLUTION * width / max(height, 1))] += 1
            self.size_bins[size_bin(height, width)] += 1
        self.value_pixels += value_counts.sum(axis=0)
        present = value_counts > 0
        self.value_images += present.sum(axis=0)
        present[:, self.ignore] = False
        held = present.sum(axis=1)
        self.empty_masks += int(np.sum(held == 0))
        rows = np.flatnonzero(held == 1).tolist()
        for row in rows:
            self.single_class[self._name(int(np.argmax(present[row])))] += 1
        # The first names in sorted order, not in reading order: the same list however the
        # records were read or merged (a Beam combine merges partial results in any order).
        self.single_class_files = sorted(self.single_class_files + [names[row] for row in rows])[
            :MAX_LISTED_FILES
        ]

    def merge(self, other: _SplitAccumulator) -> None:
        """Adds another accumulator's records (partial results of a parallel pass)."""
        self.num_records += other.num_records
        self.image_bytes += other.image_bytes
        self.mask_bytes += other.mask_bytes
        for mine, theirs in (
            (self.heights, other.heights),
            (self.widths, other.widths),
            (self.aspects, other.aspects),
            (self.size_bins, other.size_bins),
            (self.channels, other.channels),
            (self.encodings, other.encodings),
            (self.single_class, other.single_class),
        ):
            mine.update(theirs)
        self.value_pixels += other.value_pixels
        self.value_images += other.value_images
        self.single_class_files = sorted(self.single_class_files + other.single_class_files)[
            :MAX_LISTED_FILES
        ]
        self.empty_masks += other.empty_masks

    def _name(self, value: int) -> str:
        return self.classes[value] if value < len(self.classes) else f"value {value}"

    def result(self) -> dict[str, Any]:
        num_classes = len(self.classes)
        class_pixels = self.value_pixels[:num_classes]
        counted = int(class_pixels.sum())
        unknown = {
            str(value): int(self.value_pixels[value])
            for value in np.flatnonzero(self.value_pixels)
            if value >= num_classes and value != self.ignore
        }
        aspects = {value / ASPECT_RESOLUTION: count for value, count in self.aspects.items()}
        return {
            "num_records": self.num_records,
            "bytes": {
                "images": self.image_bytes,
                "masks": self.mask_bytes,
                "mean_image": self.image_bytes / self.num_records if self.num_records else None,
            },
            "height": percentiles(self.heights),
            "width": percentiles(self.widths),
            "aspect_ratio": percentiles(aspects),
            "size_histogram": dict(sorted(self.size_bins.items())),
            "channels": dict(sorted(self.channels.items())),
            "encodings": dict(sorted(self.encodings.items())),
            "class_pixels": {
                name: int(count) for name, count in zip(self.classes, class_pixels, strict=True)
            },
            "class_frequency": {
                name: (int(count) / counted if counted else 0.0)
                for name, count in zip(self.classes, class_pixels, strict=True)
            },
            "class_images": {
                name: int(count)
                for name, count in zip(self.classes, self.value_images[:num_classes], strict=True)
            },
            "ignored_pixels": int(self.value_pixels[self.ignore]),
            "unknown_values": unknown,
            "single_class_masks": {
                "count": sum(self.single_class.values()),
                "fraction": (
                    sum(self.single_class.values()) / self.num_records if self.num_records else 0.0
                ),
                "by_class": dict(sorted(self.single_class.items())),
                "files": list(self.single_class_files),
            },
            "empty_masks": self.empty_masks,
        }


BATCH_SIZE = 64


class StatisticsCollector:
    """Statistics gathered record by record, in each split's record order.

    Ingest feeds it as it writes, so the statistics cost no second read of the data;
    ``compute_statistics`` feeds it from the shards of a dataset written without them.
    Both give the same result for the same records.
    """

    def __init__(self, classes: Sequence[str], ignore: int, splits: Iterable[str]):
        self.classes = list(classes)
        self.ignore = ignore
        self.accumulators = {split: _SplitAccumulator(self.classes, ignore) for split in splits}
        self._pending: dict[str, list[tuple]] = {split: [] for split in self.accumulators}
        # digest → (split, file name), or a list of them once the image is seen again.
        self._seen: dict[bytes, list[tuple[str, str]] | tuple[str, str]] = {}

    def add(
        self,
        split: str,
        image: bytes,
        file_name: str,
        *,
        mask_size: int,
        height: int,
        width: int,
        value_counts: np.ndarray,
        digest: bytes | None = None,
    ) -> None:
        """One record; ``value_counts`` is [256] pixels per stored mask value."""
        _remember(self._seen, digest or image_digest(image), split, file_name)
        pending = self._pending[split]
        pending.append((image, file_name, mask_size, height, width, value_counts))
        if len(pending) >= BATCH_SIZE:
            self._flush(split)

    def add_batch(
        self,
        split: str,
        images: Sequence[bytes],
        names: Sequence[str],
        mask_sizes: np.ndarray,
        heights: np.ndarray,
        widths: np.ndarray,
        value_counts: np.ndarray,
    ) -> None:
        """Records given as parallel arrays; ``value_counts`` is [N, 256]."""
        self._flush(split)
        for image, name in zip(images, names, strict=True):
            _remember(self._seen, image_digest(image), split, name)
        self.accumulators[split].add_batch(images, names, mask_sizes, heights, widths, value_counts)

    def _flush(self, split: str) -> None:
        pending = self._pending[split]
        if not pending:
            return
        images, names, mask_sizes, heights, widths, counts = zip(*pending, strict=True)
        self.accumulators[split].add_batch(
            list(images),
            list(names),
            np.asarray(mask_sizes, np.int64),
            np.asarray(heights, np.int64),
            np.asarray(widths, np.int64),
            np.stack(counts),
        )
        pending.clear()

    def merge(self, other: StatisticsCollector) -> StatisticsCollector:
        """Adds another collector's records, as if they had been added here; returns self."""
        for split in other.accumulators:
            other._flush(split)
        for split, accumulator in other.accumulators.items():
            self._flush(split)
            self.accumulators[split].merge(accumulator)
        for digest, places in other._seen.items():
            for split, file_name in [places] if isinstance(places, tuple) else places:
                _remember(self._seen, digest, split, file_name)
        return self

    def num_records(self) -> int:
        return sum(accumulator.num_records for accumulator in self.accumulators.values()) + sum(
            len(pending) for pending in self._pending.values()
        )

    def result(self, info: DatasetInfo | Mapping[str, Any]) -> dict[str, Any]:
        """The statistics record, given the dataset.json of the records added."""
        return complete_result(self.partial_result(), info)

    def partial_result(self) -> dict[str, Any]:
        """The record without what only dataset.json knows (skips, fingerprint); plain JSON.

        What a Beam worker hands to its launcher, which completes it (``complete_result``).
        """
        results: dict[str, Any] = {}
        for split, accumulator in self.accumulators.items():
            self._flush(split)
            results[split] = accumulator.result()
        return {
            "statistics_format": STATISTICS_FORMAT,
            "classes": self.classes,
            "ignore_id": self.ignore,
            "fingerprint": None,
            "splits": results,
            "duplicates": _duplicates(self._seen),
        }


def complete_result(
    partial: Mapping[str, Any], info: DatasetInfo | Mapping[str, Any]
) -> dict[str, Any]:
    """A ``partial_result`` with the skips and fingerprint of its dataset.json."""
    if not isinstance(info, DatasetInfo):
        info = DatasetInfo.from_dict(dict(info))
    record = {**partial, "fingerprint": info.to_dict().get("fingerprint")}
    record["splits"] = {
        split: {**entry, "num_skipped": info.splits[split].num_skipped}
        for split, entry in partial["splits"].items()
    }
    return record


_STATISTICS_SPEC = {key: schema.FEATURE_SPEC[key] for key in ("image", "mask", "file_name")}


def _record_stream(paths: Sequence[str], split_ends: Sequence[int]) -> tf.data.Dataset:
    """Batches of (split id, image bytes, file name, mask PNG size, height, width, counts).

    ``counts`` is [batch, 256]: pixels per mask value. One pipeline reads every
    split's shards in order (one function to trace, not one per split); record
    ``i`` belongs to the first split whose cumulative record count ``split_ends``
    exceeds ``i``. Parsing and mask decoding run in parallel, order is kept so
    lists of file names are the same in every run. A batch may span two splits.
    """
    ends = tf.constant(list(split_ends), tf.int64)

    def summarise(index: tf.Tensor, serialized: tf.Tensor):
        parsed = tf.io.parse_single_example(serialized, _STATISTICS_SPEC)
        mask = tf.io.decode_png(parsed["mask"], channels=1)
        counts = tf.math.bincount(
            tf.cast(tf.reshape(mask, [-1]), tf.int32), minlength=256, maxlength=256, dtype=tf.int64
        )
        shape = tf.shape(mask, out_type=tf.int64)
        split_id = tf.searchsorted(ends, tf.reshape(index, [1]), side="right")[0]
        return (
            split_id,
            parsed["image"],
            parsed["file_name"],
            tf.strings.length(parsed["mask"]),
            shape[0],
            shape[1],
            counts,
        )

    return (
        tf.data.TFRecordDataset(list(paths))
        .enumerate()
        .map(summarise, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(BATCH_SIZE)
        .prefetch(2)
    )


def compute_statistics(dataset_dir: str, splits: Iterable[str] | None = None) -> dict[str, Any]:
    """One streaming pass over each split's records → the statistics record.

    Args:
        dataset_dir: a Dataset directory written by ingest (dataset.json + shards).
        splits: which splits; default every split dataset.json lists.

    Returns:
        ``{statistics_format, classes, ignore_id, fingerprint, splits: {split: {...}},
        duplicates: {within: {split: [...]}, across: [...], num_*}}``; see the module
        docstring for what each split entry holds.
    """
    info = dataset_info.load_dataset_info(dataset_dir)
    wanted = sorted(info.splits) if splits is None else list(splits)
    collector = StatisticsCollector(info.classes, info.ignore_id, wanted)
    split_paths = {}
    for split in wanted:
        entry = info.splits.get(split)
        if entry is None:
            raise dataset_info.DatasetMismatchError(
                f"{dataset_info.info_path(dataset_dir)}: no split {split!r}; "
                f"it has {sorted(info.splits)}"
            )
        split_paths[split] = (
            dataset_info.shard_paths(dataset_dir, split, info) if entry.shards else []
        )
    paths = [path for split in wanted for path in split_paths[split]]
    expected = [info.splits[split].num_records if split_paths[split] else 0 for split in wanted]
    if paths:
        try:
            for batch in _record_stream(paths, np.cumsum(expected)).as_numpy_iterator():
                ids, images, raw_names, mask_sizes, heights, widths, counts = batch
                names = [name.decode("utf-8", "replace") for name in raw_names]
                if ids.max() >= len(wanted):
                    raise dataset_info.ShardIntegrityError(
                        f"{dataset_dir}: the shards of splits {wanted} hold more records than "
                        f"dataset.json lists ({expected}); re-run ingest"
                    )
                for index in np.unique(ids).tolist():
                    rows = np.flatnonzero(ids == index)
                    collector.add_batch(
                        wanted[index],
                        [images[row] for row in rows],
                        [names[row] for row in rows],
                        mask_sizes[rows],
                        heights[rows],
                        widths[rows],
                        counts[rows],
                    )
        except tf.errors.DataLossError as error:
            for split in wanted:
                if dataset_info.find_damaged_shards(split_paths[split]):
                    raise dataset_info.damaged_shard_error(
                        dataset_dir, split, split_paths[split], error
                    ) from None
            raise
    # Records are assigned to splits by dataset.json's counts, so their sum must hold.
    read = collector.num_records()
    if read != sum(expected):
        raise dataset_info.ShardIntegrityError(
            f"{dataset_dir}: the shards of splits {wanted} hold {read} records, but "
            f"dataset.json lists {sum(expected)} ({expected}); re-run ingest"
        )
    return collector.result(info)


def dataset_statistics(dataset_dir: str) -> dict[str, Any]:
    """The statistics ingest stored with the dataset, or computed from its shards.

    The stored ones are used only when they describe these records (same content
    fingerprint as dataset.json); a dataset written without them, or by an older
    ingest, is read once here.
    """
    info = dataset_info.load_dataset_info(dataset_dir)
    path = posixpath.join(dataset_dir, STATISTICS_FILE)
    if files.exists(path):
        try:
            stored = read_statistics(path)
        except ValueError as error:  # damaged, or another format
            stored = {}
            logger.warning("%s; reading the records again", error)
        if (
            stored.get("fingerprint") is not None
            and stored.get("fingerprint") == info.to_dict().get("fingerprint")
            and sorted(stored.get("splits", {})) == sorted(info.splits)
        ):
            return stored
        if stored:
            logger.warning("%s does not match dataset.json; reading the records again", path)
    return compute_statistics(dataset_dir)


def _remember(seen: dict, digest: bytes, split: str, file_name: str) -> None:
    where = (split, file_name)
    earlier = seen.get(digest)
    if earlier is None:
        seen[digest] = where
    elif isinstance(earlier, tuple):
        seen[digest] = [earlier, where]
    else:
        earlier.append(where)


def _duplicates(seen: Mapping[bytes, Any]) -> dict[str, Any]:
    """Groups of identical images: within one split, and across splits (leakage)."""
    within: dict[str, list[list[str]]] = collections.defaultdict(list)
    within_counts: collections.Counter[str] = collections.Counter()
    across = []
    leaked = 0
    for digest, places in seen.items():
        if isinstance(places, tuple):
            continue
        by_split: dict[str, list[str]] = collections.defaultdict(list)
        for split, file_name in places:
            by_split[split].append(file_name)
        for split, names in by_split.items():
            if len(names) > 1:
                within_counts[split] += len(names) - 1  # extra copies
                within[split].append(sorted(names))
        if len(by_split) > 1:
            leak = any(split in _LEAKY_SPLITS for split in by_split)
            leaked += leak
            across.append(
                {
                    "digest": digest.hex(),
                    "files": {split: sorted(names) for split, names in sorted(by_split.items())},
                    "leakage": leak,
                }
            )
    across.sort(key=lambda group: json.dumps(group["files"], sort_keys=True))
    return {
        "method": "BLAKE2b-128 of the encoded image bytes (exact duplicates only)",
        # Sorted before the cut, so the listed groups do not depend on the reading order.
        "within": {
            split: sorted(groups)[:MAX_LISTED_FILES] for split, groups in sorted(within.items())
        },
        "num_within": dict(sorted(within_counts.items())),
        "across": across[:MAX_LISTED_FILES],
        "num_across": len(across),
        "num_leaked": leaked,
    }


def write_statistics(statistics: Mapping[str, Any], path: str) -> None:
    """Writes a statistics record through its contract (checked, atomic, local or gs://)."""
    Statistics.from_dict(dict(statistics), path).write(path)


def read_statistics(path: str) -> dict[str, Any]:
    """Reads a statistics record; a damaged file or another format is a ValueError naming it."""
    return Statistics.read(path).to_dict()


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(
    statistics: Mapping[str, Any], verdicts: Mapping[str, Any] | None = None
) -> str:
    """The statistics (and check verdicts) as Markdown, which the KFP UI renders."""
    splits = statistics["splits"]
    names = list(splits)
    lines = ["# Data statistics", ""]
    if verdicts is not None:
        lines += render_verdicts_markdown(verdicts)
    lines += ["## Splits", ""]
    rows = [
        ("records", *(splits[s]["num_records"] for s in names)),
        ("skipped at ingest", *(splits[s]["num_skipped"] for s in names)),
        ("image MB", *(splits[s]["bytes"]["images"] / 1e6 for s in names)),
        ("mask MB", *(splits[s]["bytes"]["masks"] / 1e6 for s in names)),
        ("encodings", *(_counts(splits[s]["encodings"]) for s in names)),
        ("channels", *(_counts(splits[s]["channels"]) for s in names)),
        ("single-class masks", *(splits[s]["single_class_masks"]["count"] for s in names)),
        ("ignored pixels", *(splits[s]["ignored_pixels"] for s in names)),
    ]
    lines += _table(["", *names], rows)
    lines += ["## Image size (min / p5 / median / p95 / max)", ""]
    size_rows = []
    for split in names:
        for key in ("height", "width", "aspect_ratio"):
            size_rows.append((split, key, *splits[split][key].values()))
    lines += _table(["split", "", *(name for name, _ in PERCENTILES)], size_rows)
    lines += ["## Classes (pixel frequency; images holding the class)", ""]
    class_rows = [
        (
            name,
            *(
                f"{splits[s]['class_frequency'][name]:.3f}; {splits[s]['class_images'][name]:,}"
                for s in names
            ),
        )
        for name in statistics["classes"]
    ]
    lines += _table(["class", *names], class_rows)
    duplicates = statistics["duplicates"]
    lines += ["## Duplicates", ""]
    lines.append(
        f"Across splits: {duplicates['num_across']} images "
        f"({duplicates['num_leaked']} in test or validation: leakage). "
        f"Within splits: {_counts(duplicates['num_within']) or 'none'}."
    )
    lines.append("")
    for group in duplicates["across"]:
        where = "; ".join(f"{split}: {', '.join(files)}" for split, files in group["files"].items())
        lines.append(f"- {'**leakage** ' if group['leakage'] else ''}{where}")
    return "\n".join(lines).rstrip() + "\n"


def render_verdicts_markdown(verdicts: Mapping[str, Any]) -> list[str]:
    """The check verdicts as Markdown lines (a heading, a sentence and a table)."""
    lines = ["## Checks", ""]
    compared = verdicts.get("compared_with")
    lines.append(
        f"Compared with production statistics from {compared}."
        if compared
        else "No production statistics: absolute rules only."
    )
    lines.append("")
    rows = [
        (
            check["name"],
            check["status"],
            check["severity"],
            check["figure"],
            check["threshold"],
            check["message"],
        )
        for check in verdicts["checks"]
    ]
    return lines + _table(["check", "result", "severity", "figure", "threshold", "detail"], rows)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value:,}" for key, value in counts.items())
