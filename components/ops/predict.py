"""KFP wrapper of batch prediction: the model push just published, over a configured input."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def predict(
    pushed_model: Input[Artifact],
    predict_config: str,
    predictions: Output[Artifact],
):
    """Segments every image of predict.input with the pushed model; nothing if none was pushed.

    Args:
        pushed_model: push's outcome; its uri is the pushed version's directory and its
            metadata says whether anything was pushed (``pushed``, ``skip_reason``).
        predict_config: PredictConfig JSON: input (folder, glob or gs:// prefix),
            batch_size, alpha.
        predictions: output directory: masks/ (class ids at each image's resolution),
            overlays/, predictions.jsonl and failed.jsonl (unreadable images). Its metadata
            holds predicted, unreadable, model, version, input, classes and skip_reason.
    """
    from components.ops import start_task

    start_task()
    from components.publish import predict as step

    summary = step.run(step.PredictInputs.of(predict_config, pushed_model, predictions))
    predictions.metadata.update(summary.to_metadata())
