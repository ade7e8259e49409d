"""Bad configuration and bad command lines: every refusal names the field and the value.

Invalid values are derived from the config models themselves (type, bounds, literals),
plus the values each custom validator exists to refuse, so a field added later is
covered without editing this file. Everything goes through ``petseg`` (``cli.main``),
the way a person or a scheduler meets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import annotated_types
import pydantic
import pytest

from components.platform import config as config_module
from components.platform.config import (
    ConfigError,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    PipelineConfig,
    PushConfig,
    TrainingConfig,
    section_from_json,
)
from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[2]

# Values only a field's own validator refuses (the types alone would accept them).
VALIDATOR_CASES: dict[str, list[tuple[object, str]]] = {
    "name": [("Petseg Weekly", "'Petseg Weekly'"), ("-petseg", "'-petseg'")],
    "data.version": [("latest", "'latest'"), ("4.0", "4.0")],
    "model.image_size": [(100, "100")],
    "model.encoder_weights": [("  ", "'  '")],
    "training.fixed_class_weights": [
        ([0, 0, 0], "[0, 0, 0]"),
        ([-1, 1, 1], "-1"),
        ([1, 1], "[1.0, 1.0]"),
    ],
    "runtime.default_resources.cpu": [("lots", "'lots'")],
    "runtime.default_resources.memory": [("8 GB", "'8 GB'")],
    "runtime.train_resources.cpu": [("-2", "'-2'")],
    "runtime.train_resources.memory": [("lots", "'lots'")],
    "runtime.gpu_tolerations": [([{"key": [1]}], "[1]")],
    "push.labels": [({"team": [1]}, "[1]")],
}


def _unwrap(annotation):
    """(base type, constraints): strips Optional and Annotated, gathers ge/gt/le/lt."""
    constraints = []
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = options[0] if len(options) == 1 else annotation
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        for extra in extras:
            constraints += getattr(extra, "metadata", [extra])
        annotation = base
    return annotation, constraints


def _bound_violations(constraints) -> list[object]:
    values = []
    for constraint in constraints:
        if isinstance(constraint, annotated_types.Ge):
            values.append(constraint.ge - 1)
        elif isinstance(constraint, annotated_types.Gt):
            values.append(constraint.gt)
        elif isinstance(constraint, annotated_types.Le):
            values.append(constraint.le + 1)
        elif isinstance(constraint, annotated_types.Lt):
            values.append(constraint.lt)
    return values


def _accepts(annotation, value) -> bool:
    try:
        pydantic.TypeAdapter(annotation).validate_python(value)
    except pydantic.ValidationError:
        return False
    return True


def _type_violations(annotation) -> list[object]:
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return ["maybe", 2]
    if annotation is int:
        return ["many", 2.5]
    if annotation is float:
        return ["fast", [1]]
    if annotation is str:
        return [[1, 2], {"a": 1}]
    if origin is typing.Literal:
        return ["bogus", 3]
    if origin is list:
        return ["not-a-list", {"a": 1}]
    if origin is dict:
        return [[1, 2], "not-a-mapping"]
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return ["not-a-mapping", [1]]
    if origin in (typing.Union, types.UnionType):
        # e.g. a float in [0, 1) or the word "from_steps": what every member refuses.
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        values = []
        for member in members:
            base, constraints = _unwrap(member)
            values += _type_violations(base) + _bound_violations(constraints)
        return [value for value in values if not any(_accepts(m, value) for m in members)]
    raise AssertionError(f"no invalid values known for {annotation!r}; extend this test")


def invalid_cases(model=PipelineConfig, prefix: str = "") -> list[tuple[str, object, str]]:
    """(field path, invalid value, text the error must show) for every field of the config."""
    cases = []
    for name, field in model.model_fields.items():
        path = prefix + name
        annotation = field.annotation
        base, constraints = _unwrap(annotation)
        constraints += field.metadata
        # A bare `_unwrap` of list[Annotated[...]] keeps the element constraints inside.
        if typing.get_origin(base) is list:
            _, element_constraints = _unwrap(typing.get_args(base)[0])
            for value in _bound_violations(element_constraints):
                cases.append((path, [value, 1, 1], repr(value)))
        for value in _type_violations(base) + _bound_violations(constraints):
            cases.append((path, value, repr(value)))
        for value, shown in VALIDATOR_CASES.get(path, []):
            cases.append((path, value, shown))
        if isinstance(base, type) and issubclass(base, pydantic.BaseModel):
            cases += invalid_cases(base, path + ".")
    return cases


def section_paths(model=PipelineConfig, prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        base, _ = _unwrap(field.annotation)
        if isinstance(base, type) and issubclass(base, pydantic.BaseModel):
            paths += [prefix + name, *section_paths(base, prefix + name + ".")]
    return paths


def leaf_paths(model=PipelineConfig, prefix: str = "") -> set[str]:
    paths = set()
    for name, field in model.model_fields.items():
        base, _ = _unwrap(field.annotation)
        paths.add(prefix + name)
        if isinstance(base, type) and issubclass(base, pydantic.BaseModel):
            paths |= leaf_paths(base, prefix + name + ".")
    return paths


SECRET_SECTION = "notify"


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """petseg's exit code and stderr; argparse's own refusals exit through SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_every_fields_invalid_values_are_refused_naming_field_and_value(capsys, fault):
    cases = invalid_cases()
    fault(
        f"{len(cases)} invalid values over all {len(leaf_paths())} config fields "
        "(wrong types, out of bounds, unknown literals, validator cases) via --set",
        expected="petseg exits 2; the message names the field path and the rejected value",
    )
    assert {path for path, _, _ in cases} == leaf_paths()  # every field is tried
    problems = []
    for path, value, shown in cases:
        code, err = run_cli(
            ["config", "--preset", "demo", "--set", f"{path}={json.dumps(value)}"], capsys
        )
        # notify's settings lead to a secret: its errors name the field, never the value.
        secret_side = path.startswith(SECRET_SECTION)
        value_shown = f"(got {shown}" in err if secret_side else shown in err
        if code != 2 or path not in err or value_shown == secret_side or "Traceback" in err:
            problems.append(f"--set {path}={json.dumps(value)}: exit {code}, said {err!r}")
    fault.saw(f"{len(cases) - len(problems)}/{len(cases)} refused with field and value")
    example = run_cli(["config", "--set", "training.epochs=0"], capsys)[1].strip()
    fault.saw(f"e.g. {example!r}")
    assert not problems, "\n".join(problems)


def test_numbers_given_for_text_fields_are_read_as_text(capsys, fault):
    fault(
        "numeric text for string fields (--set runtime.train_resources.cpu=4, a project number)",
        expected="accepted as the string the user meant, not refused as 'not a valid string'",
    )
    code, err = run_cli(
        [
            "config",
            "--set",
            "runtime.train_resources.cpu=4",
            "--set",
            "push.vertex_project=123456789012",
            "--set",
            "push.labels={run: 7}",
        ],
        capsys,
    )
    assert code == 0, err
    config = config_module.load_config(
        overrides=["runtime.train_resources.cpu=4", "push.vertex_project=123456789012"]
    )
    assert config.runtime.train_resources.cpu == "4"
    assert config.push.vertex_project == "123456789012"
    fault.saw("cpu='4', vertex_project='123456789012', labels={'run': '7'}")


def test_unknown_keys_are_refused_at_every_level(tmp_path, capsys, fault):
    sections = section_paths()
    fault(
        f"unknown keys (typos) at the top level and in each of {len(sections)} sections, "
        "by --set and by YAML file",
        expected="exit 2; 'unknown key' with the full dotted path of the typo",
    )
    problems = []
    for section in ["", *sections]:
        typo = f"{section}.epochz" if section else "trainig"
        code, err = run_cli(["config", "--set", f"{typo}=3"], capsys)
        if code != 2 or f"{typo}: unknown key" not in err:
            problems.append(f"--set {typo}=3: exit {code}, {err!r}")
    nested = tmp_path / "typo.yaml"
    nested.write_text("training:\n  epochs: 2\n  learning_rat: 0.1\n")
    code, err = run_cli(["config", "--config", str(nested)], capsys)
    if code != 2 or "training.learning_rat: unknown key" not in err or str(nested) not in err:
        problems.append(f"YAML typo: exit {code}, {err!r}")
    fault.saw(err.strip())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- training\n- epochs\n", "must hold a mapping at the top level, not a list"),
        ("petseg\n", "must hold a mapping at the top level, not a str"),
        ("42\n", "must hold a mapping at the top level, not a int"),
        ("training: {epochs: 3\n", "is not valid YAML"),
        ("training: [1, 2]\n", "training: Input should be a valid dictionary"),
    ],
    ids=["list", "string", "number", "broken-syntax", "section-not-mapping"],
)
def test_yaml_that_is_not_a_config_mapping_is_refused(content, message, tmp_path, capsys, fault):
    fault(
        f"config YAML holding {content.strip()!r}",
        expected="exit 2 naming the file and what is wrong with it",
    )
    path = tmp_path / "petseg.yaml"
    path.write_text(content)

    code, err = run_cli(["config", "--config", str(path)], capsys)

    fault.saw(err.strip())
    assert code == 2
    assert message in err
    assert str(path) in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["config", "--preset", "weekly"], "invalid choice: 'weekly'"),
        (["config", "--set", "training.epochs"], "override 'training.epochs' is not key=value"),
        (["config", "--set", "=3"], "override '=3' has an empty key"),
        (
            ["config", "--preset", "demo", "--set", "training.epochs.value=3"],
            "'epochs' is not a section",
        ),
        (["config", "--config", "/no/such/petseg.yaml"], "'/no/such/petseg.yaml' does not exist"),
        (["compile", "--target", "airflow"], "invalid choice: 'airflow'"),
        (["deploy"], "invalid choice: 'deploy'"),
        (["run", "--preset", "demo"], "needs --local"),
    ],
    ids=[
        "unknown-preset",
        "override-without-value",
        "override-without-key",
        "override-into-a-scalar",
        "missing-config-file",
        "unknown-target",
        "unknown-command",
        "run-without-local",
    ],
)
def test_bad_command_lines_are_refused_clearly(argv, message, capsys, fault):
    fault(f"petseg {' '.join(argv)}", expected="exit 2 with a message naming what was wrong")

    code, err = run_cli(argv, capsys)

    fault.saw(err.strip().splitlines()[-1])
    assert code == 2
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("section", "payload", "message"),
    [
        (TrainingConfig, '{"epochs": 0}', "epochs: Input should be greater than or equal to 1"),
        (DataConfig, '{"bad_record_policy": "ignore"}', "bad_record_policy"),
        (ModelConfig, '{"image_size": 200}', "image_size 200 is not a multiple of 32"),
        (EvaluationConfig, '{"min_mean_iou": 2}', "min_mean_iou"),
        (PushConfig, '{"destination": "gs://b", "extra": 1}', "extra: unknown key"),
        (TrainingConfig, '{"epochs": 3', "TrainingConfig: parameter is not JSON"),
    ],
    ids=["training", "data", "model", "evaluation", "push-unknown-key", "not-json"],
)
def test_component_parameters_edited_by_hand_are_refused(section, payload, message, fault):
    fault(
        f"a run's {section.__name__} parameter edited to {payload} (e.g. in the Vertex AI form)",
        expected="the component fails before any work with the section, field and value",
    )
    with pytest.raises(ConfigError) as failure:
        section_from_json(section, payload)
    fault.saw(str(failure.value).replace("\n", " "))
    assert message in str(failure.value)
    assert section.__name__ in str(failure.value)


def _drop_permission_override():  # runs in the child before exec
    """Takes from root the capabilities that ignore file permissions (DAC override/search).

    Root stays root (its Python under /root still runs), but a 0555 folder refuses it,
    as it refuses any ordinary user.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for capability in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run_as_an_ordinary_user(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Runs petseg in a child; as root, without the capabilities that ignore permissions."""
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,
            preexec_fn=_drop_permission_override if os.geteuid() == 0 else None,
        )
    except subprocess.TimeoutExpired:
        raise
    except subprocess.SubprocessError as error:  # prctl refused in the child
        pytest.skip(f"cannot run a child without root's permission override: {error}")
    return completed.returncode, completed.stderr


@pytest.mark.parametrize("kind", ["a file in the way", "read-only directory"])
def test_unwritable_pipeline_root_is_refused_before_running(kind, tmp_path, capsys, fault):
    fault(
        f"petseg run --local with a pipeline root that is not writable ({kind})",
        expected="exit 2 before any task runs, naming the folder",
    )
    if kind == "a file in the way":
        blocker = tmp_path / "artifacts"
        blocker.write_text("not a folder")
        root = blocker / "pipeline_root"
        code, err = run_cli(
            ["run", "--local", "--preset", "demo", "--pipeline-root", str(root)], capsys
        )
    else:
        root = tmp_path / "pipeline_root"
        root.mkdir(mode=0o555)
        root.chmod(0o555)
        try:
            code, err = _run_as_an_ordinary_user(
                ["run", "--local", "--preset", "demo", "--pipeline-root", str(root)], tmp_path
            )
            assert list(root.iterdir()) == []  # no run folder: nothing ran
        finally:
            root.chmod(0o755)  # so pytest can clean up

    fault.saw(err.strip().splitlines()[-1] if err.strip() else f"exit {code}, no message")
    assert code == 2, err
    assert f"pipeline root '{root}' is not writable" in err
    assert "Traceback" not in err
