from __future__ import annotations

from pathlib import Path

import pytest
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


@pytest.mark.slow
def test_failing_local_run_names_the_step_its_error_and_its_log(tmp_path, capsys):
    missing = tmp_path / "no-archives"
    code = main(
        [
            "run",
            "--local",
            "--preset",
            "demo",
            "--set",
            "data.dataset=oxford_iiit_pet",
            "--set",
            "data.download=false",
            "--set",
            f"data.manual_dir={missing}",
            "--set",
            f"data.data_dir={tmp_path / 'tfds'}",
            "--pipeline-root",
            str(tmp_path / "root"),
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert [line.split(" ", 1)[1].split(" in ")[0].split(" after ")[0] for line in out] == [
        "started  resolve-config",
        "finished resolve-config",
        "started  ingest",
        "FAILED   ingest",
    ]
    err = captured.err.splitlines()
    assert len(err) == 2, captured.err
    assert err[0].startswith("error: step ingest failed: FileNotFoundError: oxford_iiit_pet: ")
    assert str(missing) in err[0] and "Traceback" not in captured.err
    log = Path(err[1].removeprefix("log: "))
    assert log.name == "ingest.log" and log.parent.name == "logs"
    assert log.parent.parent.parent == tmp_path / "root"
    text = log.read_text()
    assert "Traceback (most recent call last):" in text and "KFP Executor" in text
