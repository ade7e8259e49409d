"""The evaluate component through kfp.local: outputs, artifacts, baseline resolution, refusals."""

# No `from __future__ import annotations`: KFP reads the pipeline's output types at run time.
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from kfp import dsl

from components.data import schema
from components.evaluation import evaluate as core
from components.platform.config import EvaluationConfig, ModelConfig, PushConfig
from components.publish import push
from tests import recordsets
from tests.test_evaluate import IMAGE_SIZE, SKEWED_COLOURS, nearest_colour, write_colour_model

# Locally the bodies run in this interpreter, which is what the warning is about.
pytestmark = pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate_component")
    dataset_dir = str(root / "dataset")
    contents = recordsets.write_recordset(
        dataset_dir, {"test": 5}, height=IMAGE_SIZE, width=IMAGE_SIZE, seed=5
    )
    return {
        "root": root,
        "dataset": dataset_dir,
        "test": contents["test"],
        "skewed": write_colour_model(root / "skewed", SKEWED_COLOURS),
        "exact": write_colour_model(root / "exact", recordsets.CLASS_COLOURS),
    }


def _run(model_dir, dataset_dir, *, model=None, evaluation=None, destination=""):
    """Runs the component on existing directories, imported as artifacts."""
    from components.ops.evaluate import evaluate

    model_config = model or ModelConfig(image_size=IMAGE_SIZE, normalization="tutorial")
    evaluation_config = evaluation or EvaluationConfig(baseline="none", report_images=2)

    class Outputs(NamedTuple):
        metrics: dsl.Metrics
        confusion: dsl.ClassificationMetrics
        report: dsl.HTML
        blessed: bool
        reason: str
        mean_iou: float

    @dsl.pipeline(name="evaluate-test")
    def evaluate_pipeline() -> Outputs:
        model_artifact = dsl.importer(artifact_uri=model_dir, artifact_class=dsl.Model)
        dataset_artifact = dsl.importer(artifact_uri=dataset_dir, artifact_class=dsl.Dataset)
        task = evaluate(
            model=model_artifact.output,
            dataset=dataset_artifact.output,
            model_config=model_config.model_dump_json(),
            evaluation_config=evaluation_config.model_dump_json(),
            push_config=PushConfig(destination=destination).model_dump_json(),
        )
        return Outputs(
            task.outputs["metrics"],
            task.outputs["confusion"],
            task.outputs["report"],
            task.outputs["blessed"],
            task.outputs["reason"],
            task.outputs["mean_iou"],
        )

    return evaluate_pipeline()


def _numpy_confusion(contents, colours):
    """Independent confusion matrix of the nearest-colour model on the stored images."""
    images = np.stack([image for image, _ in contents])
    truth = np.stack([mask for _, mask in contents])
    predicted = nearest_colour(images, colours)
    return np.array([[np.sum((truth == t) & (predicted == p)) for p in range(3)] for t in range(3)])


def test_component_logs_metrics_confusion_and_report(kfp_local, inputs):
    task = _run(
        inputs["skewed"],
        inputs["dataset"],
        evaluation=EvaluationConfig(
            min_mean_iou=0.5, baseline="latest", report_images=2, report_worst_images=0
        ),
        destination="",  # 'latest' with nowhere pushed: no baseline
    )
    expected_confusion = _numpy_confusion(inputs["test"], SKEWED_COLOURS)
    expected = core.segmentation_metrics(expected_confusion)
    assert 0.5 < expected["mean_iou"] < 0.99

    assert task.outputs["blessed"] is True
    assert task.outputs["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert task.outputs["reason"] == (
        f"mean IoU {expected['mean_iou']:.4f} >= min_mean_iou 0.5000; "
        "no baseline to compare with "
        "(evaluation.baseline is 'latest' but push.destination is empty)"
    )

    metrics = task.outputs["metrics"].metadata
    assert metrics["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert metrics["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    for name in schema.CLASS_NAMES:
        assert metrics[f"iou_{name}"] == pytest.approx(expected["per_class"][name]["iou"])
        assert metrics[f"recall_{name}"] == pytest.approx(expected["per_class"][name]["recall"])
    assert metrics["blessed"] == 1.0 and metrics["num_images"] == 5.0
    assert not any(key.startswith("baseline_") for key in metrics)
    outcome = json.loads(Path(task.outputs["metrics"].path).read_text())
    assert outcome["candidate"]["confusion_matrix"] == expected_confusion.tolist()

    matrix = task.outputs["confusion"].metadata["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == list(schema.CLASS_NAMES)
    assert [row["row"] for row in matrix["rows"]] == expected_confusion.tolist()

    assert task.outputs["report"].path.endswith("/report.html")  # opens as a page from disk
    page = Path(task.outputs["report"].path).read_text()
    assert page.count("data:image/png;base64,") == 3 * 2
    assert "test_0000.png" in page and "test_0001.png" in page and "test_0002.png" not in page
    assert "Model blessed" in page


def test_component_compares_with_the_latest_pushed_model(kfp_local, inputs, tmp_path):
    destination = str(tmp_path / "models")
    push.push_model(inputs["exact"], destination, run_id="production")
    evaluation = EvaluationConfig(min_mean_iou=0.5, max_regression=0.01, baseline="latest")

    worse = _run(
        inputs["skewed"], inputs["dataset"], evaluation=evaluation, destination=destination
    )
    production = core.segmentation_metrics(
        _numpy_confusion(inputs["test"], recordsets.CLASS_COLOURS)
    )
    metrics = worse.outputs["metrics"].metadata
    assert metrics["baseline_mean_iou"] == pytest.approx(production["mean_iou"])
    assert metrics["baseline_mean_iou"] > metrics["mean_iou"] + 0.01
    assert worse.outputs["blessed"] is False
    assert metrics["blessed"] == 0.0
    assert "> max_regression 0.0100" in worse.outputs["reason"]
    assert f"the latest model pushed to {destination}" in worse.outputs["reason"]
    assert "Model not blessed" in Path(worse.outputs["report"].path).read_text()

    same = _run(inputs["exact"], inputs["dataset"], evaluation=evaluation, destination=destination)
    assert same.outputs["blessed"] is True
    assert "regression 0.0000 <= max_regression 0.0100" in same.outputs["reason"]


def test_component_refuses_a_model_configured_differently(kfp_local, inputs, capfd):
    with pytest.raises(RuntimeError):
        _run(
            inputs["skewed"],
            inputs["dataset"],
            model=ModelConfig(image_size=IMAGE_SIZE, normalization="mobilenet"),
        )
    logs = capfd.readouterr()
    assert "normalization 'tutorial' differs from the configured model.normalization" in (
        logs.out + logs.err
    )


def test_resolve_baseline_settings(inputs, tmp_path):
    cache = str(tmp_path / "cache")
    assert core.resolve_baseline("none", "anywhere", cache) == (
        None,
        "evaluation.baseline is 'none'",
    )
    assert core.resolve_baseline("gs://b/models/v3", "", cache)[0] == "gs://b/models/v3"
    assert core.resolve_baseline("latest", "", cache)[0] is None
    empty = str(tmp_path / "nothing_pushed")
    directory, note = core.resolve_baseline("latest", empty, cache)
    assert directory is None and "no model pushed" in note
    destination = str(tmp_path / "models")
    push.push_model(inputs["exact"], destination, run_id="r1")
    directory, note = core.resolve_baseline("latest", destination, cache)
    assert directory is not None
    assert json.loads((Path(directory) / "metadata.json").read_text())["image_size"] == IMAGE_SIZE
    with pytest.raises(ValueError, match=r"evaluation\.baseline is empty"):
        core.resolve_baseline(" ", destination, cache)
