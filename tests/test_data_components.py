"""ingest → class_weights as KFP components, run by kfp.local's SubprocessRunner."""

import json
from typing import NamedTuple

import numpy as np
import pytest
import tensorflow as tf
from kfp import dsl

from components.data import dataset_info, schema
from components.model.class_weights import count_mask_pixels, load_class_weights
from components.ops.class_weights import compute_class_weights
from components.ops.ingest import ingest
from components.platform.config import DataConfig, ModelConfig, TrainingConfig

IMAGE_SIZE = 64


class DataOutputs(NamedTuple):
    dataset: dsl.Dataset
    class_weights: dsl.Artifact
    metrics: dsl.Metrics


@dsl.pipeline(name="data-steps")
def data_steps(data_config: str, model_config: str, training_config: str) -> DataOutputs:
    """Ingest then class weights: kfp.local passes artifacts only between pipeline tasks."""
    ingest_task = ingest(data_config=data_config)
    weights_task = compute_class_weights(
        dataset=ingest_task.outputs["dataset"],
        model_config=model_config,
        training_config=training_config,
    )
    return DataOutputs(
        dataset=ingest_task.outputs["dataset"],
        class_weights=weights_task.outputs["class_weights"],
        metrics=weights_task.outputs["metrics"],
    )


@pytest.fixture
def data_config(tmp_path):
    return DataConfig(
        dataset="synthetic_pets",
        data_dir=str(tmp_path / "tfds"),
        synthetic_train_size=12,
        synthetic_test_size=6,
        synthetic_image_size=64,
        records_per_shard=8,
    )


def test_ingest_then_class_weights(kfp_local, data_config):
    run = data_steps(
        data_config=data_config.model_dump_json(),
        model_config=ModelConfig(image_size=IMAGE_SIZE, encoder_weights="none").model_dump_json(),
        training_config=TrainingConfig(class_weighting="median_frequency").model_dump_json(),
    )
    dataset = run.outputs["dataset"]

    info = dataset_info.load_dataset_info(dataset.path).to_dict()
    num_train = info["splits"]["train"]["num_records"]
    num_validation = info["splits"]["validation"]["num_records"]
    # Validation is carved from synthetic_pets' train split; test stays as it is.
    assert num_train + num_validation == 12 and num_train > 8 and num_validation > 0
    assert info["splits"]["test"]["num_records"] == 6
    assert info["splits"]["train"]["shards"] == [
        "train/train-00000-of-00002.tfrecord",
        "train/train-00001-of-00002.tfrecord",
    ]
    records = list(tf.data.TFRecordDataset(dataset_info.shard_paths(dataset.path, "test")))
    assert len(records) == 6
    mask = schema.decode_example(records[0])["mask"].numpy()
    assert set(np.unique(mask)) <= {0, 1, 2}

    metadata = dataset.metadata
    assert metadata["source_type"] == "tfds"
    assert metadata["source_name"] == "synthetic_pets"
    assert metadata["source_version"] == "1.0.0"
    assert metadata["source_config"] == "train12-test6-size64-seed0"
    assert metadata["classes"] == ["pet", "background", "border"]
    assert metadata["schema_version"] == schema.SCHEMA_VERSION
    assert metadata["ignore_id"] == 255
    assert metadata["fingerprint"] == info["fingerprint"]["dataset"]
    assert metadata["split_fingerprints"] == info["fingerprint"]["splits"]
    assert metadata["num_records"] == {"train": num_train, "validation": num_validation, "test": 6}
    assert metadata["num_skipped"] == {"train": 0, "validation": 0, "test": 0}
    assert metadata["num_train_records"] == num_train
    assert metadata["shards"]["test"] == ["test/test-00000-of-00001.tfrecord"]

    artifact = run.outputs["class_weights"]
    with open(artifact.path) as handle:
        result = json.load(handle)
    assert result["strategy"] == "median_frequency"
    assert result["image_size"] == IMAGE_SIZE
    assert result["num_images"] == num_train
    assert sum(result["pixel_counts"]) == num_train * IMAGE_SIZE * IMAGE_SIZE
    assert result["pixel_counts"] == count_mask_pixels(dataset.path, IMAGE_SIZE)["pixel_counts"]
    frequencies = np.array(result["pixel_counts"]) / sum(result["pixel_counts"])
    expected = np.median(frequencies) / frequencies
    np.testing.assert_allclose(load_class_weights(artifact.path), expected, rtol=1e-9)
    # Background dominates, so it gets the smallest weight.
    assert np.argmin(result["weights"]) == schema.CLASS_NAMES.index("background")
    assert artifact.metadata["weights"] == result["weights"]
    assert artifact.metadata["strategy"] == "median_frequency"

    metrics = run.outputs["metrics"].metadata
    assert metrics["num_images"] == num_train
    for index, name in enumerate(schema.CLASS_NAMES):
        assert metrics[f"pixels_{name}"] == result["pixel_counts"][index]
        assert metrics[f"frequency_{name}"] == pytest.approx(result["frequencies"][index])
        assert metrics[f"weight_{name}"] == pytest.approx(result["weights"][index])


def test_class_weights_component_uses_fixed_weights(kfp_local, data_config):
    training = TrainingConfig(class_weighting="fixed", fixed_class_weights=[1.0, 0.5, 3.0])
    run = data_steps(
        data_config=data_config.model_dump_json(),
        model_config=ModelConfig(image_size=32, encoder_weights="none").model_dump_json(),
        training_config=training.model_dump_json(),
    )
    assert load_class_weights(run.outputs["class_weights"].path) == [1.0, 0.5, 3.0]
    metrics = run.outputs["metrics"].metadata
    assert metrics["weight_border"] == 3.0
    num_train = dataset_info.split_size(run.outputs["dataset"].path, "train")
    assert sum(metrics[f"pixels_{name}"] for name in schema.CLASS_NAMES) == num_train * 32 * 32


def test_ingest_component_fails_on_invalid_config(kfp_local, capfd):
    with pytest.raises(RuntimeError, match="ingest"):
        ingest(data_config=json.dumps({"source": "folder"}))
    captured = capfd.readouterr()
    assert "data.path is required for source 'folder'" in captured.out + captured.err
