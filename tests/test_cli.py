from __future__ import annotations

import yaml

from pipelines.cli import main


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", "--preset", "demo", "--set", "training.epochs=2"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["training"]["epochs"] == 2
    assert shown["data"]["dataset"] == "synthetic_pets"


def test_compile_writes_ir_for_the_target(tmp_path, capsys):
    output = tmp_path / "out" / "petseg.yaml"
    assert main(["compile", "--preset", "tutorial", "--output", str(output)]) == 0
    spec = yaml.safe_load(output.read_text())
    assert spec["pipelineInfo"]["name"] == "petseg-tutorial"
    assert "compiled petseg-tutorial for vertex" in capsys.readouterr().out


def test_bad_config_is_a_clear_error_not_a_traceback(capsys):
    assert main(["config", "--preset", "demo", "--set", "model.image_size=33"]) == 2
    err = capsys.readouterr().err
    assert "model.image_size" in err and "33" in err


def test_run_without_local_points_to_submit(capsys):
    assert main(["run", "--preset", "demo"]) == 2
    assert "petseg submit" in capsys.readouterr().err


def test_run_refuses_a_bad_run_time_value_before_any_task(tmp_path, capsys):
    root = tmp_path / "root"
    status = main(
        ["run", "--local", "--preset", "demo", "--pipeline-root", str(root), "--param", "epochs=0"]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "training.epochs" in err and "epochs=0" in err
    assert not root.exists()


def test_run_refuses_an_unknown_run_time_parameter(tmp_path, capsys):
    status = main(["run", "--local", "--preset", "demo", "--param", "image_size=64"])
    assert status == 2
    assert "unknown run-time parameter 'image_size'" in capsys.readouterr().err
