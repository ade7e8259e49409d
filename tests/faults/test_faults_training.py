"""Training under faults, and whether two runs with one seed agree.

A "run" here is what a weekly schedule does, in its own process: generate the source,
ingest, class weights (inverse frequency), train, evaluate. Two runs with the same seed
must agree byte for byte on the data and exactly on the class weights, the trained
weights and the evaluation metrics (CPU, where every op used is deterministic).

The kill test SIGKILLs a training process in the middle of its second epoch (no
cleanup, no exception handler runs) and restarts it on the same model directory. It
must resume at that epoch from BackupAndRestore's checkpoint and end with the same
model as an uninterrupted run. Exact equality needs the input order not to depend on
how many epochs a process has iterated: BackupAndRestore restores weights, optimizer
state and the epoch, not a tf.data iterator, so with shuffling or random flips on, the
resumed epoch draws a fresh order (measured: weights differ by up to ~0.2 after one
such epoch at this size, a difference of data order, not of resumption). The runs
therefore train without shuffling or augmentation, on single-shard splits, which makes
"equal quality" checkable exactly instead of within a loose tolerance.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

from components.data import dataset_info
from components.evaluation import evaluate
from components.model import class_weights, train
from components.model.model import load_model_dir
from components.platform.config import ModelConfig, TrainingConfig

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 64
MODEL_CONFIG = ModelConfig(image_size=IMAGE_SIZE, encoder_weights="none")
TRAINING_CONFIG = TrainingConfig(
    epochs=2,
    batch_size=4,
    learning_rate=2e-3,
    class_weighting="inverse_frequency",
    augment=False,
    shuffle_buffer=1,
    tensorboard_images=0,
    seed=7,
)
SOURCE = {
    "synthetic_train_size": 8,
    "synthetic_test_size": 4,
    "synthetic_image_size": 64,
    "records_per_shard": 16,  # one shard per split: no shard-order shuffle
    "synthetic_seed": 3,
    "validation_fraction": 0.4,  # eight train records: carve a validation split that exists
}

RUN_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from components.model import class_weights, train
    from components.evaluation import evaluate
    from components.data.ingest import ingest_dataset
    from components.model.model import load_model_dir
    from components.platform.config import DataConfig, ModelConfig, TrainingConfig

    root = sys.argv[1]
    data = DataConfig.model_validate_json(sys.argv[2])
    model_config = ModelConfig.model_validate_json(sys.argv[3])
    training = TrainingConfig.model_validate_json(sys.argv[4])
    dataset, weights = f"{root}/dataset", f"{root}/class_weights.json"
    ingest_dataset(data, dataset)
    record = class_weights.compute_class_weights(
        dataset, model_config.image_size, training.class_weighting
    )
    record.write(weights)
    metrics = train.train_model(
        dataset, f"{root}/model", f"{root}/tensorboard", model_config, training, weights
    )
    outcome = evaluate.evaluate_model(f"{root}/model", dataset, model_config=model_config)
    outcome.pop("samples")
    outcome.pop("per_image")  # NumPy counts per image; the figures above derive from them
    model, _ = load_model_dir(f"{root}/model")
    digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
    print("RESULT " + json.dumps({"metrics": metrics, "evaluation": outcome,
                                  "weights_sha256": digest}))
    """
)

KILLED_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from components.model import train
    from components.platform.config import ModelConfig, TrainingConfig

    dataset, weights, model_dir = sys.argv[1:4]
    model_config = ModelConfig.model_validate_json(sys.argv[4])
    training = TrainingConfig.model_validate_json(sys.argv[5])

    class KillMidEpoch(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 0:  # one step into the second epoch
                print("KILLED at epoch 1, batch 0", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    train.train_model(
        dataset, model_dir, model_dir + "-tensorboard", model_config, training, weights,
        callbacks=[KillMidEpoch()],
    )
    print("NOT KILLED", flush=True)
    """
)


def _source(data_dir: Path):
    import faultkit

    return faultkit.source_config(data_dir, download=True, **SOURCE)


def _one_run(root: Path) -> dict:
    """A whole run (source → ingest → class weights → train → evaluate) in its own process."""
    root.mkdir(parents=True)
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_SCRIPT,
            str(root),
            _source(root / "tfds").model_dump_json(),
            MODEL_CONFIG.model_dump_json(),
            TRAINING_CONFIG.model_dump_json(),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.split("RESULT ", 1)[1])
    result["root"] = root
    return result


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return _one_run(root / "first"), _one_run(root / "second")


def _weights_sha256(model_dir: Path) -> str:
    model, _ = load_model_dir(str(model_dir))
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()


def _shard_digests(dataset: Path) -> dict[str, str]:
    return {
        str(path.relative_to(dataset)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(dataset.rglob("*.tfrecord"))
    }


def test_two_runs_with_one_seed_agree_exactly(two_runs, fault):
    fault(
        "two scheduled runs, separate processes, same config and seed, CPU (generate, ingest, "
        "class weights, train 2 epochs at 64 px, evaluate)",
        expected="identical shards, class weights, trained weights and evaluation metrics",
    )
    first, second = two_runs
    first_weights = json.loads((first["root"] / "class_weights.json").read_text())
    second_weights = json.loads((second["root"] / "class_weights.json").read_text())

    assert _shard_digests(first["root"] / "dataset") == _shard_digests(second["root"] / "dataset")
    assert first_weights == second_weights
    assert first_weights["strategy"] == "inverse_frequency"
    assert first["weights_sha256"] == second["weights_sha256"]
    assert first["metrics"] == second["metrics"]
    for key in ("confusion_matrix", "mean_iou", "pixel_accuracy", "per_class", "num_images"):
        assert first["evaluation"][key] == second["evaluation"][key], key
    assert first["evaluation"]["num_images"] == SOURCE["synthetic_test_size"]
    fault.saw(
        f"class weights {[round(w, 4) for w in first_weights['weights']]} both; model weights "
        f"sha256 {first['weights_sha256'][:12]} both; mean IoU "
        f"{first['evaluation']['mean_iou']:.6f} and val_loss "
        f"{first['metrics']['val_loss']:.6f} both"
    )


class _EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_training_killed_mid_epoch_resumes_to_the_same_model(two_runs, tmp_path, fault):
    fault(
        "training process SIGKILLed one step into its second epoch, then the task is retried "
        "on the same model directory",
        expected="the retry resumes at epoch 2 from the checkpoint (not epoch 1) and ends with "
        "the same weights, metrics and evaluation as an uninterrupted run",
    )
    reference = two_runs[0]
    dataset = reference["root"] / "dataset"
    weights = reference["root"] / "class_weights.json"
    model_dir = tmp_path / "model"

    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_SCRIPT,
            str(dataset),
            str(weights),
            str(model_dir),
            MODEL_CONFIG.model_dump_json(),
            TRAINING_CONFIG.model_dump_json(),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr[-3000:]
    assert "KILLED at epoch 1, batch 0" in killed.stdout
    backup = model_dir / train.BACKUP_DIR
    state = json.loads((backup / "training_metadata.json").read_text())
    assert state["epoch"] == 1, state
    assert not (model_dir / "model.keras").exists()  # no finished-looking model
    fault.saw(f"killed (exit {killed.returncode}); checkpoint records {state['epoch']} epoch done")

    recorder = _EpochRecorder()
    metrics = train.train_model(
        str(dataset),
        str(model_dir),
        str(tmp_path / "tensorboard"),
        MODEL_CONFIG,
        TRAINING_CONFIG,
        str(weights),
        callbacks=[recorder],
    )

    fault.saw(f"retry ran epochs {[epoch + 1 for epoch in recorder.epochs]} of 2")
    assert recorder.epochs == [1]
    assert not backup.exists()
    assert _weights_sha256(model_dir) == reference["weights_sha256"]
    assert metrics == reference["metrics"]
    outcome = evaluate.evaluate_model(str(model_dir), str(dataset), model_config=MODEL_CONFIG)
    assert outcome["confusion_matrix"] == reference["evaluation"]["confusion_matrix"]
    assert outcome["mean_iou"] == reference["evaluation"]["mean_iou"]
    fault.saw(
        f"resumed model = uninterrupted model (weights sha256 {reference['weights_sha256'][:12]}"
        f", val_loss {metrics['val_loss']:.6f}, mean IoU {outcome['mean_iou']:.6f})"
    )


@pytest.fixture
def damaged_copy(two_runs, tmp_path):
    copy = tmp_path / "dataset"
    shutil.copytree(two_runs[0]["root"] / "dataset", copy)
    info = dataset_info.load_dataset_info(str(copy)).to_dict()
    return copy, copy / info["splits"]["train"]["shards"][0]


def _train(dataset: Path, tmp_path: Path):
    return train.train_model(
        str(dataset),
        str(tmp_path / "model"),
        str(tmp_path / "tensorboard"),
        MODEL_CONFIG,
        TRAINING_CONFIG.model_copy(update={"class_weighting": "none", "epochs": 1}),
        None,
    )


def test_training_refuses_a_truncated_shard_by_name(damaged_copy, tmp_path, fault):
    fault(
        "train shard truncated by 100 bytes (a cut-short copy) before training",
        expected="training fails before building the model, naming the shard",
    )
    dataset, shard = damaged_copy
    shard.write_bytes(shard.read_bytes()[:-100])

    with pytest.raises(dataset_info.ShardIntegrityError) as failure:
        _train(dataset, tmp_path)

    fault.saw(failure.value)
    assert str(shard) in str(failure.value) and "truncated" in str(failure.value)
    assert not (tmp_path / "model" / "model.keras").exists()


def test_training_names_a_shard_with_a_corrupted_record(damaged_copy, tmp_path, fault):
    fault(
        "one byte flipped inside a train shard (same size; bit rot or a bad copy)",
        expected="training fails naming the shard, as class weights and evaluation do",
    )
    dataset, shard = damaged_copy
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))

    with pytest.raises(Exception) as failure:
        _train(dataset, tmp_path)

    lines = str(getattr(failure.value, "message", failure.value)).strip().splitlines()
    message = next((line for line in lines if "record at" in line), lines[0])
    fault.saw(f"{type(failure.value).__name__}: {message.strip()}")
    assert "corrupted record" in message or "truncated record" in message
    assert str(shard) in str(failure.value)


def test_training_refuses_class_weights_of_other_classes(damaged_copy, tmp_path, fault):
    fault(
        "class weights computed before dataset.json's classes became "
        "['background', 'pet', 'border'] (another class order)",
        expected="training refuses them before reading a record, naming the weights file and "
        "both class lists",
    )
    dataset, _ = damaged_copy
    weights = str(tmp_path / "class_weights.json")
    class_weights.compute_class_weights(str(dataset), IMAGE_SIZE, "inverse_frequency").write(
        weights
    )
    info = json.loads((dataset / "dataset.json").read_text())
    info["classes"] = ["background", "pet", "border"]
    (dataset / "dataset.json").write_text(json.dumps(info))

    with pytest.raises(class_weights.ClassWeightsError) as failure:
        train.train_model(
            str(dataset),
            str(tmp_path / "model"),
            str(tmp_path / "tensorboard"),
            MODEL_CONFIG,
            TRAINING_CONFIG.model_copy(update={"epochs": 1}),
            weights,
        )

    fault.saw(failure.value)
    assert weights in str(failure.value)
    assert "['pet', 'background', 'border']" in str(failure.value)
    assert "['background', 'pet', 'border']" in str(failure.value)
    assert not (tmp_path / "model" / "model.keras").exists()
