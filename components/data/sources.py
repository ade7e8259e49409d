"""Where ingest's examples come from: a TFDS dataset, a folder, or a manifest.

Every source yields ``SourceExample`` s (key, file name, the split the source
gives it if any, image and mask bytes or where to read them) in a stable
order, so ingest treats them alike and nothing after ingest knows the source.

- ``tfds``: any TFDS dataset with the configured image and mask features
  (``oxford_iiit_pet`` downloaded, built from the official archives in
  ``manual_dir`` or already prepared in ``data_dir``; the project's own
  ``synthetic_pets`` generated locally). TFDS's GCS shortcuts stay off unless
  ``try_gcs`` is set: its prepared GCS copy can be ArrayRecord, which
  ``as_dataset`` cannot read.
- ``folder``: ``images/<stem>.<ext>`` paired with ``masks/<stem>.png`` under a
  local folder or a gs:// prefix, optionally inside ``train/``,
  ``validation/``, ``test/`` sub-folders. Read afresh on every run: there is no
  prepared copy that could go stale. A stem in a sub-folder
  (``images/<group>/<name>``) puts the example in evaluation's slice ``<group>``.
- ``manifest``: a CSV or JSON Lines file with ``image``, ``mask`` and an
  optional ``split`` and ``slice`` per row; paths are local, gs://, or relative
  to the file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import posixpath
from collections.abc import Iterator

import tensorflow_datasets as tfds

from components.data import splits
from components.platform import files, storage
from components.platform.config import SYNTHETIC_DATASET, DataConfig

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS: tuple[str, ...] = ("image", "mask")


class DatasetNotPreparedError(RuntimeError):
    """The dataset is not in data_dir and the config does not allow preparing it."""


class SourceError(ValueError):
    """The source as a whole cannot be read (missing features, folder or columns)."""


class EmptySplitError(SourceError):
    """A split has no usable records."""


@dataclasses.dataclass
class SourceExample:
    """One example as the source holds it; bytes are read lazily for files.

    ``key`` places it in a split when the source gives none and is part of its
    fingerprint: a folder's path relative to the images folder without its
    extension, a manifest's image entry, or TFDS's ``file_name``.
    ``problem`` marks an example that is bad before reading (an image without a
    mask); ingest treats it as a bad record.
    """

    key: str
    file_name: str
    split: str | None
    mask_name: str
    image: bytes | None = None
    mask: bytes | None = None
    image_uri: str | None = None
    mask_uri: str | None = None
    label: int = -1
    species: int = -1
    problem: str | None = None
    # The group evaluation reports it in: the first folder under images/ or the manifest's
    # `slice` column; '' = none.
    slice: str = ""


def describe(data_config: DataConfig) -> str:
    """The source in a few words, for messages."""
    if data_config.source == "tfds":
        return f"TFDS {data_config.dataset}"
    return f"{data_config.source} {data_config.path}"


def examples(data_config: DataConfig) -> tuple[dict, Iterator[SourceExample]]:
    """The source's description for dataset.json and a stream of its examples.

    The description has ``type``, ``splits`` (the split names the source itself
    has; others are carved) and what identifies the source.
    """
    if data_config.source == "tfds":
        return _tfds_examples(data_config)
    if data_config.source == "folder":
        return _folder_examples(data_config)
    return _manifest_examples(data_config)


# --- files: local paths and gs:// ---------------------------------------------------------


def _is_gcs(uri: str) -> bool:
    return uri.startswith(storage.GCS_SCHEME)


def list_files(root: str) -> list[str]:
    """Every file under root (recursively), as sorted POSIX paths relative to root."""
    if not _is_gcs(root) and not os.path.isdir(root):
        raise SourceError(f"data.path {root!r} is not a folder")
    return files.list_files(root)


def _join(root: str, relative: str) -> str:
    return f"{root.rstrip('/')}/{relative}" if _is_gcs(root) else os.path.join(root, relative)


# --- folder ---------------------------------------------------------------------------------


def _split_extension(path: str) -> tuple[str, str]:
    stem, dot, extension = path.rpartition(".")
    if not dot or "/" in extension:
        return path, ""
    return stem, extension.lower()


def _folder_examples(data_config: DataConfig) -> tuple[dict, Iterator[SourceExample]]:
    root = data_config.path.rstrip("/") if _is_gcs(data_config.path) else data_config.path
    listed = list_files(root)
    images, masks = data_config.images_folder, data_config.masks_folder
    layouts = {
        split: f"{split}/"
        for split in splits.SPLITS
        if any(path.startswith(f"{split}/{images}/") for path in listed)
    }
    flat = any(path.startswith(f"{images}/") for path in listed)
    if flat and layouts:
        raise SourceError(
            f"{root}: has both {images}/ and split folders {sorted(layouts)}; use one layout"
        )
    if not flat and not layouts:
        raise SourceError(
            f"{root}: no {images}/ folder (nor train/{images}/, validation/{images}/, "
            f"test/{images}/); found {len(listed)} files. Set data.images_folder if it is "
            "named otherwise"
        )
    groups = layouts if layouts else {None: ""}
    pairs: list[tuple[str | None, str, dict, dict]] = []
    ignored = 0
    for split, prefix in groups.items():
        image_files: dict[str, list[str]] = {}
        mask_files: dict[str, list[str]] = {}
        for path in listed:
            for folder, extensions, found in (
                (images, data_config.image_extensions, image_files),
                (masks, data_config.mask_extensions, mask_files),
            ):
                head = f"{prefix}{folder}/"
                if path.startswith(head):
                    stem, extension = _split_extension(path[len(head) :])
                    if extension in extensions:
                        found.setdefault(stem, []).append(path)
                    else:
                        ignored += 1
        pairs.append((split, prefix, image_files, mask_files))
    description = {
        "type": "folder",
        "path": data_config.path,
        "layout": "split folders" if layouts else "flat",
        "splits": sorted(split for split in groups if split is not None),
        "images_folder": images,
        "masks_folder": masks,
        "ignored_files": ignored,
    }

    def generate() -> Iterator[SourceExample]:
        for split, prefix, image_files, mask_files in pairs:
            for stem in sorted(set(image_files) | set(mask_files)):
                image_paths = image_files.get(stem, [])
                mask_paths = mask_files.get(stem, [])
                file_name = image_paths[0] if image_paths else mask_paths[0]
                problem = None
                if len(image_paths) > 1:
                    problem = f"several images share the stem {stem!r}: {image_paths}"
                elif len(mask_paths) > 1:
                    problem = f"several masks share the stem {stem!r}: {mask_paths}"
                elif not mask_paths:
                    problem = (
                        f"image has no mask (looked for {prefix}{masks}/{stem}."
                        f"{'|'.join(data_config.mask_extensions)})"
                    )
                elif not image_paths:
                    problem = (
                        f"mask has no image (looked for {prefix}{images}/{stem}."
                        f"{'|'.join(data_config.image_extensions)})"
                    )
                yield SourceExample(
                    key=stem,
                    file_name=file_name,
                    split=split,
                    mask_name=mask_paths[0] if mask_paths else "",
                    image_uri=_join(root, image_paths[0]) if image_paths else None,
                    mask_uri=_join(root, mask_paths[0]) if mask_paths else None,
                    problem=problem,
                    slice=stem.split("/", 1)[0] if "/" in stem else "",
                )

    return description, generate()


# --- manifest -------------------------------------------------------------------------------


def _manifest_rows(path: str, text: str) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a CSV or JSON Lines manifest."""
    if path.lower().endswith((".jsonl", ".ndjson", ".json")):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise SourceError(f"{path}: line {number} is not JSON ({error})") from None
            if not isinstance(row, dict):
                raise SourceError(f"{path}: line {number} is not a JSON object")
            yield number, row
        return
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in MANIFEST_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise SourceError(
            f"{path}: no column {missing}; it has {reader.fieldnames}. A manifest is a CSV "
            "(or JSON Lines) with columns image, mask and optionally split"
        )
    for row in reader:
        yield reader.line_num, row


def _resolve(base: str, entry: str) -> str:
    if _is_gcs(entry) or os.path.isabs(entry):
        return entry
    return _join(base, entry)


def _manifest_examples(data_config: DataConfig) -> tuple[dict, Iterator[SourceExample]]:
    path = data_config.path
    try:
        text = files.read_bytes(path).decode("utf-8-sig")
    except FileNotFoundError:
        raise SourceError(f"manifest {path} does not exist") from None
    base = path.rsplit("/", 1)[0] if _is_gcs(path) else os.path.dirname(os.path.abspath(path))
    rows = []
    for number, row in _manifest_rows(path, text):
        image, mask = (str(row.get(column) or "").strip() for column in MANIFEST_COLUMNS)
        if not image or not mask:
            raise SourceError(f"{path}: line {number} lacks an image or a mask entry: {row}")
        split = str(row.get("split") or "").strip() or None
        if split is not None and split not in splits.SPLITS:
            raise SourceError(
                f"{path}: line {number} has split {split!r}; use one of "
                f"{list(splits.SPLITS)} or leave it empty"
            )
        rows.append((image, mask, split, str(row.get("slice") or "").strip()))
    if not rows:
        raise SourceError(f"manifest {path} lists no examples")
    description = {
        "type": "manifest",
        "path": path,
        "splits": sorted({row[2] for row in rows if row[2] is not None}),
        "num_rows": len(rows),
    }

    def generate() -> Iterator[SourceExample]:
        for image, mask, split, slice_name in rows:
            yield SourceExample(
                key=_split_extension(image)[0],
                file_name=image,
                split=split,
                mask_name=mask,
                image_uri=_resolve(base, image),
                mask_uri=_resolve(base, mask),
                slice=slice_name,
            )

    return description, generate()


# --- TFDS -----------------------------------------------------------------------------------


def tfds_examples(
    builder, data_config: DataConfig, split: str, selection: str | None = None
) -> Iterator[SourceExample]:
    """A TFDS split (or ``selection`` of it, e.g. ``train[3shard]``), images left encoded.

    Shard by shard, each in record order (not TFDS's default interleaving of 16 files): the
    order the Beam engine, reading one shard per element, reproduces.
    """
    has_file_name = "file_name" in builder.info.features
    dataset = builder.as_dataset(
        split=selection or split,
        shuffle_files=False,
        decoders={
            data_config.image_feature: tfds.decode.SkipDecoding(),
            data_config.mask_feature: tfds.decode.SkipDecoding(),
        },
        read_config=tfds.ReadConfig(add_tfds_id=not has_file_name, interleave_cycle_length=1),
    )
    for example in dataset.as_numpy_iterator():
        key = (example["file_name"] if has_file_name else example["tfds_id"]).decode("utf-8")
        yield SourceExample(
            key=key,
            file_name=key,
            split=split,
            mask_name=f"{data_config.mask_feature} of {key}",
            image=example[data_config.image_feature],
            mask=example[data_config.mask_feature],
            label=_int_feature(example, "label"),
            species=_int_feature(example, "species"),
        )


def _int_feature(example: dict, name: str) -> int:
    value = example.get(name, -1)
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _tfds_examples(data_config: DataConfig) -> tuple[dict, Iterator[SourceExample]]:
    builder = prepare(data_config)
    features = builder.info.features
    wanted = {"data.image_feature": data_config.image_feature}
    wanted["data.mask_feature"] = data_config.mask_feature
    missing = {field: name for field, name in wanted.items() if name not in features}
    if missing:
        raise SourceError(
            f"TFDS {builder.name} {builder.version} has no feature "
            + ", ".join(f"{name!r} ({field})" for field, name in missing.items())
            + f"; its features are {sorted(features.keys())}"
        )
    for field, name in wanted.items():
        if not isinstance(features[name], tfds.features.Image):
            raise SourceError(
                f"TFDS {builder.name}: feature {name!r} ({field}) is a "
                f"{type(features[name]).__name__}, not an image"
            )
    for split in sorted(builder.info.splits):
        # Checked before anything is written; TFDS itself refuses to read an empty split
        # with a message that names neither split nor dataset.
        if split in splits.SPLITS and builder.info.splits[split].num_examples == 0:
            raise EmptySplitError(
                f"split {split!r} has no usable records: the source {builder.name} "
                f"{builder.version} ({builder.data_dir}) holds none"
            )
    if splits.TRAIN not in builder.info.splits:
        raise SourceError(
            f"TFDS {builder.name} has no 'train' split; it has {sorted(builder.info.splits)}"
        )
    source_splits = [split for split in splits.SPLITS if split in builder.info.splits]
    description = {
        "type": "tfds",
        "name": builder.name,
        "version": str(builder.version),
        "config": builder.builder_config.name if builder.builder_config else None,
        "data_dir": str(builder.data_dir_root),
        "manual_dir": data_config.manual_dir,
        "image_feature": data_config.image_feature,
        "mask_feature": data_config.mask_feature,
        "splits": source_splits,
        "ignored_splits": sorted(set(builder.info.splits) - set(source_splits)),
        "num_examples": {split: builder.info.splits[split].num_examples for split in source_splits},
    }

    def generate() -> Iterator[SourceExample]:
        for split in source_splits:
            yield from tfds_examples(builder, data_config, split)

    return description, generate()


def get_builder(data_config: DataConfig) -> tfds.core.DatasetBuilder:
    """The TFDS builder the config names; nothing is downloaded or generated yet."""
    if data_config.dataset == SYNTHETIC_DATASET:
        from components.data import synthetic_pets  # Registers the builder with TFDS.

        config = synthetic_pets.make_config(
            train_size=data_config.synthetic_train_size,
            test_size=data_config.synthetic_test_size,
            image_size=data_config.synthetic_image_size,
            seed=data_config.synthetic_seed,
        )
        return synthetic_pets.SyntheticPets(
            config=config, version=data_config.version, data_dir=data_config.data_dir
        )
    name = data_config.dataset
    if data_config.version:
        name = f"{name}:{data_config.version}"
    return tfds.builder(name, data_dir=data_config.data_dir, try_gcs=data_config.try_gcs)


def _missing_manual_files(builder: tfds.core.DatasetBuilder, manual_dir: str) -> list[str]:
    """Archive names TFDS will look for in manual_dir that are not there."""
    url_infos = builder.url_infos or {}
    names = sorted({info.filename for info in url_infos.values() if info.filename})
    return [name for name in names if not files.exists(posixpath.join(manual_dir, name))]


def prepare(data_config: DataConfig) -> tfds.core.DatasetBuilder:
    """Returns a builder whose data is prepared in data_dir, preparing it if allowed.

    Preparing is allowed when ``download`` is on, or when ``manual_dir`` is set
    (an offline build from local archives; every archive must be there, so
    TFDS never falls back to the network). Checksums of manual archives are
    verified by TFDS as usual.

    Raises:
        DatasetNotPreparedError: the data is not prepared and may not be; the
            message names the dataset, the directory and what to set.
        FileNotFoundError: ``manual_dir`` lacks an archive the builder needs.
    """
    builder = get_builder(data_config)
    where = f"{data_config.dataset} {builder.version} ({builder.data_dir})"
    if builder.is_prepared():
        logger.info("Using prepared %s", where)
        return builder
    if data_config.manual_dir:
        missing = _missing_manual_files(builder, data_config.manual_dir)
        if missing:
            raise FileNotFoundError(
                f"{data_config.dataset}: manual_dir {data_config.manual_dir!r} lacks {missing}; "
                "put the official archives there (names as listed)"
            )
    elif not data_config.download:
        raise DatasetNotPreparedError(
            f"dataset {data_config.dataset!r} is not prepared in {builder.data_dir} and "
            "download is off; set data.download=true, point data.data_dir at a prepared "
            "copy, or (oxford_iiit_pet) set data.manual_dir to a folder with the archives"
        )
    logger.info(
        "Preparing %s (manual_dir=%s, try_gcs=%s)",
        where,
        data_config.manual_dir,
        data_config.try_gcs,
    )
    download_config = tfds.download.DownloadConfig(
        manual_dir=data_config.manual_dir, try_download_gcs=data_config.try_gcs
    )
    builder.download_and_prepare(download_config=download_config)
    return builder
