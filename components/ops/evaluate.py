"""KFP wrapper of the evaluation: metrics, confusion matrix, HTML report and the blessing."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    dataset: Input[Dataset],
    model_config: str,
    evaluation_config: str,
    push_config: str,
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[HTML],
    data_statistics: Input[Artifact] = None,
) -> NamedTuple("EvaluateOutputs", [("blessed", bool), ("reason", str), ("mean_iou", float)]):
    """Scores the candidate on the test split; ``blessed`` says whether it may be pushed."""
    from components.ops import start_task

    start_task()
    from components.evaluation import evaluate as step

    report.uri += ".html"  # a file that says what it is: browsers and the KFP UI open a page
    artifacts = (model, dataset, report, metrics, data_statistics)
    inputs = step.EvaluateInputs.of(model_config, evaluation_config, push_config, *artifacts)
    outcome = step.run(inputs)
    metrics.metadata.update(step.scalar_metrics(outcome.to_dict()))  # as log_metric, for each
    candidate = outcome.candidate
    confusion.log_confusion_matrix(candidate["classes"], candidate["confusion_matrix"])
    report.metadata["blessed"] = outcome.blessed
    return outcome.blessed, outcome.reason, float(candidate["mean_iou"] or 0.0)
