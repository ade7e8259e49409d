"""A folder dataset with five classes and an ignored band, through the whole pipeline.

The synthetic generator writes palette masks (index = class id, 255 = void) with the
pets' outline band as ignored pixels; the pipeline runs on kfp.local from ingest to
push. Every step after ingest must follow the dataset's five classes: the weights, the
model head and its metadata, the metrics, the confusion matrix, the report and the push
manifest; and no ignored pixel may be counted anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from components.data import schema, synthetic_pets
from components.platform.config import load_config
from pipelines.local import run_local

pytestmark = [
    pytest.mark.slow,
    # Locally the bodies run in this interpreter, which is what the warning is about.
    pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning"),
]

SIZE = 32
SPLITS = {"train": 12, "validation": 4, "test": 4}


def test_five_classes_with_ignored_pixels_follow_through_the_pipeline(tmp_path):
    folder = synthetic_pets.write_folder_dataset(
        str(tmp_path / "data"),
        SPLITS,
        num_classes=5,
        mask_format="palette",
        ignore_border=True,
        image_size=SIZE,
        seed=5,
    )
    names = folder.class_names
    assert len(names) == 5
    config_file = tmp_path / "five.yaml"
    config_file.write_text(yaml.safe_dump({"data": {**folder.data_config, "records_per_shard": 8}}))
    config = load_config(
        "demo",
        config_file=config_file,
        overrides=[
            f"model.image_size={SIZE}",
            "training.epochs=1",
            "training.batch_size=4",
            "training.class_weighting=inverse_frequency",
            "training.tensorboard_images=1",
            "evaluation.min_mean_iou=0.0",
            "evaluation.report_images=2",
            f"push.destination={tmp_path / 'models'}",
            # Twelve drawn pets may miss a pet group in train; that is the data checks' concern.
            "checks.classes_missing_in_train.severity=warn",
        ],
    )
    run = run_local(config, pipeline_root=tmp_path / "root")

    # Ingest: the class table's names, ignore id 255, ignored pixels present in the masks.
    dataset = Path(run.task("ingest").artifacts["dataset"]["uri"])
    info = json.loads((dataset / "dataset.json").read_text())
    assert info["classes"] == names and info["ignore_id"] == schema.IGNORE_ID

    # Class weights: one per class, ignored pixels counted apart.
    weights = json.loads(
        Path(run.task("compute-class-weights").artifacts["class_weights"]["uri"]).read_text()
    )
    assert weights["classes"] == names and len(weights["weights"]) == 5
    assert weights["ignored_pixels"] > 0
    assert sum(weights["pixel_counts"]) + weights["ignored_pixels"] == 12 * SIZE * SIZE

    # Train: five output channels, named in the metadata.
    from components.model.model import load_model_dir

    model_artifact = run.task("train").artifacts["model"]
    assert model_artifact["metadata"]["classes"] == names
    model, metadata = load_model_dir(model_artifact["uri"], expected_classes=names)
    assert model.output_shape == (None, SIZE, SIZE, 5)
    assert metadata.classes == names
    train_metrics = run.task("train").artifacts["metrics"]["metadata"]
    assert all(np.isfinite(value) for value in train_metrics.values())

    # Evaluate: a 5x5 confusion matrix over the labelled test pixels only.
    evaluate = run.task("evaluate")
    outcome = json.loads(Path(evaluate.artifacts["metrics"]["uri"]).read_text())
    candidate = outcome["candidate"]
    assert candidate["classes"] == names
    assert np.asarray(candidate["confusion_matrix"]).shape == (5, 5)
    assert candidate["ignored_pixels"] > 0
    assert candidate["num_pixels"] + candidate["ignored_pixels"] == 4 * SIZE * SIZE
    assert np.sum(candidate["confusion_matrix"]) == candidate["num_pixels"]
    matrix = evaluate.artifacts["confusion"]["metadata"]["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == names
    report = Path(evaluate.artifacts["report"]["uri"]).read_text()
    assert all(f"true {name}" in report for name in names)

    # Push: the manifest carries the class list.
    assert run.blessed is True
    manifest = json.loads((Path(run.pushed_uri) / "manifest.json").read_text())
    assert manifest["classes"] == names
