"""Data checks: each injected drift fails its check with the right figure; unchanged data passes."""

import json

import numpy as np
import pytest

from components.data import data_validation, statistics
from components.data.data_validation import (
    DataCheckError,
    enforce,
    enforce_saved,
    js_distance,
    run_checks,
)
from components.platform.config import ChecksConfig, ConfigError, load_config
from components.platform.contracts import CheckVerdicts
from tests.datachecks_data import double_pet, standard_splits, write_dataset

CLASSES = ("pet", "background", "border")


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    """Statistics of the data the production model was trained on."""
    directory = tmp_path_factory.mktemp("production") / "data"
    return statistics.compute_statistics(write_dataset(str(directory), standard_splits()))


def _stats(tmp_path, splits, **kwargs):
    return statistics.compute_statistics(write_dataset(str(tmp_path / "data"), splits, **kwargs))


def _check(verdicts, name):
    (check,) = [check for check in verdicts["checks"] if check["name"] == name]
    return check


def _frequencies(examples):
    counts = np.bincount(np.concatenate([mask.ravel() for _, mask, _ in examples]), minlength=3)
    return dict(zip(CLASSES, (counts / counts.sum()).tolist(), strict=True))


def test_js_distance_known_values():
    assert js_distance({"a": 1, "b": 1}, {"a": 2, "b": 2}) == 0.0
    assert js_distance({"a": 1}, {"b": 1}) == pytest.approx(1.0)
    # JSD(p, q) for p = (1, 0), q = (0.5, 0.5): 0.5 * log2(4/3) + 0.25 * log2(2/3) + ... by hand.
    expected = np.sqrt(0.5 * (np.log2(1 / 0.75)) + 0.5 * (0.5 * np.log2(0.5 / 0.75) + 0.5))
    assert js_distance({"a": 1, "b": 0}, {"a": 0.5, "b": 0.5}) == pytest.approx(expected)


def test_unchanged_data_passes_every_check(tmp_path, production):
    current = _stats(tmp_path, standard_splits())
    verdicts = run_checks(current, ChecksConfig(), production, compared_with="v000001")
    assert [check["status"] for check in verdicts["checks"]] == ["pass"] * 11
    assert verdicts["errors"] == [] and verdicts["warnings"] == []
    assert _check(verdicts, "class_frequency_distance")["figure"] == 0.0
    assert verdicts["compared_with"] == "v000001"
    enforce(verdicts)  # does not raise


def test_first_run_checks_only_absolute_rules(tmp_path):
    verdicts = run_checks(_stats(tmp_path, standard_splits()), ChecksConfig())
    statuses = {check["name"]: check["status"] for check in verdicts["checks"]}
    assert set(statuses) == set(data_validation.ABSOLUTE_CHECKS) | set(
        data_validation.PRODUCTION_CHECKS
    )
    for name in data_validation.ABSOLUTE_CHECKS:
        assert statuses[name] == "pass"
    for name in data_validation.PRODUCTION_CHECKS:
        assert statuses[name] == "skipped"


def test_pet_pixels_doubled_fails_class_frequency_distance(tmp_path, production):
    splits = standard_splits()
    before = _frequencies(splits["train"])
    splits["train"] = [(image, double_pet(mask), name) for image, mask, name in splits["train"]]
    after = _frequencies(splits["train"])
    verdicts = run_checks(_stats(tmp_path, splits), ChecksConfig(), production)

    check = _check(verdicts, "class_frequency_distance")
    assert check["figure"] == pytest.approx(js_distance(after, before), abs=1e-6)
    assert check["figure"] > 0.1 and check["status"] == "fail" and check["severity"] == "error"
    assert check["message"].startswith(f"train: pet {before['pet']:.3f}→{after['pet']:.3f}, ")
    assert verdicts["errors"] == ["class_frequency_distance"]
    with pytest.raises(DataCheckError, match=r"class_frequency_distance = 0\.\d+ > threshold 0\.1"):
        enforce(verdicts)


def test_a_new_class_appearing_fails(tmp_path, production):
    # Production's data had no border pixels; this week's masks carry a border value again.
    splits = standard_splits()
    no_border = {
        split: [(image, np.where(mask == 2, 1, mask), name) for image, mask, name in examples]
        for split, examples in splits.items()
    }
    old = _stats(tmp_path / "old", no_border)
    verdicts = run_checks(_stats(tmp_path / "new", splits), ChecksConfig(), old)
    assert _check(verdicts, "classes_appeared")["figure"] == 1
    assert _check(verdicts, "classes_appeared")["message"] == "new: border"
    assert _check(verdicts, "classes_disappeared")["status"] == "pass"
    reverse = run_checks(old, ChecksConfig(), _stats(tmp_path / "new2", splits))
    assert _check(reverse, "classes_disappeared")["figure"] == 1
    assert set(reverse["errors"]) >= {"classes_disappeared", "classes_missing_in_train"}


def test_images_at_another_size_warn_image_size_shift(tmp_path, production):
    splits = standard_splits(height=80, width=96)  # twice the production size
    verdicts = run_checks(_stats(tmp_path, splits), ChecksConfig(), production)
    check = _check(verdicts, "image_size_shift")
    assert check["figure"] == pytest.approx(1.0)
    assert check["status"] == "fail" and check["severity"] == "warn"
    assert "40x48→80x96" in check["message"]
    assert verdicts["warnings"] == ["image_size_shift"] and verdicts["errors"] == []
    enforce(verdicts)  # a warning lets the run go on
    CheckVerdicts.from_dict(verdicts).write(str(tmp_path / CheckVerdicts.FILE_NAME))
    outcome = enforce_saved(data_validation.EnforceInputs(statistics_dir=str(tmp_path)))
    assert outcome.warnings == ["image_size_shift"]  # the step's outcome


def test_a_copied_test_image_in_train_is_leakage(tmp_path, production):
    splits = standard_splits()
    image, mask, _ = splits["test"][1]
    splits["train"].append((image, mask, "train_extra.png"))
    verdicts = run_checks(_stats(tmp_path, splits), ChecksConfig(), production)
    check = _check(verdicts, "cross_split_duplicates")
    assert check["figure"] == 1 and check["status"] == "fail"
    assert (
        "1 in test or validation (leakage): test/test_001.png = train/train_extra.png"
        in (check["message"])
    )
    with pytest.raises(DataCheckError) as raised:
        enforce(verdicts)
    assert "cross_split_duplicates = 1 > threshold 0" in str(raised.value)


def test_an_empty_split_fails_and_shrinks(tmp_path, production):
    splits = standard_splits()
    splits["validation"] = []
    verdicts = run_checks(_stats(tmp_path, splits), ChecksConfig(), production)
    assert _check(verdicts, "empty_splits")["figure"] == 1
    assert _check(verdicts, "empty_splits")["message"] == "empty: validation"
    assert _check(verdicts, "split_shrink")["figure"] == 1.0
    assert _check(verdicts, "split_shrink")["message"] == "validation: 3→0 records"
    assert verdicts["errors"] == ["empty_splits", "split_shrink"]


def test_split_shrink_measures_the_relative_drop(tmp_path, production):
    splits = standard_splits()
    splits["train"] = splits["train"][:5]  # 8 → 5: a 37.5% drop
    check = _check(run_checks(_stats(tmp_path, splits), ChecksConfig(), production), "split_shrink")
    assert check["figure"] == pytest.approx(0.375) and check["status"] == "fail"
    relaxed = ChecksConfig.model_validate({"split_shrink": {"threshold": 0.4}})
    relaxed_check = _check(
        run_checks(_stats(tmp_path / "b", splits), relaxed, production), "split_shrink"
    )
    assert relaxed_check["status"] == "pass"


def test_single_class_masks_and_skipped_records_warn(tmp_path):
    splits = standard_splits()
    splits["train"] = [(image, np.ones_like(mask), name) for image, mask, name in splits["train"]]
    verdicts = run_checks(_stats(tmp_path, splits, skipped={"test": 1}), ChecksConfig())
    single = _check(verdicts, "single_class_masks")
    assert single["figure"] == 1.0 and single["message"] == "train: 8 only background"
    assert _check(verdicts, "skipped_records")["figure"] == pytest.approx(1 / 5)
    assert (
        _check(verdicts, "classes_missing_in_train")["message"] == "no pixels in train: pet, border"
    )
    assert set(verdicts["warnings"]) == {"single_class_masks", "skipped_records"}


def test_severity_off_and_warn_are_honoured(tmp_path):
    splits = standard_splits()
    splits["train"].append(splits["test"][0])
    stats = _stats(tmp_path, splits)
    config = load_config(overrides=["checks.cross_split_duplicates.severity=warn"]).checks
    verdicts = run_checks(stats, config)
    assert verdicts["warnings"] == ["cross_split_duplicates"] and verdicts["errors"] == []
    off = load_config(overrides=["checks.cross_split_duplicates.severity=off"]).checks
    check = _check(run_checks(stats, off), "cross_split_duplicates")
    assert check["status"] == "off" and check["figure"] is None


def test_check_config_refuses_bad_values():
    with pytest.raises(ConfigError, match=r"checks\.split_shrink\.severity"):
        load_config(overrides=["checks.split_shrink.severity=fatal"])
    with pytest.raises(ConfigError, match=r"checks\.image_size_shift\.threshold"):
        load_config(overrides=["checks.image_size_shift.threshold=-1"])
    with pytest.raises(ConfigError, match=r"checks\.no_such_check"):
        load_config(overrides=["checks.no_such_check.threshold=1"])


def test_verdicts_are_json_metrics_and_markdown(tmp_path, production):
    splits = standard_splits(height=80, width=96)
    current = _stats(tmp_path, splits)
    verdicts = run_checks(current, ChecksConfig(), production, compared_with="dest/v000003")
    json.dumps(verdicts)  # the record is plain JSON
    metrics = data_validation.summary_metrics(verdicts)
    assert metrics["check/image_size_shift"] == pytest.approx(1.0)
    assert metrics["check_warnings"] == 1.0 and metrics["check_errors"] == 0.0
    text = statistics.render_markdown(current, verdicts)
    assert "Compared with production statistics from dest/v000003." in text
    assert "| image_size_shift | fail | warn | 1.000 | 0.300 |" in text


def test_verdicts_go_into_the_evaluation_report(tmp_path, production):
    from components.evaluation.report import write_report

    splits = standard_splits()
    splits["train"].append(splits["test"][0])
    verdicts = run_checks(_stats(tmp_path, splits), ChecksConfig(), production, compared_with="v7")
    candidate = {"classes": list(CLASSES), "mean_iou": 0.5, "pixel_accuracy": 0.9}
    candidate["per_class"] = {
        name: dict.fromkeys(("iou", "precision", "recall"), 0.5) for name in CLASSES
    }
    candidate["confusion_matrix"] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    report = tmp_path / "report.html"
    write_report(str(report), candidate, data_checks=verdicts)
    page = report.read_text()
    assert page.rstrip().endswith("</body></html>")
    assert "<h2>Data checks</h2><p>Compared with production statistics from v7.</p>" in page
    assert (
        "<tr><td>cross_split_duplicates</td><td>fail</td><td>error</td><td>1</td><td>0</td>" in page
    )
