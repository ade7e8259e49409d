"""Statistics of an ingested dataset: sizes, encodings, class pixels, duplicates, leakage."""

import io

import numpy as np
import pytest
from PIL import Image

from components.data import statistics
from components.data.statistics import compute_statistics, encoding_and_channels, percentiles
from tests.datachecks_data import draw_split, standard_splits, write_dataset


def _encoded(mode, fmt, size=(12, 10)):
    buffer = io.BytesIO()
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.zeros((size[1], size[0], channels), np.uint8).squeeze()
    Image.fromarray(pixels, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt", "expected"),
    [
        ("L", "PNG", ("png", 1)),
        ("LA", "PNG", ("png", 2)),
        ("RGB", "PNG", ("png", 3)),
        ("RGBA", "PNG", ("png", 4)),
        ("L", "JPEG", ("jpeg", 1)),
        ("RGB", "JPEG", ("jpeg", 3)),
        ("RGB", "BMP", ("bmp", 3)),
        ("RGB", "GIF", ("gif", 3)),
    ],
)
def test_encoding_and_channels_from_the_header(mode, fmt, expected):
    assert encoding_and_channels(_encoded(mode, fmt)) == expected


def test_unknown_bytes_are_counted_as_unknown():
    assert encoding_and_channels(b"not an image") == ("unknown", None)


def test_percentiles_are_nearest_rank_and_exact():
    values = np.random.default_rng(1).integers(10, 500, size=1001)
    histogram = dict(zip(*np.unique(values, return_counts=True), strict=True))
    ordered = np.sort(values)
    result = percentiles(histogram)
    assert result["min"] == ordered[0]
    assert result["max"] == ordered[-1]
    assert result["median"] == ordered[500]  # rank ceil(0.5 * 1001) = 501
    assert result["p5"] == ordered[50]  # rank ceil(0.05 * 1001) = 51
    assert result["p95"] == ordered[950]  # rank ceil(0.95 * 1001) = 951
    assert percentiles({}) == dict.fromkeys(("min", "p5", "median", "p95", "max"))


def test_split_statistics_match_the_records(tmp_path):
    splits = standard_splits()
    # One test image at another size and as JPEG, to see both in the distributions.
    splits["test"][0] = draw_split("test", 1, height=60, width=30, fmt="JPEG", seed=9)[0]
    result = compute_statistics(write_dataset(str(tmp_path / "data"), splits))

    assert result["classes"] == ["pet", "background", "border"]
    assert sorted(result["splits"]) == ["test", "train", "validation"]
    train = result["splits"]["train"]
    masks = [class_ids for _, class_ids, _ in splits["train"]]
    counts = np.bincount(np.concatenate([mask.ravel() for mask in masks]), minlength=3)
    assert train["num_records"] == 8
    assert train["class_pixels"] == dict(
        zip(["pet", "background", "border"], counts.tolist(), strict=True)
    )
    assert train["class_frequency"]["pet"] == pytest.approx(counts[0] / counts.sum())
    assert train["class_images"] == {"pet": 8, "background": 8, "border": 8}
    assert train["height"] == {"min": 40, "p5": 40, "median": 40, "p95": 40, "max": 40}
    assert train["aspect_ratio"]["median"] == pytest.approx(1.2)
    assert train["encodings"] == {"png": 8}
    assert train["channels"] == {"3": 8}
    assert train["bytes"]["images"] == sum(len(image) for image, _, _ in splits["train"])
    assert train["single_class_masks"]["count"] == 0

    test = result["splits"]["test"]
    assert test["encodings"] == {"jpeg": 1, "png": 3}
    assert test["height"]["max"] == 60 and test["width"]["min"] == 30
    assert test["aspect_ratio"]["min"] == pytest.approx(0.5)
    assert result["duplicates"]["num_across"] == 0 and result["duplicates"]["num_within"] == {}


def test_ignored_pixels_are_left_out_and_single_class_masks_are_named(tmp_path):
    image = draw_split("train", 1)[0][0]
    only_background = np.ones((40, 48), np.uint8)
    with_ignore = np.ones((40, 48), np.uint8)
    with_ignore[:10] = 255  # void
    with_ignore[10:15] = 0  # pet
    dataset = write_dataset(
        str(tmp_path / "data"),
        {"train": [(image, only_background, "bg.png"), (image, with_ignore, "void.png")]},
    )
    train = compute_statistics(dataset)["splits"]["train"]
    assert train["ignored_pixels"] == 10 * 48
    assert train["class_pixels"] == {
        "pet": 5 * 48,
        "background": 2 * 40 * 48 - 15 * 48,
        "border": 0,
    }
    assert sum(train["class_frequency"].values()) == pytest.approx(1.0)
    assert train["class_images"] == {"pet": 1, "background": 2, "border": 0}
    single = train["single_class_masks"]
    assert single["count"] == 1 and single["by_class"] == {"background": 1}
    assert single["files"] == ["bg.png"] and single["fraction"] == 0.5


def test_duplicates_within_and_across_splits_with_leakage(tmp_path):
    splits = standard_splits()
    leaked_image, leaked_mask, _ = splits["test"][2]
    splits["train"].append((leaked_image, leaked_mask, "copied_from_test.png"))
    splits["validation"].append((splits["validation"][0][0], splits["validation"][0][1], "v.png"))
    duplicates = compute_statistics(write_dataset(str(tmp_path / "data"), splits))["duplicates"]

    assert duplicates["num_across"] == 1 and duplicates["num_leaked"] == 1
    assert duplicates["across"][0]["files"] == {
        "test": ["test_002.png"],
        "train": ["copied_from_test.png"],
    }
    assert duplicates["across"][0]["leakage"] is True
    assert duplicates["num_within"] == {"validation": 1}
    assert duplicates["within"]["validation"] == [["v.png", "validation_000.png"]]


def test_an_empty_split_has_zero_records_and_no_figures(tmp_path):
    splits = standard_splits()
    splits["validation"] = []
    result = compute_statistics(write_dataset(str(tmp_path / "data"), splits))
    empty = result["splits"]["validation"]
    assert empty["num_records"] == 0
    assert empty["height"]["median"] is None
    assert empty["class_frequency"] == {"pet": 0.0, "background": 0.0, "border": 0.0}


def test_markdown_view_shows_splits_classes_and_duplicates(tmp_path):
    splits = standard_splits()
    splits["train"].append((splits["test"][0][0], splits["test"][0][1], "copy.png"))
    result = compute_statistics(write_dataset(str(tmp_path / "data"), splits))
    text = statistics.render_markdown(result)
    assert "|  | test | train | validation |" in text
    assert "| records | 4 | 9 | 3 |" in text
    assert "| pet |" in text
    assert "**leakage** test: test_000.png; train: copy.png" in text


def test_a_record_count_that_disagrees_with_dataset_json_is_refused(tmp_path):
    import json

    from components.data.dataset_info import ShardIntegrityError

    dataset = write_dataset(str(tmp_path / "data"), standard_splits())
    info_file = tmp_path / "data" / "dataset.json"
    info = json.loads(info_file.read_text())
    info["splits"]["test"]["num_records"] = 5
    info_file.write_text(json.dumps(info))
    with pytest.raises(
        ShardIntegrityError, match=r"hold 15 records, but dataset.json lists 16 \(\[5, 8, 3\]\)"
    ):
        compute_statistics(dataset)

    info["splits"]["test"]["num_records"] = 3
    info_file.write_text(json.dumps(info))
    with pytest.raises(ShardIntegrityError, match=r"hold more records than dataset.json lists"):
        compute_statistics(dataset)
