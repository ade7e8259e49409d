"""A config that only works on a laptop is refused before anything goes to the cloud."""

from __future__ import annotations

from components.platform.config import load_config
from pipelines.cloud_cli import cloud_config_problems
from tests.cloudargs import CLOUD_READY


def _overrides(args: tuple[str, ...]) -> list[str]:
    return [value for flag, value in zip(args[::2], args[1::2], strict=True) if flag == "--set"]


def test_demo_preset_as_is_names_every_local_only_setting():
    problems = "\n".join(cloud_config_problems(load_config("demo"), "vertex"))
    assert "runtime.cpu_image" in problems and "runtime.gpu_image" in problems
    assert "push.destination 'petseg-local/models' is a relative local path" in problems


def test_cloud_ready_settings_pass_for_both_targets():
    config = load_config("demo", overrides=_overrides(CLOUD_READY))
    assert cloud_config_problems(config, "vertex") == []
    assert cloud_config_problems(config, "kubeflow") == []


def test_container_local_paths_are_refused_on_vertex_only():
    config = load_config(
        "demo", overrides=[*_overrides(CLOUD_READY), "push.destination=/mnt/models"]
    )
    assert any("lost when" in problem for problem in cloud_config_problems(config, "vertex"))
    assert cloud_config_problems(config, "kubeflow") == []  # may be a mounted volume
    mounted = config.model_copy(deep=True)
    mounted.push.destination = "/gcs/bucket/models"
    assert cloud_config_problems(mounted, "vertex") == []
