"""Evaluation core: metrics against hand computation, blessing decisions, mismatch errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from components.data import schema
from components.evaluation import evaluate
from components.evaluation.metrics import confusion_matrix
from components.model.model import check_model_matches
from components.platform.config import EvaluationConfig, ModelConfig
from components.platform.contracts import ModelMetadata

# A hand-made pair of 2x4 masks. Pixel pairs (true, pred):
# (0,0) (0,0) (0,1) (1,1) / (1,1) (1,2) (2,2) (2,0)
TRUE = np.array([[0, 0, 0, 1], [1, 1, 2, 2]], dtype=np.uint8)
PRED = np.array([[0, 0, 1, 1], [1, 2, 2, 0]], dtype=np.uint8)
# By hand: class 0 TP 2, FP 1, FN 1 -> IoU 2/4; class 1 TP 2, FP 1, FN 1 -> 2/4;
# class 2 TP 1, FP 1, FN 1 -> 1/3. Pixel accuracy 5/8. Mean IoU (1/2 + 1/2 + 1/3) / 3 = 4/9.
HAND_IOU = {"pet": 2 / 4, "background": 2 / 4, "border": 1 / 3}
HAND_PRECISION = {"pet": 2 / 3, "background": 2 / 3, "border": 1 / 2}
HAND_RECALL = {"pet": 2 / 3, "background": 2 / 3, "border": 1 / 2}


def test_confusion_matrix_counts_pairs_rows_true_columns_predicted():
    matrix = confusion_matrix(TRUE, PRED, 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 2, 1], [1, 0, 1]]
    assert matrix.dtype == np.int64


def test_confusion_matrix_leaves_ignored_pixels_out():
    ignore = schema.IGNORE_ID
    true = np.array([[0, ignore, 1, 1], [ignore, 4, 4, 3]], dtype=np.uint8)
    pred = np.array([[0, 2, 1, 0], [4, 4, 3, 3]], dtype=np.uint8)
    matrix = confusion_matrix(true, pred, 5)
    expected = np.zeros((5, 5), np.int64)
    for t, p in [(0, 0), (1, 1), (1, 0), (4, 4), (4, 3), (3, 3)]:
        expected[t, p] += 1
    np.testing.assert_array_equal(matrix, expected)
    metrics = evaluate.segmentation_metrics(matrix, ["a", "b", "c", "d", "e"])
    assert metrics["num_pixels"] == 6 and metrics["pixel_accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["c"]["predicted_pixels"] == 0  # its prediction was ignored
    with pytest.raises(ValueError, match=r"outside 0\.\.4"):
        confusion_matrix(true, pred, 5, ignore_id=None)


def test_confusion_matrix_accumulates_in_place_like_one_pass():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, size=(5, 8, 8))
    pred = rng.integers(0, 3, size=(5, 8, 8))
    running = np.zeros((3, 3), dtype=np.int64)
    for index in range(5):
        returned = confusion_matrix(true[index], pred[index], 3, into=running)
        assert returned is running
    np.testing.assert_array_equal(running, confusion_matrix(true, pred, 3))
    assert running.sum() == 5 * 8 * 8


@pytest.mark.parametrize(
    ("true", "pred", "message"),
    [
        (np.zeros((2, 2)), np.zeros((2, 3)), "shape"),
        (np.full((2, 2), 3), np.zeros((2, 2)), "true mask has class ids outside 0..2"),
        (np.zeros((2, 2)), np.full((2, 2), -1), "predicted mask has class ids outside"),
    ],
)
def test_confusion_matrix_rejects_bad_input(true, pred, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(true, pred, 3)


def test_segmentation_metrics_match_hand_computation():
    metrics = evaluate.segmentation_metrics(confusion_matrix(TRUE, PRED, 3))
    assert metrics["classes"] == list(schema.CLASS_NAMES)
    assert metrics["num_pixels"] == 8
    assert metrics["pixel_accuracy"] == pytest.approx(5 / 8)
    assert metrics["mean_iou"] == pytest.approx(4 / 9)
    for name in schema.CLASS_NAMES:
        assert metrics["per_class"][name]["iou"] == pytest.approx(HAND_IOU[name])
        assert metrics["per_class"][name]["precision"] == pytest.approx(HAND_PRECISION[name])
        assert metrics["per_class"][name]["recall"] == pytest.approx(HAND_RECALL[name])
    assert metrics["per_class"]["pet"]["true_pixels"] == 3
    assert metrics["per_class"]["border"]["predicted_pixels"] == 2


def test_segmentation_metrics_match_independent_numpy_on_random_masks():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 3, size=(4, 16, 16))
    pred = np.where(rng.random((4, 16, 16)) < 0.6, true, rng.integers(0, 3, size=(4, 16, 16)))
    metrics = evaluate.segmentation_metrics(confusion_matrix(true, pred, 3))
    ious = []
    for index, name in enumerate(schema.CLASS_NAMES):
        is_true, is_pred = true == index, pred == index
        iou = np.logical_and(is_true, is_pred).sum() / np.logical_or(is_true, is_pred).sum()
        ious.append(iou)
        assert metrics["per_class"][name]["iou"] == pytest.approx(iou)
        precision = np.logical_and(is_true, is_pred).sum() / is_pred.sum()
        assert metrics["per_class"][name]["precision"] == pytest.approx(precision)
    assert metrics["mean_iou"] == pytest.approx(np.mean(ious))
    assert metrics["pixel_accuracy"] == pytest.approx(np.mean(true == pred))


def test_class_absent_from_truth_and_prediction_is_null_and_left_out_of_the_mean():
    names = ("pet", "background", "border", "unused")
    metrics = evaluate.segmentation_metrics(confusion_matrix(TRUE, PRED, 4), names)
    unused = metrics["per_class"]["unused"]
    assert unused == {
        "iou": None,
        "precision": None,
        "recall": None,
        "true_pixels": 0,
        "predicted_pixels": 0,
    }
    assert metrics["mean_iou"] == pytest.approx(4 / 9)
    assert metrics["mean_iou_classes"] == ["pet", "background", "border"]
    # JSON-ready: no NaN sneaks into the artifact.
    text = json.dumps(metrics, allow_nan=False)
    assert '"iou": null' in text


def test_class_in_truth_but_never_predicted_counts_as_zero_iou():
    true = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 0, 0])
    metrics = evaluate.segmentation_metrics(confusion_matrix(true, pred, 3))
    assert metrics["per_class"]["background"]["iou"] == 0.0
    assert metrics["per_class"]["background"]["precision"] is None  # never predicted
    assert metrics["per_class"]["background"]["recall"] == 0.0
    assert metrics["per_class"]["pet"]["iou"] == pytest.approx(2 / 4)
    assert metrics["per_class"]["border"]["iou"] is None
    assert metrics["mean_iou"] == pytest.approx((0.5 + 0.0) / 2)


def test_empty_confusion_matrix_gives_no_numbers_not_nan():
    metrics = evaluate.segmentation_metrics(np.zeros((3, 3), dtype=np.int64))
    assert metrics["pixel_accuracy"] is None
    assert metrics["mean_iou"] is None


def test_segmentation_metrics_rejects_mismatched_class_names():
    with pytest.raises(ValueError, match="3x3 but there are 2 class names"):
        evaluate.segmentation_metrics(np.eye(3, dtype=np.int64), ("a", "b"))
    with pytest.raises(ValueError, match="square"):
        evaluate.segmentation_metrics(np.zeros((2, 3)))


def _metrics(mean_iou):
    return {"mean_iou": mean_iou}


@pytest.mark.parametrize(
    ("candidate", "baseline", "min_mean_iou", "max_regression", "blessed"),
    [
        (0.60, None, 0.50, 0.0, True),
        (0.40, None, 0.50, 0.0, False),
        (0.50, None, 0.50, 0.0, True),  # the threshold itself passes
        (0.60, 0.58, 0.50, 0.0, True),  # better than production
        (0.60, 0.60, 0.50, 0.0, True),  # equal to production
        (0.60, 0.62, 0.50, 0.0, False),  # worse, no margin
        (0.60, 0.62, 0.50, 0.03, True),  # worse within the margin
        (0.60, 0.64, 0.50, 0.03, False),  # worse past the margin
        (0.45, 0.30, 0.50, 0.0, False),  # beats production but misses the threshold
    ],
)
def test_decide_blessing(candidate, baseline, min_mean_iou, max_regression, blessed):
    config = EvaluationConfig(min_mean_iou=min_mean_iou, max_regression=max_regression)
    decision, reasons = evaluate.decide_blessing(
        _metrics(candidate), None if baseline is None else _metrics(baseline), config
    )
    assert decision is blessed
    assert reasons[0].startswith(f"mean IoU {candidate:.4f}")
    assert ("min_mean_iou" in reasons[0]) and (len(reasons) == 2)
    if baseline is None:
        assert reasons[1] == "no baseline to compare with"
    else:
        assert f"baseline {baseline:.4f}" in reasons[1]
        assert ("> max_regression" in reasons[1]) is (candidate < baseline - max_regression)


def test_decide_blessing_names_the_failed_check():
    config = EvaluationConfig(min_mean_iou=0.5, max_regression=0.01)
    blessed, reasons = evaluate.decide_blessing(_metrics(0.7), _metrics(0.75), config)
    assert not blessed
    assert reasons == [
        "mean IoU 0.7000 >= min_mean_iou 0.5000",
        "mean IoU 0.7000 vs baseline 0.7500: regression 0.0500 > max_regression 0.0100",
    ]


def test_require_improvement_refuses_a_model_only_as_good_as_the_baseline():
    config = EvaluationConfig(min_mean_iou=0.5, require_improvement=True)
    blessed, reasons = evaluate.decide_blessing(_metrics(0.7), _metrics(0.7), config)
    assert not blessed
    assert "no improvement over the baseline" in reasons[-1]
    blessed, reasons = evaluate.decide_blessing(_metrics(0.72), _metrics(0.7), config)
    assert blessed and reasons[-1] == "improves on the baseline by 0.0200"
    # Without a baseline (the first model) the threshold alone decides.
    blessed, _ = evaluate.decide_blessing(_metrics(0.7), None, config)
    assert blessed


def test_decide_blessing_never_blesses_an_undefined_mean_iou():
    config = EvaluationConfig(min_mean_iou=0.0)
    blessed, reasons = evaluate.decide_blessing(_metrics(None), None, config)
    assert not blessed
    assert "undefined" in reasons[0]
    blessed, _ = evaluate.decide_blessing(_metrics(math.nan), None, config)
    assert not blessed


def test_decide_blessing_ignores_an_undefined_baseline():
    config = EvaluationConfig(min_mean_iou=0.5)
    blessed, reasons = evaluate.decide_blessing(_metrics(0.6), _metrics(None), config)
    assert blessed
    assert "not compared" in reasons[1]


METADATA = ModelMetadata(classes=list(schema.CLASS_NAMES), image_size=64, normalization="mobilenet")


def test_check_model_matches_accepts_matching_model():
    check_model_matches(
        METADATA,
        model_dir="m",
        classes=schema.CLASS_NAMES,
        image_size_expected=64,
        normalization_expected="mobilenet",
    )


@pytest.mark.parametrize(
    ("override", "kwargs", "message"),
    [
        ({"classes": ["pet", "background"]}, {}, r"model classes \['pet', 'background'\] differ"),
        ({"classes": None}, {}, "model classes None differ"),
        ({}, {"image_size_expected": 128}, "image_size 64 differs from the configured .* 128"),
        (
            {},
            {"normalization_expected": "tutorial"},
            "normalization 'mobilenet' differs from the configured model.normalization 'tutorial'",
        ),
    ],
)
def test_check_model_matches_refuses_mismatch(override, kwargs, message):
    with pytest.raises(evaluate.ModelMismatchError, match=message) as error:
        check_model_matches(
            METADATA.model_copy(update=override),
            model_dir="models/m1",
            classes=schema.CLASS_NAMES,
            **kwargs,
        )
    assert "models/m1/metadata.json" in str(error.value)
    assert isinstance(error.value, ValueError)


def test_expected_values_come_from_model_config_unless_given():
    config = ModelConfig(image_size=96, normalization="tutorial")
    assert evaluate._expected_from_config(config, None, None) == (96, "tutorial")
    assert evaluate._expected_from_config(config, 64, None) == (64, "tutorial")
    assert evaluate._expected_from_config(None, None, None) == (None, None)


def test_scalar_metrics_flattens_and_skips_undefined():
    candidate = evaluate.segmentation_metrics(confusion_matrix(TRUE, PRED, 3))
    candidate["num_images"] = 1
    baseline = evaluate.segmentation_metrics(confusion_matrix(TRUE, TRUE, 3))
    baseline["num_images"] = 1
    baseline["per_class"]["border"]["iou"] = None
    scalars = evaluate.scalar_metrics(
        {"blessed": False, "candidate": candidate, "baseline": baseline}
    )
    assert scalars["blessed"] == 0.0
    assert scalars["mean_iou"] == pytest.approx(4 / 9)
    assert scalars["iou_border"] == pytest.approx(1 / 3)
    assert scalars["precision_pet"] == pytest.approx(2 / 3)
    assert scalars["baseline_mean_iou"] == pytest.approx(1.0)
    assert "baseline_iou_border" not in scalars
    assert all(isinstance(value, float) for value in scalars.values())


# ---------------------------------------------------------------------------------------------
# End to end on saved models: a nearest-colour classifier whose predictions NumPy can recompute.

IMAGE_SIZE = 32
# The border centroid moved towards the pet colour (see recordsets.CLASS_COLOURS), so the model
# confuses the two on some pixels; fractional values keep pixels off exact ties.
SKEWED_COLOURS = np.array([[200, 120, 40], [40, 90, 200], [180.3, 140.6, 60.2]], dtype=np.float32)


def nearest_colour(images, colours):
    """Independent NumPy prediction: the class whose colour is nearest to each pixel."""
    distances = ((images[..., None, :].astype(np.float64) - colours) ** 2).sum(axis=-1)
    return distances.argmin(axis=-1)


def write_colour_model(
    model_dir, colours, image_size=IMAGE_SIZE, normalization="tutorial", classes=None
):
    """Saves a 1x1-conv model that labels each pixel with its nearest colour.

    One class per colour: ``classes`` names them (default Oxford's, for 3 colours).

    Nearest centroid is linear: argmax_c 2 mu_c.x - |mu_c|^2, with x and mu_c normalised
    the same way (a uniform scale and shift, which keeps the nearest centroid).
    """
    import keras

    from components.model import model as model_lib

    scale, offset = model_lib.NORMALIZATIONS[normalization]
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    normalized = keras.layers.Rescaling(scale, offset, name=model_lib.NORMALIZATION_LAYER)(inputs)
    logits = keras.layers.Conv2D(len(colours), 1, name="logits")(normalized)
    model = keras.Model(inputs, logits)
    centroids = np.asarray(colours, dtype=np.float64) * scale + offset
    kernel = (2 * centroids.T)[None, None].astype(np.float32)
    bias = -(centroids**2).sum(axis=1).astype(np.float32)
    model.get_layer("logits").set_weights([kernel, bias])
    metadata = {"encoder_weights": "none"}
    if classes is not None:
        metadata["classes"] = list(classes)
    model_lib.save_model_dir(model, str(model_dir), metadata)
    return str(model_dir)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from tests import recordsets

    root = tmp_path_factory.mktemp("evaluate")
    dataset_dir = str(root / "dataset")
    contents = recordsets.write_recordset(
        dataset_dir, {"train": 1, "test": 7}, height=IMAGE_SIZE, width=IMAGE_SIZE, seed=3
    )
    resized_dir = str(root / "dataset_48x40")
    resized_contents = recordsets.write_recordset(
        resized_dir, {"test": 3}, height=48, width=40, seed=4, shards_per_split=1
    )
    return {
        "root": root,
        "dataset": dataset_dir,
        "test": contents["test"],
        "resized_dataset": resized_dir,
        "resized_test": resized_contents["test"],
        "skewed": write_colour_model(root / "skewed", SKEWED_COLOURS),
        "exact": write_colour_model(root / "exact", recordsets.CLASS_COLOURS),
    }


def test_evaluate_model_matches_independent_numpy(saved):
    images = np.stack([image for image, _ in saved["test"]])
    truth = np.stack([mask for _, mask in saved["test"]])
    predicted = nearest_colour(images, SKEWED_COLOURS)
    assert 0.9 < np.mean(predicted == truth) < 0.98  # the model is wrong on some pixels

    result = evaluate.evaluate_model(
        saved["skewed"],
        saved["dataset"],
        model_config=ModelConfig(image_size=IMAGE_SIZE, normalization="tutorial"),
        batch_size=3,  # 7 images: the last batch is short
        num_samples=2,
    )
    assert result["num_images"] == 7
    assert result["num_pixels"] == 7 * IMAGE_SIZE * IMAGE_SIZE
    assert result["pixel_accuracy"] == pytest.approx(np.mean(predicted == truth))
    ious = []
    for index, name in enumerate(schema.CLASS_NAMES):
        intersection = np.logical_and(truth == index, predicted == index).sum()
        union = np.logical_or(truth == index, predicted == index).sum()
        ious.append(intersection / union)
        assert result["per_class"][name]["iou"] == pytest.approx(intersection / union)
        assert result["per_class"][name]["recall"] == pytest.approx(
            intersection / (truth == index).sum()
        )
    assert result["mean_iou"] == pytest.approx(np.mean(ious))
    # Samples are the first images in order, with their true and predicted masks.
    assert [s["file_name"] for s in result["samples"]] == ["test_0000.png", "test_0001.png"]
    for index, sample in enumerate(result["samples"]):
        np.testing.assert_array_equal(sample["image"], images[index])
        np.testing.assert_array_equal(sample["true_mask"], truth[index])
        np.testing.assert_array_equal(sample["predicted_mask"], predicted[index])
    assert result["image_size"] == IMAGE_SIZE and result["normalization"] == "tutorial"


def test_evaluate_model_resizes_masks_nearest_neighbour(saved):
    import tensorflow as tf

    result = evaluate.evaluate_model(
        saved["exact"], saved["resized_dataset"], batch_size=2, num_samples=3
    )
    assert result["num_pixels"] == 3 * IMAGE_SIZE * IMAGE_SIZE
    for sample, (_, mask) in zip(result["samples"], saved["resized_test"], strict=True):
        expected = tf.image.resize(mask[..., None], [IMAGE_SIZE, IMAGE_SIZE], method="nearest")
        np.testing.assert_array_equal(sample["true_mask"], expected.numpy()[..., 0])
        assert sample["image"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    # Nearest-neighbour keeps class ids; the exact-colour model is nearly always right.
    assert result["pixel_accuracy"] > 0.9


def test_evaluate_model_refuses_configured_size_and_normalization_mismatch(saved):
    with pytest.raises(evaluate.ModelMismatchError, match=r"image_size 32 differs .* 64"):
        evaluate.evaluate_model(
            saved["skewed"], saved["dataset"], model_config=ModelConfig(image_size=64)
        )
    with pytest.raises(evaluate.ModelMismatchError, match="normalization 'tutorial' differs"):
        evaluate.evaluate_model(
            saved["skewed"],
            saved["dataset"],
            model_config=ModelConfig(image_size=IMAGE_SIZE, normalization="mobilenet"),
        )


def _copy_model_with_metadata(saved, name, **changes):
    import shutil

    target = saved["root"] / name
    shutil.copytree(saved["exact"], target)
    metadata_path = target / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata.update(changes)
    metadata_path.write_text(json.dumps(metadata))
    return str(target)


def test_evaluate_model_refuses_model_with_other_classes(saved):
    other = _copy_model_with_metadata(saved, "other_classes", classes=["cat", "dog", "rest"])
    with pytest.raises(evaluate.ModelMismatchError, match=r"classes \['cat', 'dog', 'rest'\]"):
        evaluate.evaluate_model(other, saved["dataset"])


def test_evaluate_model_refuses_dataset_with_other_classes_or_no_split(saved, tmp_path):
    from components.data import dataset_info
    from tests import recordsets

    dataset_dir = str(tmp_path / "dataset")
    recordsets.write_recordset(dataset_dir, {"test": 1}, height=IMAGE_SIZE, width=IMAGE_SIZE)
    with pytest.raises(dataset_info.DatasetMismatchError, match="no split 'validation'"):
        evaluate.evaluate_model(saved["exact"], dataset_dir, split="validation")
    info = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    info["classes"] = ["pet", "background"]
    (tmp_path / "dataset" / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(
        evaluate.ModelMismatchError,
        match=r"model classes \['pet', 'background', 'border'\] differ from the dataset's "
        r"classes \['pet', 'background'\]",
    ):
        evaluate.evaluate_model(saved["exact"], dataset_dir)
    info["classes"] = ["pet"]
    (tmp_path / "dataset" / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(dataset_info.DatasetMismatchError, match=r"classes \['pet'\] is not"):
        evaluate.evaluate_model(saved["exact"], dataset_dir)


def test_evaluate_model_refuses_an_empty_split(saved, tmp_path):
    from tests import recordsets

    dataset_dir = str(tmp_path / "dataset")
    recordsets.write_recordset(dataset_dir, {"test": 1}, height=IMAGE_SIZE, width=IMAGE_SIZE)
    shard = next((tmp_path / "dataset" / "test").iterdir())
    shard.write_bytes(b"")
    with pytest.raises(ValueError, match="split 'test' has no records"):
        evaluate.evaluate_model(saved["exact"], dataset_dir)


def test_run_evaluation_with_itself_as_baseline_is_blessed(saved, tmp_path):
    report_path = str(tmp_path / "report" / "index.html")
    outcome = evaluate.run_evaluation(
        saved["skewed"],
        saved["dataset"],
        ModelConfig(image_size=IMAGE_SIZE, normalization="tutorial"),
        EvaluationConfig(
            min_mean_iou=0.1, max_regression=0.0, report_images=2, report_worst_images=0
        ),
        saved["skewed"],
        report_path,
    )
    assert outcome["blessed"] is True
    assert outcome["baseline_status"] == "evaluated"
    assert outcome["baseline"]["mean_iou"] == outcome["candidate"]["mean_iou"]
    assert "regression 0.0000 <= max_regression 0.0000" in outcome["reason"]
    json.dumps(outcome, allow_nan=False)  # JSON-ready: no arrays, no NaN
    page = (tmp_path / "report" / "index.html").read_text()
    # image, truth, candidate and baseline for each sample
    assert page.count("data:image/png;base64,") == 4 * 2
    assert "Model blessed" in page


def test_run_evaluation_refuses_a_candidate_worse_than_production(saved, tmp_path):
    outcome = evaluate.run_evaluation(
        saved["skewed"],
        saved["dataset"],
        ModelConfig(image_size=IMAGE_SIZE, normalization="tutorial"),
        EvaluationConfig(min_mean_iou=0.1, max_regression=0.01, report_images=0),
        saved["exact"],
        str(tmp_path / "report.html"),
    )
    assert outcome["baseline"]["mean_iou"] > outcome["candidate"]["mean_iou"] + 0.01
    assert outcome["blessed"] is False
    assert "> max_regression 0.0100" in outcome["reasons"][1]
    assert "not blessed" in (tmp_path / "report.html").read_text()


def test_run_evaluation_reports_a_baseline_with_other_classes_unusable(saved, tmp_path):
    other = _copy_model_with_metadata(saved, "baseline_other", classes=["a", "b", "c"])
    outcome = evaluate.run_evaluation(
        saved["skewed"],
        saved["dataset"],
        ModelConfig(image_size=IMAGE_SIZE, normalization="tutorial"),
        EvaluationConfig(min_mean_iou=0.1, report_images=0),
        other,
        str(tmp_path / "report.html"),
    )
    assert outcome["baseline"] is None
    assert outcome["baseline_status"].startswith("unusable: ")
    assert "classes ['a', 'b', 'c']" in outcome["baseline_status"]
    assert outcome["blessed"] is True  # the threshold alone decides
    assert outcome["reasons"][-1].startswith(f"baseline {other} unusable")


def test_baseline_at_another_size_is_scored_on_the_candidates_pixels(saved, tmp_path):
    from tests import recordsets

    baseline = write_colour_model(tmp_path / "baseline64", recordsets.CLASS_COLOURS, 64)
    outcome = evaluate.run_evaluation(
        saved["skewed"],
        saved["dataset"],
        ModelConfig(image_size=IMAGE_SIZE, normalization="tutorial"),
        EvaluationConfig(min_mean_iou=0.1, report_images=0),
        baseline,
        str(tmp_path / "report.html"),
    )
    assert outcome["baseline"]["image_size"] == 64
    assert outcome["baseline"]["evaluation_size"] == IMAGE_SIZE
    assert outcome["baseline"]["num_pixels"] == outcome["candidate"]["num_pixels"]
    assert outcome["baseline"]["pixel_accuracy"] > 0.9


def test_evaluate_model_scores_the_real_unet_like_its_own_predict(saved, tmp_path):
    from components.model import model as model_lib

    unet = model_lib.build_unet(IMAGE_SIZE, encoder_weights="none", normalization="mobilenet")
    model_dir = str(tmp_path / "unet")
    model_lib.save_model_dir(unet, model_dir, {"encoder_weights": "none"})
    result = evaluate.evaluate_model(
        model_dir,
        saved["dataset"],
        model_config=ModelConfig(image_size=IMAGE_SIZE, encoder_weights="none"),
        batch_size=4,
    )
    # Independent: the loaded model's own predict on the stored pixels, scored with NumPy.
    loaded, _ = model_lib.load_model_dir(model_dir)
    images = np.stack([image for image, _ in saved["test"]]).astype(np.float32)
    truth = np.stack([mask for _, mask in saved["test"]])
    predicted = loaded.predict(images, verbose=0).argmax(axis=-1)
    # A few pixels of slack: batch sizes differ (4 vs 7), so float rounding may flip a near-tie.
    assert result["pixel_accuracy"] == pytest.approx(
        np.mean(predicted == truth), abs=5 / truth.size
    )
    assert result["num_pixels"] == truth.size
    assert result["normalization"] == "mobilenet"


def _image_ious(truth, predicted):
    """Independent per-image mean IoU over the classes in truth or prediction."""
    ious = []
    for true_mask, predicted_mask in zip(truth, predicted, strict=True):
        per_class = []
        for index in range(len(schema.CLASS_NAMES)):
            union = np.logical_or(true_mask == index, predicted_mask == index).sum()
            if union:
                both = np.logical_and(true_mask == index, predicted_mask == index).sum()
                per_class.append(both / union)
        ious.append(np.mean(per_class))
    return ious


def test_worst_images_keeps_the_k_lowest_first_seen_on_ties_and_builds_only_those():
    worst = evaluate.WorstImages(3)
    built = []

    def item(name):
        def make():
            built.append(name)
            return {"file_name": name}

        return make

    for name, iou in [("a", 0.5), ("b", 0.1), ("c", 0.9), ("d", 0.1), ("e", 0.3), ("f", 0.6)]:
        worst.offer(iou, item(name))
    worst.offer(None, item("undefined"))
    assert [(w["file_name"], w["mean_iou"]) for w in worst.worst()] == [
        ("b", 0.1),
        ("d", 0.1),
        ("e", 0.3),
    ]
    assert built == ["a", "b", "c", "d", "e"]  # f and the undefined one were never built
    assert evaluate.WorstImages(0).worst() == []


def test_evaluate_model_returns_the_k_worst_images_by_iou(saved):
    images = np.stack([image for image, _ in saved["test"]])
    truth = np.stack([mask for _, mask in saved["test"]])
    predicted = nearest_colour(images, SKEWED_COLOURS)
    ious = _image_ious(truth, predicted)
    expected = sorted(range(len(ious)), key=lambda index: (ious[index], index))[:3]
    assert ious[expected[0]] < ious[expected[-1]] < max(ious)

    result = evaluate.evaluate_model(
        saved["skewed"],
        saved["dataset"],
        batch_size=3,
        worst_k=3,
        predict_file_names={"test_0004.png"},
    )
    worst = result["worst"]
    assert [w["file_name"] for w in worst] == [f"test_{index:04d}.png" for index in expected]
    for item, index in zip(worst, expected, strict=True):
        assert item["mean_iou"] == pytest.approx(ious[index])
        np.testing.assert_array_equal(item["image"], images[index])
        np.testing.assert_array_equal(item["true_mask"], truth[index])
        np.testing.assert_array_equal(item["predicted_mask"], predicted[index])
    mask, iou = result["predictions"]["test_0004.png"]
    np.testing.assert_array_equal(mask, predicted[4])
    assert iou == pytest.approx(ious[4])
    assert set(result["predictions"]) == {"test_0004.png"}


def test_report_shows_the_baseline_on_the_candidates_worst_images(saved, tmp_path):
    import base64
    import io
    import re

    from PIL import Image

    from components.evaluation import report, visualize

    outcome = evaluate.run_evaluation(
        saved["skewed"],
        saved["dataset"],
        ModelConfig(image_size=IMAGE_SIZE, normalization="tutorial"),
        EvaluationConfig(
            min_mean_iou=0.1, report_images=1, report_worst_images=2, report_changed_images=0
        ),
        saved["exact"],
        str(tmp_path / "report.html"),
    )
    json.dumps(outcome, allow_nan=False)  # the worst images stay out of the outputs
    images = np.stack([image for image, _ in saved["test"]])
    truth = np.stack([mask for _, mask in saved["test"]])
    ious = _image_ious(truth, nearest_colour(images, SKEWED_COLOURS))
    expected = sorted(range(len(ious)), key=lambda index: (ious[index], index))[:2]
    page = (tmp_path / "report.html").read_text()
    names = re.findall(r"<td>\d+</td><td class='name'>([^<]+)</td>", page)
    assert names == [f"test_{index:04d}.png" for index in expected]
    # The exact-colour baseline is right on every pixel of those images: IoU 1.000.
    for index in expected:
        assert f"<td class='name'>test_{index:04d}.png</td><td>{ious[index]:.3f}</td>" in page
        assert f"test_{index:04d}.png</td><td>{ious[index]:.3f}</td><td>1.000</td>" in page
    pictures = [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))))
        for uri in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]
    assert len(pictures) == 4 * (1 + 2)  # one sample and two worst, four pictures each
    first_worst = expected[0]
    palette = visualize.class_palette(3)
    np.testing.assert_array_equal(
        pictures[4 + 3],
        visualize.overlay(images[first_worst], truth[first_worst], palette, report.OVERLAY_ALPHA),
    )
    delta = outcome["candidate"]["mean_iou"] - outcome["baseline"]["mean_iou"]
    assert f'<span class="worse">{delta:+.4f}</span>' in page
