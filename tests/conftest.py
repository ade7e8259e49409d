"""Shared fixtures: a quiet TensorFlow, the KFP local runner, tiny record sets."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDS_DISABLE_GCS", "1")

import pytest


@pytest.fixture
def kfp_local(tmp_path):
    """Runs components in this interpreter through kfp.local, failing the test on error."""
    from kfp import local

    pipeline_root = tmp_path / "pipeline_root"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        raise_on_error=True,
        pipeline_root=str(pipeline_root),
    )
    return pipeline_root


def pytest_collection_modifyitems(config, items):
    """Image tests last: .ci/run builds the images meanwhile, in the background."""
    items.sort(key=lambda item: item.get_closest_marker("docker") is not None)
