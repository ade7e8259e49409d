"""The class_weights component: per-class pixel counts and loss weights from the train masks."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def compute_class_weights(
    dataset: Input[Dataset],
    model_config: str,
    training_config: str,
    class_weights: Output[Artifact],
    metrics: Output[Metrics],
):
    """Counts train-mask pixels per class at the training resolution and derives weights.

    Args:
        dataset: a Dataset written by ingest.
        model_config: ModelConfig as JSON; its image_size is the counting resolution.
        training_config: TrainingConfig as JSON; class_weighting picks the strategy
            and fixed_class_weights the weights for 'fixed'.
        class_weights: output JSON file {strategy, classes, image_size, num_images,
            pixel_counts, ignored_pixels, frequencies, weights, absent_classes}; the
            classes are the dataset's.
        metrics: per-class pixel counts, frequencies and weights, and the ignored
            pixels, for the UI.
    """
    from components.ops import start_task

    start_task()
    from components.model import class_weights as step

    inputs = step.ClassWeightsInputs.of(model_config, training_config, dataset, class_weights)
    outcome = step.run(inputs)
    class_weights.metadata.update(outcome.to_metadata())
    metrics.metadata.update(outcome.metrics())  # what log_metric does, for each
