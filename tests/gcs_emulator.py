"""A real GCS emulator (gcp-storage-emulator) on loopback, for tests that need gs://.

Use it from a test module::

    from gcs_emulator import running_emulator

    @pytest.fixture(scope="module")
    def emulator(tmp_path_factory):
        with running_emulator(tmp_path_factory.mktemp("gcs")) as server:
            yield server

or take the ready-made module-scoped ``gcs_emulator`` fixture below by importing
it into the module. The server stores objects on disk under the given folder,
so ``stop()`` then ``start()`` keeps the data, as a real outage would.

What the emulator does not do (as of 2026.7): it accepts but ignores
``ifGenerationMatch`` preconditions, so it cannot show that a lost race is
refused; the request log (``log_text()``) still shows which requests carried them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PROJECT = "test"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GcsEmulator:
    """One emulator server process bound to 127.0.0.1."""

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.log_path = self.data_dir / "emulator.log"
        self._process: subprocess.Popen | None = None
        self._log_handle = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("emulator already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "--data-dir",
            str(self.data_dir / "store"),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self._process = subprocess.Popen(
            command,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"emulator exited on start; log:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"emulator not ready after {START_TIMEOUT_S}s; log:\n{self.log_text()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self):
        """A storage client for this server: anonymous, project 'test', no retries needed."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )


@contextlib.contextmanager
def running_emulator(data_dir: Path):
    """Starts a server and always stops it, whatever the test did."""
    server = GcsEmulator(data_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gcs_emulator(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("gcs-emulator")) as server:
        yield server
