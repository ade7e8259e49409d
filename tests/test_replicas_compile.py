"""training.replica_count in the compiled spec: a Vertex AI custom job (request boundary).

Nothing here reaches Google Cloud: the tests read the compiled YAML a submission would send.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.platform.config import load_config
from pipelines.segmentation import compile_pipeline


def _compile(tmp_path, *overrides, target="vertex"):
    config = load_config("tutorial", overrides=["push.destination=gs://bucket/models", *overrides])
    path = compile_pipeline(config, tmp_path / "p.yaml", target=target)
    documents = [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]
    return config, documents[0]


def _train_component(spec):
    return spec["components"][spec["root"]["dag"]["tasks"]["train"]["componentRef"]["name"]]


def _worker_pools(spec):
    parameters = _train_component(spec)["inputDefinitions"]["parameters"]
    return parameters["worker_pool_specs"]["defaultValue"], parameters


@pytest.mark.parametrize("replicas", [2, 3])
def test_vertex_request_boundary_asks_for_replicas_of_one_train_worker_pool(tmp_path, replicas):
    config, spec = _compile(
        tmp_path,
        f"training.replica_count={replicas}",
        "runtime.accelerator_type=NVIDIA_L4",
        "runtime.accelerator_count=2",
        "runtime.train_machine_type=g2-standard-24",
    )
    pools, parameters = _worker_pools(spec)
    assert sum(pool["replica_count"] for pool in pools) == replicas
    assert [pool["replica_count"] for pool in pools] == [1, replicas - 1]  # chief, workers
    for pool in pools:
        assert pool["machine_spec"] == {
            "machine_type": "g2-standard-24",
            "accelerator_type": "NVIDIA_L4",
            "accelerator_count": 2,
        }
        container = pool["container_spec"]
        assert container["image_uri"] == config.runtime.gpu_image
        assert container["args"][-2:] == ["--function_to_execute", "train"]
    # A lost worker restarts the whole job, which resumes from the chief's backup.
    assert parameters["restart_job_on_worker_restart"]["defaultValue"] is True
    # The job runs where the pipeline runs, in its project.
    assert parameters["location"]["defaultValue"] == "{{$.pipeline_google_cloud_location}}"
    assert parameters["project"]["defaultValue"] == "{{$.pipeline_google_cloud_project_id}}"
    # Each replica gets the whole config, replica_count included, from the first task.
    training = json.loads(config.training.model_dump_json())
    assert training["replica_count"] == replicas


def test_the_custom_job_task_keeps_the_train_steps_wiring_and_retries(tmp_path):
    _, spec = _compile(tmp_path, "training.replica_count=2")
    tasks = spec["root"]["dag"]["tasks"]
    train = tasks["train"]
    assert set(train["inputs"]["artifacts"]) == {"dataset", "class_weights"}
    assert set(train["inputs"]["parameters"]) == {"model_config", "training_config"}
    outputs = _train_component(spec)["outputDefinitions"]["artifacts"]
    assert {"model", "tensorboard", "metrics"} <= set(outputs)
    evaluate_model = tasks["evaluate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert evaluate_model == {"outputArtifactKey": "model", "producerTask": "train"}
    assert train["retryPolicy"]["maxRetryCount"] == 2
    executor = spec["deploymentSpec"]["executors"][_train_component(spec)["executorLabel"]]
    # The task itself is Google's launcher (it creates and follows the CustomJob).
    assert "CustomJob" in executor["container"]["args"]
    assert "petseg" not in executor["container"]["image"]


def test_one_replica_compiles_the_plain_train_container(tmp_path):
    config, spec = _compile(tmp_path)
    assert config.training.replica_count == 1
    component = _train_component(spec)
    assert "worker_pool_specs" not in component.get("inputDefinitions", {}).get("parameters", {})
    executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
    assert executor["container"]["image"] == config.runtime.gpu_image


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("kubeflow", r"replica_count=2: Kubeflow .*--target vertex.*accelerator_count"),
        ("local", r"replica_count=2: the local runner .*replica_count=1"),
    ],
)
def test_other_targets_refuse_several_replicas_saying_what_to_use(tmp_path, target, message):
    with pytest.raises(ValueError, match=message):
        _compile(tmp_path, "training.replica_count=2", target=target)
    assert not (tmp_path / "p.yaml").exists()
