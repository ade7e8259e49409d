"""Compiles the pipeline and checks the IR: tasks, artifact types, parameters, GPU, images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from components.platform.config import load_config
from pipelines.segmentation import compile_pipeline

TASKS = {
    "resolve-config",
    "ingest",
    "data-statistics",
    "enforce-data-checks",
    "compute-class-weights",
    "train",
    "evaluate",
    "push",
}


def _compile(tmp_path, *overrides, target="vertex", scheduled=False):
    config = load_config("tutorial", overrides=["push.destination=gs://bucket/models", *overrides])
    path = compile_pipeline(config, tmp_path / "p.yaml", target=target, scheduled=scheduled)
    return config, yaml.safe_load(Path(path).read_text())


def _executor(spec, task):
    root_tasks = spec["root"]["dag"]["tasks"]
    component = root_tasks[task]["componentRef"]["name"]
    executor = spec["components"][component]["executorLabel"]
    return spec["deploymentSpec"]["executors"][executor]["container"]


def test_the_tasks_and_push_takes_the_blessing_without_a_condition(tmp_path):
    _, spec = _compile(tmp_path)
    root_tasks = spec["root"]["dag"]["tasks"]
    assert set(root_tasks) == TASKS
    push = root_tasks["push"]
    assert "triggerPolicy" not in push
    blessed = push["inputs"]["parameters"]["blessed"]["taskOutputParameter"]
    assert blessed == {"outputParameterKey": "blessed", "producerTask": "evaluate"}
    # Data checks stop the run before training; push publishes their statistics.
    assert "enforce-data-checks" in root_tasks["train"]["dependentTasks"]
    assert push["inputs"]["artifacts"]["data_statistics"]["taskOutputArtifact"] == {
        "outputArtifactKey": "statistics",
        "producerTask": "data-statistics",
    }


def _all_tasks(spec, dag):
    """Every task of a DAG and of the sub-DAGs (conditions, exit handlers) inside it."""
    found = {}
    for name, task in dag["tasks"].items():
        found[name] = task
        inner = spec["components"][task["componentRef"]["name"]].get("dag")
        if inner:
            found.update(_all_tasks(spec, inner))
    return found


def test_every_task_is_named_by_its_row_in_the_step_table(tmp_path):
    from pipelines.steps import PIPELINE_ORDER, STEP_BY_NAME

    _, spec = _compile(tmp_path, "data.skip_unchanged=true", "predict.input=/images")
    tasks = _all_tasks(spec, spec["root"]["dag"])
    steps = {name: task for name, task in tasks.items() if name in STEP_BY_NAME}
    assert set(steps) == TASKS | {"check-data-changed", "predict"}
    assert set(tasks) - set(steps) == {"condition-1"}
    for name, task in steps.items():
        assert task["taskInfo"]["name"] == STEP_BY_NAME[name].display_name
    assert PIPELINE_ORDER.index("ingest") < PIPELINE_ORDER.index("train")


@pytest.mark.parametrize("destination", ["", "gs://bucket/models"])
def test_push_exists_whatever_the_compiled_destination(tmp_path, destination):
    config = load_config("demo", overrides=[f"push.destination={destination}"])
    spec = yaml.safe_load(Path(compile_pipeline(config, tmp_path / "p.yaml")).read_text())
    assert "push" in spec["root"]["dag"]["tasks"]
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["push_destination"]["defaultValue"] == destination


def test_artifacts_are_typed_and_wired(tmp_path):
    _, spec = _compile(tmp_path)
    components = spec["components"]

    def outputs(name):
        return {
            key: value["artifactType"]["schemaTitle"]
            for key, value in components[name]["outputDefinitions"]["artifacts"].items()
        }

    assert outputs("comp-ingest") == {"dataset": "system.Dataset"}
    assert outputs("comp-compute-class-weights") == {
        "class_weights": "system.Artifact",
        "metrics": "system.Metrics",
    }
    assert outputs("comp-train")["model"] == "system.Model"
    evaluate_outputs = outputs("comp-evaluate")
    assert evaluate_outputs["metrics"] == "system.Metrics"
    assert evaluate_outputs["confusion"] == "system.ClassificationMetrics"
    assert evaluate_outputs["report"] == "system.HTML"
    assert (
        components["comp-evaluate"]["outputDefinitions"]["parameters"]["blessed"]["parameterType"]
        == "BOOLEAN"
    )

    train_inputs = spec["root"]["dag"]["tasks"]["train"]["inputs"]["artifacts"]
    assert train_inputs["dataset"]["taskOutputArtifact"] == {
        "outputArtifactKey": "dataset",
        "producerTask": "ingest",
    }
    assert train_inputs["class_weights"]["taskOutputArtifact"]["producerTask"] == (
        "compute-class-weights"
    )
    push_inputs = spec["root"]["dag"]["tasks"]["push"]["inputs"]["artifacts"]
    assert push_inputs["model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "model",
        "producerTask": "train",
    }


def _compiled_config(spec):
    inputs = spec["root"]["dag"]["tasks"]["resolve-config"]["inputs"]["parameters"]
    return json.loads(inputs["compiled_config"]["runtimeValue"]["constant"])


def test_parameters_are_typed_scalars_defaulting_to_the_compiled_values(tmp_path):
    config, spec = _compile(tmp_path, "training.epochs=7", "data.data_dir=gs://bucket/tfds")
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {name: (p["parameterType"], p["defaultValue"]) for name, p in parameters.items()} == {
        "epochs": ("NUMBER_INTEGER", 7),
        "batch_size": ("NUMBER_INTEGER", 64),
        "learning_rate": ("NUMBER_DOUBLE", 1e-3),
        "min_mean_iou": ("NUMBER_DOUBLE", 0.5),
        "max_regression": ("NUMBER_DOUBLE", 0.0),
        "data_dir": ("STRING", "gs://bucket/tfds"),
        "data_version": ("STRING", "4.*.*"),
        "data_path": ("STRING", ""),
        "push_destination": ("STRING", "gs://bucket/models"),
    }
    # Everything else is compiled into the first task, which gets every parameter.
    assert _compiled_config(spec) == json.loads(config.to_json())
    resolve_inputs = spec["root"]["dag"]["tasks"]["resolve-config"]["inputs"]["parameters"]
    for name in parameters:
        assert resolve_inputs[name] == {"componentInputParameter": name}
    # Each later task reads its sections from the first task, ingest only the data section.
    ingest_inputs = spec["root"]["dag"]["tasks"]["ingest"]["inputs"]["parameters"]
    assert ingest_inputs == {
        "data_config": {
            "taskOutputParameter": {
                "outputParameterKey": "data_config",
                "producerTask": "resolve-config",
            }
        }
    }


def test_optional_text_fields_compile_to_empty_string_defaults(tmp_path):
    config = load_config("demo")
    assert config.data.version is None and config.data.data_dir is None
    spec = yaml.safe_load(Path(compile_pipeline(config, tmp_path / "p.yaml")).read_text())
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["data_version"]["defaultValue"] == ""
    assert parameters["data_dir"]["defaultValue"] == ""


def test_gpu_request_and_images_per_task(tmp_path):
    _, spec = _compile(
        tmp_path,
        "runtime.accelerator_type=NVIDIA_L4",
        "runtime.accelerator_count=2",
        "runtime.cpu_image=registry.example/petseg-cpu:1.2.3",
        "runtime.gpu_image=registry.example/petseg-gpu:1.2.3",
    )
    train = _executor(spec, "train")
    assert train["image"] == "registry.example/petseg-gpu:1.2.3"
    accelerator = train["resources"]["accelerator"]
    assert accelerator.get("resourceType", accelerator.get("type")) == "NVIDIA_L4"
    assert str(accelerator.get("resourceCount", accelerator.get("count"))) == "2"
    for task in ("ingest", "compute-class-weights", "evaluate"):
        container = _executor(spec, task)
        assert container["image"] == "registry.example/petseg-cpu:1.2.3"
        assert "accelerator" not in container.get("resources", {})


def test_no_accelerator_when_config_has_none(tmp_path):
    _, spec = _compile(tmp_path, "runtime.accelerator_count=0")
    assert "accelerator" not in _executor(spec, "train").get("resources", {})


def test_caching_and_retries_follow_config_and_schedule(tmp_path):
    _, spec = _compile(tmp_path, "runtime.retries=3")
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["ingest"]["cachingOptions"].get("enableCache") is True
    assert tasks["train"]["cachingOptions"].get("enableCache") is True
    assert not tasks["evaluate"]["cachingOptions"].get("enableCache", False)
    # Only train is started again by the orchestrator (a lost pod resumes from its checkpoint);
    # the others retry transient errors in their process and fail a deterministic one once.
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == 3
    assert [name for name, task in tasks.items() if "retryPolicy" in task] == ["train"]

    _, scheduled = _compile(tmp_path, scheduled=True)
    tasks = scheduled["root"]["dag"]["tasks"]
    assert not tasks["ingest"]["cachingOptions"].get("enableCache", False)
    # Scheduled: train and what follows it run only when the data changed.
    tasks = scheduled["components"]["comp-condition-1"]["dag"]["tasks"]
    assert not tasks["train"]["cachingOptions"].get("enableCache", False)

    assert _compiled_config(scheduled)["evaluation"]["require_improvement"] is True
    assert _compiled_config(spec)["evaluation"]["require_improvement"] is False

    _, asked = _compile(tmp_path, "runtime.cache_training_on_schedule=true", scheduled=True)
    tasks = asked["components"]["comp-condition-1"]["dag"]["tasks"]
    assert tasks["train"]["cachingOptions"]["enableCache"] is True


def test_scheduled_pipeline_skips_training_when_the_data_is_unchanged(tmp_path):
    _, plain = _compile(tmp_path)
    assert "check-data-changed" not in plain["root"]["dag"]["tasks"]
    assert "train" in plain["root"]["dag"]["tasks"]

    for spec in (
        _compile(tmp_path, scheduled=True)[1],
        _compile(tmp_path, "data.skip_unchanged=true")[1],
    ):
        tasks = spec["root"]["dag"]["tasks"]
        assert set(tasks) == {
            "resolve-config",
            "ingest",
            "data-statistics",
            "enforce-data-checks",
            "check-data-changed",
            "condition-1",
        }
        condition = tasks["condition-1"]["triggerPolicy"]["condition"]
        assert (
            condition
            == "inputs.parameter_values['pipelinechannel--check-data-changed-Output'] == 'train'"
        )
        inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
        assert set(inner) == {"compute-class-weights", "train", "evaluate", "push"}

    _, off = _compile(tmp_path, "data.skip_unchanged=false", scheduled=True)
    assert "check-data-changed" not in off["root"]["dag"]["tasks"]


def test_folder_and_manifest_ingest_is_never_cached(tmp_path):
    for source in ("folder", "manifest"):
        _, spec = _compile(tmp_path, f"data.source={source}", "data.path=gs://bucket/data")
        tasks = spec["root"]["dag"]["tasks"]
        # The folder can change under the same config; a cached Dataset would be stale.
        assert not tasks["ingest"]["cachingOptions"].get("enableCache", False), source
        assert tasks["train"]["cachingOptions"].get("enableCache") is True


def test_resources_from_config(tmp_path):
    _, spec = _compile(tmp_path, "runtime.train_resources.memory=48G")
    resources = _executor(spec, "train")["resources"]
    assert resources.get("resourceMemoryLimit", resources.get("memoryLimit")) in ("48G", 48.0)


def test_unknown_target_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown target"):
        compile_pipeline(load_config("demo"), tmp_path / "p.yaml", target="airflow")


GOLDEN = Path(__file__).parent / "testdata" / "tutorial.vertex.yaml"


def _without_sdk_version(spec):
    spec = dict(spec)
    spec.pop("sdkVersion", None)
    return spec


def test_compiled_spec_matches_the_saved_golden_file(tmp_path):
    """Any change to the compiled pipeline shows up as a reviewable diff of the golden file.

    Regenerate after an intended change with
    PETSEG_UPDATE_GOLDEN=1 pytest tests/test_pipeline_compile.py
    """
    config = load_config(
        "tutorial",
        overrides=[
            "push.destination=gs://petseg-models/tutorial",
            "runtime.cpu_image=europe-docker.pkg.dev/petseg/petseg/petseg-cpu:0.1.0",
            "runtime.gpu_image=europe-docker.pkg.dev/petseg/petseg/petseg-gpu:0.1.0",
        ],
    )
    compiled = Path(compile_pipeline(config, tmp_path / "p.yaml", target="vertex"))
    if os.environ.get("PETSEG_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(compiled.read_text())
    assert _without_sdk_version(yaml.safe_load(compiled.read_text())) == _without_sdk_version(
        yaml.safe_load(GOLDEN.read_text())
    )


# --- the train task's GPU on Kubeflow --------------------------------------------------------


def _kubeflow(tmp_path, *overrides):
    config = load_config("tutorial", overrides=["push.destination=gs://bucket/models", *overrides])
    path = compile_pipeline(config, tmp_path / "kf.yaml", target="kubeflow")
    documents = [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]
    spec = documents[0]
    platform = documents[1] if len(documents) > 1 else {}
    executors = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
    return spec, executors.get("executors", {})


def _accelerator(spec):
    accelerator = _executor(spec, "train")["resources"]["accelerator"]
    return accelerator.get("resourceType"), str(accelerator.get("resourceCount"))


def test_kubeflow_requests_a_kubernetes_gpu_on_the_gke_node_pool_of_the_vertex_name(tmp_path):
    spec, executors = _kubeflow(tmp_path)  # the default runtime.accelerator_type NVIDIA_TESLA_T4
    assert _accelerator(spec) == ("nvidia.com/gpu", "1")
    assert "NVIDIA_TESLA_T4" not in yaml.safe_dump(spec["deploymentSpec"])
    assert executors["exec-train"]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"
    }
    assert set(executors) == {"exec-train"}  # no other task is pinned to GPU nodes


def test_kubeflow_gpu_follows_the_configured_resource_and_node_selector(tmp_path):
    spec, executors = _kubeflow(
        tmp_path,
        "runtime.accelerator_type=NVIDIA_L4",
        "runtime.accelerator_count=2",
        "runtime.kubernetes_gpu_resource=nvidia.com/mig-1g.10gb",
        'runtime.gpu_node_selector={"pool": "gpu"}',
    )
    assert _accelerator(spec) == ("nvidia.com/mig-1g.10gb", "2")
    assert executors["exec-train"]["nodeSelector"]["labels"] == {"pool": "gpu"}


def test_kubeflow_takes_a_kubernetes_resource_name_as_given(tmp_path):
    spec, executors = _kubeflow(tmp_path, "runtime.accelerator_type=amd.com/gpu")
    assert _accelerator(spec) == ("amd.com/gpu", "1")
    assert executors == {}  # no node selector: the user's cluster decides


def test_kubeflow_refuses_an_accelerator_it_cannot_request(tmp_path):
    from pipelines.vertex import CloudInputError

    with pytest.raises(CloudInputError, match=r"runtime.accelerator_type 'TPU_V3' cannot be"):
        _kubeflow(tmp_path, "runtime.accelerator_type=TPU_V3")
    assert not (tmp_path / "kf.yaml").exists()


def test_vertex_keeps_the_vertex_accelerator_name(tmp_path):
    _, spec = _compile(tmp_path)
    assert _accelerator(spec) == ("NVIDIA_TESLA_T4", "1")
