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
    """Trains the U-Net on every visible GPU (CPU when none); a retry resumes its checkpoint.

    Args:
        dataset: ingest's Dataset directory (dataset.json and TFRecord shards).
        class_weights: the class-weights JSON; used only when training_config's
            class_weighting is not 'none'.
        model_config: ModelConfig as JSON (image_size, encoder_weights, normalization, ...).
        training_config: TrainingConfig as JSON (epochs, batch_size, learning_rate, ...).
        tensorboard: epoch scalars and sample predictions, for TensorBoard.
    """
    from components.ops import start_task

    start_task()
    from components.model import train as step

    inputs = step.TrainInputs.of(
        model_config, training_config, dataset, class_weights, model, tensorboard
    )
    outcome = step.run(inputs)
    model.metadata.update(outcome.to_metadata())
    metrics.metadata.update(outcome.metrics)  # what log_metric does, for each
    tensorboard.metadata["log_dir"] = tensorboard.uri
