"""Scheduled retraining through kfp.local: unchanged data skips training, one new image trains."""

import json
from pathlib import Path

import pytest

from components.data import synthetic_pets
from components.platform.config import load_config
from components.publish.push import latest_manifest
from pipelines.local import format_summary, run_local

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning"),
]


def _oxford_order(classes):
    by_name = {spec["name"]: spec for spec in classes}
    return [by_name[name] for name in ("pet", "background", "border")]


def test_second_run_skips_and_a_run_after_adding_an_image_trains(tmp_path):
    data = synthetic_pets.write_folder_dataset(str(tmp_path / "data"), 13, image_size=32)
    (Path(data.root) / "masks" / "pet_00012.png").unlink()  # a record ingest skips
    models = tmp_path / "models"
    overrides = [
        "data.source=folder",
        f"data.path={data.root}",
        "data.bad_record_policy=skip",
        "data.validation_fraction=0.25",
        "data.test_fraction=0.25",
        # Oxford's class names and order over the folder's values (background 1, border 2,
        # pet 3), which every step reads today.
        "data.classes=" + json.dumps(_oxford_order(data.data_config["classes"])),
        "model.image_size=32",
        "training.epochs=1",
        "training.batch_size=4",
        "training.tensorboard_images=0",
        "evaluation.min_mean_iou=0.0",
        "evaluation.report_images=0",
        f"push.destination={models}",
    ]
    config = load_config("demo", overrides=overrides)
    root = tmp_path / "root"

    first = run_local(config, pipeline_root=root, scheduled=True)
    assert first.task("check-data-changed").parameters["Output"] == "train"
    # On the terminal: why it trains, and which file was skipped (all in dataset.json).
    printed = format_summary(first).splitlines()
    assert f"Training: {models} holds no model yet" in printed
    dataset_json = Path(first.task("ingest").artifacts["dataset"]["uri"]) / "dataset.json"
    assert f"skipped records: 1, all listed in {dataset_json}" in printed
    (skipped_line,) = [line for line in printed if "pet_00012" in line]
    assert ": images/pet_00012.jpg: image has no mask (looked for " in skipped_line
    assert first.pushed_uri is not None
    version, manifest = latest_manifest(str(models))
    ingested = json.loads(
        (Path(first.task("ingest").artifacts["dataset"]["uri"]) / "dataset.json").read_text()
    )
    fingerprint = ingested["fingerprint"]["dataset"]
    # The pushed model records the data it was trained on, in its manifest and metadata.
    assert manifest.dataset_fingerprint == fingerprint
    assert (manifest.dataset["source"], manifest.dataset["source_type"]) == (
        data.root,
        "folder",
    )
    assert first.task("train").artifacts["model"]["metadata"]["data_fingerprint"] == fingerprint

    second = run_local(config, pipeline_root=root, scheduled=True)
    decision = second.task("check-data-changed").parameters["Output"]
    assert decision.startswith("skip: data unchanged since production " + version)
    assert fingerprint in decision
    assert second.task("train") is None and second.task("push") is None
    assert second.data_unchanged == decision
    assert decision in format_summary(second)
    assert latest_manifest(str(models))[0] == version

    synthetic_pets.write_folder_dataset(data.root, 1, image_size=32, start=13)
    third = run_local(config, pipeline_root=root, scheduled=True)
    assert third.task("check-data-changed").parameters["Output"] == "train"
    reason = third.data_change_reason
    assert reason.startswith("Training: data changed (fingerprint "), reason
    assert f"production {version} was trained on {fingerprint[:12]})" in reason
    assert reason in format_summary(third).splitlines()
    assert third.task("train") is not None and third.task("evaluate") is not None
    assert third.data_unchanged is None
    trained_on = third.task("train").artifacts["model"]["metadata"]["data_fingerprint"]
    assert trained_on not in ("", fingerprint)
