"""The train component: Dataset (+ class weights) → Model, TensorBoard logs, metrics."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    class_weights: Input[Artifact],
    model_config: str,
    training_config: str,
    model: Output[Model],
    tensorboard: Output[Artifact],
    metrics: Output[Metrics],
):
    """Trains the U-Net on every visible GPU (CPU when none) and saves the Model artifact.

    Checkpoints each epoch inside the model directory, so a retried or preempted task
    resumes from its last finished epoch.

    Args:
        dataset: ingest's Dataset directory (dataset.json and TFRecord shards).
        class_weights: the class-weights JSON; used only when training_config's
            class_weighting is not 'none'.
        model_config: ModelConfig as JSON (image_size, encoder_weights, freeze_encoder,
            normalization).
        training_config: TrainingConfig as JSON (epochs, batch_size, learning_rate, ...).
        model: output directory: model.keras, saved_model/ (serving signature: image
            bytes → masks at the model's and the image's size), metadata.json,
            summary.txt. Its metadata carries classes (the dataset's; one output channel
            each), image_size, normalization, encoder_weights, framework and
            data_fingerprint (the content fingerprint of the dataset it was trained on).
        tensorboard: output TensorBoard log directory (epoch scalars, sample predictions).
        metrics: final train and validation loss, accuracy and mean IoU.
    """
    from components.platform.failures import record_failures

    record_failures()  # an uncaught error names this task in the run-end report

    import logging
    import os

    import keras
    import tensorflow as tf

    from components.data import dataset_info
    from components.model.train import train_model
    from components.platform import provenance
    from components.platform.config import ModelConfig, TrainingConfig, section_from_json
    from components.platform.retry import run_or_replay_failure

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    model_settings = section_from_json(ModelConfig, model_config)
    training_settings = section_from_json(TrainingConfig, training_config)
    os.makedirs(model.path, exist_ok=True)
    os.makedirs(tensorboard.path, exist_ok=True)

    # The orchestrator retries this task (a preempted pod resumes from its checkpoint); an
    # error that would only happen again is recorded in the model directory and not repeated.
    final_metrics = run_or_replay_failure(
        lambda: train_model(
            dataset_dir=dataset.path,
            model_dir=model.path,
            tensorboard_dir=tensorboard.path,
            model_config=model_settings,
            training_config=training_settings,
            class_weights_path=class_weights.path if class_weights is not None else None,
            dataset_uri=dataset.uri,
        ),
        model.path,
        what="train",
    )
    for name, value in sorted(final_metrics.items()):
        metrics.log_metric(name, round(float(value), 6))
    logging.info("final metrics: %s", final_metrics)

    # From the dataset, not the saved model: on a custom job of several replicas every worker
    # runs this, and only the chief writes model.path (components/model/distributed.py).
    info = dataset_info.load_dataset_info(dataset.path)
    model.metadata.update(
        {
            "classes": info.classes,
            "image_size": model_settings.image_size,
            "normalization": model_settings.normalization,
            "encoder_weights": model_settings.encoder_weights,
            "encoder_trainable": model_settings.encoder_trainable,
            "framework": "tensorflow",
            "framework_version": tf.__version__,
            "keras_version": keras.__version__,
            "val_mean_iou": final_metrics.get("val_mean_iou"),
            "data_fingerprint": dataset_info.dataset_fingerprint(info),
        }
    )
    model.metadata.update(provenance.provenance())  # the petseg that trained it
    tensorboard.metadata["log_dir"] = tensorboard.uri
