"""Drift injected into a generated folder dataset, ingested, then checked against production.

Production's statistics come from the unchanged folder. Each test copies it, changes one
thing as a labelling tool, a camera or a careless copy would, ingests the copy and asserts
the check's verdict and figure; the unchanged copy passes every check.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.data import statistics, synthetic_pets
from components.data.data_validation import DataCheckError, enforce, js_distance, run_checks
from components.data.ingest import ingest_dataset
from components.data.sources import EmptySplitError
from components.platform.config import ChecksConfig, DataConfig

SPLITS = {"train": 10, "validation": 3, "test": 3}
SIZE = 48


def _write(root, image_size=SIZE):
    return synthetic_pets.write_folder_dataset(str(root), SPLITS, image_size=image_size)


def _statistics(written, folder, output, **overrides):
    """What ingest gathered as it wrote, checked against a separate read of its shards."""
    config = DataConfig(**{**written.data_config, "path": str(folder), **overrides})
    ingest_dataset(config, str(output))
    stored = statistics.dataset_statistics(str(output))
    assert stored == json.loads((output / statistics.STATISTICS_FILE).read_text())
    assert stored == json.loads(json.dumps(statistics.compute_statistics(str(output))))
    return stored


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    written = _write(root / "data")
    return {
        "written": written,
        "folder": Path(written.root),
        "statistics": _statistics(written, written.root, root / "ingested"),
    }


@pytest.fixture
def copy(production, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(production["folder"], folder)
    return folder


def _check(verdicts, name):
    (check,) = [check for check in verdicts["checks"] if check["name"] == name]
    return check


def _checked(production, folder, tmp_path, **overrides):
    current = _statistics(production["written"], folder, tmp_path / "out", **overrides)
    return run_checks(current, ChecksConfig(), production["statistics"], compared_with="prod")


def _mask_values(folder, split):
    return [np.asarray(Image.open(path)) for path in sorted((folder / split / "masks").glob("*"))]


def _frequencies(masks, names):
    counts = np.bincount(np.concatenate([mask.ravel() for mask in masks]), minlength=len(names) + 1)
    counts = counts[1 : len(names) + 1]  # value = class id + 1
    return dict(zip(names, (counts / counts.sum()).tolist(), strict=True))


def test_unchanged_folder_passes_every_check(production, copy, tmp_path):
    verdicts = _checked(production, copy, tmp_path)
    assert {check["status"] for check in verdicts["checks"]} == {"pass"}
    assert _check(verdicts, "class_frequency_distance")["figure"] == 0.0
    assert _check(verdicts, "image_size_shift")["figure"] == 0.0


def test_pet_pixels_doubled(production, copy, tmp_path):
    names = production["written"].class_names
    pet, background = names.index("pet") + 1, names.index("background") + 1
    before = _frequencies(_mask_values(copy, "train"), names)
    for path in sorted((copy / "train" / "masks").glob("*.png")):
        original = np.asarray(Image.open(path))
        values = original.copy().ravel()
        extra = np.flatnonzero(values == background)[: int(np.sum(values == pet))]
        values[extra] = pet
        Image.fromarray(values.reshape(original.shape)).save(path)
    after = _frequencies(_mask_values(copy, "train"), names)
    assert after["pet"] > 1.9 * before["pet"]

    verdicts = _checked(production, copy, tmp_path)
    check = _check(verdicts, "class_frequency_distance")
    assert check["figure"] == pytest.approx(js_distance(after, before), abs=1e-6)
    assert check["figure"] > 0.1 and check["status"] == "fail"
    assert verdicts["errors"] == ["class_frequency_distance"]
    with pytest.raises(
        DataCheckError,
        match=r"class_frequency_distance = 0\.\d+ > threshold 0\.1 \(train: background ",
    ):
        enforce(verdicts)


def test_a_new_mask_value_mapped_to_a_new_class_appears(production, copy, tmp_path):
    for path in sorted((copy / "train" / "masks").glob("*.png"))[:3]:
        values = np.asarray(Image.open(path)).copy()
        values[:6, :6] = 4  # a labelling tool's new class
        Image.fromarray(values).save(path)
    classes = [*production["written"].data_config["classes"], {"name": "toy", "values": [4]}]
    verdicts = _checked(production, copy, tmp_path, classes=classes)
    check = _check(verdicts, "classes_appeared")
    assert (check["figure"], check["message"], check["status"]) == (1, "new: toy", "fail")
    assert "classes_appeared" in verdicts["errors"]


def test_a_new_unmapped_mask_value_is_skipped_and_counted(production, copy, tmp_path):
    for path in sorted((copy / "train" / "masks").glob("*.png"))[:2]:
        values = np.asarray(Image.open(path)).copy()
        values[0, 0] = 9
        Image.fromarray(values).save(path)
    verdicts = _checked(production, copy, tmp_path, bad_record_policy="skip")
    check = _check(verdicts, "skipped_records")
    assert check["figure"] == pytest.approx(2 / 10)
    assert check["status"] == "fail" and check["severity"] == "warn"
    assert _check(verdicts, "split_shrink")["figure"] == pytest.approx(0.2)
    assert _check(verdicts, "split_shrink")["status"] == "pass"  # 20% is not above 0.2


def test_images_at_another_size(production, tmp_path):
    bigger = _write(tmp_path / "bigger", image_size=2 * SIZE)
    verdicts = _checked(production, Path(bigger.root), tmp_path)
    check = _check(verdicts, "image_size_shift")
    assert check["figure"] == pytest.approx(1.0)
    assert (check["status"], check["severity"]) == ("fail", "warn")
    split = check["message"].split(":")[0]
    before = production["statistics"]["splits"][split]
    height, width = before["height"]["median"], before["width"]["median"]
    assert max(height, width) == SIZE
    assert f"median {height}x{width}→{2 * height}x{2 * width}" in check["message"]
    assert verdicts["warnings"] == ["image_size_shift"]


def test_a_copied_test_image_in_train_is_leakage(production, copy, tmp_path):
    stem = production["written"].stems["test"][0]
    shutil.copy(copy / "test" / "images" / f"{stem}.jpg", copy / "train" / "images" / "x.jpg")
    shutil.copy(copy / "test" / "masks" / f"{stem}.png", copy / "train" / "masks" / "x.png")
    verdicts = _checked(production, copy, tmp_path)
    check = _check(verdicts, "cross_split_duplicates")
    assert check["figure"] == 1 and check["status"] == "fail"
    assert "(leakage)" in check["message"] and "x.jpg" in check["message"]
    # Each file once, as it is under the folder (the split is already in its path).
    assert check["message"].endswith(f"(leakage): test/images/{stem}.jpg = train/images/x.jpg"), (
        check["message"]
    )
    assert verdicts["errors"] == ["cross_split_duplicates"]


def test_an_emptied_split_folder_shrinks_the_split(production, copy, tmp_path):
    # An empty validation/ folder counts as absent: validation is carved from train instead,
    # far smaller than production's, and split_shrink stops the run.
    for folder in ("images", "masks"):
        for path in (copy / "validation" / folder).glob("*"):
            path.unlink()
    current = _statistics(production["written"], copy, tmp_path / "out")
    carved = current["splits"]["validation"]["num_records"]
    assert carved < SPLITS["validation"]
    verdicts = run_checks(current, ChecksConfig(), production["statistics"])
    check = _check(verdicts, "split_shrink")
    assert check["figure"] == pytest.approx((SPLITS["validation"] - carved) / SPLITS["validation"])
    assert check["message"] == f"validation: {SPLITS['validation']}→{carved} records"
    assert "split_shrink" in verdicts["errors"]


def test_a_split_left_empty_is_refused_by_ingest(production, copy, tmp_path):
    for folder in ("images", "masks"):
        for path in (copy / "validation" / folder).glob("*"):
            path.unlink()
    with pytest.raises(EmptySplitError, match="split 'validation' has no usable records"):
        _statistics(production["written"], copy, tmp_path / "out", validation_fraction=0.01)


def test_statistics_are_read_again_when_not_stored_or_not_of_these_records(production, tmp_path):
    config = DataConfig(**{**production["written"].data_config, "path": str(production["folder"])})
    output = tmp_path / "out"
    ingest_dataset(config, str(output), statistics=False)
    assert not (output / statistics.STATISTICS_FILE).exists()
    assert statistics.dataset_statistics(str(output)) == production["statistics"]
    # A statistics.json of other records (another fingerprint) is not trusted.
    stale = dict(production["statistics"], fingerprint={"dataset": "0" * 64, "splits": {}})
    stale["splits"] = {split: {} for split in stale["splits"]}
    (output / statistics.STATISTICS_FILE).write_text(json.dumps(stale))
    assert statistics.dataset_statistics(str(output)) == production["statistics"]
    (output / statistics.STATISTICS_FILE).write_text("{truncated")  # nor a damaged one
    assert statistics.dataset_statistics(str(output)) == production["statistics"]
