"""components.model.train and the train component on a tiny record set (CPU, seconds per run)."""

# No `from __future__ import annotations`: KFP reads the pipeline's output types at run time.
import json
import posixpath
import sys
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import pytest
import recordsets
import tensorflow as tf
from kfp import dsl

from components.data import schema
from components.model import class_weights as class_weights_lib
from components.model import devices, train
from components.model import model as model_lib
from components.platform import provenance
from components.platform.config import ModelConfig, TrainingConfig

# Locally the component bodies run in this interpreter, which is what the warning is about.
pytestmark = pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")

SIZE = 32
MODEL_CONFIG = ModelConfig(image_size=SIZE, encoder_weights="none")


def _training(**overrides):
    settings = {"epochs": 2, "batch_size": 8, "learning_rate": 2e-3, "tensorboard_images": 2}
    return TrainingConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("train_data") / "dataset")
    recordsets.write_recordset(
        directory, {"train": 16, "validation": 8, "test": 8}, height=40, width=40
    )
    return directory


@pytest.fixture(scope="module")
def trained(dataset_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    model_dir, log_dir = str(root / "model"), str(root / "tensorboard")
    metrics = train.train_model(dataset_dir, model_dir, log_dir, MODEL_CONFIG, _training(), None)
    return {"metrics": metrics, "model_dir": model_dir, "log_dir": log_dir}


def _events(log_dir):
    """(tag, step, tensor proto) of every summary in a TensorBoard run directory."""
    found = []
    for path in tf.io.gfile.glob(posixpath.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.append((value.tag, event.step, value))
    return found


@pytest.mark.slow
def test_final_metrics_are_the_last_epochs_train_and_validation_figures(trained):
    metrics = trained["metrics"]
    expected = {"loss", "accuracy", "mean_iou", "val_loss", "val_accuracy", "val_mean_iou"}
    assert set(metrics) == expected
    assert all(np.isfinite(value) for value in metrics.values())
    assert 0.0 <= metrics["val_mean_iou"] <= 1.0 and 0.0 <= metrics["accuracy"] <= 1.0


@pytest.mark.slow
def test_model_dir_follows_the_contract_and_records_its_facts(trained, dataset_dir):
    model, metadata = model_lib.load_model_dir(trained["model_dir"])
    assert model.output_shape == (None, SIZE, SIZE, schema.NUM_CLASSES)
    assert metadata.metrics == pytest.approx(trained["metrics"])
    assert metadata.training["epochs"] == 2 and metadata.training["batch_size"] == 8
    assert metadata.encoder_weights == "none" and metadata.encoder_trainable is True
    assert metadata.batchnorm_momentum == train.FROM_SCRATCH_BATCHNORM_MOMENTUM
    assert metadata.normalization == "mobilenet" and metadata.image_size == SIZE
    assert metadata.dataset["num_train_records"] == 16
    assert metadata.dataset["validation_split"] == "validation"
    assert metadata.dataset["uri"] == dataset_dir
    assert metadata.runtime["strategy"] == "default"  # no GPU here
    assert metadata.petseg_version == provenance.package_version() != "unknown"
    # Other tests may leave untracked files meanwhile; the commit itself is what must match.
    commit = provenance.git_commit().removesuffix("-dirty")
    assert metadata.git_commit.removesuffix("-dirty") == commit
    names = set(tf.io.gfile.listdir(trained["model_dir"]))
    assert {"model.keras", "metadata.json", "summary.txt"} <= names
    assert not any(name.startswith(train.BACKUP_DIR) for name in names), "checkpoints left over"
    serving = tf.saved_model.load(posixpath.join(trained["model_dir"], "saved_model"))
    image = tf.io.encode_png(np.zeros((40, 40, 3), np.uint8))
    assert serving.signatures["serving_default"](image_bytes=[image])["mask"].shape == (
        1,
        SIZE,
        SIZE,
    )


@pytest.mark.slow
def test_tensorboard_has_epoch_scalars_and_sample_prediction_panels(trained):
    log_dir = trained["log_dir"]
    train_tags = {(tag, step) for tag, step, _ in _events(posixpath.join(log_dir, "train"))}
    assert {("epoch_loss", 0), ("epoch_loss", 1), ("epoch_mean_iou", 1)} <= train_tags
    validation = _events(posixpath.join(log_dir, "validation"))
    final_val_loss = [
        tf.make_ndarray(value.tensor)
        for tag, step, value in validation
        if tag == "epoch_loss" and step == 1
    ]
    assert final_val_loss[0] == pytest.approx(trained["metrics"]["val_loss"], rel=1e-5)
    samples = _events(posixpath.join(log_dir, "samples"))
    assert sorted(step for _, step, _ in samples) == [0, 1]
    _, _, value = samples[-1]
    assert value.metadata.plugin_data.plugin_name == "images"
    width, height, *pngs = tf.make_ndarray(value.tensor)
    assert (int(width), int(height), len(pngs)) == (3 * SIZE, SIZE, 2)
    panel = tf.io.decode_png(pngs[0]).numpy()
    assert panel.shape == (SIZE, 3 * SIZE, 3)
    # The middle third is the true mask in the class palette: only palette colours appear.
    true_mask_colours = {tuple(colour) for colour in panel[:, SIZE : 2 * SIZE].reshape(-1, 3)}
    palette = train.colorize_masks(np.arange(schema.NUM_CLASSES)[None, None], schema.NUM_CLASSES)
    assert true_mask_colours <= {tuple(colour) for colour in palette[0, 0]}


@pytest.mark.slow
def test_tensorboard_itself_reads_the_scalars_and_sample_panels(trained):
    """What `tensorboard --logdir` shows: the event files through TensorBoard's own loader."""
    from tensorboard.backend.event_processing import plugin_event_accumulator

    # The README's `tensorboard` command is installed with the project's dependencies.
    assert (Path(sys.executable).parent / "tensorboard").is_file()
    validation = plugin_event_accumulator.EventAccumulator(
        posixpath.join(trained["log_dir"], "validation")
    )
    validation.Reload()
    assert {"epoch_loss", "epoch_mean_iou"} <= set(validation.PluginTagToContent("scalars"))
    losses = validation.Tensors("epoch_loss")
    assert [event.step for event in losses] == [0, 1]
    final_loss = float(tf.make_ndarray(losses[-1].tensor_proto))
    assert final_loss == pytest.approx(trained["metrics"]["val_loss"], rel=1e-5)
    samples = plugin_event_accumulator.EventAccumulator(
        posixpath.join(trained["log_dir"], "samples")
    )
    samples.Reload()
    assert list(samples.PluginTagToContent("images")), "no image panels for TensorBoard"


class _StopAfterEpoch(keras.callbacks.Callback):
    """Simulates a preemption right after an epoch's checkpoint was written."""

    def __init__(self, epoch_index):
        super().__init__()
        self.epoch_index = epoch_index

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch_index:
            raise RuntimeError(f"simulated preemption after epoch {epoch + 1}")


class _EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.mark.slow
def test_interrupted_training_resumes_at_the_next_epoch(dataset_dir, tmp_path):
    model_dir, log_dir = str(tmp_path / "model"), str(tmp_path / "tensorboard")
    config = _training(epochs=3, tensorboard_images=0)

    def run(*callbacks):
        return train.train_model(
            dataset_dir, model_dir, log_dir, MODEL_CONFIG, config, None, callbacks=list(callbacks)
        )

    with pytest.raises(RuntimeError, match="preemption after epoch 1"):
        run(_StopAfterEpoch(0))
    state_file = Path(model_dir, train.BACKUP_DIR, "training_metadata.json")
    assert json.loads(state_file.read_text())["epoch"] == 1
    assert not Path(model_dir, "model.keras").exists()

    # The retry starts at epoch 2 (index 1), not from 0; this time it stops after the last.
    resumed = _EpochRecorder()
    with pytest.raises(RuntimeError, match="preemption after epoch 3"):
        run(resumed, _StopAfterEpoch(2))
    assert resumed.epochs == [1, 2]
    assert json.loads(state_file.read_text())["epoch"] == 3

    # Preempted after the last checkpoint: nothing left to train, yet the model is saved
    # with metrics measured on the restored weights.
    last = _EpochRecorder()
    metrics = run(last)
    assert last.epochs == []
    assert set(metrics) == {
        "loss",
        "accuracy",
        "mean_iou",
        "val_loss",
        "val_accuracy",
        "val_mean_iou",
    }
    assert all(np.isfinite(value) for value in metrics.values())
    assert not Path(model_dir, train.BACKUP_DIR).exists()
    _, metadata = model_lib.load_model_dir(model_dir)
    assert metadata.metrics == pytest.approx(metrics)


@pytest.mark.slow
def test_gpu_plan_mixed_precision_and_xla_trains_and_saves_a_float32_model(dataset_dir, tmp_path):
    # The plan choose_runtime makes for one GPU, run on the CPU: XLA compiles the train step
    # (loss, accuracy and mean IoU included) and float16 compute keeps float32 logits.
    plan = devices.RuntimePlan(
        strategy="default", precision_policy="mixed_float16", jit_compile=True, devices=()
    )
    config = _training(epochs=1, steps_per_epoch=1, tensorboard_images=0)
    metrics = train.train_model(
        dataset_dir,
        str(tmp_path / "model"),
        str(tmp_path / "tb"),
        MODEL_CONFIG,
        config,
        None,
        runtime_plan=plan,
    )
    assert all(np.isfinite(value) for value in metrics.values())
    assert keras.mixed_precision.dtype_policy().name == "float32", "global policy restored"
    model, metadata = model_lib.load_model_dir(str(tmp_path / "model"))
    assert metadata.runtime["precision_policy"] == "mixed_float16"
    assert metadata.runtime["jit_compile"] is True
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert {weight.dtype for weight in model.weights} == {"float32"}


def test_class_weighting_needs_a_matching_artifact(dataset_dir, tmp_path):
    with pytest.raises(train.ClassWeightsMismatchError, match="no class-weights artifact"):
        train.resolve_class_weights(_training(class_weighting="fixed"), None)
    path = str(tmp_path / "weights.json")
    record = class_weights_lib.compute_class_weights(dataset_dir, SIZE, "inverse_frequency")
    record.write(path)
    with pytest.raises(train.ClassWeightsMismatchError, match="strategy 'inverse_frequency'"):
        train.resolve_class_weights(_training(class_weighting="fixed"), path)
    assert train.resolve_class_weights(_training(class_weighting="none"), path) is None
    weights = train.resolve_class_weights(_training(class_weighting="inverse_frequency"), path)
    assert weights == pytest.approx(record.weights)
    with pytest.raises(FileNotFoundError):
        train.resolve_class_weights(_training(class_weighting="fixed"), str(tmp_path / "no.json"))


def test_sample_panels_put_image_truth_and_prediction_side_by_side():
    images = np.full((1, 2, 2, 3), 7.0, np.float32)
    truth = np.array([[[[0], [1]], [[2], [0]]]], np.uint8)
    logits = np.zeros((1, 2, 2, 3), np.float32)
    logits[..., 2] = 1.0  # predicts border everywhere
    panel = train.sample_panels(images, truth, logits)
    assert panel.shape == (1, 2, 6, 3) and panel.dtype == np.uint8
    np.testing.assert_array_equal(panel[0, :, :2], 7)
    palette = train.colorize_masks(np.arange(3)[None, None], 3)[0, 0]
    np.testing.assert_array_equal(panel[0, 0, 2], palette[0])
    np.testing.assert_array_equal(panel[0, 1, 2], palette[2])
    np.testing.assert_array_equal(panel[0, :, 4:], np.broadcast_to(palette[2], (2, 2, 3)))


@pytest.mark.slow
def test_train_component_through_kfp_local(kfp_local, dataset_dir, tmp_path):
    from components.ops.train import train as train_component

    weights_path = str(tmp_path / "class_weights.json")
    record = class_weights_lib.compute_class_weights(dataset_dir, SIZE, "fixed", [2.0, 2.0, 1.0])
    record.write(weights_path)
    training = _training(epochs=1, class_weighting="fixed", tensorboard_images=1)

    class Outputs(NamedTuple):
        model: dsl.Model
        tensorboard: dsl.Artifact
        metrics: dsl.Metrics

    @dsl.pipeline(name="train-test")
    def train_pipeline() -> Outputs:
        dataset = dsl.importer(artifact_uri=dataset_dir, artifact_class=dsl.Dataset)
        weights = dsl.importer(artifact_uri=weights_path, artifact_class=dsl.Artifact)
        task = train_component(
            dataset=dataset.output,
            class_weights=weights.output,
            model_config=MODEL_CONFIG.model_dump_json(),
            training_config=training.model_dump_json(),
        )
        return Outputs(task.outputs["model"], task.outputs["tensorboard"], task.outputs["metrics"])

    outputs = train_pipeline().outputs
    model_artifact, metrics_artifact = outputs["model"], outputs["metrics"]
    assert model_artifact.metadata["classes"] == list(schema.CLASS_NAMES)
    assert model_artifact.metadata["image_size"] == SIZE
    assert model_artifact.metadata["normalization"] == "mobilenet"
    assert model_artifact.metadata["encoder_weights"] == "none"
    assert model_artifact.metadata["framework"] == "tensorflow"
    _, metadata = model_lib.load_model_dir(model_artifact.path)
    assert metadata.class_weights == [2.0, 2.0, 1.0]
    assert metadata.training["class_weighting"] == "fixed"
    logged = metrics_artifact.metadata
    assert set(logged) >= {"loss", "val_loss", "mean_iou", "val_mean_iou"}
    assert logged["val_mean_iou"] == pytest.approx(metadata.metrics["val_mean_iou"], abs=1e-6)
    assert tf.io.gfile.glob(posixpath.join(outputs["tensorboard"].path, "samples", "events.*"))


MIRRORED_SCRIPT = """
import sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
from components.model import devices, train
from components.model.model import load_model_dir
from components.platform.config import ModelConfig, TrainingConfig

dataset_dir, model_dir, log_dir = sys.argv[1:4]
plan = devices.RuntimePlan(
    strategy="mirrored", precision_policy="float32", jit_compile=False,
    devices=("/cpu:0", "/cpu:1"),
)
metrics = train.train_model(
    dataset_dir, model_dir, log_dir, ModelConfig(image_size=32, encoder_weights="none"),
    TrainingConfig(epochs=1, batch_size=8, tensorboard_images=1), None, runtime_plan=plan,
)
model, metadata = load_model_dir(model_dir)
print("REPLICAS", len(metadata.runtime["devices"]), "VAL_MEAN_IOU", metrics["val_mean_iou"])
"""


@pytest.mark.slow
def test_training_runs_under_mirrored_strategy_on_two_replicas(dataset_dir, tmp_path):
    """The multi-GPU path, on two logical CPU devices (a fresh process: they must be set first)."""
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            MIRRORED_SCRIPT,
            dataset_dir,
            str(tmp_path / "model"),
            str(tmp_path / "tb"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "REPLICAS 2 VAL_MEAN_IOU" in result.stdout
    assert Path(tmp_path, "model", "saved_model", "saved_model.pb").is_file()


def test_train_component_records_a_deterministic_failure_for_its_retry(
    kfp_local, dataset_dir, tmp_path, capfd
):
    """Train is the one task the orchestrator retries; a mismatch must not be retried."""
    from components.ops.train import train as train_component
    from components.platform.retry import FAILURE_RECORD

    weights_path = str(tmp_path / "class_weights.json")
    record = class_weights_lib.compute_class_weights(dataset_dir, SIZE, "inverse_frequency")
    record.write(weights_path)

    @dsl.pipeline(name="train-mismatch")
    def train_pipeline():
        dataset = dsl.importer(artifact_uri=dataset_dir, artifact_class=dsl.Dataset)
        weights = dsl.importer(artifact_uri=weights_path, artifact_class=dsl.Artifact)
        train_component(
            dataset=dataset.output,
            class_weights=weights.output,
            model_config=MODEL_CONFIG.model_dump_json(),
            training_config=_training(class_weighting="fixed").model_dump_json(),
        )

    with pytest.raises(RuntimeError):
        train_pipeline()
    assert "strategy 'inverse_frequency'" in "".join(capfd.readouterr())
    (failure,) = kfp_local.rglob(FAILURE_RECORD)
    assert failure.parent.name == "model"
    recorded = json.loads(failure.read_text())
    assert recorded["type"] == "ClassWeightsMismatchError"
    assert "strategy 'inverse_frequency'" in recorded["message"]
