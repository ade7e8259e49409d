"""Scheduled retraining: has the data changed since production's model was trained?

A scheduled run re-ingests the source. When the dataset's content fingerprint
equals the one the production model (the push destination's ``LATEST``) was
trained on, training again would learn nothing new, so the pipeline skips
train, evaluate and push and says so. Any difference (one added image, one
changed mask pixel, a changed class table or split rule) trains.
"""

from __future__ import annotations

import logging

from components.platform.config import PushConfig
from components.platform.contracts import DataChange, StepInputs
from components.publish.push import latest_manifest

logger = logging.getLogger(__name__)


class SkipInputs(StepInputs):
    """The push destination, whose LATEST is production ('' = none); ingest's Dataset."""

    push: PushConfig
    dataset_dir: str


def run(inputs: SkipInputs) -> DataChange:
    """The skip_unchanged step: skip only when production was trained on this very data."""
    from components.data import dataset_info  # here: it imports TensorFlow

    fingerprint = dataset_info.load_dataset_info(inputs.dataset_dir).dataset_fingerprint
    outcome = _decide(inputs.push.destination, fingerprint)
    logger.info("%s", f"Training: {outcome.reason}" if outcome.train else outcome.output)
    return outcome


def _decide(destination: str, fingerprint: str) -> DataChange:

    def train(reason: str, version: str = "") -> DataChange:
        return DataChange(
            train=True, reason=reason, fingerprint=fingerprint, production_version=version
        )

    if not destination:
        return train("no push destination, so no production model to compare with")
    latest = latest_manifest(destination)
    if latest is None:
        return train(f"{destination} holds no model yet")
    version, manifest = latest
    trained_on = manifest.dataset_fingerprint  # '' when the model predates fingerprints
    if not trained_on:
        return train(f"production {version} records no data fingerprint", version)
    if trained_on != fingerprint:
        return train(
            f"data changed (fingerprint {fingerprint[:12]}; production {version} was trained "
            f"on {trained_on[:12]})",
            version,
        )
    return DataChange(
        train=False,
        reason=f"data unchanged since production {version} at {destination} was trained "
        f"(fingerprint {fingerprint}); train, evaluate and push skipped",
        fingerprint=fingerprint,
        production_version=version,
    )
