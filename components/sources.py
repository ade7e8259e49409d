"""Turning a DataConfig into a prepared TFDS builder, offline unless asked otherwise.

Two kinds of source share one path: ``oxford_iiit_pet`` (downloaded, or built
from the official archives in ``manual_dir``, or already prepared in
``data_dir``) and the project's own ``synthetic_pets`` (generated locally).
TFDS's GCS shortcuts stay off unless ``try_gcs`` is set, because its prepared
GCS copy can be ArrayRecord, which ``as_dataset`` cannot read.
"""

from __future__ import annotations

import logging
import posixpath

import tensorflow as tf
import tensorflow_datasets as tfds

from components.config import DataConfig

logger = logging.getLogger(__name__)

SYNTHETIC_DATASET = "synthetic_pets"


class DatasetNotPreparedError(RuntimeError):
    """The dataset is not in data_dir and the config does not allow preparing it."""


def get_builder(data_config: DataConfig) -> tfds.core.DatasetBuilder:
    """The TFDS builder the config names; nothing is downloaded or generated yet."""
    if data_config.dataset == SYNTHETIC_DATASET:
        from components import synthetic_pets  # Registers the builder with TFDS.

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
    return [name for name in names if not tf.io.gfile.exists(posixpath.join(manual_dir, name))]


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
