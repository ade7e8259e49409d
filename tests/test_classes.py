"""Datasets with their own classes (2 and 5) and ignored pixels, after ingest.

Evaluation, the loss, the training metrics and the sample weights follow the
dataset's class list, and pixels labelled with the ignore id count nowhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.data import schema
from components.evaluation import evaluate
from components.model import input_pipeline as data
from components.model import train
from components.platform.config import EvaluationConfig, ModelConfig
from tests import recordsets
from tests.test_evaluate import IMAGE_SIZE, nearest_colour, write_colour_model

IGNORE = schema.IGNORE_ID
FIVE = recordsets.class_names_for(5)
TWO = recordsets.class_names_for(2)


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    """A 5-class dataset with ignored pixels and a nearest-colour model of its classes."""
    root = tmp_path_factory.mktemp("five")
    contents = recordsets.write_recordset(
        str(root / "dataset"),
        {"test": 5},
        height=IMAGE_SIZE,
        width=IMAGE_SIZE,
        num_classes=5,
        ignore=True,
        seed=7,
    )
    model_dir = write_colour_model(root / "model", recordsets.RING_COLOURS[:5], classes=FIVE)
    return {
        "root": root,
        "dataset": str(root / "dataset"),
        "test": contents["test"],
        "model": model_dir,
    }


def test_ring_datasets_hold_their_classes_and_ignored_pixels(five):
    masks = np.stack([mask for _, mask in five["test"]])
    assert set(np.unique(masks)) == {0, 1, 2, 3, 4, IGNORE}
    info = json.loads((five["root"] / "dataset" / "dataset.json").read_text())
    assert info["classes"] == FIVE and info["ignore_id"] == IGNORE


def test_evaluation_follows_five_classes_and_leaves_ignored_pixels_out(five, tmp_path):
    images = np.stack([image for image, _ in five["test"]])
    truth = np.stack([mask for _, mask in five["test"]])
    predicted = nearest_colour(images, recordsets.RING_COLOURS[:5])
    labelled = truth != IGNORE

    result = evaluate.evaluate_model(five["model"], five["dataset"], batch_size=2, num_samples=2)

    assert result["classes"] == FIVE
    assert np.asarray(result["confusion_matrix"]).shape == (5, 5)
    assert result["num_pixels"] == labelled.sum()
    assert result["ignored_pixels"] == (~labelled).sum() > 0
    # Independent NumPy over the labelled pixels only.
    expected = np.zeros((5, 5), np.int64)
    np.add.at(expected, (truth[labelled], predicted[labelled]), 1)
    np.testing.assert_array_equal(result["confusion_matrix"], expected)
    assert result["pixel_accuracy"] == pytest.approx(
        np.mean(predicted[labelled] == truth[labelled])
    )
    for index, name in enumerate(FIVE):
        is_true, is_pred = truth[labelled] == index, predicted[labelled] == index
        iou = np.logical_and(is_true, is_pred).sum() / np.logical_or(is_true, is_pred).sum()
        assert result["per_class"][name]["iou"] == pytest.approx(iou)
    # Samples keep the ignore id in their true masks, for the report to show.
    assert (result["samples"][0]["true_mask"] == IGNORE).any()


def test_run_evaluation_of_five_classes_writes_metrics_and_a_report(five, tmp_path):
    report_path = tmp_path / "report.html"
    outcome = evaluate.run_evaluation(
        five["model"],
        five["dataset"],
        ModelConfig(image_size=IMAGE_SIZE, normalization="tutorial"),
        EvaluationConfig(min_mean_iou=0.5, report_images=2),
        None,
        str(report_path),
    )
    assert outcome["blessed"] is True
    scalars = evaluate.scalar_metrics(outcome)
    assert {f"iou_{name}" for name in FIVE} <= set(scalars)
    json.dumps(outcome, allow_nan=False)
    page = report_path.read_text()
    assert all(f"true {name}" in page for name in FIVE)


def test_a_model_of_other_classes_is_refused(five, tmp_path):
    oxford_model = write_colour_model(tmp_path / "oxford", recordsets.CLASS_COLOURS)
    with pytest.raises(evaluate.ModelMismatchError) as refused:
        evaluate.evaluate_model(oxford_model, five["dataset"])
    message = str(refused.value)
    assert str(list(schema.CLASS_NAMES)) in message and str(FIVE) in message
    # A baseline of other classes is no yardstick: reported unusable, the threshold decides.
    outcome = evaluate.run_evaluation(
        five["model"],
        five["dataset"],
        ModelConfig(image_size=IMAGE_SIZE, normalization="tutorial"),
        EvaluationConfig(min_mean_iou=0.1, report_images=0),
        oxford_model,
        str(tmp_path / "report.html"),
    )
    assert outcome["baseline"] is None and outcome["baseline_status"].startswith("unusable")
    assert str(FIVE) in outcome["baseline_status"]


def test_two_classes_are_evaluated_as_two(tmp_path):
    contents = recordsets.write_recordset(
        str(tmp_path / "dataset"), {"test": 3}, height=IMAGE_SIZE, width=IMAGE_SIZE, num_classes=2
    )
    model_dir = write_colour_model(tmp_path / "model", recordsets.RING_COLOURS[:2], classes=TWO)
    result = evaluate.evaluate_model(model_dir, str(tmp_path / "dataset"))
    assert result["classes"] == ["background", "ring_1"]
    assert np.asarray(result["confusion_matrix"]).shape == (2, 2)
    assert result["ignored_pixels"] == 0
    assert result["num_pixels"] == 3 * IMAGE_SIZE * IMAGE_SIZE
    truth = np.stack([mask for _, mask in contents["test"]])
    assert result["per_class"]["ring_1"]["true_pixels"] == (truth == 1).sum()


# ---------------------------------------------------------------------------------------------
# Training: sample weights, the loss and the metrics skip ignored pixels.


def test_sample_weights_are_the_class_weights_and_zero_on_ignored_pixels():
    mask = np.array([[[0], [1]], [[4], [IGNORE]]], np.uint8)
    weights = data.sample_weights_for(mask, [0.5, 2.0, 1.0, 1.0, 3.0]).numpy()
    np.testing.assert_array_equal(weights[..., 0], [[0.5, 2.0], [3.0, 0.0]])


def test_input_pipeline_weights_ignored_pixels_zero(tmp_path):
    contents = recordsets.write_recordset(
        str(tmp_path / "dataset"), {"train": 2}, height=32, width=32, num_classes=5, ignore=True
    )
    elements = data.make_dataset(
        str(tmp_path / "dataset"),
        "train",
        32,
        2,
        training=False,
        class_weights=[1.0, 2.0, 3.0, 4.0, 5.0],
    )
    _, masks, weights = next(iter(elements))
    masks, weights = masks.numpy(), weights.numpy()
    np.testing.assert_array_equal(masks[..., 0], np.stack([m for _, m in contents["train"]]))
    assert (weights[masks == IGNORE] == 0).all()
    assert (weights[masks != IGNORE] == masks[masks != IGNORE] + 1.0).all()
    with pytest.raises(ValueError, match="one per class of the dataset"):
        data.make_dataset(
            str(tmp_path / "dataset"), "train", 32, 2, training=False, class_weights=[1.0] * 3
        )


def _compiled_identity(num_classes):
    """A model that outputs its input as logits, compiled as training compiles the U-Net."""
    import keras

    inputs = keras.Input(shape=(2, 2, num_classes))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    train._compile(model, 1e-3, jit_compile=False, num_classes=num_classes)
    return model


def test_loss_and_metrics_leave_ignored_pixels_out():
    import keras

    model = _compiled_identity(5)
    logits = np.zeros((1, 2, 2, 5), np.float32)
    logits[0, 0, 0, 1] = logits[0, 0, 1, 2] = logits[0, 1, 0, 3] = logits[0, 1, 1, 4] = 5.0
    labelled = np.array([[[[1], [2]], [[3], [0]]]], np.uint8)  # the last pixel is wrong
    ignored = labelled.copy()
    ignored[0, 1, 1] = IGNORE  # ... and now not counted

    per_pixel = keras.losses.sparse_categorical_crossentropy(
        labelled[..., 0], logits, from_logits=True
    ).numpy()[0]
    with_ignore = model.evaluate(logits, ignored, return_dict=True, verbose=0)
    # The ignored pixel adds no loss; the mean is over the three labelled pixels.
    assert with_ignore["loss"] == pytest.approx(per_pixel.ravel()[:3].mean(), rel=1e-5)
    assert with_ignore["accuracy"] == pytest.approx(1.0)
    assert with_ignore["mean_iou"] == pytest.approx(1.0)
    without = model.evaluate(logits, labelled, return_dict=True, verbose=0)
    assert without["accuracy"] == pytest.approx(3 / 4)
    assert without["mean_iou"] < 1.0


def test_ignored_pixels_have_sample_weight_zero_in_the_loss():
    model = _compiled_identity(2)
    logits = np.zeros((1, 2, 2, 2), np.float32)
    logits[..., 0] = 3.0  # predicts class 0 everywhere
    truth = np.array([[[[1], [0]], [[IGNORE], [0]]]], np.uint8)
    weights = data.sample_weights_for(truth, [1.0, 2.0]).numpy()
    assert weights[0, 1, 0, 0] == 0.0
    weighted = model.evaluate(logits, truth, sample_weight=weights, return_dict=True, verbose=0)
    wrong = float(np.log1p(np.exp(3.0)))  # cross-entropy of the class-1 pixel
    right = float(np.log1p(np.exp(-3.0)))
    assert np.isfinite(weighted["loss"])
    assert weighted["loss"] == pytest.approx((2.0 * wrong + 2 * right) / 3, rel=1e-4)


def test_tensorboard_panels_colour_any_number_of_classes_and_ignored_pixels():
    images = np.zeros((1, 2, 2, 3), np.float32)
    truth = np.array([[[[4], [IGNORE]], [[0], [1]]]], np.uint8)
    logits = np.zeros((1, 2, 2, 5), np.float32)
    logits[..., 3] = 1.0
    panel = train.sample_panels(images, truth, logits)
    assert panel.shape == (1, 2, 6, 3)
    colours = train.colorize_masks(np.arange(5)[None, None], 5)[0, 0]
    assert len({tuple(colour) for colour in colours}) == 5
    np.testing.assert_array_equal(panel[0, 0, 2], colours[4])
    ignored = tuple(panel[0, 0, 3])
    assert ignored not in {tuple(colour) for colour in colours}
    np.testing.assert_array_equal(panel[0, :, 4:], np.broadcast_to(colours[3], (2, 2, 3)))


def test_config_checks_fixed_weights_against_the_configured_classes():
    from components.platform.config import ConfigError, load_config

    two = "data.classes=[{name: sky, values: [0]}, {name: ground, values: [1]}]"
    config = load_config(
        "demo",
        overrides=[two, "training.class_weighting=fixed", "training.fixed_class_weights=[1, 3]"],
    )
    assert config.training.fixed_class_weights == [1.0, 3.0]
    with pytest.raises(ConfigError, match=r"has 3 values; one per class \(sky, ground\)"):
        load_config("demo", overrides=[two, "training.fixed_class_weights=[2, 2, 1]"])
    with pytest.raises(ConfigError, match=r"needs training\.fixed_class_weights.*sky, ground"):
        load_config("demo", overrides=[two, "training.class_weighting=fixed"])
    # Oxford's classes keep the tutorial's default.
    assert load_config("tutorial", overrides=["training.class_weighting=fixed"])
