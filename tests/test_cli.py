from __future__ import annotations

import subprocess
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


def test_petseg_alone_prints_its_commands_not_a_usage_error(capsys):
    assert main([]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith("usage: petseg")
    for command in ("config", "compile", "run", "ingest", "predict"):
        assert f"\n    {command} " in captured.out


def test_version_prints_the_package_version_and_commit(capsys, monkeypatch):
    import importlib.metadata

    monkeypatch.setenv("PETSEG_GIT_COMMIT", "0123abcd4567")
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    version = importlib.metadata.version("petseg")
    assert capsys.readouterr().out == f"petseg {version} (commit 0123abcd4567)\n"
    # From this checkout, without the image's variable: git's commit.
    monkeypatch.delenv("PETSEG_GIT_COMMIT")
    with pytest.raises(SystemExit):
        main(["--version"])
    head = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
        check=True,
    ).stdout.strip()
    assert capsys.readouterr().out.startswith(f"petseg {version} (commit {head}")


@pytest.mark.parametrize(
    "arguments",
    [
        ["predict", "--model", "m", "--input", "i", "-o", "o", "--alpha", "2"],
        ["predict", "--model", "m", "--input", "i", "-o", "o", "--alpha", "half"],
        ["predict", "--model", "m", "--input", "i", "-o", "o", "--batch-size", "0"],
        ["compile", "--target", "nowhere"],
        ["no-such-command"],
    ],
)
def test_bad_arguments_exit_2(arguments, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("petseg")


def test_run_help_does_not_call_an_option_required(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: petseg run --local [options]")
    assert "(required)" not in out
