"""A 2-class dataset with ignored pixels through class weights → train → evaluate on kfp.local.

The dataset is written straight through the schema (tests/recordsets.py), imported as a
Dataset artifact, and every task after ingest runs as the pipeline runs it. The assertions
are on what each task wrote: weights per dataset class, a model head of two channels whose
metadata names the classes, metrics and a confusion matrix over those classes that leave the
ignored pixels out, and a report that names them.
"""

# No `from __future__ import annotations`: KFP reads the pipeline's output types at run time.
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from kfp import dsl

from components.data import schema
from components.platform.config import EvaluationConfig, ModelConfig, PushConfig, TrainingConfig
from tests import recordsets

pytestmark = [
    pytest.mark.slow,
    # Locally the bodies run in this interpreter, which is what the warning is about.
    pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning"),
]

SIZE = 32
TWO = recordsets.class_names_for(2)


def _run(dataset_dir: str):
    from components.ops.class_weights import compute_class_weights
    from components.ops.evaluate import evaluate
    from components.ops.train import train

    model_config = ModelConfig(image_size=SIZE, encoder_weights="none").model_dump_json()
    training_config = TrainingConfig(
        epochs=1,
        batch_size=4,
        class_weighting="median_frequency",
        shuffle_buffer=8,
        tensorboard_images=1,
    ).model_dump_json()

    class Outputs(NamedTuple):
        class_weights: dsl.Artifact
        model: dsl.Model
        train_metrics: dsl.Metrics
        metrics: dsl.Metrics
        confusion: dsl.ClassificationMetrics
        report: dsl.HTML

    @dsl.pipeline(name="classes-test")
    def classes_pipeline() -> Outputs:
        dataset = dsl.importer(artifact_uri=dataset_dir, artifact_class=dsl.Dataset)
        weights = compute_class_weights(
            dataset=dataset.output, model_config=model_config, training_config=training_config
        )
        trained = train(
            dataset=dataset.output,
            class_weights=weights.outputs["class_weights"],
            model_config=model_config,
            training_config=training_config,
        )
        scored = evaluate(
            model=trained.outputs["model"],
            dataset=dataset.output,
            model_config=model_config,
            evaluation_config=EvaluationConfig(
                min_mean_iou=0.0, baseline="none", report_images=2
            ).model_dump_json(),
            push_config=PushConfig().model_dump_json(),
        )
        return Outputs(
            weights.outputs["class_weights"],
            trained.outputs["model"],
            trained.outputs["metrics"],
            scored.outputs["metrics"],
            scored.outputs["confusion"],
            scored.outputs["report"],
        )

    return classes_pipeline()


def test_two_classes_with_ignored_pixels_through_weights_train_and_evaluate(kfp_local, tmp_path):
    dataset_dir = str(tmp_path / "dataset")
    contents = recordsets.write_recordset(
        dataset_dir,
        {"train": 8, "validation": 4, "test": 4},
        height=SIZE,
        width=SIZE,
        num_classes=2,
        ignore=True,
        seed=11,
    )
    run = {"task": _run(dataset_dir), "contents": contents}
    _check_class_weights(run)
    _check_model(run)
    _check_evaluation(run)


def _check_class_weights(run):
    """Weights per dataset class; ignored pixels counted apart."""
    artifact = run["task"].outputs["class_weights"]
    record = json.loads(Path(artifact.path).read_text())
    train_masks = np.stack([mask for _, mask in run["contents"]["train"]])
    assert record["classes"] == TWO and artifact.metadata["classes"] == TWO
    assert record["pixel_counts"] == [int((train_masks == c).sum()) for c in range(2)]
    assert record["ignored_pixels"] == int((train_masks == schema.IGNORE_ID).sum()) > 0
    assert len(record["weights"]) == 2 and all(weight > 0 for weight in record["weights"])


def _check_model(run):
    """Two output channels; the metadata names the classes and the weights used."""
    from components.model.model import load_model_dir

    model_artifact = run["task"].outputs["model"]
    assert model_artifact.metadata["classes"] == TWO
    model, metadata = load_model_dir(model_artifact.path, expected_classes=TWO)
    assert model.output_shape == (None, SIZE, SIZE, 2)
    assert metadata.classes == TWO and metadata.ignore_id == schema.IGNORE_ID
    assert metadata.class_weights == pytest.approx(
        json.loads(Path(run["task"].outputs["class_weights"].path).read_text())["weights"]
    )
    train_metrics = run["task"].outputs["train_metrics"].metadata
    assert 0.0 <= train_metrics["accuracy"] <= 1.0 and 0.0 <= train_metrics["val_mean_iou"] <= 1


def _check_evaluation(run):
    """Metrics and confusion matrix over the two classes, ignored pixels left out."""
    test_masks = np.stack([mask for _, mask in run["contents"]["test"]])
    ignored = int((test_masks == schema.IGNORE_ID).sum())
    outcome = json.loads(Path(run["task"].outputs["metrics"].path).read_text())
    candidate = outcome["candidate"]
    assert candidate["classes"] == TWO
    assert np.asarray(candidate["confusion_matrix"]).shape == (2, 2)
    assert candidate["ignored_pixels"] == ignored > 0
    assert candidate["num_pixels"] == test_masks.size - ignored
    assert np.sum(candidate["confusion_matrix"]) == test_masks.size - ignored
    # Each true row holds exactly that class's labelled pixels.
    rows = np.sum(candidate["confusion_matrix"], axis=1)
    assert rows.tolist() == [int((test_masks == c).sum()) for c in range(2)]
    metrics = run["task"].outputs["metrics"].metadata
    assert {f"iou_{name}" for name in TWO if candidate["per_class"][name]["iou"] is not None} <= (
        set(metrics)
    )
    matrix = run["task"].outputs["confusion"].metadata["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == TWO
    page = Path(run["task"].outputs["report"].path).read_text()
    assert all(name in page for name in TWO)
