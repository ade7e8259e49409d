"""Evidence that training learns: the demo preset on the synthetic pets reaches a mean IoU
on the test split that predicting the majority class (or anything untrained) cannot.

Measured on 2 CPU cores (seed 42, demo preset with 12 epochs, under a minute of training):
mean IoU 0.556 on the 48 test images (per class: pet 0.58, background 0.88, border 0.21),
pixel accuracy 0.864. Predicting the majority class (background, 76% of the pixels)
everywhere gives mean IoU 0.253, computed below from the same confusion matrix. The bar,
0.45, sits far above that and below the measured value, leaving room for numerical
differences between machines.
"""

from __future__ import annotations

import numpy as np
import pytest

from components.data import schema
from components.data.ingest import ingest_dataset
from components.model import input_pipeline as data
from components.model import train
from components.model.model import load_model_dir
from components.platform.config import load_config

MIN_MEAN_IOU = 0.45
MIN_PET_IOU = 0.40
MIN_MARGIN_OVER_MAJORITY = 0.15


def confusion_matrix(dataset_dir, split, model, image_size):
    """Rows true class, columns predicted class, over every pixel of the split."""
    counts = np.zeros((schema.NUM_CLASSES, schema.NUM_CLASSES), np.int64)
    for images, masks in data.make_dataset(dataset_dir, split, image_size, 32, training=False):
        predicted = np.argmax(np.asarray(model(images, training=False)), axis=-1).ravel()
        truth = masks.numpy().astype(np.int64).ravel()
        counts += np.bincount(
            truth * schema.NUM_CLASSES + predicted, minlength=schema.NUM_CLASSES**2
        ).reshape(schema.NUM_CLASSES, schema.NUM_CLASSES)
    return counts


def per_class_iou(counts):
    true_positives = np.diag(counts).astype(np.float64)
    union = counts.sum(axis=0) + counts.sum(axis=1) - true_positives
    return true_positives / np.maximum(union, 1)


def majority_class_mean_iou(counts):
    """Mean IoU of predicting the most frequent true class for every pixel."""
    pixels_per_class = counts.sum(axis=1)
    majority = int(np.argmax(pixels_per_class))
    return pixels_per_class[majority] / pixels_per_class.sum() / schema.NUM_CLASSES


@pytest.mark.slow
def test_demo_training_beats_the_majority_class_by_far(tmp_path):
    config = load_config(
        "demo", overrides=[f"data.data_dir={tmp_path / 'tfds'}", "training.epochs=12"]
    )
    dataset_dir = str(tmp_path / "dataset")
    ingest_dataset(config.data, dataset_dir)

    final = train.train_model(
        dataset_dir,
        str(tmp_path / "model"),
        str(tmp_path / "tensorboard"),
        config.model,
        config.training,
        class_weights_path=None,
    )
    model, metadata = load_model_dir(str(tmp_path / "model"))
    counts = confusion_matrix(dataset_dir, "test", model, config.model.image_size)
    ious = per_class_iou(counts)
    mean_iou = float(ious.mean())
    baseline = float(majority_class_mean_iou(counts))
    report = (
        f"mean IoU {mean_iou:.3f}, per class {np.round(ious, 3).tolist()}, majority {baseline:.3f}"
    )

    assert counts.sum() == 48 * config.model.image_size**2
    assert 0.24 < baseline < 0.27, report  # background holds about 76% of the test pixels
    assert mean_iou >= MIN_MEAN_IOU, report
    assert mean_iou - baseline >= MIN_MARGIN_OVER_MAJORITY, report
    assert ious[schema.CLASS_NAMES.index("pet")] >= MIN_PET_IOU, report
    # Keras' running mean IoU over the validation split (carved from train; the curves never
    # see test) agrees with a confusion matrix of the same split.
    validation_iou = float(
        per_class_iou(
            confusion_matrix(dataset_dir, "validation", model, config.model.image_size)
        ).mean()
    )
    assert final["val_mean_iou"] == pytest.approx(validation_iou, abs=1e-3), report
    assert metadata.metrics["val_mean_iou"] == pytest.approx(final["val_mean_iou"])
