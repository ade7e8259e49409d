"""The data-check components through kfp.local: outputs recorded, errors stop, warnings pass."""

# No `from __future__ import annotations`: KFP reads the pipeline's output types at run time.
import json
from pathlib import Path
from typing import NamedTuple

import pytest
from kfp import dsl

from components.data import data_validation, statistics
from components.platform.config import ChecksConfig, PushConfig
from components.publish.push import push_model
from tests.datachecks_data import standard_splits, write_dataset
from tests.test_push_local import make_model_dir

pytestmark = pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")


class Outputs(NamedTuple):
    statistics: dsl.Artifact
    view: dsl.Markdown
    metrics: dsl.Metrics


def _run(dataset_dir, destination="", checks=None):
    from components.ops.data_validation import data_statistics
    from components.ops.enforce_data_checks import enforce_data_checks

    @dsl.pipeline(name="data-checks-test")
    def checks_pipeline() -> Outputs:
        dataset = dsl.importer(artifact_uri=dataset_dir, artifact_class=dsl.Dataset)
        task = data_statistics(
            dataset=dataset.output,
            checks_config=(checks or ChecksConfig()).model_dump_json(),
            push_config=PushConfig(destination=destination).model_dump_json(),
        )
        enforce_data_checks(statistics=task.outputs["statistics"])
        return Outputs(
            task.outputs["statistics"],
            task.outputs["statistics_view"],
            task.outputs["check_metrics"],
        )

    return checks_pipeline()


def test_first_run_records_statistics_then_compares_with_the_pushed_ones(kfp_local, tmp_path):
    splits = standard_splits()
    dataset_dir = write_dataset(str(tmp_path / "data"), splits)
    destination = str(tmp_path / "models")
    first = _run(dataset_dir, destination)
    stats_dir = Path(first.outputs["statistics"].path)
    stored = json.loads((stats_dir / statistics.STATISTICS_FILE).read_text())
    assert stored["splits"]["train"]["num_records"] == 8
    assert first.outputs["statistics"].metadata["compared_with"] == ""
    assert first.outputs["metrics"].metadata["check/empty_splits"] == 0.0
    assert "check/class_frequency_distance" not in first.outputs["metrics"].metadata
    assert "No production statistics" in Path(first.outputs["view"].path).read_text()

    # Push publishes the statistics with the model; the next run compares against them.
    push_model(
        str(make_model_dir(tmp_path / "model", 0)),
        destination,
        run_id="r1",
        extra_files={
            data_validation.PUSHED_STATISTICS: str(stats_dir / statistics.STATISTICS_FILE),
            data_validation.PUSHED_CHECKS: str(stats_dir / data_validation.CHECKS_FILE),
        },
    )
    # This week a test image also sits in train: with the check set to warn, the run goes on.
    splits["train"].append(splits["test"][0])
    changed = write_dataset(str(tmp_path / "changed"), splits)
    relaxed = ChecksConfig.model_validate({"cross_split_duplicates": {"severity": "warn"}})
    second = _run(changed, destination, relaxed)
    metadata = second.outputs["statistics"].metadata
    assert metadata["compared_with"] == str(Path(destination) / "versions" / "v000001")
    assert metadata["warnings"] == ["cross_split_duplicates"] and metadata["errors"] == []
    figures = second.outputs["metrics"].metadata
    assert figures["check/cross_split_duplicates"] == 1.0
    assert 0.0 < figures["check/class_frequency_distance"] < 0.1
    assert figures["check/split_shrink"] == 0.0


def test_an_error_check_stops_the_run_before_the_next_task(kfp_local, tmp_path):
    splits = standard_splits()
    splits["validation"] = []
    dataset_dir = write_dataset(str(tmp_path / "data"), splits)
    with pytest.raises(RuntimeError, match="enforce-data-checks"):
        _run(dataset_dir)
