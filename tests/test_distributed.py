"""model.distributed: the cluster from TF_CONFIG / CLUSTER_SPEC, batches, shards, writers."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from components.model import distributed
from components.model.distributed import Cluster


def _tf_config(cluster: dict, task_type: str, index: int) -> dict[str, str]:
    return {
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})
    }


def test_no_cluster_in_the_environment_is_one_chief_worker():
    cluster = distributed.cluster_from_env({})
    assert cluster.num_workers == 1 and cluster.is_chief and not cluster.is_multi_worker


def test_tensorflow_layout_worker_zero_is_the_chief():
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]}
    first = distributed.cluster_from_env(_tf_config(workers, "worker", 0))
    second = distributed.cluster_from_env(_tf_config(workers, "worker", 2))
    assert first.num_workers == second.num_workers == 3
    assert first.is_chief and not second.is_chief
    assert second.worker_name == "worker-2"


def test_vertex_layout_has_a_chief_and_no_worker_is_chief():
    cluster = {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]}
    chief = distributed.cluster_from_env(_tf_config(cluster, "chief", 0))
    worker0 = distributed.cluster_from_env(_tf_config(cluster, "worker", 0))
    assert chief.num_workers == worker0.num_workers == 3
    assert chief.is_chief and not worker0.is_chief


def test_vertex_cluster_spec_alone_becomes_tf_config():
    environ = {
        "CLUSTER_SPEC": json.dumps(
            {
                "cluster": {"workerpool0": ["cmle-0:2222"], "workerpool1": ["cmle-1:2222"]},
                "environment": "cloud",
                "task": {"type": "workerpool1", "index": 0},
                "job": "{}",
            }
        )
    }
    cluster = distributed.cluster_from_env(environ)
    assert cluster.num_workers == 2 and not cluster.is_chief
    tf_config = json.loads(environ["TF_CONFIG"])  # what MultiWorkerMirroredStrategy reads
    assert tf_config == {
        "cluster": {"chief": ["cmle-0:2222"], "worker": ["cmle-1:2222"]},
        "task": {"type": "worker", "index": 0},
    }


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TF_CONFIG": "{not json"}, "TF_CONFIG is not JSON"),
        ({"TF_CONFIG": "[1]"}, "must be a JSON object"),
        (_tf_config({"worker": ["a:1"], "ps": ["b:1"]}, "worker", 0), "parameter servers"),
        (_tf_config({"worker": ["a:1", "b:1"]}, "worker", 2), "worker:2 is not in its cluster"),
        (_tf_config({"worker": ["a:1", "b:1"]}, "evaluator", 0), "'chief' or 'worker'"),
        (
            {"CLUSTER_SPEC": json.dumps({"cluster": {"workerpool2": ["x:1"]}, "task": {}})},
            "workerpool2",
        ),
    ],
)
def test_a_cluster_training_cannot_use_is_refused_naming_the_problem(environ, message):
    with pytest.raises(distributed.ClusterConfigError, match=message):
        distributed.cluster_from_env(environ)


def test_global_batch_is_per_replica_batch_times_workers():
    assert distributed.global_batch_size(16, Cluster()) == 16
    assert distributed.global_batch_size(16, Cluster(num_workers=4, task_type="worker")) == 64
    record = distributed.runtime_record(Cluster(num_workers=2, task_type="worker"), 8)
    assert record == {"num_workers": 2, "per_replica_batch_size": 8, "global_batch_size": 16}


def test_fewer_train_shards_than_workers_fails_saying_what_to_change():
    cluster = Cluster(num_workers=3, task_type="worker")
    distributed.check_train_shards(3, cluster, "gs://b/dataset")
    with pytest.raises(distributed.TooFewShardsError) as raised:
        distributed.check_train_shards(2, cluster, "gs://b/dataset")
    message = str(raised.value)
    assert "gs://b/dataset" in message and "2 shard file(s)" in message and "3 workers" in message
    assert "data.records_per_shard" in message and "training.replica_count" in message


def test_steps_per_epoch_is_one_pass_at_the_global_batch_unless_configured():
    assert distributed.steps_per_epoch(100, 16, None) == 6
    assert distributed.steps_per_epoch(10, 16, None) == 1
    assert distributed.steps_per_epoch(100, 16, 3) == 3


def test_only_the_chief_writes_the_real_outputs(tmp_path):
    model_dir, logs, backup = str(tmp_path / "m"), str(tmp_path / "tb"), str(tmp_path / "m/_b")
    chief = distributed.output_dirs(model_dir, logs, backup, Cluster(2, "worker", 0))
    assert (chief.model_dir, chief.tensorboard_dir, chief.scratch) == (model_dir, logs, False)
    other = distributed.output_dirs(model_dir, logs, backup, Cluster(2, "worker", 1))
    assert other.scratch and other.backup_dir == backup  # restores from the chief's backup
    assert not other.model_dir.startswith(str(tmp_path))
    assert not other.tensorboard_dir.startswith(str(tmp_path))
    assert "worker-1" in other.model_dir and os.path.isdir(os.path.dirname(other.model_dir))


def _tiny_model() -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_only_the_chief_writes_the_backup_and_every_worker_restores_from_it(tmp_path):
    backup_dir = str(tmp_path / "backup")
    features, targets = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt  # a lost machine, right after the first backup

    non_chief = distributed.backup_callback(backup_dir, Cluster(2, "worker", 1))
    with pytest.raises(KeyboardInterrupt):
        _tiny_model().fit(
            features, targets, epochs=3, callbacks=[non_chief, StopAfterFirstEpoch()], verbose=0
        )
    assert not os.path.exists(backup_dir), "a non-chief worker wrote the backup"

    chief = distributed.backup_callback(backup_dir, Cluster(2, "worker", 0))
    with pytest.raises(KeyboardInterrupt):
        _tiny_model().fit(
            features, targets, epochs=3, callbacks=[chief, StopAfterFirstEpoch()], verbose=0
        )
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 1

    # After the restart, the non-chief worker resumes from the chief's epoch too, and leaves
    # the backup for the chief to remove.
    restarted = distributed.backup_callback(backup_dir, Cluster(2, "worker", 1))
    history = _tiny_model().fit(features, targets, epochs=3, callbacks=[restarted], verbose=0)
    assert len(history.history["loss"]) == 2
    assert os.path.exists(backup_dir)
    # One machine: Keras' callback (written atomically, tests/test_backup_atomic.py).
    assert isinstance(
        distributed.backup_callback(backup_dir, Cluster()), keras.callbacks.BackupAndRestore
    )
