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
    """Scores the candidate on the test split and decides whether it may be pushed.

    Args:
        model: the candidate Model artifact directory (train's output).
        dataset: the Dataset artifact directory (ingest's output); its test split is scored.
        model_config: ModelConfig JSON; the model's image size and normalisation must match.
        evaluation_config: EvaluationConfig JSON: threshold, regression margin, baseline,
            batch size and the number of report images.
        push_config: PushConfig JSON; its destination holds the 'latest' baseline.
        metrics: scalar metrics (mean IoU with its 95% interval, the difference to the
            baseline with its interval, pixel accuracy, per-class IoU/precision/recall,
            boundary IoU, per-slice mean IoU, the baseline's as baseline_*, blessed as 1/0);
            the file holds the full outcome (contracts.EvaluationOutcome).
        confusion: the pixel confusion matrix with class names (rows true, columns predicted).
        report: a self-contained HTML page with sample predictions and the metrics.
        data_statistics: data_statistics' output; its check verdicts are added to the report.

    Returns:
        blessed: whether the model passed every check (the pipeline branches on it).
        reason: every check's result, '; '-separated.
        mean_iou: the candidate's mean IoU on the test split.
    """
    from components.platform.failures import record_failures

    record_failures()  # an uncaught error names this task in the run-end report

    import json
    import tempfile
    from collections import namedtuple

    import tensorflow as tf

    from components.evaluation import evaluate as core
    from components.platform.config import (
        EvaluationConfig,
        ModelConfig,
        PushConfig,
        section_from_json,
    )
    from components.platform.contracts import EvaluationOutcome
    from components.platform.retry import retry_transient

    model_settings = section_from_json(ModelConfig, model_config)
    evaluation_settings = section_from_json(EvaluationConfig, evaluation_config)
    push_settings = section_from_json(PushConfig, push_config)

    verdicts = None
    if data_statistics is not None:
        from components.data import data_validation

        with tf.io.gfile.GFile(f"{data_statistics.path}/{data_validation.CHECKS_FILE}") as handle:
            verdicts = json.load(handle)
    # A file that says what it is: browsers and the KFP UI open report.html as a page.
    report.uri = report.uri + ".html"

    with tempfile.TemporaryDirectory() as cache_dir:
        baseline_dir, baseline_note = retry_transient(
            lambda: core.resolve_baseline(
                evaluation_settings.baseline, push_settings.destination, cache_dir
            ),
            what="evaluate: reading the baseline model",
        )
        outcome = retry_transient(
            lambda: core.run_evaluation(
                model.path,
                dataset.path,
                model_settings,
                evaluation_settings,
                baseline_dir,
                report.path,
                baseline_note=baseline_note,
                data_checks=verdicts,
            ),
            what="evaluate",
        )

    for name, value in core.scalar_metrics(outcome).items():
        metrics.log_metric(name, value)
    EvaluationOutcome.from_dict(outcome, metrics.path).write(metrics.path)
    candidate = outcome["candidate"]
    confusion.log_confusion_matrix(candidate["classes"], candidate["confusion_matrix"])
    report.metadata["blessed"] = outcome["blessed"]

    print(f"blessed: {outcome['blessed']}")
    for reason in outcome["reasons"]:
        print(f"  {reason}")
    outputs = namedtuple("EvaluateOutputs", ["blessed", "reason", "mean_iou"])
    mean_iou = candidate["mean_iou"]
    return outputs(bool(outcome["blessed"]), outcome["reason"], float(mean_iou or 0.0))
