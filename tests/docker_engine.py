"""A Docker Engine for the image tests, and the petseg images built in it.

The engine named by ``DOCKER_HOST`` (or the default socket) is used when it answers.
Otherwise, as root with Debian's ``docker.io`` installed, a private ``dockerd`` is started
without a bridge network (``--bridge=none --iptables=false``: builds use the host network,
containers under test run with ``--network none``) and stopped when the test session ends.
Its data root is kept (``PETSEG_DOCKER_ROOT``, default /var/tmp/petseg-docker), so base
stand-ins and image layers are reused by the next session on the same machine.

Without an engine the image tests are skipped, unless ``PETSEG_REQUIRE_DOCKER=1`` (CI sets it),
which makes them fail instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
IMAGE_TAG = "local"
CPU_IMAGE = f"petseg-cpu:{IMAGE_TAG}"
GPU_IMAGE = f"petseg-gpu:{IMAGE_TAG}"


def _answers(environment: dict[str, str]) -> bool:
    if not shutil.which("docker"):
        return False
    probe = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        env=environment,
        timeout=30,
    )
    return probe.returncode == 0


def _unavailable(reason: str):
    if os.environ.get("PETSEG_REQUIRE_DOCKER") == "1":
        pytest.fail(f"PETSEG_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def docker_engine():
    """Yields the environment (DOCKER_HOST set) for a Docker Engine that answers."""
    environment = dict(os.environ)
    if _answers(environment):
        yield environment
        return
    if not shutil.which("dockerd"):
        _unavailable(
            "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
        )
    if os.geteuid() != 0:
        _unavailable("no Docker engine answers, and starting dockerd needs root")
    state = Path(os.environ.get("PETSEG_DOCKER_ROOT", "/var/tmp/petseg-docker"))
    state.mkdir(parents=True, exist_ok=True)
    socket = state / "docker.sock"
    environment["DOCKER_HOST"] = f"unix://{socket}"
    log = (state / "dockerd.log").open("ab")
    daemon = subprocess.Popen(
        [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            f"--data-root={state / 'data'}",
            f"--exec-root={state / 'exec'}",
            f"--pidfile={state / 'dockerd.pid'}",
            f"--host=unix://{socket}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(environment):
            if daemon.poll() is not None or time.monotonic() > deadline:
                tail = (state / "dockerd.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"dockerd did not start within {START_TIMEOUT_S:.0f}s:\n{tail}")
            time.sleep(0.5)
        yield environment
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        log.close()


def build_images(environment: dict[str, str]) -> None:
    """Builds both images (layers and stand-in bases are reused when unchanged)."""
    result = subprocess.run(
        ["bash", str(ROOT / "containers" / "build-local.sh"), "--tag", IMAGE_TAG],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
    )
    if result.returncode != 0:
        pytest.fail(f"building the images failed:\n{result.stdout}\n{result.stderr[-6000:]}")


def docker(
    environment: dict[str, str], *arguments: str, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Runs the docker CLI; the caller checks the result."""
    return subprocess.run(
        ["docker", *arguments], capture_output=True, text=True, env=environment, timeout=timeout
    )


def image_size_mb(environment: dict[str, str], image: str) -> float:
    size = docker(environment, "image", "inspect", "--format", "{{.Size}}", image)
    assert size.returncode == 0, size.stderr
    return int(size.stdout.strip()) / 1e6
