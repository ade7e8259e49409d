"""Which petseg made a model: version and git commit in metadata, manifest, images, submit."""

import importlib.metadata
import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from components.platform import provenance
from components.platform.config import load_config
from components.publish.push import push_model
from pipelines.cloud_cli import image_tag_mismatch
from tests.cloudargs import CLOUD_READY
from tests.test_vertex_boundary import (  # noqa: F401 - vertex is a fixture
    PROJECT,
    REGION,
    ROOT_URI,
    StandInCompiler,
    run_cli,
    vertex,
)

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
REGISTRY = "europe-docker.pkg.dev/p/petseg"


def checkout_commit() -> str:
    def git(*arguments):
        return subprocess.run(
            ["git", "-C", str(ROOT), *arguments], capture_output=True, text=True, check=True
        ).stdout.strip()

    return git("rev-parse", "--short=12", "HEAD")


def test_version_is_the_installed_package_and_the_commit_the_checkout(monkeypatch):
    monkeypatch.delenv(provenance.GIT_COMMIT_ENV, raising=False)
    assert provenance.package_version() == importlib.metadata.version("petseg") == VERSION
    found = provenance.provenance()
    assert found["petseg_version"] == VERSION
    # "-dirty" follows the work tree, which other tests may touch meanwhile.
    assert found["git_commit"].removesuffix("-dirty") == checkout_commit()


def test_the_commit_from_the_image_build_wins(monkeypatch):
    monkeypatch.setenv(provenance.GIT_COMMIT_ENV, "0123abcd4567")
    assert provenance.git_commit() == "0123abcd4567"


def test_the_push_manifest_records_the_pushing_petseg(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.GIT_COMMIT_ENV, "feedc0ffee12")
    model = tmp_path / "model"
    model.mkdir()
    (model / "metadata.json").write_text(json.dumps({"petseg_version": "0.0.1"}))
    (model / "model.keras").write_bytes(b"weights")

    result = push_model(str(model), str(tmp_path / "models"), run_id="r")

    manifest = json.loads(Path(result["uri"], "manifest.json").read_text())
    assert manifest["pushed_by"] == {"petseg_version": VERSION, "git_commit": "feedc0ffee12"}
    assert manifest["model_metadata"]["petseg_version"] == "0.0.1"  # the training one


@pytest.mark.parametrize(
    ("cpu_tag", "gpu_tag", "expected"),
    [
        (VERSION, VERSION, ""),
        ("0123abcd4567", "0123abcd4567-dirty", ""),  # this checkout's commit (build.sh tags)
        ("0.0.9", VERSION, "runtime.cpu_image tag '0.0.9' differs from"),
        (
            "0.0.9",
            "latest",
            "runtime.cpu_image tag '0.0.9' and runtime.gpu_image tag 'latest' differ from",
        ),
        ("@sha256:" + "a" * 64, VERSION, ""),  # pinned by digest: deliberate
    ],
)
def test_image_tags_are_compared_with_the_package(cpu_tag, gpu_tag, expected, monkeypatch):
    monkeypatch.setenv(provenance.GIT_COMMIT_ENV, "0123abcd4567")
    cpu = f"{REGISTRY}/petseg-cpu{cpu_tag if cpu_tag.startswith('@') else ':' + cpu_tag}"
    config = load_config(
        "tutorial",
        overrides=[
            f"runtime.cpu_image={cpu}",
            f"runtime.gpu_image={REGISTRY}/petseg-gpu:{gpu_tag}",
        ],
    )
    message = image_tag_mismatch(config)
    assert (expected in message) if expected else message == ""


def test_submit_warns_in_one_line_when_image_tags_differ_boundary(vertex, capsys):  # noqa: F811
    status = run_cli(
        StandInCompiler(),
        "submit", "--target", "vertex", "--preset", "demo", *CLOUD_READY,
        "--set", f"runtime.gpu_image={REGISTRY}/petseg-gpu:0.0.9",
        "--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
    )  # fmt: skip

    assert status == 0 and len(vertex.created) == 1  # a warning, not a refusal
    warnings = [line for line in capsys.readouterr().err.splitlines() if line]
    assert warnings == [
        f"warning: runtime.gpu_image tag '0.0.9' differs from petseg {VERSION}; the tasks run "
        "the petseg in the images (build them with containers/build.sh)"
    ]


def test_submit_with_matching_image_tags_does_not_warn_boundary(vertex, capsys):  # noqa: F811
    status = run_cli(
        StandInCompiler(),
        "submit", "--target", "vertex", "--preset", "demo", *CLOUD_READY,
        "--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
    )  # fmt: skip
    assert status == 0
    assert "warning" not in capsys.readouterr().err


def test_images_carry_the_commit_they_were_built_from():
    from tests.test_containers import _build_sh

    result = _build_sh(
        "--project", "petseg-test", "--local", "--dry-run", "--git-sha", "0123abcd4567"
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    builds = [line for line in result.stdout.splitlines() if line.startswith("+ docker build")]
    assert len(builds) == 2
    assert all("--build-arg=PETSEG_GIT_COMMIT=0123abcd4567" in line for line in builds)
    for kind in ("cpu", "gpu"):
        final_stage = (ROOT / "containers" / f"Dockerfile.{kind}").read_text().split("\nFROM ")[-1]
        assert 'ARG PETSEG_GIT_COMMIT=""' in final_stage
        assert "ENV PETSEG_GIT_COMMIT=${PETSEG_GIT_COMMIT}" in final_stage
