"""Scheduled retraining: has the data changed since production's model was trained?

A scheduled run re-ingests the source. When the dataset's content fingerprint
equals the one the production model (the push destination's ``LATEST``) was
trained on, training again would learn nothing new, so the pipeline skips
train, evaluate and push and says so. Any difference (one added image, one
changed mask pixel, a changed class table or split rule) trains.
"""

from __future__ import annotations

import logging
from typing import Any

from components.platform.config import PushConfig

logger = logging.getLogger(__name__)

TRAIN = "train"
SKIP_PREFIX = "skip"


def production_fingerprint(manifest: dict[str, Any]) -> str:
    """The data fingerprint a push manifest records ('' when the model predates them)."""
    for dataset in (
        manifest.get("dataset"),
        (manifest.get("model_metadata") or {}).get("dataset"),
    ):
        if isinstance(dataset, dict) and dataset.get("fingerprint"):
            return str(dataset["fingerprint"])
    return ""


def run(settings: PushConfig, dataset_dir: str) -> str:
    """The skip_unchanged step: 'train', or 'skip: <why>' when production saw this very data.

    Production is the LATEST of ``settings.destination`` ('' = none).
    """
    destination = settings.destination
    # Here, not at module level: the pipeline imports TRAIN when compiling, without TF.
    from components.data import dataset_info
    from components.publish.push import latest_manifest

    fingerprint = dataset_info.load_dataset_info(dataset_dir).dataset_fingerprint
    if not destination:
        logger.info("Training: no push destination, so no production model to compare with")
        return TRAIN
    latest = latest_manifest(destination)
    if latest is None:
        logger.info("Training: %s holds no model yet", destination)
        return TRAIN
    version, manifest = latest
    trained_on = production_fingerprint(manifest)
    if not trained_on:
        logger.info("Training: production %s records no data fingerprint", version)
        return TRAIN
    if trained_on != fingerprint:
        logger.info(
            "Training: data changed (fingerprint %s; production %s was trained on %s)",
            fingerprint[:12],
            version,
            trained_on[:12],
        )
        return TRAIN
    reason = (
        f"{SKIP_PREFIX}: data unchanged since production {version} at {destination} was "
        f"trained (fingerprint {fingerprint}); train, evaluate and push skipped"
    )
    logger.info("%s", reason)
    return reason
