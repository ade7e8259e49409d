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
    from components.platform.failures import record_failures

    record_failures()  # an uncaught error names this task in the run-end report

    import logging

    from components.model.class_weights import compute_class_weights as compute
    from components.model.class_weights import write_class_weights
    from components.platform.config import ModelConfig, TrainingConfig, section_from_json
    from components.platform.retry import retry_transient

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    model = section_from_json(ModelConfig, model_config)
    training = section_from_json(TrainingConfig, training_config)
    result = retry_transient(
        lambda: compute(
            dataset.path,
            image_size=model.image_size,
            strategy=training.class_weighting,
            fixed_weights=training.fixed_class_weights,
        ),
        what="class weights",
    )
    write_class_weights(result, class_weights.path)

    class_weights.metadata.update(
        {
            "strategy": result["strategy"],
            "classes": result["classes"],
            "image_size": result["image_size"],
            "weights": result["weights"],
        }
    )
    metrics.log_metric("num_images", result["num_images"])
    metrics.log_metric("ignored_pixels", result["ignored_pixels"])
    for index, name in enumerate(result["classes"]):
        metrics.log_metric(f"pixels_{name}", result["pixel_counts"][index])
        metrics.log_metric(f"frequency_{name}", result["frequencies"][index])
        metrics.log_metric(f"weight_{name}", result["weights"][index])
