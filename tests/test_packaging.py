"""petseg installs like a Python package: its wheel brings a working TensorFlow.

The wheel is built from this checkout and installed into a fresh venv (no system site
packages, nothing from this project's environment) by an installer resolving the wheel's
own requirements, pinned to uv.lock's versions so the install comes from the warm cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Imports every module of the installed packages, then runs a TensorFlow op; prints failures.
IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import components, pipelines
failed = []
for package in (components, pipelines):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            importlib.import_module(module.name)
        except Exception as error:
            failed.append(f"{module.name}: {type(error).__name__}: {error}")
import tensorflow as tf
assert int(tf.reduce_sum(tf.constant([1, 2]))) == 3
print(components.__file__)
print("\\n".join(failed))
"""


def _run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_installs_into_a_clean_venv_with_tensorflow_and_every_component(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    wheels = tmp_path / "dist"
    # An sdist, then the wheel from it (outside this checkout, which gets no build/ folder).
    _run(uv, "build", "--out-dir", str(wheels), str(ROOT))
    (wheel,) = wheels.glob("petseg-*.whl")
    lock_versions = tmp_path / "constraints.txt"
    _run(
        uv, "export", "--locked", "--no-dev", "--no-hashes", "--no-emit-project",
        "--format", "requirements-txt", "--output-file", str(lock_versions), cwd=ROOT,
    )  # fmt: skip
    venv = tmp_path / "venv"
    _run(uv, "venv", "--seed", "--python", sys.executable, str(venv))  # --seed: pip, as users have
    python = venv / "bin" / "python"
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PETSEG_GIT_COMMIT")
    }
    _run(
        uv, "pip", "install", "--python", str(python), "--constraint", str(lock_versions),
        str(wheel), env=environment,
    )  # fmt: skip
    installed = _run(str(python), "-m", "pip", "list", "--format", "freeze", env=environment)
    names = {line.split("==")[0].lower() for line in installed.stdout.splitlines()}
    assert "tensorflow" in names and "tensorflow-cpu" not in names

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    version = _run(str(venv / "bin" / "petseg"), "--version", cwd=tmp_path, env=environment)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = f"petseg {project['version']} (commit {commit or 'unknown'}"
    assert version.stdout.startswith(expected)

    imported = _run(str(python), "-c", IMPORT_EVERYTHING, cwd=tmp_path, env=environment)
    location, *failures = imported.stdout.splitlines()
    assert Path(location).is_relative_to(venv)  # the installed wheel, not this checkout
    assert [line for line in failures if line] == []
