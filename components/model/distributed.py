"""Training on several workers: who is in the job, who writes, what each one reads.

Vertex AI custom jobs with several replicas (and any TF_CONFIG launcher, such as the
loopback tests) start the same train code on every machine. This module turns the
environment they set into a ``Cluster`` and answers the questions the train step asks
of it: how many workers (for MultiWorkerMirroredStrategy), which one is the chief (the
only one that writes the Model artifact, TensorBoard logs and metrics; the others write
to scratch), what the global batch is (per-replica batch x workers), how the input is
split (by shard file, so each worker reads its own files), and where the training backup
lives (the chief's, which every worker restores from after a restart).

Nothing here reads the environment at import; ``cluster_from_env`` does when called.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import keras

from components.platform import files

logger = logging.getLogger(__name__)

# Vertex AI names its worker pools; pool 0 holds the chief, pool 1 the other workers.
_VERTEX_POOLS = {"workerpool0": "chief", "workerpool1": "worker"}
_TRAINING_TASK_TYPES = ("chief", "worker")


class ClusterConfigError(ValueError):
    """TF_CONFIG / CLUSTER_SPEC does not describe a job this train step can run."""


class TooFewShardsError(ValueError):
    """The train split has fewer shard files than the job has workers."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place in a training job.

    Attributes:
        num_workers: machines that train (the chief counts as one).
        task_type: 'chief' or 'worker'; None when there is no cluster (one machine).
        task_index: this worker's index within its task type.
        has_chief: the cluster names a 'chief' task (Vertex AI's layout); without one,
            worker 0 is the chief (TensorFlow's convention).
    """

    num_workers: int = 1
    task_type: str | None = None
    task_index: int = 0
    has_chief: bool = False

    @property
    def is_multi_worker(self) -> bool:
        return self.num_workers > 1

    @property
    def is_chief(self) -> bool:
        if self.task_type is None or self.task_type == "chief":
            return True
        return not self.has_chief and self.task_type == "worker" and self.task_index == 0

    @property
    def worker_name(self) -> str:
        return "chief" if self.task_type is None else f"{self.task_type}-{self.task_index}"


def tf_config_from_cluster_spec(cluster_spec: Mapping[str, Any]) -> dict[str, Any]:
    """Vertex AI's CLUSTER_SPEC (worker pools) as the TF_CONFIG TensorFlow reads.

    Vertex AI sets both; this covers a container that only gets CLUSTER_SPEC.
    """
    pools = cluster_spec.get("cluster") or {}
    task = cluster_spec.get("task") or {}
    unknown = sorted(set(pools) - set(_VERTEX_POOLS))
    if unknown:
        raise ClusterConfigError(
            f"CLUSTER_SPEC: worker pools {unknown} are not used by training: keep every "
            "replica in workerpool0 (one) and workerpool1 (the others)"
        )
    cluster = {_VERTEX_POOLS[pool]: list(hosts) for pool, hosts in pools.items() if hosts}
    task_type = _VERTEX_POOLS.get(task.get("type", ""))
    if task_type is None:
        raise ClusterConfigError(f"CLUSTER_SPEC: task type {task.get('type')!r} is not a pool")
    return {"cluster": cluster, "task": {"type": task_type, "index": int(task.get("index", 0))}}


def _parse(variable: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClusterConfigError(f"{variable} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ClusterConfigError(f"{variable} must be a JSON object, got {type(value).__name__}")
    return value


def cluster_from_tf_config(tf_config: Mapping[str, Any]) -> Cluster:
    """The Cluster a TF_CONFIG describes (``{"cluster": {...}, "task": {...}}``)."""
    cluster = tf_config.get("cluster") or {}
    unsupported = sorted(set(cluster) - set(_TRAINING_TASK_TYPES))
    if unsupported:
        raise ClusterConfigError(
            f"TF_CONFIG names {unsupported} tasks; MultiWorkerMirroredStrategy trains on "
            "'chief' and 'worker' tasks only (no parameter servers or evaluators)"
        )
    if len(cluster.get("chief", [])) > 1:
        raise ClusterConfigError("TF_CONFIG names more than one chief")
    num_workers = sum(len(cluster.get(kind, [])) for kind in _TRAINING_TASK_TYPES)
    task = tf_config.get("task") or {}
    task_type = task.get("type")
    task_index = int(task.get("index", 0))
    if num_workers == 0:
        return Cluster()
    if task_type not in _TRAINING_TASK_TYPES:
        raise ClusterConfigError(f"TF_CONFIG task type {task_type!r} must be 'chief' or 'worker'")
    if not 0 <= task_index < len(cluster.get(task_type, [])):
        raise ClusterConfigError(
            f"TF_CONFIG task {task_type}:{task_index} is not in its cluster "
            f"({len(cluster.get(task_type, []))} {task_type} addresses)"
        )
    return Cluster(
        num_workers=num_workers,
        task_type=task_type,
        task_index=task_index,
        has_chief=bool(cluster.get("chief")),
    )


def cluster_from_env(environ: Mapping[str, str] | None = None) -> Cluster:
    """This process's Cluster from TF_CONFIG, else Vertex AI's CLUSTER_SPEC, else one machine.

    When only CLUSTER_SPEC is set, the TF_CONFIG it implies is put into ``environ``
    (os.environ by default) so MultiWorkerMirroredStrategy finds the same cluster.
    """
    environ = os.environ if environ is None else environ
    if environ.get("TF_CONFIG"):
        return cluster_from_tf_config(_parse("TF_CONFIG", environ["TF_CONFIG"]))
    if environ.get("CLUSTER_SPEC"):
        tf_config = tf_config_from_cluster_spec(_parse("CLUSTER_SPEC", environ["CLUSTER_SPEC"]))
        cluster = cluster_from_tf_config(tf_config)
        if cluster.is_multi_worker and isinstance(environ, MutableMapping):
            environ["TF_CONFIG"] = json.dumps(tf_config)
        return cluster
    return Cluster()


def global_batch_size(per_replica_batch: int, cluster: Cluster) -> int:
    """The batch one training step takes across the job: per-replica batch x workers.

    ``training.batch_size`` is what one replica (one machine, all its GPUs) takes per
    step, so adding replicas keeps each machine's memory use and grows the global batch;
    the learning rate is not scaled with it.
    """
    return per_replica_batch * cluster.num_workers


def check_train_shards(num_shards: int, cluster: Cluster, dataset_dir: str) -> None:
    """Each worker reads whole shard files: a job needs at least one per worker."""
    if num_shards < cluster.num_workers:
        raise TooFewShardsError(
            f"{dataset_dir}: the train split has {num_shards} shard file(s) but the job has "
            f"{cluster.num_workers} workers, and each worker reads its own shards; "
            f"re-ingest with data.records_per_shard small enough for {cluster.num_workers} "
            "or more train shards, or lower training.replica_count"
        )


def input_by_file(
    strategy: Any, make_input: Callable[[int, tuple[int, int]], Any], global_batch: int
) -> Any:
    """The train input, each worker reading its own shard files, repeated for fixed epochs.

    ``make_input(per_replica_batch, (index, count))`` builds one worker's tf.data input
    (input_pipeline.make_dataset with ``file_shard``). Explicit sharding rather than
    tf.data's AutoShardPolicy.FILE, which refuses an input that zips in a random seed
    stream as the augmentation does. ``check_train_shards`` has made sure every worker
    gets at least one file.
    """

    def worker_input(context):
        per_replica = context.get_per_replica_batch_size(global_batch)
        shard = (context.input_pipeline_id, context.num_input_pipelines)
        return make_input(per_replica, shard).repeat()

    return strategy.distribute_datasets_from_function(worker_input)


def shard_by_data(dataset: Any) -> Any:
    """Makes each worker keep every n-th batch (validation, which may have one shard)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def steps_per_epoch(num_train: int, global_batch: int, configured: int | None) -> int:
    """Steps every worker runs per epoch, the same on all of them.

    Workers read different shard files of different sizes, so an epoch cannot end when
    one worker's files run out (the others would wait on it forever): the train input
    repeats and an epoch is one pass over the split at the global batch.
    """
    if configured is not None:
        return configured
    return max(1, num_train // global_batch)


@dataclasses.dataclass(frozen=True)
class OutputDirs:
    """Where this worker writes the model and TensorBoard logs."""

    model_dir: str
    tensorboard_dir: str
    backup_dir: str
    scratch: bool


def output_dirs(
    model_dir: str, tensorboard_dir: str, backup_dir: str, cluster: Cluster
) -> OutputDirs:
    """The chief writes the real outputs; every other worker writes to a scratch folder.

    TensorFlow's rule under MultiWorkerMirroredStrategy is that every worker saves (reading
    some distributed variables is a collective step), so the others save too, but to a
    local temporary folder that nobody reads.
    Every worker names the chief's backup folder: it restores from it, only the chief
    writes it (``backup_callback``).
    """
    if cluster.is_chief:
        return OutputDirs(model_dir, tensorboard_dir, backup_dir, scratch=False)
    scratch = tempfile.mkdtemp(prefix=f"petseg-{cluster.worker_name}-")
    return OutputDirs(
        model_dir=os.path.join(scratch, "model"),
        tensorboard_dir=os.path.join(scratch, "tensorboard"),
        backup_dir=backup_dir,
        scratch=True,
    )


def remove_scratch(outputs: OutputDirs) -> None:
    """Deletes a non-chief worker's scratch folder once its (unread) outputs are written."""
    if outputs.scratch:
        shutil.rmtree(os.path.dirname(outputs.model_dir), ignore_errors=True)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore whose weights are written to a temporary name, then renamed.

    Keras writes the backup in place, so a run killed mid-write leaves a truncated file
    that the next attempt loads; here the previous backup stays whole until the new one is.
    """

    def _save_model(self):
        files.makedirs(self.backup_dir)
        if self.double_checkpoint:  # Keras' second copy: the backup before this one
            for path, previous in (
                (self._weights_path, self._prev_weights_path),
                (self._training_metadata_path, self._prev_training_metadata_path),
            ):
                if files.exists(path):
                    files.write_bytes(previous, files.read_bytes(path))
        # Weights first, then the epoch that says they are complete, each whole when it
        # appears: Keras writes the weights itself (to a partial name, then renamed here);
        # the file layer writes the metadata atomically.
        partial = self._weights_path[: -len(".weights.h5")] + ".partial.weights.h5"
        try:
            self.model.save_weights(filepath=partial, overwrite=True)
            files.rename(partial, self._weights_path)
            metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
            files.write_text(self._training_metadata_path, json.dumps(metadata))
        except OSError:
            # A full disk: the half-written file is never trusted, but it holds the space
            # the user must free; the last whole backup stays.
            files.remove(partial)
            raise


class ChiefBackupAndRestore(AtomicBackupAndRestore):
    """Keras' BackupAndRestore where only the chief writes and every worker restores.

    All workers start from the epoch and weights of the chief's last backup, so a job
    whose worker was restarted resumes in step on every machine. The other workers never
    write or delete the backup: two machines writing one file would corrupt it.
    """

    def __init__(self, backup_dir: str, cluster: Cluster, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.cluster = cluster

    def _save_model(self):
        if self.cluster.is_chief:
            super()._save_model()

    def on_train_end(self, logs=None):
        if self.cluster.is_chief:
            super().on_train_end(logs)


def backup_callback(backup_dir: str, cluster: Cluster) -> keras.callbacks.BackupAndRestore:
    """The training-backup callback for this worker (plain Keras on one machine)."""
    if not cluster.is_multi_worker:
        return AtomicBackupAndRestore(backup_dir=backup_dir)
    return ChiefBackupAndRestore(backup_dir, cluster)


def runtime_record(cluster: Cluster, per_replica_batch: int) -> dict[str, int]:
    """What the model metadata records about the job's size and its batches."""
    return {
        "num_workers": cluster.num_workers,
        "per_replica_batch_size": per_replica_batch,
        "global_batch_size": global_batch_size(per_replica_batch, cluster),
    }
