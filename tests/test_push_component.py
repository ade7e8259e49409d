"""The push component through kfp.local, with a local destination."""

import json
from pathlib import Path

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Metrics, Model, Output

from components.ops.push import push
from components.platform.config import PushConfig


@dsl.component(install_kfp_package=False)
def fake_trained_model(seed: int, model: Output[Model], metrics: Output[Metrics]):
    """Writes a model directory as train would (push never loads it) and evaluate's metrics."""
    import json
    import os

    os.makedirs(os.path.join(model.path, "saved_model"))
    with open(os.path.join(model.path, "model.keras"), "wb") as handle:
        handle.write(bytes(range(256)) * (seed + 1))
    with open(os.path.join(model.path, "saved_model", "saved_model.pb"), "wb") as handle:
        handle.write(b"graph-%d" % seed)
    with open(os.path.join(model.path, "metadata.json"), "w") as handle:
        json.dump({"image_size": 64, "dataset": {"source": "synthetic_pets"}}, handle)
    model.metadata["image_size"] = 64
    metrics.log_metric("mean_iou", 0.5 + seed / 10)


@dsl.component(install_kfp_package=False)
def read_pushed(pushed: dsl.Input[Artifact]) -> str:
    import json

    return json.dumps({"uri": pushed.uri, "metadata": dict(pushed.metadata)})


def push_pipeline_for(config: PushConfig, seed: int, blessed: bool = True):
    @dsl.pipeline(name="push-test")
    def push_pipeline() -> str:
        trained = fake_trained_model(seed=seed)
        pushed = push(
            model=trained.outputs["model"],
            metrics=trained.outputs["metrics"],
            blessed=blessed,
            blessing_reason="mean IoU 0.41 < 0.5",
            push_config=config.model_dump_json(),
        )
        return read_pushed(pushed=pushed.outputs["pushed_model"]).output

    return push_pipeline


def test_push_component_publishes_a_version_with_its_manifest(kfp_local, tmp_path):
    destination = tmp_path / "models"
    config = PushConfig(destination=str(destination), labels={"team": "vision"})

    first = json.loads(push_pipeline_for(config, seed=1)().output)
    second = json.loads(push_pipeline_for(config, seed=2)().output)
    again = json.loads(push_pipeline_for(config, seed=2)().output)

    version_dir = destination / "versions" / "v000001"
    assert first["uri"] == str(version_dir)
    assert (first["metadata"]["pushed"], first["metadata"]["skip_reason"]) == (True, "")
    assert first["metadata"]["version"] == "v000001"
    assert first["metadata"]["latest"] == "v000001"
    assert first["metadata"]["reused"] is False
    assert first["metadata"]["manifest"] == str(version_dir / "manifest.json")
    assert first["metadata"]["vertex_model"] == ""
    assert (second["metadata"]["version"], second["metadata"]["latest"]) == ("v000002", "v000002")
    assert (again["metadata"]["version"], again["metadata"]["reused"]) == ("v000002", True)
    assert json.loads((destination / "LATEST").read_text())["version"] == "v000002"

    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["metrics"] == {"mean_iou": pytest.approx(0.6)}
    assert manifest["source_model_artifact_metadata"]["image_size"] == 64
    assert manifest["source_model_uri"].startswith(str(kfp_local))
    assert manifest["push_config"]["labels"] == {"team": "vision"}
    assert manifest["dataset"] == {"source": "synthetic_pets"}
    assert sorted(manifest["files"]) == [
        "metadata.json",
        "model.keras",
        "saved_model/saved_model.pb",
    ]
    # The run id comes from the pipeline job placeholder, resolved by the runner.
    assert manifest["run_id"] and not manifest["run_id"].startswith(("{{", "model-"))
    assert (version_dir / "model.keras").read_bytes() == bytes(range(256)) * 2


def test_push_component_refuses_vertex_registration_for_a_local_destination(
    kfp_local, tmp_path, capfd
):
    destination = tmp_path / "models"
    config = PushConfig(destination=str(destination), register_vertex=True)

    with pytest.raises(RuntimeError, match="Inner task failed"):
        push_pipeline_for(config, seed=1)()
    captured = capfd.readouterr()
    assert "push.register_vertex needs a gs:// destination" in captured.out + captured.err
    assert not Path(destination).exists()


def test_push_component_pushes_nothing_for_an_unblessed_model_and_says_why(
    kfp_local, tmp_path, capfd
):
    destination = tmp_path / "models"
    config = PushConfig(destination=str(destination))

    outcome = json.loads(push_pipeline_for(config, seed=1, blessed=False)().output)

    assert outcome["metadata"]["pushed"] is False
    assert outcome["metadata"]["skip_reason"] == "the model is not blessed: mean IoU 0.41 < 0.5"
    assert not destination.exists()
    assert "not pushed: the model is not blessed: mean IoU 0.41 < 0.5" in capfd.readouterr().out


def test_push_component_without_a_destination_pushes_nothing_and_says_why(kfp_local, tmp_path):
    outcome = json.loads(push_pipeline_for(PushConfig(destination=""), seed=1)().output)
    assert outcome["metadata"]["pushed"] is False
    assert outcome["metadata"]["skip_reason"].startswith("push.destination is empty")
    assert not any(tmp_path.glob("**/LATEST"))
