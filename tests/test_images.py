"""The component images, built and run for real (tests/docker_engine.py has the engine).

Both images are built once per session with containers/build-local.sh (stand-in bases where
the pinned ones cannot be pulled). Every container runs with ``--network none``.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from docker_engine import CPU_IMAGE, GPU_IMAGE, build_images, docker, docker_engine, image_size_mb
from test_containers import IMAGE_COMPONENTS, ROOT, component_files, third_party_imports

from components.platform.config import load_config
from pipelines.local import run_local, summarize_run
from pipelines.tasklogs import LOGS_DIR

pytestmark = [pytest.mark.slow, pytest.mark.docker]

IMAGES = {"Dockerfile.cpu": CPU_IMAGE, "Dockerfile.gpu": GPU_IMAGE}
SMALL = [
    "data.synthetic_train_size=24",
    "data.synthetic_test_size=8",
    "data.synthetic_image_size=64",
    "data.records_per_shard=10",
    "model.image_size=64",
    "training.epochs=1",
    "training.batch_size=8",
    "evaluation.report_images=2",
    "evaluation.min_mean_iou=0.0",
]

# Imports each module named on the command line; prints the ones that fail, exits 1 if any.
IMPORT_CHECK = """
import importlib, sys
missing = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as error:
        missing.append(f"{name}: {error}")
print("\\n".join(missing))
sys.exit(1 if missing else 0)
"""


@pytest.fixture(scope="module")
def engine():
    with docker_engine() as environment:
        build_images(environment)
        yield environment


def run_in(engine, image: str, *command: str, volume: Path | None = None, user: str = ""):
    """Runs a command in a fresh container of image, with no network."""
    arguments = ["run", "--rm", "--network", "none"]
    if volume is not None:  # mounted at the same path, so paths in outputs read the same
        arguments += ["--volume", f"{volume}:{volume}", "--workdir", str(volume)]
    if user:
        arguments += ["--user", user]
    return docker(engine, *arguments, image, *command)


def modules_to_import(dockerfile: str) -> list[str]:
    """The image's component modules and every third-party module their code imports."""
    files = component_files(IMAGE_COMPONENTS[dockerfile])
    project = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in files
        if path.is_relative_to(ROOT)
    ]
    return sorted(third_party_imports(files)) + project


def missing_in_image(engine, image: str, dockerfile: str) -> str:
    result = run_in(engine, image, "python3", "-c", IMPORT_CHECK, *modules_to_import(dockerfile))
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return result.stdout.strip()


@pytest.mark.parametrize("dockerfile", sorted(IMAGES))
def test_every_module_the_components_import_loads_in_the_image(engine, dockerfile):
    assert missing_in_image(engine, IMAGES[dockerfile], dockerfile) == ""


def test_a_module_missing_from_the_image_is_named(engine):
    # The same check on a copy of the CPU image that lost one installed distribution.
    broken = "petseg-cpu:missing-pillow"
    dockerfile = (
        f"FROM {CPU_IMAGE}\nUSER 0\n"
        "RUN rm -rf /opt/venv/lib/python3*/site-packages/PIL\nUSER 10001:10001\n"
    )
    build = subprocess.run(
        ["docker", "build", "--quiet", "--network", "none", "--tag", broken, "-"],
        input=dockerfile,
        capture_output=True,
        text=True,
        env={**engine, "DOCKER_BUILDKIT": "0"},
    )
    assert build.returncode == 0, build.stderr
    try:
        missing = missing_in_image(engine, broken, "Dockerfile.cpu")
    finally:
        docker(engine, "image", "rm", broken)
    assert re.search(r"^PIL[.\w]*: No module named 'PIL'$", missing, re.MULTILINE), missing


@pytest.mark.parametrize("image", [CPU_IMAGE, GPU_IMAGE])
def test_image_runs_as_non_root_without_sources_tools_or_credentials(engine, image):
    script = (
        "id -u; python3 -c 'import components; print(components.__file__)'; "
        "command -v uv || true; "
        "find / -xdev \\( -name uv.lock -o -name pyproject.toml -o -name '*credentials*.json'"
        " -o -name .boto -o -name '*.p12' -o -path '*/.docker/config.json' \\) -print"
        " 2>/dev/null | grep -v '/site-packages/' || true"
    )
    result = run_in(engine, image, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "10001"
    assert re.match(r"/opt/venv/lib/python3[.\d]*/site-packages/components/__init__\.py$", lines[1])
    assert lines[2:] == [], f"{image} holds tools, sources or credentials: {lines[2:]}"
    config = docker(engine, "image", "inspect", "--format", "{{json .Config.Env}}", image)
    names = [entry.split("=", 1)[0] for entry in json.loads(config.stdout)]
    assert not [n for n in names if re.search(r"SECRET|TOKEN|PASSWORD|CREDENTIAL|API_KEY", n)]


def test_only_the_gpu_image_carries_tensorflow_cuda_kernels(engine):
    # The CPU image installs tensorflow-cpu (about 550 MB smaller, no CUDA kernels).
    probe = "import tensorflow as tf; print(tf.sysconfig.get_build_info()['is_cuda_build'])"
    cuda = {image: run_in(engine, image, "python3", "-c", probe) for image in IMAGES.values()}
    assert [cuda[CPU_IMAGE].stdout.split()[-1:], cuda[GPU_IMAGE].stdout.split()[-1:]] == [
        ["False"],
        ["True"],
    ], {image: result.stderr[-2000:] for image, result in cuda.items()}
    sizes = {image: image_size_mb(engine, image) for image in IMAGES.values()}
    print("\nimage sizes: " + ", ".join(f"{image} {mb:.0f} MB" for image, mb in sizes.items()))


def _pushed_and_metrics(workspace: Path):
    (run_dir,) = (workspace / "root").glob("petseg-demo-*")
    summary = summarize_run(run_dir)
    latest = json.loads((workspace / "models" / "LATEST").read_text())
    metrics = summary.task("evaluate").artifacts["metrics"]["metadata"]
    return summary, latest, metrics


def test_cpu_image_runs_the_demo_offline_as_its_user_like_the_host(engine, tmp_path_factory):
    in_image = tmp_path_factory.mktemp("in-image")
    in_image.chmod(0o777)  # the image's user (uid 10001) writes here
    settings = [
        *SMALL,
        f"push.destination={in_image / 'models'}",
        f"data.data_dir={in_image / 'tfds'}",
    ]
    sets = [argument for setting in settings for argument in ("--set", setting)]
    result = run_in(
        engine,
        CPU_IMAGE,
        "petseg", "run", "--local", "--preset", "demo", "--pipeline-root", str(in_image / "root"),
        *sets,
        volume=in_image,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary, latest, metrics = _pushed_and_metrics(in_image)
    assert latest["version"] == "v000001"
    assert (in_image / "models" / "versions" / "v000001" / "manifest.json").is_file()
    assert summary.pushed_uri == str(in_image / "models" / "versions" / "v000001")
    owners = {path.stat().st_uid for path in (in_image / "models").rglob("*")}
    assert owners == {10001}

    on_host = tmp_path_factory.mktemp("on-host")
    config = load_config(
        "demo",
        overrides=[
            *SMALL,
            f"push.destination={on_host / 'models'}",
            f"data.data_dir={on_host / 'tfds'}",
        ],
    )
    run_local(config, pipeline_root=on_host / "root")
    _, host_latest, host_metrics = _pushed_and_metrics(on_host)
    assert host_latest["version"] == "v000001"
    assert metrics["mean_iou"] == host_metrics["mean_iou"]
    assert metrics == host_metrics


def test_docker_runner_refuses_a_local_push_destination_outside_the_pipeline_root(tmp_path):
    config = load_config("demo", overrides=[f"push.destination={tmp_path / 'models'}"])
    with pytest.raises(ValueError, match=r"push.destination=.*outside it") as error:
        run_local(config, pipeline_root=tmp_path / "root", runner="docker")
    assert str(tmp_path / "root") in str(error.value)
    assert not list((tmp_path / "root").glob("petseg-demo-*"))  # refused before any task ran


def test_docker_runner_runs_every_step_in_the_images_and_pushes(
    engine, tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("DOCKER_HOST", engine.get("DOCKER_HOST", ""))
    root = tmp_path / "root"
    config = load_config("demo", overrides=[*SMALL, f"push.destination={root / 'models'}"])
    summary = run_local(config, pipeline_root=root, runner="docker")
    # What kfp.local printed: step lines on the terminal, the rest in the run's logs folder.
    logs = sorted((summary.run_dir / LOGS_DIR).glob("*.log"))
    output = capfd.readouterr().out + "".join(path.read_text() for path in logs)
    # kfp.local names the image of each task it starts; train runs in the GPU image (on CPU).
    assert output.count(f"Found image '{GPU_IMAGE}'") == 1
    assert output.count(f"Found image '{CPU_IMAGE}'") == len(summary.tasks) - 1
    assert {"ingest", "compute-class-weights", "evaluate", "push"} <= set(summary.tasks)
    model = summary.task("train").artifacts["model"]
    assert (Path(model["uri"]) / "model.keras").is_file()
    assert model["metadata"]["image_size"] == 64
    assert summary.blessed is True
    assert summary.pushed_uri == str(root / "models" / "versions" / "v000001")
    assert (root / "models" / "versions" / "v000001" / "manifest.json").is_file()
