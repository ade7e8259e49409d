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
    from components.platform.failures import record_failures

    record_failures()  # an uncaught error names this task in the run-end report

    import os

    from components.platform.config import PredictConfig, section_from_json
    from components.publish.predict import predict_pushed_model

    settings = section_from_json(PredictConfig, predict_config)
    os.makedirs(predictions.path, exist_ok=True)
    outcome = predict_pushed_model(
        dict(pushed_model.metadata),
        pushed_model.uri,
        settings.input,
        predictions.path,
        batch_size=settings.batch_size,
        alpha=settings.alpha,
    )
    if outcome["skip_reason"]:
        print(f"no predictions: {outcome['skip_reason']}")
    else:
        print(
            f"predicted {outcome['predicted']} image(s) of {settings.input} with "
            f"{outcome['version']}; {outcome['unreadable']} unreadable (failed.jsonl)"
        )
    predictions.metadata.update(outcome)
