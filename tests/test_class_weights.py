"""Class weights: pixel counts at the training resolution and the weights maths, by hand."""

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from components.data import dataset_info, schema
from components.data.ingest import SourceRecord, write_split
from components.model.class_weights import (
    ClassWeightsError,
    compute_class_weights,
    count_mask_pixels,
    load_class_weights,
    weights_from_counts,
)
from components.platform.contracts import ClassWeights, ContractVersionError
from tests import recordsets

PET, BACKGROUND, BORDER = 0, 1, 2
# Two 4x4 masks (class ids). Counts: pet 8+2=10, background 6+12=18, border 2+2=4; 32 pixels.
MASK_A = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 2, 2]], np.uint8)
MASK_B = np.array([[0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 2, 2]], np.uint8)


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _dataset(directory, masks):
    """A Dataset directory (as ingest writes it) holding the given class-id masks."""
    records = (
        SourceRecord(
            image=_png(np.zeros((*mask.shape, 3), np.uint8)),
            mask=_png(mask + 1),  # sources hold trimaps
            file_name=f"pet_{index}.png",
        )
        for index, mask in enumerate(masks)
    )
    entry = write_split(records, str(directory), "train", records_per_shard=1)
    dataset_info.write_dataset_info(
        str(directory),
        {
            "schema_version": schema.SCHEMA_VERSION,
            "classes": list(schema.CLASS_NAMES),
            "splits": {"train": entry},
        },
    )
    return str(directory)


@pytest.fixture
def two_masks(tmp_path):
    return _dataset(tmp_path / "dataset", [MASK_A, MASK_B])


def test_counts_at_source_resolution(two_masks):
    assert count_mask_pixels(two_masks, 4) == {
        "pixel_counts": [10, 18, 4],
        "num_images": 2,
        "ignored_pixels": 0,
    }


def test_counts_after_nearest_neighbour_resize(tmp_path):
    # 2x2 blocks: nearest-neighbour down to 4 px gives back MASK_A exactly; bilinear would
    # invent values between classes.
    big = np.kron(MASK_A, np.ones((2, 2), np.uint8))
    dataset = _dataset(tmp_path / "big", [big])
    assert count_mask_pixels(dataset, 4)["pixel_counts"] == [8, 6, 2]
    assert count_mask_pixels(dataset, 16)["pixel_counts"] == [128, 96, 32]


def test_inverse_frequency_matches_hand_computation(two_masks):
    result = compute_class_weights(two_masks, image_size=4, strategy="inverse_frequency")
    assert result.frequencies == pytest.approx([10 / 32, 18 / 32, 4 / 32])
    # w_c = 1 / (C f_c): 32/30, 32/54, 32/12; the average weight per pixel is then 1.
    assert result.weights == pytest.approx([32 / 30, 32 / 54, 32 / 12])
    assert sum(f * w for f, w in zip(result.frequencies, result.weights, strict=True)) == (
        pytest.approx(1.0)
    )
    assert result.pixel_counts == [10, 18, 4]
    assert result.num_images == 2
    assert result.image_size == 4
    assert result.classes == ["pet", "background", "border"]
    assert result.strategy == "inverse_frequency"
    assert result.absent_classes == []


def test_median_frequency_matches_hand_computation(two_masks):
    result = compute_class_weights(two_masks, image_size=4, strategy="median_frequency")
    # median(10/32, 18/32, 4/32) = 10/32; w_c = median / f_c.
    assert result.weights == pytest.approx([1.0, 10 / 18, 10 / 4])


def test_fixed_defaults_to_the_tutorial_weights(two_masks):
    result = compute_class_weights(two_masks, image_size=4, strategy="fixed")
    assert result.weights == [2.0, 2.0, 1.0]
    assert result.pixel_counts == [10, 18, 4]


def test_fixed_takes_user_weights_and_none_gives_ones(two_masks):
    assert compute_class_weights(two_masks, 4, "fixed", [0.5, 0.0, 3.0]).weights == [
        0.5,
        0.0,
        3.0,
    ]
    assert compute_class_weights(two_masks, 4, "none").weights == [1.0, 1.0, 1.0]


def test_absent_class_gets_a_finite_zero_weight(tmp_path):
    no_border = np.array(  # pet 5, background 11
        [[0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1]], np.uint8
    )
    dataset = _dataset(tmp_path / "no_border", [no_border])
    inverse = compute_class_weights(dataset, 4, "inverse_frequency")
    median = compute_class_weights(dataset, 4, "median_frequency")
    for result in (inverse, median):
        assert all(math.isfinite(w) for w in result.weights)
        assert result.weights[BORDER] == 0.0
        assert result.absent_classes == ["border"]
    assert inverse.pixel_counts == [5, 11, 0]
    # Normalised over the present classes: w_c = 1 / (2 f_c).
    assert inverse.weights[:2] == pytest.approx([1 / (2 * 5 / 16), 1 / (2 * 11 / 16)])
    # Median over the present classes only: (5/16 + 11/16) / 2 = 1/2.
    assert median.weights[:2] == pytest.approx([0.5 / (5 / 16), 0.5 / (11 / 16)])


@pytest.mark.parametrize(
    ("counts", "strategy", "fixed", "message"),
    [
        ([1, 2, 3], "balanced", None, "unknown class weighting strategy 'balanced'"),
        ([1], "none", None, "need 1 pixel counts"),
        ([0, 0, 0], "inverse_frequency", None, "no mask pixels"),
        ([1, 2, 3], "fixed", [1.0, 2.0], "one value per class"),
        ([1, 2, 3], "fixed", [1.0, -2.0, 1.0], "finite, >= 0"),
        ([1, 2, 3], "fixed", [0.0, 0.0, 0.0], "not all 0"),
        ([1, 2, 3], "fixed", [1.0, float("inf"), 1.0], "finite"),
    ],
)
def test_weights_errors(counts, strategy, fixed, message):
    with pytest.raises(ClassWeightsError, match=message):
        weights_from_counts(counts, strategy, fixed)


def test_bad_image_size_and_strategy_are_errors(two_masks):
    with pytest.raises(ClassWeightsError, match="image_size"):
        compute_class_weights(two_masks, 0, "none")
    with pytest.raises(ClassWeightsError, match="unknown"):
        compute_class_weights(two_masks, 4, "equal")


def test_write_then_load_round_trip(two_masks, tmp_path):
    result = compute_class_weights(two_masks, 4, "median_frequency")
    path = str(tmp_path / "out" / "class_weights.json")
    result.write(path)
    assert load_class_weights(path) == pytest.approx([1.0, 10 / 18, 10 / 4])
    with open(path) as handle:
        assert json.load(handle)["pixel_counts"] == [10, 18, 4]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2, 3]", "JSON object"),
        ('{"classes": "cat", "weights": [1, 1, 1]}', "not a list of class names"),
        ('{"weights": [1, 1, 1]}', "not a list of class names"),
        ('{"classes": ["cat", "dog"], "weights": [1, 1, 1]}', "list of 2 numbers"),
        ('{"classes": ["pet", "background", "border"], "weights": [1, 1]}', "list of 3"),
        ('{"classes": ["pet", "background", "border"], "weights": [1, NaN, 1]}', "'background'"),
        ('{"classes": ["pet", "background", "border"], "weights": [1, 1, Infinity]}', "'border'"),
        ('{"classes": ["pet", "background", "border"], "weights": [-1, 1, 1]}', "finite >= 0"),
        ('{"classes": ["pet", "background", "border"], "weights": [0, 0, 0]}', "all weights are 0"),
        ('{"classes": ["pet", "background", "border"], "weights": ["1", 1, 1]}', "not a number"),
    ],
)
def test_load_rejects_bad_files_naming_them(tmp_path, content, message):
    path = tmp_path / "weights.json"
    path.write_text(content)
    with pytest.raises(ClassWeightsError, match=message) as raised:
        load_class_weights(str(path))
    assert str(path) in str(raised.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.json"):
        load_class_weights(str(tmp_path / "nowhere.json"))


def test_invalid_weights_cannot_be_made_so_cannot_be_written(two_masks):
    record = compute_class_weights(two_masks, 4, "none").to_dict()
    record["weights"] = [1.0, float("nan"), 1.0]
    with pytest.raises(ClassWeightsError, match="background"):
        ClassWeights.from_dict(record)


def test_a_file_of_an_unknown_format_is_refused_naming_the_version(two_masks, tmp_path):
    path = tmp_path / "weights.json"
    compute_class_weights(two_masks, 4, "none").write(str(path))
    record = json.loads(path.read_text())
    assert record["weights_format"] == 1
    path.write_text(json.dumps({**record, "weights_format": 2}))
    with pytest.raises(ContractVersionError, match="weights_format 2, this code reads 1"):
        load_class_weights(str(path))


IGNORE = schema.IGNORE_ID
# Five classes and ignored pixels. Counts: a 4+1=5, b 2+2=4, c 1+3=4, d 0+4=4, e 1+0=1,
# ignored 8+6=14; 32 pixels.
FIVE_CLASSES = ["a", "b", "c", "d", "e"]
FIVE_A = np.array(
    [[0, 0, 0, 0], [1, 1, 2, 4], [IGNORE] * 4, [IGNORE] * 4],
    np.uint8,
)
FIVE_B = np.array(
    [[0, 1, 1, 2], [2, 2, 3, 3], [3, 3, IGNORE, IGNORE], [IGNORE] * 4],
    np.uint8,
)


@pytest.fixture
def five_classes(tmp_path):
    return recordsets.write_masks(str(tmp_path / "five"), {"train": [FIVE_A, FIVE_B]}, FIVE_CLASSES)


def test_five_classes_are_counted_and_ignored_pixels_left_out(five_classes):
    assert count_mask_pixels(five_classes, 4) == {
        "pixel_counts": [5, 4, 4, 4, 1],
        "num_images": 2,
        "ignored_pixels": 14,
    }
    result = compute_class_weights(five_classes, 4, "inverse_frequency")
    assert result.classes == FIVE_CLASSES
    # Frequencies over the 18 labelled pixels only; w_c = 1 / (5 f_c).
    assert result.frequencies == pytest.approx([5 / 18, 4 / 18, 4 / 18, 4 / 18, 1 / 18])
    assert result.weights == pytest.approx([18 / 25, 18 / 20, 18 / 20, 18 / 20, 18 / 5])
    assert result.ignored_pixels == 14
    median = compute_class_weights(five_classes, 4, "median_frequency")
    assert median.weights == pytest.approx([4 / 5, 1.0, 1.0, 1.0, 4.0])


def test_two_classes_with_ignored_pixels(tmp_path):
    mask = np.array([[0, 0, 1, IGNORE], [1, 1, 1, IGNORE]], np.uint8)
    dataset = recordsets.write_masks(str(tmp_path / "two"), {"train": [mask]}, ["sky", "ground"])
    result = compute_class_weights(dataset, 4, "median_frequency")
    assert result.classes == ["sky", "ground"]
    assert result.pixel_counts == [4, 8]  # 2x4 resized nearest to 4x4
    assert result.ignored_pixels == 4
    assert result.weights == pytest.approx([(6 / 12) / (4 / 12), (6 / 12) / (8 / 12)])
    assert compute_class_weights(dataset, 4, "fixed", [1.0, 3.0]).weights == [1.0, 3.0]


def test_fixed_weights_must_match_the_dataset_classes(five_classes):
    with pytest.raises(ClassWeightsError, match="has 3 values but the dataset has 5 classes") as a:
        compute_class_weights(five_classes, 4, "fixed", [2.0, 2.0, 1.0])
    assert "a, b, c, d, e" in str(a.value)
    with pytest.raises(ClassWeightsError, match=r"needs training\.fixed_class_weights") as b:
        compute_class_weights(five_classes, 4, "fixed")
    assert "a, b, c, d, e" in str(b.value)


def test_a_mask_value_outside_the_classes_is_named(tmp_path):
    # Written as a 5-class dataset, then declared to have only a and b.
    dataset = recordsets.write_masks(str(tmp_path / "five"), {"train": [FIVE_A]}, FIVE_CLASSES)
    info = dataset_info.load_dataset_info(dataset)
    info.classes = ["a", "b"]
    dataset_info.write_dataset_info(dataset, info)
    with pytest.raises(dataset_info.DatasetMismatchError, match=r"values \[2, 4\]"):
        count_mask_pixels(dataset, 4)


def test_weights_of_other_classes_are_refused(five_classes, tmp_path):
    path = str(tmp_path / "weights.json")
    compute_class_weights(five_classes, 4, "none").write(path)
    assert load_class_weights(path, FIVE_CLASSES) == [1.0] * 5
    with pytest.raises(ClassWeightsError, match=r"for classes \['a'.*the dataset has \['pet'"):
        load_class_weights(path, list(schema.CLASS_NAMES))
