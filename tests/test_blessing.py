"""A blessing a retrain can trust: per-image counts, paired bootstrap, slices, boundary IoU.

Every figure is compared with an independent computation written here from its
definition: per-image confusion by looping over pixels, boundary IoU from Cheng et
al.'s definition by brute-force distance search, slice means from the slice's own
images, and the bootstrap interval's coverage on a population whose answer is known.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.evaluation import bootstrap, boundary, evaluate, slices
from components.evaluation.metrics import (
    confusion_matrix,
    per_image_confusion,
    segmentation_metrics,
)
from components.platform.config import EvaluationConfig, ModelConfig

CLASSES = ["pet", "background", "border"]


def _random_masks(rng, count, height, width, num_classes=3):
    """Blobby masks: a few random rectangles of each class on a background."""
    masks = np.full((count, height, width), 1, dtype=np.uint8)
    for mask in masks:
        for _ in range(4):
            top, left = rng.integers(0, height - 2), rng.integers(0, width - 2)
            bottom = top + rng.integers(2, height // 2)
            right = left + rng.integers(2, width // 2)
            mask[top:bottom, left:right] = rng.integers(0, num_classes)
    return masks


# --- per-image confusion ---------------------------------------------------------------------


def test_per_image_confusion_equals_a_pixel_loop_and_leaves_ignored_pixels_out():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 3, size=(4, 6, 5)).astype(np.uint8)
    true[0, 0, :] = 255
    true[2, :, 1] = 255
    pred = rng.integers(0, 3, size=(4, 6, 5)).astype(np.uint8)
    counts = per_image_confusion(true, pred, 3)
    assert counts.shape == (4, 3, 3) and counts.dtype == np.int64
    for image in range(4):
        expected = np.zeros((3, 3), dtype=np.int64)
        for t, p in zip(true[image].ravel(), pred[image].ravel(), strict=True):
            if t != 255:
                expected[t, p] += 1
        np.testing.assert_array_equal(counts[image], expected)
    np.testing.assert_array_equal(counts.sum(axis=0), confusion_matrix(true, pred, 3))
    assert counts[0].sum() == 6 * 5 - 5
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        per_image_confusion(true, pred, 3, ignore_id=None)


# --- boundary IoU ----------------------------------------------------------------------------


def _reference_band(mask, d):
    """G_d ∩ G from the definition: mask pixels within chessboard distance d of a pixel
    not in the mask, the world outside the image counting as not in the mask."""
    height, width = mask.shape
    band = np.zeros_like(mask, dtype=bool)
    for y in range(height):
        for x in range(width):
            if not mask[y, x]:
                continue
            for dy in range(-d, d + 1):
                for dx in range(-d, d + 1):
                    yy, xx = y + dy, x + dx
                    outside = not (0 <= yy < height and 0 <= xx < width)
                    if outside or not mask[yy, xx]:
                        band[y, x] = True
    return band


def _reference_boundary_iou(true, pred, class_id, d, ignore_id=255):
    intersection = union = 0
    for t, p in zip(true, pred, strict=True):
        counted = t != ignore_id
        g = _reference_band(t == class_id, d) & counted
        q = _reference_band(p == class_id, d) & counted
        intersection += int((g & q).sum())
        union += int((g | q).sum())
    return intersection, union


def test_band_width_is_two_percent_of_the_diagonal_and_at_least_one_pixel():
    assert boundary.band_width(128, 128) == round(0.02 * 128 * 2**0.5) == 4
    assert boundary.band_width(10, 10) == 1
    assert boundary.band_width(375, 500, 0.05) == 31


def test_boundary_iou_equals_the_papers_definition_computed_pixel_by_pixel():
    rng = np.random.default_rng(7)
    true = _random_masks(rng, 3, 26, 30)
    true[1, 3:8, 4:9] = 255
    pred = true.copy()
    pred[:, 10:14, :] = rng.integers(0, 3, size=(3, 4, 30))  # a wrong stripe
    pred = np.roll(pred, 1, axis=2)  # and every edge one pixel off
    d = boundary.band_width(26, 30, 0.05)
    assert d == 2
    counts = boundary.boundary_counts(true, pred, 3, ignore_id=255, fraction=0.05)
    assert counts.shape == (3, 3, 2)
    expected = {}
    for class_id, name in enumerate(CLASSES):
        intersection, union = _reference_boundary_iou(true, pred, class_id, d)
        assert counts[:, class_id].sum(axis=0).tolist() == [intersection, union]
        expected[name] = intersection / union
    metrics = boundary.boundary_metrics(counts, CLASSES)
    assert metrics["boundary_iou"] == pytest.approx(expected)
    assert 0 < metrics["mean_boundary_iou"] < 1
    assert metrics["mean_boundary_iou"] == pytest.approx(np.mean(list(expected.values())))
    perfect = boundary.boundary_counts(true, true, 3, ignore_id=255, fraction=0.05)
    assert boundary.boundary_metrics(perfect, CLASSES)["mean_boundary_iou"] == 1.0


def test_boundary_iou_drops_more_than_iou_when_edges_blur():
    true = np.zeros((1, 64, 64), dtype=np.uint8) + 1
    true[0, 16:48, 16:48] = 0
    blurred = true.copy()
    blurred[0, 15:49, 15:49] = 0  # one pixel too large all round
    iou = segmentation_metrics(confusion_matrix(true, blurred, 3), CLASSES)["per_class"]["pet"]
    band = boundary.boundary_metrics(boundary.boundary_counts(true, blurred, 3), CLASSES)
    assert iou["iou"] > 0.88
    assert band["boundary_iou"]["pet"] < 0.7
    assert band["boundary_iou"]["border"] is None  # absent from both: undefined


# --- paired bootstrap ------------------------------------------------------------------------


def test_mean_iou_of_counts_matches_segmentation_metrics_with_absent_classes():
    rng = np.random.default_rng(3)
    matrices = rng.integers(0, 20, size=(6, 3, 3))
    matrices[2, 2, :] = 0
    matrices[2, :, 2] = 0  # class 2 absent from truth and prediction
    matrices[5] = 0  # nothing scored
    values = bootstrap.mean_iou_of_counts(matrices)
    for matrix, value in zip(matrices[:5], values[:5], strict=True):
        assert value == pytest.approx(segmentation_metrics(matrix, CLASSES)["mean_iou"])
    assert np.isnan(values[5])


def test_resampled_confusions_equal_an_explicit_loop_over_drawn_images():
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 50, size=(11, 3, 3))
    weights = bootstrap.resample_weights(11, 5, seed=9)
    assert weights.shape == (5, 11) and (weights.sum(axis=1) == 11).all()
    resampled = bootstrap.resampled_confusions(counts, weights)
    for row, matrix in zip(weights, resampled, strict=True):
        drawn = np.repeat(np.arange(11), row)  # each image as often as it was drawn
        np.testing.assert_array_equal(matrix, counts[drawn].sum(axis=0))


def test_same_seed_same_interval_other_seed_other_interval():
    rng = np.random.default_rng(5)
    challenger = rng.integers(0, 100, size=(40, 3, 3))
    production = rng.integers(0, 100, size=(40, 3, 3))
    first = bootstrap.paired_bootstrap(challenger, production, samples=200, seed=11)
    again = bootstrap.paired_bootstrap(challenger, production, samples=200, seed=11)
    other = bootstrap.paired_bootstrap(challenger, production, samples=200, seed=12)
    assert first == again
    assert first["difference"] != other["difference"]
    point = segmentation_metrics(challenger.sum(axis=0), CLASSES)["mean_iou"]
    assert first["challenger"]["estimate"] == pytest.approx(point)
    assert first["challenger"]["low"] < point < first["challenger"]["high"]
    difference = point - segmentation_metrics(production.sum(axis=0), CLASSES)["mean_iou"]
    assert first["difference"]["estimate"] == pytest.approx(difference)
    json.dumps(first, allow_nan=False)


def _population(rng, size):
    """Per-image counts of two models on a population of images: production is the
    challenger with a random share of its correct pet pixels turned wrong, so the pair is
    correlated like two models on the same photos."""
    challenger = np.zeros((size, 3, 3), dtype=np.int64)
    pets = rng.integers(50, 400, size)
    backgrounds = rng.integers(200, 900, size)
    borders = rng.integers(10, 80, size)
    quality = rng.beta(8, 2, size)
    for index in range(size):
        for class_id, total in enumerate((pets[index], backgrounds[index], borders[index])):
            right = int(total * quality[index])
            challenger[index, class_id, class_id] = right
            challenger[index, class_id, (class_id + 1) % 3] = total - right
    production = challenger.copy()
    moved = (challenger[:, 0, 0] * rng.beta(2, 20, size)).astype(np.int64)
    production[:, 0, 0] -= moved
    production[:, 0, 1] += moved
    return challenger, production


def test_bootstrap_interval_covers_the_known_answer_at_about_the_nominal_rate():
    """Samples of 120 images drawn from a fixed population: the population's own mean IoU
    (and difference) is the known answer each 95% interval should cover ~95% of the time."""
    rng = np.random.default_rng(2026)
    challenger, production = _population(rng, 3000)
    truth = bootstrap.mean_iou_of_counts(challenger.sum(axis=0))
    truth_difference = truth - bootstrap.mean_iou_of_counts(production.sum(axis=0))
    assert truth_difference > 0.005
    trials = 200
    covered = covered_difference = 0
    for trial in range(trials):
        drawn = rng.integers(0, 3000, 120)
        result = bootstrap.paired_bootstrap(
            challenger[drawn], production[drawn], samples=400, seed=trial
        )
        covered += result["challenger"]["low"] <= truth <= result["challenger"]["high"]
        difference = result["difference"]
        covered_difference += difference["low"] <= truth_difference <= difference["high"]
    assert 0.88 <= covered / trials <= 0.99
    assert 0.88 <= covered_difference / trials <= 0.99


def test_subset_figures_equal_the_subsets_own_images():
    rng = np.random.default_rng(8)
    challenger, production = _population(rng, 60)
    members = np.array([0, 3, 4, 10, 22, 41, 59])
    result = bootstrap.paired_bootstrap(
        challenger, production, samples=100, seed=1, subsets={"some": members}
    )
    subset = result["subsets"]["some"]
    assert subset["num_images"] == 7
    own = segmentation_metrics(challenger[members].sum(axis=0), CLASSES)["mean_iou"]
    other = segmentation_metrics(production[members].sum(axis=0), CLASSES)["mean_iou"]
    assert subset["challenger"]["estimate"] == pytest.approx(own)
    assert subset["production"]["estimate"] == pytest.approx(other)
    assert subset["difference"]["estimate"] == pytest.approx(own - other)
    assert subset["difference"]["low"] <= subset["difference"]["high"]


def test_describe_interval():
    figure = {"estimate": 0.0123, "low": -0.004, "high": 0.029}
    assert bootstrap.describe_interval(figure) == "+0.0123 (95% interval -0.0040 to +0.0290)"
    assert bootstrap.describe_interval(None) == "undefined"


# --- slices ----------------------------------------------------------------------------------


def test_image_slices_by_species_breed_folder_object_and_image_size():
    true_pixels = np.array(
        [[5, 95, 0], [30, 60, 10], [50, 40, 10], [0, 0, 0], [9, 90, 1], [20, 80, 0]]
    )
    found = slices.image_slices(
        classes=CLASSES,
        true_pixels=true_pixels,
        label=np.array([0, 5, 5, -1, 1, 0]),
        species=np.array([0, 0, 0, -1, 1, 0]),
        longer_side=np.array([100, 300, 500, 512, 800, 256]),
        folder=["a", "b", "a", "", "", "b"],
        dataset_source="tfds oxford_iiit_pet 4.0.0",
    )
    named = {name: members.tolist() for name, members in found.items()}
    assert named == {
        "species=cat": [0, 1, 2, 5],
        "species=dog": [4],
        "breed=Abyssinian": [0, 5],
        "breed=american_bulldog": [4],
        "breed=Bengal": [1, 2],
        "folder=a": [0, 2],
        "folder=b": [1, 5],
        "object=small (<10%)": [0],  # 5% covered; image 3 has no scored pixel
        "object=medium (10%-40%)": [1, 4, 5],  # 40% is medium, 10% too
        "object=large (>40%)": [2],
        "image=<256 px": [0],
        "image=256-511 px": [1, 2, 5],
        "image=>=512 px": [3, 4],
    }
    unnamed = slices.image_slices(
        classes=["a", "b"],
        true_pixels=true_pixels[:, :2],
        label=np.array([3] * 6),
        species=np.full(6, -1),
        longer_side=np.full(6, 64),
    )
    assert list(unnamed) == ["breed=3", "image=<256 px"]  # no background class: no object slices


def test_slice_table_fails_only_checked_slices_past_the_margin():
    def figure(n, difference):
        return {
            "num_images": n,
            "challenger": {"estimate": 0.5, "low": 0.4, "high": 0.6},
            "production": {"estimate": 0.5 - difference, "low": 0.4, "high": 0.6},
            "difference": {"estimate": difference, "low": difference - 0.1, "high": 0.1},
        }

    rows = slices.slice_table(
        {
            "species=cat": figure(40, -0.06),
            "breed=pug": figure(5, -0.3),
            "image=x": figure(40, -0.04),
        },
        min_images=30,
        max_regression=0.05,
    )
    assert [(row["name"], row["checked"], row["failed"]) for row in rows] == [
        ("species=cat", True, True),
        ("breed=pug", False, False),  # too few images to judge
        ("image=x", True, False),
    ]


# --- the blessing rules ----------------------------------------------------------------------


def _metrics(mean_iou, boundary_iou=None):
    return {"mean_iou": mean_iou, "mean_boundary_iou": boundary_iou}


def _intervals(estimate, low, high):
    return {
        "samples": 1000,
        "confidence": 0.95,
        "difference": {"estimate": estimate, "low": low, "high": high},
    }


def test_confident_rule_decides_by_the_lower_bound_and_prints_the_interval():
    config = EvaluationConfig(min_mean_iou=0.1, max_regression=0.01, blessing_rule="confident")
    # The point estimate improves, but chance could explain a regression of 0.03.
    blessed, reasons = evaluate.decide_blessing(
        _metrics(0.72), _metrics(0.70), config, intervals=_intervals(0.02, -0.03, 0.07)
    )
    assert blessed is False
    assert "difference +0.0200 (95% interval -0.0300 to +0.0700)" in reasons[1]
    assert "lower bound -0.0300 < -max_regression -0.0100" in reasons[1]
    point = config.model_copy(update={"blessing_rule": "point"})
    blessed, reasons = evaluate.decide_blessing(
        _metrics(0.72), _metrics(0.70), point, intervals=_intervals(0.02, -0.03, 0.07)
    )
    assert blessed is True and "95% interval -0.0300 to +0.0700" in reasons[1]
    # A lower bound within the margin is blessed; with require_improvement it must clear 0.
    blessed, _ = evaluate.decide_blessing(
        _metrics(0.70), _metrics(0.70), config, intervals=_intervals(0.0, -0.005, 0.005)
    )
    assert blessed is True
    strict = config.model_copy(update={"require_improvement": True})
    blessed, reasons = evaluate.decide_blessing(
        _metrics(0.71), _metrics(0.70), strict, intervals=_intervals(0.01, -0.005, 0.02)
    )
    assert blessed is False and "no confident improvement" in reasons[-1]
    blessed, reasons = evaluate.decide_blessing(
        _metrics(0.73), _metrics(0.70), strict, intervals=_intervals(0.03, 0.01, 0.05)
    )
    assert blessed is True and "lower bound +0.0100 > 0" in reasons[-1]


def test_slice_and_boundary_rules_name_what_failed():
    config = EvaluationConfig(
        min_mean_iou=0.1, max_slice_regression=0.05, min_slice_images=30, min_boundary_iou=0.4
    )
    rows = slices.slice_table(
        {
            "breed=pug": {
                "num_images": 31,
                "challenger": {"estimate": 0.5, "low": 0.45, "high": 0.55},
                "production": {"estimate": 0.6, "low": 0.55, "high": 0.65},
                "difference": {"estimate": -0.1, "low": -0.15, "high": -0.05},
            }
        },
        min_images=30,
        max_regression=0.05,
    )
    blessed, reasons = evaluate.decide_blessing(
        _metrics(0.7, boundary_iou=0.3), _metrics(0.7), config, slice_rows=rows
    )
    assert blessed is False
    assert "boundary IoU 0.3000 < min_boundary_iou 0.4000" in reasons
    assert any(
        reason.startswith("slice breed=pug (31 images): mean IoU 0.5000 vs baseline 0.6000")
        and "-max_slice_regression -0.0500" in reason
        for reason in reasons
    )
    blessed, reasons = evaluate.decide_blessing(_metrics(0.7, 0.5), _metrics(0.7), config)
    assert blessed is True
    assert "no slice of >= 30 images regresses" in reasons[-1]


def test_production_preset_uses_the_confident_rule():
    from components.platform.config import load_config

    assert load_config(preset="production").evaluation.blessing_rule == "confident"
    assert EvaluationConfig().blessing_rule == "point"
    with pytest.raises(ValueError, match="object_small"):
        EvaluationConfig(object_small=0.5, object_large=0.4)


# --- end to end on saved models --------------------------------------------------------------


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    from tests import recordsets
    from tests.test_evaluate import IMAGE_SIZE, SKEWED_COLOURS, write_colour_model

    root = tmp_path_factory.mktemp("blessing")
    dataset_dir = str(root / "dataset")
    contents = recordsets.write_recordset(
        dataset_dir, {"test": 9}, height=IMAGE_SIZE, width=IMAGE_SIZE, seed=5, ignore=True
    )
    return {
        "root": root,
        "dataset": dataset_dir,
        "test": contents["test"],
        "skewed": write_colour_model(root / "skewed", SKEWED_COLOURS),
        "exact": write_colour_model(root / "exact", recordsets.CLASS_COLOURS),
    }


def test_one_pass_scores_both_models_per_image_like_numpy(scored):
    from tests.recordsets import CLASS_COLOURS
    from tests.test_evaluate import SKEWED_COLOURS, nearest_colour

    images = np.stack([image for image, _ in scored["test"]])
    truth = np.stack([mask for _, mask in scored["test"]])
    predicted = [nearest_colour(images, SKEWED_COLOURS), nearest_colour(images, CLASS_COLOURS)]
    models = [evaluate.load_scored_model(scored[name], CLASSES) for name in ("skewed", "exact")]
    result = evaluate.score_models(
        models, scored["dataset"], batch_size=4, changed_k=2, boundary_band=0.05
    )
    per_image = result["per_image"]
    assert per_image["file_names"] == [f"test_{index:04d}.png" for index in range(9)]
    assert per_image["longer_side"].tolist() == [32] * 9
    assert per_image["species"].tolist() == [-1] * 9
    for model_index, masks in enumerate(predicted):
        counts = per_image["counts"][model_index]
        for image in range(9):
            expected = np.zeros((3, 3), dtype=np.int64)
            keep = truth[image] != 255
            np.add.at(expected, (truth[image][keep], masks[image][keep]), 1)
            np.testing.assert_array_equal(counts[image], expected)
        metrics = result["results"][model_index]
        assert metrics["mean_iou"] == pytest.approx(
            segmentation_metrics(counts.sum(axis=0), CLASSES)["mean_iou"]
        )
        d = boundary.band_width(32, 32, 0.05)
        for class_id, name in enumerate(CLASSES):
            intersection, union = _reference_boundary_iou(truth, masks, class_id, d)
            assert metrics["boundary_iou"][name] == pytest.approx(intersection / union)
    changes = bootstrap.mean_iou_of_counts(per_image["counts"][0]) - bootstrap.mean_iou_of_counts(
        per_image["counts"][1]
    )
    order = np.argsort(changes, kind="stable")
    assert [item["file_name"] for item in result["worsened"]] == [
        f"test_{index:04d}.png" for index in order[:2]
    ]
    assert result["worsened"][0]["change"] == pytest.approx(changes.min())
    assert result["worsened"][0]["baseline_mask"].shape == (32, 32)


def test_run_evaluation_reports_intervals_slices_and_changed_images(scored, tmp_path):
    outcome = evaluate.run_evaluation(
        scored["skewed"],
        scored["dataset"],
        ModelConfig(image_size=32, normalization="tutorial"),
        EvaluationConfig(
            min_mean_iou=0.1,
            max_regression=0.5,
            blessing_rule="confident",
            bootstrap_samples=200,
            report_images=1,
            min_slice_images=1,
            max_slice_regression=0.0,
        ),
        scored["exact"],
        str(tmp_path / "report.html"),
    )
    json.dumps(outcome, allow_nan=False)
    difference = outcome["intervals"]["difference"]
    assert difference["estimate"] == pytest.approx(
        outcome["candidate"]["mean_iou"] - outcome["baseline"]["mean_iou"]
    )
    assert difference["low"] <= difference["estimate"] <= difference["high"] < 0
    assert bootstrap.describe_interval(difference) in outcome["reasons"][1]
    # Within the wide overall margin, but every slice regresses: the reason names the slice.
    assert outcome["blessed"] is False
    assert any(r.startswith("slice image=<256 px (9 images): mean IoU") for r in outcome["reasons"])
    rows = {row["name"]: row for row in outcome["slices"]}
    assert rows["image=<256 px"]["failed"] and rows["image=<256 px"]["num_images"] == 9
    assert len(outcome["changed"]["worsened"]) == 3
    assert outcome["outcome_format"] == 1  # written through contracts.EvaluationOutcome
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Slices</h2>" in page
    assert "<tr class='failing'><th>image=&lt;256 px</th><td>9</td>" in page
    assert page.count('<svg class="interval"') == 1 + len(outcome["slices"])
    assert f"interval {difference['low']:+.4f} to {difference['high']:+.4f}" in page
    assert "The 3 images whose mean IoU fell most against the baseline" in page
    worsened = outcome["changed"]["worsened"][0]
    assert (
        f"<td class='name'>{worsened['file_name']}</td><td>{worsened['mean_iou']:.3f}</td>"
        f"<td>{worsened['baseline_mean_iou']:.3f}</td>"
        f'<td><span class="worse">{worsened["change"]:+.3f}</span></td>'
    ) in page
    # one sample and three worsened images, four pictures each (no improved: the exact model
    # is never worse), plus the worst images (default 4)
    assert page.count("data:image/png;base64,") == 4 * (1 + 3 + 4)
    scalars = evaluate.scalar_metrics(outcome)
    assert scalars["mean_iou_difference_low"] == difference["low"]
    assert scalars["slice_image_256_px_mean_iou"] == pytest.approx(outcome["candidate"]["mean_iou"])
    assert 0 < scalars["mean_boundary_iou"] < scalars["baseline_mean_boundary_iou"] <= 1.0


# --- own data: the slice ingest stores ---------------------------------------------------------


def test_own_data_slices_come_from_sub_folders_and_the_manifest_column(tmp_path):
    import shutil

    from components.data import dataset_info, schema, sources, synthetic_pets
    from components.data.ingest import ingest_dataset
    from components.platform.config import DataConfig
    from tests.recordsets import CLASS_COLOURS
    from tests.test_evaluate import write_colour_model

    written = synthetic_pets.write_folder_dataset(
        str(tmp_path / "data"), {"train": 2, "test": 6}, image_size=32
    )
    root = tmp_path / "data" / "test"
    for index, stem in enumerate(written.stems["test"]):
        group = "indoor" if index % 3 == 0 else "garden"
        for folder, extension in (("images", "jpg"), ("masks", "png")):
            (root / folder / group).mkdir(exist_ok=True)
            shutil.move(root / folder / f"{stem}.{extension}", root / folder / group)
    config = DataConfig(**written.data_config)
    ingest_dataset(config, str(tmp_path / "dataset"))
    classes = dataset_info.load_dataset_info(str(tmp_path / "dataset")).classes
    model = evaluate.load_scored_model(
        write_colour_model(tmp_path / "model", CLASS_COLOURS, classes=classes), classes
    )
    per_image = evaluate.score_models([model], str(tmp_path / "dataset"))["per_image"]
    expected = [name.split("/")[-2] for name in per_image["file_names"]]
    assert per_image["folder"] == expected and set(expected) == {"indoor", "garden"}
    found = evaluate.image_slices_of(per_image, classes, EvaluationConfig())
    assert sorted(found["folder=indoor"].tolist()) == [
        index for index, name in enumerate(expected) if name == "indoor"
    ]
    # A manifest's `slice` column; records without one keep the bytes they had before.
    manifest = tmp_path / "labels.csv"
    manifest.write_text(
        "image,mask,slice\nimages/a.jpg,masks/a.png,night\nimages/b.jpg,masks/b.png,\n"
    )
    listed = list(sources.examples(DataConfig(source="manifest", path=str(manifest)))[1])
    assert [example.slice for example in listed] == ["night", ""]
    plain = dict(image_bytes=b"x", class_ids=np.zeros((2, 2), np.uint8), file_name="a.jpg")
    assert schema.encode_example(**plain, slice_name="") == schema.encode_example(**plain)
    parsed = schema.parse_example(schema.encode_example(**plain, slice_name="night"))
    assert parsed["slice"].numpy() == b"night"
    assert schema.parse_example(schema.encode_example(**plain))["slice"].numpy() == b""
