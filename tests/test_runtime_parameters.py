"""Run-time parameters: typed from the config, applied on the compiled config, validated whole."""

import inspect
import json

import pytest

from components.ops.resolve_config import resolve_config
from components.platform.config import (
    RUNTIME_PARAMETERS,
    ConfigError,
    apply_runtime_parameters,
    load_config,
    parse_runtime_parameter,
    runtime_parameter_defaults,
    runtime_parameter_types,
)
from components.platform.contracts import ResolvedConfig, ResolveInputs


def test_the_first_task_takes_every_run_time_parameter_with_its_type():
    """A parameter added to the table must be added to the component too (and vice versa)."""
    signature = inspect.signature(resolve_config.python_func)
    arguments = {
        name: parameter.annotation
        for name, parameter in signature.parameters.items()
        if name != "compiled_config"
    }
    assert arguments == runtime_parameter_types()
    assert list(arguments) == list(RUNTIME_PARAMETERS)


def test_types_come_from_the_config_fields():
    types = runtime_parameter_types()
    assert types["epochs"] is int and types["batch_size"] is int
    assert types["learning_rate"] is float and types["min_mean_iou"] is float
    assert types["data_version"] is str and types["push_destination"] is str


def test_defaults_are_the_compiled_values_with_none_as_empty_text():
    defaults = runtime_parameter_defaults(load_config("demo"))
    assert defaults["epochs"] == 12 and defaults["batch_size"] == 16
    assert defaults["learning_rate"] == 2e-3
    assert defaults["data_version"] == "" and defaults["data_dir"] == ""
    assert runtime_parameter_defaults(load_config("tutorial"))["data_version"] == "4.*.*"


def test_a_value_changes_only_its_field_and_keeps_the_compiled_preset():
    compiled = load_config("demo", overrides=["training.shuffle_buffer=77"])
    resolved = apply_runtime_parameters(compiled.to_json(), {"epochs": 3})
    expected = json.loads(compiled.to_json())
    expected["training"]["epochs"] = 3
    assert json.loads(resolved.to_json()) == expected
    # Not the model defaults (batch 64, learning rate 1e-3, a frozen ImageNet encoder).
    assert (resolved.training.batch_size, resolved.training.learning_rate) == (16, 2e-3)
    assert (resolved.model.encoder_weights, resolved.model.encoder_trainable) == ("none", True)


def test_all_defaults_applied_give_back_the_compiled_config():
    for preset in ("demo", "tutorial"):
        compiled = load_config(preset)
        resolved = apply_runtime_parameters(compiled, runtime_parameter_defaults(compiled))
        assert resolved == compiled


def test_empty_text_unsets_an_optional_field_and_text_sets_it():
    tutorial = load_config("tutorial", overrides=["data.data_dir=gs://bucket/tfds"])
    resolved = apply_runtime_parameters(tutorial, {"data_version": "", "data_dir": ""})
    assert resolved.data.version is None and resolved.data.data_dir is None
    resolved = apply_runtime_parameters(load_config("demo"), {"data_version": "4.0.0"})
    assert resolved.data.version == "4.0.0"


def test_a_folder_source_location_given_at_run_time():
    compiled = load_config("demo", overrides=["data.source=folder", "data.path=/data/pets"])
    resolved = apply_runtime_parameters(compiled, {"data_path": "gs://bucket/pets-2026-12"})
    assert (resolved.data.source, resolved.data.path) == ("folder", "gs://bucket/pets-2026-12")


def test_push_destination_given_at_run_time():
    resolved = apply_runtime_parameters(
        load_config("demo", overrides=["push.destination="]),
        {"push_destination": "gs://bucket/models"},
    )
    assert resolved.push.destination == "gs://bucket/models"


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("epochs", 0, "training.epochs"),
        ("learning_rate", 2.0, "training.learning_rate"),
        ("min_mean_iou", 1.5, "evaluation.min_mean_iou"),
        ("data_version", "four", "data.version"),
    ],
)
def test_an_invalid_value_names_the_field_and_the_value(name, value, field):
    with pytest.raises(ConfigError) as raised:
        apply_runtime_parameters(load_config("demo"), {name: value})
    message = str(raised.value)
    assert field in message and repr(value) in message
    assert f"run-time parameters {name}={value!r}" in message


def test_unknown_parameter_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown run-time parameter 'image_size'.*epochs"):
        apply_runtime_parameters(load_config("demo"), {"image_size": 64})


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("epochs", "30", 30),
        ("learning_rate", "0.01", 0.01),
        ("learning_rate", "1", 1.0),
        ("min_mean_iou", "0.6", 0.6),
        ("data_version", "4.0.0", "4.0.0"),
        ("push_destination", "", ""),
    ],
)
def test_command_line_text_becomes_the_parameter_type(name, text, value):
    parsed = parse_runtime_parameter(name, text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("epochs", "3.5", "epochs='3.5' (training.epochs) is not an int"),
        ("epochs", "", "epochs='' (training.epochs) is not an int"),
        ("learning_rate", "fast", "learning_rate='fast' (training.learning_rate) is not a float"),
        ("image_size", "64", "unknown run-time parameter 'image_size'"),
    ],
)
def test_command_line_text_of_the_wrong_type_is_refused(name, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_runtime_parameter(name, text)


def test_resolved_config_is_typed_sections_in_the_tasks_output_order():
    compiled = load_config("demo")
    resolved = ResolvedConfig.run(
        ResolveInputs(compiled_config=compiled.to_json(), values={"epochs": 3})
    )
    assert resolved.training.epochs == 3 and resolved.push == compiled.push
    outputs = resolve_config.component_spec.outputs
    assert [f"{name}_config" for name in ResolvedConfig.model_fields] == list(outputs)
    assert json.loads(resolved.outputs()[2])["epochs"] == 3


def test_first_task_through_kfp_local_outputs_the_resolved_sections(kfp_local):
    compiled = load_config("demo")
    values = {**runtime_parameter_defaults(compiled), "batch_size": 4, "data_version": "4.0.0"}
    task = resolve_config(compiled_config=compiled.to_json(), **values)
    training = json.loads(task.outputs["training_config"])
    assert (training["batch_size"], training["epochs"]) == (4, 12)
    assert json.loads(task.outputs["data_config"])["version"] == "4.0.0"
    assert json.loads(task.outputs["model_config"]) == json.loads(compiled.model.model_dump_json())


def test_first_task_through_kfp_local_fails_on_an_invalid_value(kfp_local, capfd):
    compiled = load_config("demo")
    values = {**runtime_parameter_defaults(compiled), "epochs": 0}
    with pytest.raises(RuntimeError):
        resolve_config(compiled_config=compiled.to_json(), **values)
    output = "".join(capfd.readouterr())
    assert "training.epochs" in output and "(got 0)" in output
