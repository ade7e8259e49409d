"""An interrupted `--runner docker` run stops the containers it started.

Containers are dockerd's children, not petseg's, so the signal handler that terminates
step processes cannot reach them; the run labels each container with its own id and
stops the labelled ones. No Docker engine is needed here: the engine is a stand-in at
the docker SDK's boundary (``docker.from_env``) that records what kfp.local asks of it,
and the real kfp.local DockerRunner, signal handler and run code run against it. The
stand-in's container raises Ctrl-C (a real SIGINT to this process) while its step runs.
"""

from __future__ import annotations

import io
import os
import signal
import time

import docker
import pytest

from components.platform.config import load_config
from pipelines import local
from pipelines.local import RUN_LABEL, LocalRunInterrupted, run_local, stop_run_containers

pytestmark = pytest.mark.timeout(60)


class Container:
    def __init__(self, engine: Engine, name: str, labels: dict[str, str], interrupt: bool):
        self.engine, self.name, self.labels = engine, name, labels
        self.status, self.interrupt = "running", interrupt

    def logs(self, stream: bool = True):
        yield b"step started\n"
        if self.interrupt:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the step runs
        deadline = time.monotonic() + 20
        while self.status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)

    def wait(self):
        return {"StatusCode": 0}

    def stop(self, timeout: int):
        self.engine.calls.append(("stop", self.name, timeout))
        if self.engine.refuse_stop:
            raise docker.errors.APIError("stop refused")
        self.status = "exited"


class Engine:
    """What kfp.local's DockerTaskHandler and stop_run_containers call on a client."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.started: list[tuple[Container, dict]] = []
        self.refuse_stop = False
        engine = self

        class Images:
            def get(self, name):
                return name

            def list(self):
                image = type("Image", (), {})()
                image.tags = ["petseg-cpu:local", "petseg-gpu:local"]
                image.attrs = {"RepoDigests": []}
                return [image]

        class Containers:
            def run(self, image, command, **kwargs):
                container = Container(
                    engine, f"step-{len(engine.started)}", kwargs.get("labels") or {}, True
                )
                engine.started.append((container, kwargs))
                return container

            def list(self, filters):
                engine.calls.append(("list", filters))
                key, _, value = filters["label"].partition("=")
                return [
                    container
                    for container, _ in engine.started
                    if container.labels.get(key) == value and container.status == "running"
                ]

        self.images, self.containers = Images(), Containers()

    def info(self):
        return {}

    def close(self):
        pass


def test_an_interrupted_docker_run_stops_the_container_it_started(tmp_path, monkeypatch):
    engine = Engine()
    monkeypatch.setattr(docker, "from_env", lambda *args, **kwargs: engine)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(LocalRunInterrupted) as interrupted:
        run_local(load_config("demo"), runner="docker", out=io.StringIO())

    assert interrupted.value.step == "resolve-config"
    assert interrupted.value.still_running == []
    ((container, run_args),) = engine.started
    run_id = run_args["labels"][RUN_LABEL]
    assert run_args["network_mode"] == "none" and len(run_id) == 32
    assert engine.calls == [
        ("list", {"label": f"{RUN_LABEL}={run_id}"}),
        ("stop", container.name, int(local.TERMINATE_GRACE_S)),
    ]
    assert container.status == "exited"
    assert "during step resolve-config" in str(interrupted.value)


def test_a_container_that_cannot_be_stopped_is_named_in_the_line(monkeypatch):
    engine = Engine()
    engine.refuse_stop = True
    running = Container(engine, "petseg-train-1", {RUN_LABEL: "abc"}, False)
    other = Container(engine, "someone-else", {RUN_LABEL: "xyz"}, False)
    engine.started = [(running, {}), (other, {})]

    left = stop_run_containers("abc", client=engine)

    assert left == ["petseg-train-1"]
    assert [call for call in engine.calls if call[0] == "stop"] == [("stop", "petseg-train-1", 10)]
    message = str(LocalRunInterrupted("train", "SIGINT", None, left))
    assert message.endswith("; could not stop petseg-train-1: docker stop them")
