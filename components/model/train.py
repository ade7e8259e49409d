"""Training the U-Net on an ingested dataset: the core of the train component.

One function, ``train_model``, goes from a Dataset directory to a Model directory,
TensorBoard logs and the final metrics. It uses every visible GPU (see
components.model.devices), checkpoints each epoch under the model directory so a retried or
preempted task resumes where it stopped, and always saves a float32 model so that
evaluation and serving run on any device.
"""

from __future__ import annotations

import logging
import math
import posixpath
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from pydantic import BaseModel

from components.data import dataset_info, schema
from components.data.splits import TRAIN, VALIDATION
from components.evaluation import visualize
from components.model import devices, distributed
from components.model import input_pipeline as data
from components.model import model as model_lib
from components.platform import files, provenance
from components.platform.config import ModelConfig, TrainingConfig
from components.platform.contracts import ArtifactRef, StepInputs
from components.platform.retry import run_or_replay_failure

logger = logging.getLogger(__name__)

# Training curves use validation only; test is kept for evaluate and the blessing (the
# tutorial validated on test, which then no longer measures unseen data).
BACKUP_DIR = "_training_backup"
# The fine-tuning phase backs up apart: its optimizer tracks the encoder's variables too.
FINE_TUNE_BACKUP_DIR = "_training_backup_fine_tune"
# What "best epoch" and early stopping watch: the validation split's mean IoU.
MONITOR = "val_mean_iou"
SAMPLES_DIR = "samples"
METRIC_NAMES: tuple[str, ...] = ("loss", "accuracy", "mean_iou")
# BatchNorm momentum when the encoder starts from random weights. MobileNetV2's 0.999 suits
# fine-tuning pretrained statistics; from scratch, a short run (the demo: under a hundred
# steps) leaves the moving statistics near their initial values and the model predicts only
# the majority class at inference. 0.9 is the common default elsewhere (PyTorch's 0.1).
FROM_SCRATCH_BATCHNORM_MOMENTUM = 0.9
MIN_STEPS_MOMENTUM, MAX_STEPS_MOMENTUM = 0.9, 0.99  # model.batchnorm_momentum='from_steps'


class ClassWeightsMismatchError(ValueError):
    """The class-weights artifact does not fit this training run."""


def resolve_class_weights(
    training_config: TrainingConfig,
    class_weights_path: str | None,
    image_size: int | None = None,
    classes: list[str] | None = None,
) -> list[float] | None:
    """The per-class weights to train with, or None when weighting is off.

    Args:
        training_config: a TrainingConfig (class_weighting).
        class_weights_path: the class-weights JSON, or None.
        image_size: the training resolution, compared with the counting one.
        classes: the dataset's classes the weights must be for; None = any.

    Raises:
        ClassWeightsMismatchError: weighting is on but no artifact is given, or the artifact
            was computed with another strategy.
        FileNotFoundError, components.model.class_weights.ClassWeightsError: the file is missing
            or invalid (other classes than the dataset's, bad weights).
    """
    if training_config.class_weighting == "none":
        return None
    if not class_weights_path:
        raise ClassWeightsMismatchError(
            f"training.class_weighting is {training_config.class_weighting!r} "
            "but no class-weights artifact was given"
        )
    from components.model.class_weights import read_class_weights

    recorded = read_class_weights(class_weights_path, classes)
    weights, strategy = recorded.weights, recorded.strategy
    if strategy != training_config.class_weighting:
        raise ClassWeightsMismatchError(
            f"{class_weights_path}: strategy {strategy!r} differs from "
            f"training.class_weighting {training_config.class_weighting!r}"
        )
    if image_size is not None and recorded.image_size != image_size:
        logger.warning(
            "%s: weights were counted at image_size %s, training runs at %s",
            class_weights_path,
            recorded.image_size,
            image_size,
        )
    return weights


def colorize_masks(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """Class-id masks [N, H, W] (or [N, H, W, 1]) to RGB uint8 [N, H, W, 3].

    The shared palette (components.evaluation.visualize), so a class has the same colour in the
    report, TensorBoard and predictions; ignored pixels get its ignore colour.
    """
    masks = np.asarray(masks)
    if masks.ndim == 4:
        masks = masks[..., 0]
    palette = visualize.class_palette(num_classes)
    return np.stack([visualize.colour_mask(mask, palette) for mask in masks])


def sample_panels(images: np.ndarray, true_masks: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Side by side per sample: input image | true mask | predicted mask, uint8 [N, S, 3S, 3].

    The number of classes is the logits' channels.
    """
    num_classes = int(np.shape(logits)[-1])
    predicted = np.argmax(logits, axis=-1)
    return np.concatenate(
        [
            np.clip(np.asarray(images), 0, 255).astype(np.uint8),
            colorize_masks(true_masks, num_classes),
            colorize_masks(predicted, num_classes),
        ],
        axis=2,
    )


class SamplePanels(keras.callbacks.Callback):
    """The tutorial's DisplayCallback for TensorBoard: sample predictions after every epoch.

    The same validation images each epoch as image | true mask | predicted mask panels
    (``tf.summary.image``) in <log_dir>/samples, beside keras.callbacks.TensorBoard's
    <log_dir>/train and <log_dir>/validation scalars.
    """

    def __init__(self, log_dir: str, images: np.ndarray, masks: np.ndarray):
        super().__init__()
        self.log_dir = posixpath.join(log_dir, SAMPLES_DIR)
        self.images = np.asarray(images, dtype=np.float32)
        self.masks = np.asarray(masks)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        logits = np.asarray(self.model(self.images, training=False))
        panels = sample_panels(self.images, self.masks, logits)
        with self._writer.as_default():
            tf.summary.image("image_true_predicted", panels, step=epoch, max_outputs=len(panels))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def tensorboard_callbacks(
    log_dir: str, images: np.ndarray | None = None, masks: np.ndarray | None = None
) -> list[keras.callbacks.Callback]:
    """Keras' TensorBoard callback (epoch scalars, tags 'epoch_loss', ...) and the samples.

    Every worker of a multi-worker job writes logs; ``distributed.output_dirs`` gives
    only the chief the task's log directory, the others a scratch one.
    """
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0)
    ]
    if images is not None and len(images):
        callbacks.append(SamplePanels(log_dir, images, masks))
    return callbacks


def _validation_split(info: dataset_info.DatasetInfo, dataset_dir: str) -> str:
    splits = info.splits
    if VALIDATION in splits and splits[VALIDATION].num_records > 0:
        return VALIDATION
    raise dataset_info.DatasetMismatchError(
        f"{dataset_info.info_path(dataset_dir)}: no non-empty {VALIDATION!r} split "
        f"(it has {sorted(splits)}); re-run ingest, which carves one from train"
    )


@keras.saving.register_keras_serializable(package="petseg")
class PixelAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Pixel accuracy over labelled pixels: those labelled ``ignore_class`` are not counted."""

    def __init__(self, ignore_class: int = schema.IGNORE_ID, name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_class = ignore_class

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = keras.ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape) and labels.shape[-1] == 1:
            labels = keras.ops.squeeze(labels, axis=-1)
        labelled = keras.ops.cast(keras.ops.not_equal(labels, self.ignore_class), "float32")
        if sample_weight is not None:
            weights = keras.ops.cast(sample_weight, "float32")
            labelled = labelled * keras.ops.reshape(weights, keras.ops.shape(labelled))
        return super().update_state(labels, y_pred, sample_weight=labelled)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


@keras.saving.register_keras_serializable(package="petseg")
class CrossEntropyDice(keras.losses.Loss):
    """Per-pixel cross-entropy plus each image's soft Dice loss, over labelled pixels only.

    Cross-entropy weighs a class by its pixel count, so the trimap's thin border counts
    little; Dice scores each class by overlap (1 - 2|P∩T| / (|P| + |T|), mean over the
    classes), which is what mean IoU rewards. The image's Dice term is spread over its
    labelled pixels, so sample weights (class weighting) apply per pixel as with
    cross-entropy alone, and the result is the mean over labelled pixels, like Keras'
    ``ignore_class``.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_class: int = schema.IGNORE_ID,
        name: str = "cross_entropy_dice",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = keras.ops.squeeze(labels, axis=-1)
        labelled = keras.ops.not_equal(labels, self.ignore_class)
        safe_labels = keras.ops.where(labelled, labels, 0)
        weight = keras.ops.cast(labelled, "float32")
        logits = keras.ops.cast(y_pred, "float32")
        cross_entropy = keras.losses.sparse_categorical_crossentropy(
            safe_labels, logits, from_logits=True
        )
        spread = weight[..., None]
        truth = keras.ops.one_hot(safe_labels, self.num_classes) * spread
        predicted = keras.ops.softmax(logits, axis=-1) * spread
        overlap = keras.ops.sum(truth * predicted, axis=(1, 2))
        total = keras.ops.sum(truth + predicted, axis=(1, 2))
        dice = 1.0 - (2.0 * overlap + 1.0) / (total + 1.0)
        per_image = keras.ops.mean(dice, axis=-1)[:, None, None]
        # Keras divides by every pixel; rescaling by all/labelled makes it the labelled mean.
        pixels = keras.ops.cast(keras.ops.size(weight), "float32")
        share = pixels / keras.ops.maximum(keras.ops.sum(weight), 1.0)
        return (cross_entropy + per_image) * weight * share

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "ignore_class": self.ignore_class,
        }


def loss_for(name: str, num_classes: int, ignore_id: int = schema.IGNORE_ID) -> keras.losses.Loss:
    """The training loss ``training.loss`` names; both skip ignored pixels."""
    if name == "cross_entropy_dice":
        return CrossEntropyDice(num_classes, ignore_class=ignore_id)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_id)


def _compile(
    model: keras.Model,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    jit_compile: bool,
    num_classes: int,
    ignore_id: int = schema.IGNORE_ID,
    loss: str = "cross_entropy",
) -> None:
    """Adam and the configured loss; the loss and both metrics skip ignored pixels.

    Keras' ``ignore_class`` gives ignored pixels loss 0 and averages over the labelled
    ones; with class weights their sample weight is 0 as well (components.model.input_pipeline).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=loss_for(loss, num_classes, ignore_id),
        metrics=[
            PixelAccuracy(ignore_class=ignore_id, name="accuracy"),
            keras.metrics.MeanIoU(
                num_classes=num_classes,
                sparse_y_pred=False,
                ignore_class=ignore_id,
                name="mean_iou",
            ),
        ],
        jit_compile=jit_compile,
    )


def augmentation_for(training_config: TrainingConfig) -> data.Augmentation:
    """The input pipeline's augmentation from the config (flips, then the recipe's extras)."""
    return data.Augmentation(
        flip=True,
        min_crop_scale=training_config.augment_min_crop_scale,
        max_rotation_degrees=training_config.augment_max_rotation_degrees,
        color_jitter=training_config.augment_color_jitter,
    )


@dataclass(frozen=True)
class Phase:
    """One model.fit call: epochs [initial_epoch, epochs) at one learning rate.

    The first phase trains what the config leaves trainable (with a pretrained encoder:
    the decoder); the optional fine-tuning phase then unfreezes the encoder at a lower rate,
    Keras' transfer-learning recipe. Epoch numbers run on across phases (TensorBoard).
    """

    name: str
    initial_epoch: int
    epochs: int
    learning_rate: float
    fine_tune: bool
    backup_dir: str


def training_phases(training_config: TrainingConfig) -> list[Phase]:
    phases = [
        Phase("train", 0, training_config.epochs, training_config.learning_rate, False, BACKUP_DIR)
    ]
    if training_config.fine_tune_epochs:
        phases.append(
            Phase(
                "fine_tune",
                training_config.epochs,
                training_config.epochs + training_config.fine_tune_epochs,
                training_config.learning_rate * training_config.fine_tune_learning_rate_factor,
                True,
                FINE_TUNE_BACKUP_DIR,
            )
        )
    return phases


def learning_rate_for(
    training_config: TrainingConfig, phase: Phase, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The phase's rate, constant or decaying to 0 by a cosine over the phase's steps."""
    if training_config.learning_rate_schedule == "cosine":
        steps = max(1, (phase.epochs - phase.initial_epoch) * steps_per_epoch)
        return keras.optimizers.schedules.CosineDecay(phase.learning_rate, decay_steps=steps)
    return phase.learning_rate


def unfreeze_encoder(model: keras.Model, from_block: int = 0) -> None:
    """Makes the encoder trainable (from MobileNetV2's block ``from_block`` on; 0 = all).

    Its BatchNorm layers stay frozen, which in Keras 3 also runs them in inference mode:
    small batches of a few hundred photos would otherwise overwrite the ImageNet statistics
    the pretrained convolutions depend on (Keras' transfer-learning guide).
    """
    encoder = model.get_layer(model_lib.ENCODER_NAME)
    encoder.trainable = True
    trainable = from_block == 0
    for layer in encoder.layers:
        if from_block and layer.name.startswith(f"block_{from_block}_"):
            trainable = True
        layer.trainable = trainable and not isinstance(layer, keras.layers.BatchNormalization)


class KeepBestWeights(keras.callbacks.Callback):
    """Remembers the weights and logs of the epoch with the highest ``monitor``, across fits.

    One instance spans both phases, so the best epoch may be a head-training one; call
    ``restore`` after the last fit. (Keras' EarlyStopping restores only when it stops.)
    """

    def __init__(self, monitor: str = MONITOR):
        super().__init__()
        self.monitor = monitor
        self.best = -math.inf
        self.best_epoch: int | None = None
        self.best_logs: dict[str, float] | None = None
        self._weights: list[tuple[Any, np.ndarray]] | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) <= self.best:
            return
        self.best, self.best_epoch = float(value), epoch
        self.best_logs = {name: float(value) for name, value in logs.items()}
        self._weights = [(variable, variable.numpy()) for variable in self.model.weights]

    def restore(self) -> None:
        for variable, value in self._weights or []:
            variable.assign(value)


def build_callbacks(
    phase: Phase,
    model_dir: str,
    training_config: TrainingConfig,
    tensorboard: list[keras.callbacks.Callback],
    keeper: KeepBestWeights | None,
    extra: list[keras.callbacks.Callback] | None,
    cluster: distributed.Cluster | None = None,
) -> list[keras.callbacks.Callback]:
    """The callbacks of one phase's fit, built-in ones first, then the caller's.

    Several workers: only the chief writes the backup, every worker restores from it.
    """
    callbacks: list[keras.callbacks.Callback] = [
        distributed.backup_callback(
            posixpath.join(model_dir, phase.backup_dir), cluster or distributed.Cluster()
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    if keeper is not None:
        callbacks.append(keeper)
    if training_config.early_stopping_patience is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=MONITOR, mode="max", patience=training_config.early_stopping_patience
            )
        )
    callbacks.extend(tensorboard)
    callbacks.extend(extra or [])
    return callbacks


def _damaged_input_error(
    dataset_dir: str, info: dataset_info.DatasetInfo, splits: tuple[str, ...], error: Exception
) -> Exception:
    """A CRC failure inside fit reports only a byte offset; this names the damaged shard."""
    for split in dict.fromkeys(splits):
        paths = dataset_info.shard_paths(dataset_dir, split, info)
        if dataset_info.find_damaged_shards(paths):
            return dataset_info.damaged_shard_error(dataset_dir, split, paths, error)
    train_paths = dataset_info.shard_paths(dataset_dir, splits[0], info)
    return dataset_info.damaged_shard_error(dataset_dir, splits[0], train_paths, error)


def momentum_from_steps(steps_per_epoch: int) -> float:
    """1 - 1/steps, within [0.9, 0.99]: moving statistics that average over about one epoch.

    A BatchNorm's moving mean forgets with time constant 1/(1 - momentum) steps. On a few
    hundred photos (7 steps an epoch at batch 64) Keras' 0.99 is 14 epochs behind the
    weights, so validation lags training for half the run; on the full Oxford split (57
    steps) 0.98 is already about one epoch.
    """
    return round(
        min(MAX_STEPS_MOMENTUM, max(MIN_STEPS_MOMENTUM, 1.0 - 1.0 / max(1, steps_per_epoch))), 4
    )


def batchnorm_momentum_for(
    model_config: ModelConfig, steps_per_epoch: int | None = None
) -> float | None:
    """The configured momentum (or the one from steps); else None or a faster one from scratch.

    None keeps the tutorial's with pretrained weights. A randomly initialised encoder at
    MobileNetV2's 0.999 fits the training data but its moving statistics lag so far behind
    that inference predicts only background.
    """
    if model_config.batchnorm_momentum == "from_steps":
        if steps_per_epoch is None:
            raise ValueError("batchnorm_momentum 'from_steps' needs the steps per epoch")
        return momentum_from_steps(steps_per_epoch)
    if model_config.batchnorm_momentum is not None:
        return model_config.batchnorm_momentum
    return None if model_config.pretrained else FROM_SCRATCH_BATCHNORM_MOMENTUM


def _float32_copy(
    trained: keras.Model,
    model_config: ModelConfig,
    num_classes: int,
    fine_tune_from_block: int | None,
    batchnorm_momentum: float | None,
) -> keras.Model:
    """Rebuilds a mixed-precision model in float32 with the trained weights.

    Mixed-precision variables are float32 already, so the copy is exact; the saved model
    then runs (and serves) on CPUs, where float16 is slow.
    """
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        copy = model_lib.build_unet(
            model_config.image_size,
            num_classes=num_classes,
            encoder_weights="none",
            encoder_trainable=model_config.encoder_trainable,
            normalization=model_config.normalization,
            batchnorm_momentum=batchnorm_momentum,
        )
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    if fine_tune_from_block is not None:
        unfreeze_encoder(copy, fine_tune_from_block)  # the same variables in the same order
    copy.set_weights(trained.get_weights())
    return copy


def _final_metrics(
    history: keras.callbacks.History | None,
    model: keras.Model,
    train_dataset: tf.data.Dataset,
    validation_dataset: tf.data.Dataset,
    steps_per_epoch: int | None,
) -> dict[str, float]:
    """The last epoch's train and validation metrics.

    A task resumed after its last epoch was checkpointed runs no epoch, so the metrics
    are then measured afresh on the restored model.
    """
    if history is not None and history.history:
        logs = {name: values[-1] for name, values in history.history.items()}
    else:
        logs = dict(
            model.evaluate(train_dataset, steps=steps_per_epoch, return_dict=True, verbose=0)
        )
        validation = model.evaluate(validation_dataset, return_dict=True, verbose=0)
        logs.update({f"val_{name}": value for name, value in validation.items()})
    metrics = {}
    for name in METRIC_NAMES:
        for key in (name, f"val_{name}"):
            if key in logs:
                metrics[key] = float(logs[key])
    return metrics


def trained_on(info: dataset_info.DatasetInfo) -> dict[str, Any]:
    """What a model's metadata (and so its push manifest) says about the data it learnt.

    ``source`` is the TFDS name, or the folder or manifest path of own data (gs:// too);
    ``fingerprint``: a scheduled run whose data has it has nothing new to learn
    (components/data/skip_unchanged.py).
    """
    source = info.source
    return {
        "source": source.get("name") or source.get("path"),
        "source_type": source.get("type", "tfds"),
        "version": source.get("version"),
        "fingerprint": info.dataset_fingerprint,
        "split_fingerprints": dict(info.fingerprint.splits),
    }


class TrainInputs(StepInputs):
    """The model to build and how to train it; ingest's Dataset; where the Model and logs go.

    ``class_weights`` (the class-weights file) is read only when the training's
    class_weighting is not 'none'.
    """

    model: ModelConfig
    training: TrainingConfig
    dataset: ArtifactRef
    class_weights: str | None
    model_dir: str
    tensorboard_dir: str


class TrainOutcome(BaseModel):
    """The train step's outcome: the final metrics and what the Model artifact says of itself."""

    metrics: dict[str, float]
    model_metadata: dict[str, Any]

    def to_metadata(self) -> dict[str, Any]:
        return dict(self.model_metadata)


def run(inputs: TrainInputs) -> TrainOutcome:
    """The train step: ``train_model``, without repeating a recorded deterministic failure.

    The orchestrator retries this task (a preempted pod resumes from its checkpoint); an
    error that would only happen again is recorded in the model directory and re-raised.
    """
    model, dataset, model_dir = inputs.model, inputs.dataset, inputs.model_dir
    for directory in (model_dir, inputs.tensorboard_dir):
        files.makedirs(directory)
    final = run_or_replay_failure(
        lambda: train_model(
            dataset.path,
            model_dir,
            inputs.tensorboard_dir,
            model,
            inputs.training,
            inputs.class_weights,
            dataset.uri,
        ),
        model_dir,
        what="train",
    )
    # From the dataset, not the saved model: on a custom job of several replicas every worker
    # runs this, and only the chief writes model_dir (components/model/distributed.py).
    info = dataset_info.load_dataset_info(dataset.path)
    metadata = {
        "classes": info.classes,
        "image_size": model.image_size,
        "normalization": model.normalization,
        "encoder_weights": model.encoder_weights,
        "encoder_trainable": model.encoder_trainable,
        "framework": "tensorflow",
        "framework_version": tf.__version__,
        "keras_version": keras.__version__,
        "val_mean_iou": final.get("val_mean_iou"),
        "data_fingerprint": info.dataset_fingerprint,
        **provenance.provenance(),  # the petseg that trained it
    }
    metrics = {name: round(float(value), 6) for name, value in sorted(final.items())}
    return TrainOutcome(metrics=metrics, model_metadata=metadata)


def train_model(
    dataset_dir: str,
    model_dir: str,
    tensorboard_dir: str,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    class_weights_path: str | None,
    dataset_uri: str = "",
    *,
    callbacks: list[keras.callbacks.Callback] | None = None,
    runtime_plan: devices.RuntimePlan | None = None,
) -> dict[str, float]:
    """Trains the U-Net and writes the Model artifact directory.

    Args:
        dataset_dir: Dataset artifact directory (dataset.json and shards), local or gs://.
        model_dir: Model artifact directory to write (model.keras, saved_model/,
            metadata.json, summary.txt). Per-epoch checkpoints live in a subdirectory while
            training runs, so a retried task on the same output resumes from its last epoch.
        tensorboard_dir: TensorBoard log directory (scalars and sample predictions).
        model_config: a components.platform.config.ModelConfig.
        training_config: a components.platform.config.TrainingConfig.
        class_weights_path: the class-weights JSON; read only when
            training_config.class_weighting is not 'none'.
        dataset_uri: where the dataset came from, recorded in the model's metadata.
        callbacks: extra Keras callbacks, run after the built-in ones.
        runtime_plan: overrides the device decision (tests); default from the visible GPUs.

    Returns:
        Final metrics: loss, accuracy, mean_iou and their val_ counterparts.
    """
    info = dataset_info.load_dataset_info(dataset_dir)
    classes = info.classes
    validation_split = _validation_split(info, dataset_dir)
    num_train = dataset_info.split_size(dataset_dir, TRAIN, info)
    if num_train < 1:
        raise dataset_info.DatasetMismatchError(f"{dataset_dir}: the train split is empty")
    class_weights = resolve_class_weights(
        training_config, class_weights_path, model_config.image_size, classes
    )

    # Several workers (TF_CONFIG / CLUSTER_SPEC): each reads its own train shards, only the
    # chief writes the outputs, and the global batch is batch_size x workers.
    cluster = distributed.cluster_from_env()
    if cluster.is_multi_worker:
        train_shards = dataset_info.shard_paths(dataset_dir, TRAIN, info)
        distributed.check_train_shards(len(train_shards), cluster, dataset_dir)
    outputs = distributed.output_dirs(model_dir, tensorboard_dir, model_dir, cluster)
    if runtime_plan is None:
        gpus, capabilities = devices.visible_gpus()
        runtime_plan = devices.choose_runtime(
            gpus, training_config, capabilities, num_workers=cluster.num_workers
        )
    logger.info("training runtime: %s", runtime_plan.describe())
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
    strategy = devices.make_strategy(runtime_plan)
    if training_config.seed is not None:
        keras.utils.set_random_seed(training_config.seed)

    batch_size = distributed.global_batch_size(training_config.batch_size, cluster)

    def train_input(batch: int, file_shard: tuple[int, int] | None = None) -> tf.data.Dataset:
        return data.make_dataset(
            dataset_dir,
            TRAIN,
            model_config.image_size,
            batch,
            training=True,
            augment=training_config.augment,
            augmentation=augmentation_for(training_config),
            shuffle_buffer=training_config.shuffle_buffer,
            cache=training_config.cache,
            seed=training_config.seed,
            class_weights=class_weights,
            # Full batches keep shapes fixed (one XLA compile, even replica splits) as long
            # as the split holds at least one batch.
            drop_remainder=num_train >= batch_size,
            file_shard=file_shard,
        )

    train_dataset = train_input(batch_size)
    steps_per_epoch = training_config.steps_per_epoch
    validation_dataset = data.make_dataset(
        dataset_dir,
        validation_split,
        model_config.image_size,
        batch_size,
        training=False,
        cache=training_config.cache,
    )
    if cluster.is_multi_worker:
        steps_per_epoch = distributed.steps_per_epoch(num_train, batch_size, steps_per_epoch)
        train_dataset = distributed.input_by_file(strategy, train_input, batch_size)
        validation_dataset = distributed.shard_by_data(validation_dataset)
    elif steps_per_epoch is not None:
        train_dataset = train_dataset.repeat()

    steps_in_epoch = steps_per_epoch or max(1, num_train // batch_size)
    batchnorm_momentum = batchnorm_momentum_for(model_config, steps_in_epoch)
    previous_policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(runtime_plan.precision_policy)
    try:
        with strategy.scope():
            model = model_lib.build_unet(
                model_config.image_size,
                num_classes=len(classes),
                encoder_weights=model_config.encoder_weights,
                encoder_trainable=model_config.encoder_trainable,
                normalization=model_config.normalization,
                batchnorm_momentum=batchnorm_momentum,
            )

        images = masks = None
        if training_config.tensorboard_images > 0:
            # A separate uncached read: taking a few elements of the cached validation input
            # would abandon its cache half-filled.
            samples = data.make_dataset(
                dataset_dir,
                validation_split,
                model_config.image_size,
                training_config.tensorboard_images,
                training=False,
                cache=False,
            )
            images, masks = (tensor.numpy() for tensor in next(iter(samples)))
        tensorboard = tensorboard_callbacks(outputs.tensorboard_dir, images, masks)
        keeper = KeepBestWeights() if training_config.keep_best_epoch else None
        phases = training_phases(training_config)

        try:
            history = None
            for index, phase in enumerate(phases):
                if phase.fine_tune:
                    unfreeze_encoder(model, training_config.fine_tune_from_block)
                if any(
                    files.exists(posixpath.join(model_dir, later.backup_dir))
                    for later in phases[index + 1 :]
                ):
                    continue  # a resumed task: a later phase had begun and restores itself
                with strategy.scope():
                    _compile(
                        model,
                        learning_rate_for(training_config, phase, steps_in_epoch),
                        runtime_plan.jit_compile,
                        len(classes),
                        info.ignore_id,
                        training_config.loss,
                    )
                logger.info(
                    "training phase %s: epochs %d-%d",
                    phase.name,
                    phase.initial_epoch + 1,
                    phase.epochs,
                )
                history = model.fit(
                    train_dataset,
                    initial_epoch=phase.initial_epoch,
                    epochs=phase.epochs,
                    steps_per_epoch=steps_per_epoch,
                    validation_data=validation_dataset,
                    callbacks=build_callbacks(
                        phase,
                        model_dir,
                        training_config,
                        tensorboard,
                        keeper,
                        callbacks,
                        cluster=cluster,
                    ),
                    shuffle=False,  # the input pipeline shuffles
                    verbose=2,
                )
            if keeper is not None and keeper.best_logs is not None:
                keeper.restore()
                history = keras.callbacks.History()
                history.history = {name: [value] for name, value in keeper.best_logs.items()}
                logger.info("kept epoch %d (%s %.4f)", keeper.best_epoch + 1, MONITOR, keeper.best)
            metrics = _final_metrics(
                history, model, train_dataset, validation_dataset, steps_per_epoch
            )
        except tf.errors.DataLossError as error:
            raise _damaged_input_error(
                dataset_dir, info, (TRAIN, validation_split), error
            ) from error
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)

    bad = {name: value for name, value in metrics.items() if not math.isfinite(value)}
    if bad:
        raise FloatingPointError(f"training diverged: non-finite metrics {bad}")

    to_save = (
        model
        if runtime_plan.precision_policy == "float32"
        else _float32_copy(
            model,
            model_config,
            len(classes),
            training_config.fine_tune_from_block if training_config.fine_tune_epochs else None,
            batchnorm_momentum,
        )
    )
    metadata = {
        "classes": classes,
        "ignore_id": info.ignore_id,
        "image_size": model_config.image_size,
        "normalization": model_config.normalization,
        "encoder_weights": model_config.encoder_weights,
        "encoder_trainable": model_config.encoder_trainable,
        "batchnorm_momentum": batchnorm_momentum,
        "training": training_config.model_dump(mode="json"),
        "class_weights": class_weights,
        "metrics": metrics,
        "best_epoch": None
        if keeper is None or keeper.best_epoch is None
        else keeper.best_epoch + 1,
        "runtime": {
            "strategy": runtime_plan.strategy,
            "devices": list(runtime_plan.devices),
            "precision_policy": runtime_plan.precision_policy,
            "jit_compile": runtime_plan.jit_compile,
            "precision_reasons": list(runtime_plan.reasons),
            **distributed.runtime_record(cluster, training_config.batch_size),
        },
        "dataset": {
            "uri": dataset_uri or dataset_dir,
            **trained_on(info),
            "num_train_records": num_train,
            "validation_split": validation_split,
        },
    }
    metadata.update(provenance.provenance())
    model_lib.save_model_dir(to_save, outputs.model_dir, metadata)
    distributed.remove_scratch(outputs)
    logger.info("final metrics: %s", metrics)
    return metrics
