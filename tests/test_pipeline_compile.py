"""Compiles the pipeline and checks the IR: tasks, artifact types, condition, GPU, images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from components.config import load_config
from pipelines.segmentation import compile_pipeline

TASKS = {"ingest", "compute-class-weights", "train", "evaluate"}


def _compile(tmp_path, *overrides, target="vertex", scheduled=False):
    config = load_config("tutorial", overrides=["push.destination=gs://bucket/models", *overrides])
    path = compile_pipeline(config, tmp_path / "p.yaml", target=target, scheduled=scheduled)
    return config, yaml.safe_load(Path(path).read_text())


def _executor(spec, task):
    root_tasks = spec["root"]["dag"]["tasks"]
    component = root_tasks[task]["componentRef"]["name"]
    executor = spec["components"][component]["executorLabel"]
    return spec["deploymentSpec"]["executors"][executor]["container"]


def _push_task(spec):
    condition = next(
        task for name, task in spec["root"]["dag"]["tasks"].items() if name.startswith("condition")
    )
    return condition, spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]


def test_five_tasks_with_push_inside_the_blessing_condition(tmp_path):
    _, spec = _compile(tmp_path)
    root_tasks = spec["root"]["dag"]["tasks"]
    assert set(root_tasks) >= TASKS
    condition, inner = _push_task(spec)
    assert set(inner) == {"push"}
    expression = condition["triggerPolicy"]["condition"]
    assert "pipelinechannel--evaluate-blessed" in expression and "true" in expression
    assert "evaluate" in condition["dependentTasks"]


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
    _, inner = _push_task(spec)
    push_inputs = inner["push"]["inputs"]["artifacts"]
    assert push_inputs["model"]["componentInputArtifact"].endswith("train-model")


def test_parameters_default_to_the_config_sections(tmp_path):
    config, spec = _compile(tmp_path, "training.epochs=7")
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {
        "data_config",
        "model_config",
        "training_config",
        "evaluation_config",
        "push_config",
    }
    training = json.loads(parameters["training_config"]["defaultValue"])
    assert training["epochs"] == 7
    assert json.loads(parameters["push_config"]["defaultValue"])["destination"] == (
        config.push.destination
    )


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
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == 3

    _, scheduled = _compile(tmp_path, scheduled=True)
    tasks = scheduled["root"]["dag"]["tasks"]
    assert not tasks["ingest"]["cachingOptions"].get("enableCache", False)
    assert not tasks["train"]["cachingOptions"].get("enableCache", False)

    evaluation = json.loads(
        scheduled["root"]["inputDefinitions"]["parameters"]["evaluation_config"]["defaultValue"]
    )
    assert evaluation["require_improvement"] is True
    assert (
        json.loads(
            spec["root"]["inputDefinitions"]["parameters"]["evaluation_config"]["defaultValue"]
        )["require_improvement"]
        is False
    )

    _, asked = _compile(tmp_path, "runtime.cache_training_on_schedule=true", scheduled=True)
    assert asked["root"]["dag"]["tasks"]["train"]["cachingOptions"]["enableCache"] is True


def test_no_push_task_without_a_destination(tmp_path):
    config = load_config("demo", overrides=["push.destination="])
    spec = yaml.safe_load(Path(compile_pipeline(config, tmp_path / "p.yaml")).read_text())
    assert not any(name.startswith("condition") for name in spec["root"]["dag"]["tasks"])


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
