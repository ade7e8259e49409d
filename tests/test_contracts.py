"""components.platform.contracts: typed hand-off files with a schema version, read in one place."""

import json

import pytest

from components.data import schema
from components.platform import contracts
from components.platform.contracts import (
    CheckVerdicts,
    ContractVersionError,
    DatasetInfo,
    DatasetMismatchError,
    EvaluationOutcome,
    LatestPointer,
    ModelMetadata,
    PredictionSummary,
    PushManifest,
    PushResult,
    Statistics,
)

DATASET = {
    "schema_version": schema.SCHEMA_VERSION,
    "classes": ["pet", "background", "border"],
    "ignore_id": 255,
    "source": {"type": "tfds", "name": "synthetic_pets", "version": "1.0.0"},
    "splits": {
        "train": {
            "num_records": 4,
            "shards": ["train/train-00000-of-00001.tfrecord"],
            "shard_sizes": [1234],
            "pixel_counts": {"pet": 10, "background": 20, "border": 3},
            "fingerprint": "ab" * 32,
            "writer_note": "a fact the contract does not name",
        }
    },
    "fingerprint": {"dataset": "cd" * 32, "splits": {"train": "ab" * 32}},
    "records_per_shard": 512,
}


def _write(path, payload):
    path.write_text(json.dumps(payload))
    return str(path)


def test_dataset_info_reads_typed_facts_and_writes_the_same_json(tmp_path):
    info = DatasetInfo.read(_write(tmp_path / "dataset.json", DATASET))

    assert info.classes == ["pet", "background", "border"] and info.num_classes == 3
    assert info.splits["train"].num_records == 4
    assert info.splits["train"].shard_sizes == [1234]
    assert info.dataset_fingerprint == "cd" * 32
    assert info.table()["classes"][2] == {"name": "border", "values": [], "colors": []}

    info.write(str(tmp_path / "again" / "dataset.json"))
    # Same field names and values, nothing filled in, unnamed facts kept: a no-op round trip.
    assert json.loads((tmp_path / "again" / "dataset.json").read_text()) == DATASET


@pytest.mark.parametrize("version", [1, 3, "2", None])
def test_a_dataset_of_another_schema_version_is_refused_naming_it(tmp_path, version):
    path = _write(tmp_path / "dataset.json", {**DATASET, "schema_version": version})
    with pytest.raises(ContractVersionError) as raised:
        DatasetInfo.read(path)
    message = str(raised.value)
    assert f"schema_version {version!r}, this code reads {schema.SCHEMA_VERSION}" in message
    assert path in message and "re-run ingest" in message


def test_a_dataset_without_a_version_is_refused(tmp_path):
    path = _write(
        tmp_path / "dataset.json", {k: v for k, v in DATASET.items() if k != "schema_version"}
    )
    with pytest.raises(ContractVersionError, match="schema_version missing"):
        DatasetInfo.read(path)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"classes": ["pet"]}, "classes"),
        ({"classes": ["pet", "pet"]}, "classes"),
        ({"classes": "pet,background"}, "classes"),
        ({"ignore_id": 0}, "ignore_id"),
        ({"splits": {"train": {"shards": []}}}, "splits.train.num_records"),
    ],
)
def test_a_malformed_dataset_is_a_mismatch_naming_the_field(tmp_path, change, field):
    path = _write(tmp_path / "dataset.json", {**DATASET, **change})
    with pytest.raises(DatasetMismatchError, match=rf"dataset\.json: {field}"):
        DatasetInfo.read(path)


def test_a_dataset_file_that_is_not_json_is_a_mismatch(tmp_path):
    (tmp_path / "dataset.json").write_text("{truncated")
    with pytest.raises(DatasetMismatchError, match=r"dataset\.json: not JSON.*re-run ingest"):
        DatasetInfo.read(str(tmp_path / "dataset.json"))
    with pytest.raises(FileNotFoundError, match=r"nowhere/dataset\.json"):
        DatasetInfo.read(str(tmp_path / "nowhere" / "dataset.json"))


def test_check_classes_refuses_another_class_list():
    info = DatasetInfo.from_dict(DATASET)
    info.check_classes(["pet", "background", "border"])
    with pytest.raises(
        DatasetMismatchError, match=r"classes \['pet', 'background', 'border'\] differ"
    ):
        info.check_classes(["cat", "dog"], where="model")


def test_model_metadata_reads_old_unversioned_files_and_writes_its_version(tmp_path):
    old = {
        "classes": ["a", "b"],
        "image_size": 32,
        "normalization": "tutorial",
        "dataset": {"fingerprint": "ff" * 32},
        "training": {"epochs": 2},
    }
    metadata = ModelMetadata.read(_write(tmp_path / "metadata.json", old))
    assert metadata.image_size == 32 and metadata.dataset_fingerprint == "ff" * 32
    assert metadata.model_extra == {"training": {"epochs": 2}}

    metadata.write(str(tmp_path / "out.json"))
    assert json.loads((tmp_path / "out.json").read_text()) == {**old, "metadata_format": 1}

    with pytest.raises(
        ContractVersionError, match="metadata_format 2, this code reads 1; re-run train"
    ):
        ModelMetadata.read(_write(tmp_path / "new.json", {**old, "metadata_format": 2}))
    with pytest.raises(contracts.ContractError, match="image_size"):
        ModelMetadata.from_dict({"image_size": "large"}, "metadata.json")


def test_statistics_and_verdicts_keep_their_existing_format_fields(tmp_path):
    statistics = {
        "statistics_format": 1,
        "classes": ["a", "b"],
        "ignore_id": 255,
        "fingerprint": None,
        "splits": {"train": {"num_records": 3}},
        "duplicates": {},
    }
    assert Statistics.read(_write(tmp_path / "s.json", statistics)).to_dict() == statistics
    with pytest.raises(ContractVersionError, match="statistics_format 0, this code reads 1"):
        Statistics.read(_write(tmp_path / "old.json", {**statistics, "statistics_format": 0}))

    verdicts = {
        "checks_format": 1,
        "compared_with": "",
        "checks": [
            {
                "name": "empty_splits",
                "severity": "error",
                "threshold": 0.0,
                "figure": 0.0,
                "status": "pass",
                "message": "every split has records",
            }
        ],
        "errors": [],
        "warnings": [],
    }
    read = CheckVerdicts.read(_write(tmp_path / "checks.json", verdicts))
    assert read.checks[0].status == "pass"
    assert read.to_dict() == verdicts
    with pytest.raises(contracts.ContractError, match=r"checks\.0\.status"):
        CheckVerdicts.from_dict({**verdicts, "checks": [{**verdicts["checks"][0], "status": "ok"}]})


def test_evaluation_outcome_refuses_nan_and_keeps_metrics(tmp_path):
    outcome = EvaluationOutcome(
        blessed=True,
        reasons=["mean IoU 0.5 >= 0.4"],
        reason="mean IoU 0.5 >= 0.4",
        candidate={"mean_iou": 0.5, "per_class_iou": {"pet": 0.6}},
    )
    outcome.write(str(tmp_path / "metrics.json"))
    again = EvaluationOutcome.read(str(tmp_path / "metrics.json"))
    assert again.blessed and again.candidate["per_class_iou"] == {"pet": 0.6}
    assert again.baseline is None
    with pytest.raises(ValueError):
        EvaluationOutcome(blessed=False, candidate={"mean_iou": float("nan")}).write(
            str(tmp_path / "nan.json")
        )


def test_push_result_and_prediction_summary_round_trip(tmp_path):
    skipped = PushResult(pushed=False, skip_reason="the model is not blessed", destination="/m")
    skipped.write(str(tmp_path / "push.json"))
    assert json.loads((tmp_path / "push.json").read_text()) == {
        "pushed": False,
        "skip_reason": "the model is not blessed",
        "destination": "/m",
        "result_format": 1,
    }
    assert PushResult.read(str(tmp_path / "push.json")).version == ""

    summary = PredictionSummary(predicted=3, unreadable=1, unreadable_files=["x.jpg"], input="/in")
    summary.write(str(tmp_path / "summary.json"))
    assert PredictionSummary.read(str(tmp_path / "summary.json")) == summary
    with pytest.raises(contracts.ContractError, match="predicted"):
        PredictionSummary.from_dict({"unreadable": 0})


def test_push_manifest_reads_an_unversioned_one_and_writes_its_fields_back():
    earlier = {  # as the first petseg push wrote it, with a caller's fact (metrics)
        "version": "v000001",
        "model_digest": "ab" * 32,
        "files": {"model.keras": {"sha256": "cd" * 32, "size": 7}},
        "dataset": {"fingerprint": "ef" * 32},
        "metrics": {"mean_iou": 0.5},
    }
    manifest = PushManifest.from_bytes(json.dumps(earlier).encode(), "gs://b/manifest.json")
    assert manifest.files["model.keras"].size == 7 and manifest.dataset_fingerprint == "ef" * 32
    assert json.loads(manifest.to_bytes()) == {**earlier, "manifest_format": 1}
    assert LatestPointer.from_bytes(b'{"version": "v000001"}').manifest_sha256 is None
    with pytest.raises(contracts.ContractError, match=r"gs://b/m: not JSON.*push again"):
        PushManifest.from_bytes(b"{", "gs://b/m")


def test_model_metadata_writes_values_json_has_no_type_for_as_text(tmp_path):
    import numpy as np

    ModelMetadata(classes=["a", "b"], metrics={"loss": np.float32(0.25)}).write(
        str(tmp_path / "metadata.json")
    )
    assert ModelMetadata.read(str(tmp_path / "metadata.json")).metrics == {"loss": "0.25"}


def test_dataset_metadata_repeats_the_facts_later_steps_check():
    metadata = DatasetInfo.from_dict({**DATASET, "bad_record_policy": "skip"}).to_metadata()
    assert metadata["source_type"] == "tfds" and metadata["source_name"] == "synthetic_pets"
    assert metadata["classes"] == ["pet", "background", "border"]
    assert metadata["fingerprint"] == "cd" * 32 and metadata["bad_record_policy"] == "skip"
    assert metadata["num_records"] == {"train": 4} and metadata["num_train_records"] == 4
    assert metadata["shards"] == {"train": ["train/train-00000-of-00001.tfrecord"]}
