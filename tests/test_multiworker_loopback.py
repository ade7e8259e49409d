"""Two training workers on 127.0.0.1, each its own process with its own TF_CONFIG.

What a Vertex AI custom job of two replicas runs, on this machine's CPU: the same
train_model under MultiWorkerMirroredStrategy, each worker reading its own shard files.
Synthetic pets like the demo's (tests/recordsets), 32 px, a few steps per epoch, and the
U-Net's decoder on a five-convolution encoder (``loopback.small_encoder``) instead of
MobileNetV2, whose tracing alone cost each process over a minute; the multi-worker machinery
under test (strategy, sharding, chief-only writes, backups) is the same for any encoder.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import recordsets
import tensorflow as tf

from components.model import loopback, train
from components.model import model as model_lib
from components.platform.config import ModelConfig, TrainingConfig

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
WORKER_TIMEOUT = 150  # seconds for a job's workers; they take about 30 here

SIZE = 32
MODEL_CONFIG = ModelConfig(image_size=SIZE, encoder_weights="none")
PER_REPLICA_BATCH = 4
# Two workers against one with the same global batch and seed still differ in which
# examples share a batch and in their shuffles, so the figures are close, not equal:
# validation pixel accuracy within 0.1, on 8 validation images after 2 epochs.
ACCURACY_TOLERANCE = 0.1


def _training(**overrides) -> TrainingConfig:
    settings = {
        "epochs": 2,
        "batch_size": PER_REPLICA_BATCH,
        "learning_rate": 2e-3,
        "tensorboard_images": 2,
        "seed": 7,
    }
    return TrainingConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("loopback_data") / "dataset")
    recordsets.write_recordset(
        directory,
        {"train": 32, "validation": 8, "test": 4},
        height=40,
        width=40,
        shards_per_split=4,
    )
    return directory


def _job(tmp_path, dataset_dir, training, name="job", pause=0.0) -> loopback.LoopbackJob:
    arguments = loopback.worker_arguments(
        dataset_dir,
        str(tmp_path / "model"),
        str(tmp_path / "tensorboard"),
        MODEL_CONFIG,
        training,
        small_encoder=True,
        epoch_pause=pause,
    )
    return loopback.LoopbackJob(2, arguments, tmp_path / name)


def _event_files(log_dir):
    return sorted(tf.io.gfile.glob(os.path.join(log_dir, "*", "events.out.tfevents.*")))


def test_two_workers_write_one_model_close_to_one_worker_with_the_same_global_batch(
    tmp_path, dataset_dir, monkeypatch
):
    with _job(tmp_path, dataset_dir, _training()) as job:
        codes = job.wait(timeout=WORKER_TIMEOUT)
        assert codes == [0, 0], job.tail_logs()
        chief, other = job.results()
    assert chief["is_chief"] and not other["is_chief"]
    assert chief["epochs_run"] == other["epochs_run"] == [0, 1]
    # The metrics are reduced across workers: both report the same figures.
    for name, value in chief["metrics"].items():
        assert other["metrics"][name] == pytest.approx(value, rel=1e-5), name

    # Exactly one Model: the chief's, in the artifact directory; the other worker saved
    # to scratch, which it removed.
    model, metadata = model_lib.load_model_dir(str(tmp_path / "model"))
    assert model.output_shape == (None, SIZE, SIZE, 3)
    assert metadata.metrics == pytest.approx(chief["metrics"])
    runtime = metadata.runtime
    assert runtime["strategy"] == "multi_worker_mirrored"
    assert (runtime["num_workers"], runtime["per_replica_batch_size"]) == (2, PER_REPLICA_BATCH)
    assert runtime["global_batch_size"] == 2 * PER_REPLICA_BATCH
    names = set(os.listdir(tmp_path / "model"))
    assert {"model.keras", "metadata.json", "saved_model"} <= names
    assert train.BACKUP_DIR not in names, "the chief's backup was not removed at the end"
    # One writer of TensorBoard logs: one event file per run (train, validation, samples).
    runs = [
        os.path.basename(os.path.dirname(path)) for path in _event_files(tmp_path / "tensorboard")
    ]
    assert sorted(runs) == ["samples", "train", "validation"]

    # One worker, the same global batch, seed and model.
    monkeypatch.setattr(model_lib, "build_encoder", loopback.small_encoder)
    single = train.train_model(
        dataset_dir,
        str(tmp_path / "single_model"),
        str(tmp_path / "single_tensorboard"),
        MODEL_CONFIG,
        _training(batch_size=2 * PER_REPLICA_BATCH),
        None,
    )
    assert abs(chief["metrics"]["val_accuracy"] - single["val_accuracy"]) <= ACCURACY_TOLERANCE
    assert np.isfinite(chief["metrics"]["val_loss"]) and np.isfinite(single["val_loss"])


def _backup_epoch(backup_dir) -> int:
    try:
        with open(os.path.join(backup_dir, "training_metadata.json")) as handle:
            return int(json.load(handle)["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_killed_worker_and_the_rerun_resumes_every_worker_from_the_backup(tmp_path, dataset_dir):
    training = _training(epochs=3)
    backup_dir = tmp_path / "model" / train.BACKUP_DIR
    # Each worker waits 2 s after an epoch: a window to lose one in mid-training.
    with _job(tmp_path, dataset_dir, training, "first", pause=2.0) as job:
        deadline = time.monotonic() + WORKER_TIMEOUT
        while _backup_epoch(backup_dir) < 1:
            assert time.monotonic() < deadline, "no backup after an epoch\n" + job.tail_logs()
            assert all(p.poll() is None for p in job.processes), job.tail_logs()
            time.sleep(0.5)
        # Worker 1 is lost mid-training. The chief now waits on it in the next step's
        # all-reduce, before it could write another backup; the job is restarted.
        job.kill(1)
    resumed_from = _backup_epoch(backup_dir)
    assert 1 <= resumed_from < training.epochs

    with _job(tmp_path, dataset_dir, training, "rerun") as rerun:
        codes = rerun.wait(timeout=WORKER_TIMEOUT)
        assert codes == [0, 0], rerun.tail_logs()
        chief, other = rerun.results()
    expected = list(range(resumed_from, training.epochs))
    assert chief["epochs_run"] == other["epochs_run"] == expected, "did not resume in step"
    _, metadata = model_lib.load_model_dir(str(tmp_path / "model"))
    assert metadata.runtime["num_workers"] == 2
    assert not backup_dir.exists()
