"""A small object-store abstraction for push: a local directory or a GCS prefix.

Push needs more than plain file calls give: creating an object only if it is
absent and replacing one only if nobody changed it since it was read. Those two
primitives make concurrent pushes safe. On GCS they are generation
preconditions (``if_generation_match``); in a local directory they are
``os.link`` (fails if the name exists) and ``os.replace`` under an exclusive
``flock``.

Keys are relative POSIX paths under the store's root (``versions/v000001/x``).
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import errno
import fcntl
import functools
import hashlib
import os
import posixpath
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

GCS_SCHEME = "gs://"
# Vertex AI mounts Cloud Storage at /gcs/<bucket>/...; FUSE has no atomic create, so
# such a destination is written through the GCS API instead.
GCS_FUSE_ROOT = "/gcs/"
LOCK_TIMEOUT_S = 60.0
_CHUNK = 1 << 20
# A staged file this old belongs to a push that was killed mid-write (a live push writes
# and publishes each file within seconds), so the next push removes it.
STALE_STAGED_AFTER_S = 3600.0
# google-cloud-storage sends an object of known size up to 8 MiB as one multipart request
# and anything larger as a resumable session. Conditional writes stay multipart: one
# request whose precondition the server checks atomically (and the only upload kind whose
# preconditions fake-gcs-server, the test emulator, enforces).
CONDITIONAL_WRITE_MAX_BYTES = 8 * 1024 * 1024
_READ_ATTEMPTS = 10
_CLIENT: contextvars.ContextVar[Any] = contextvars.ContextVar("gcs_client", default=None)

Token = Any
"""What compare_and_swap compares: a GCS generation (0 = absent), or local bytes (None)."""


class DestinationError(ValueError):
    """The destination cannot be used (bad URI, missing bucket, not a directory)."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a store reports about a stored object, to verify an upload."""

    size: int
    md5_base64: str | None


def file_digests(path: str) -> tuple[str, str, int]:
    """Returns (sha256 hex, md5 base64, size) of a local file in one streaming pass."""
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha256.hexdigest(), base64.b64encode(md5.digest()).decode("ascii"), size


def is_safe_key(key: str) -> bool:
    """A relative POSIX path without empty, '.' or '..' parts (nothing escapes the root)."""
    return bool(key) and not key.startswith("/") and not {"", ".", ".."} & set(key.split("/"))


def _check_key(key: str) -> str:
    if not is_safe_key(key):
        raise ValueError(f"invalid store key {key!r}: use a relative path without '.' or '..'")
    return key


class Store(ABC):
    """Objects under one root; every method takes keys relative to that root."""

    uri: str

    def key_uri(self, key: str) -> str:
        """The full URI of a key (for manifests, messages and Vertex)."""
        return posixpath.join(self.uri, _check_key(key)) if key else self.uri

    @abstractmethod
    def check_ready(self, *, for_write: bool) -> None:
        """Raises DestinationError when the destination cannot be used at all."""

    @abstractmethod
    def list_children(self, prefix: str) -> list[str]:
        """Names of the immediate "sub-directories" under prefix (a key ending in '/')."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes | None, Token]:
        """The object's bytes (None if absent) and the token compare_and_swap expects."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Writes (or replaces) an object; readers see the old or the new bytes, never part."""

    @abstractmethod
    def upload_file(self, local_path: str, key: str) -> None:
        """Copies a local file to key; readers see no partial object."""

    @abstractmethod
    def download_file(self, key: str, local_path: str) -> None:
        """Copies key to a local file; FileNotFoundError names the key when it is absent."""

    @abstractmethod
    def object_info(self, key: str) -> ObjectInfo | None:
        """Size and MD5 of a stored object, or None when it does not exist."""

    @abstractmethod
    def create_if_absent(self, key: str, data: bytes) -> bool:
        """Creates key with data unless it exists; True if this call created it."""

    @abstractmethod
    def compare_and_swap(self, key: str, data: bytes, expected: Token) -> bool:
        """Replaces key with data only if it still matches expected; True on success."""

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Every object key under prefix (a "directory" key), recursively, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Removes an object; an absent one is no error (another cleaner got there first)."""

    def remove_stale_staging(self, older_than_s: float = 3600.0) -> list[str]:
        """Removes what killed writes left outside the versions; returns what it removed."""
        del older_than_s  # GCS publishes an object only when complete: nothing is staged
        return []

    def sha256(self, key: str) -> str | None:
        """The stored object's sha256 (read whole), or None when it does not exist."""
        with tempfile.TemporaryDirectory() as scratch:
            copy = os.path.join(scratch, "object")
            try:
                self.download_file(key, copy)
            except FileNotFoundError:
                return None
            return file_digests(copy)[0]


class LocalStore(Store):
    """A directory on a local (POSIX) file system."""

    def __init__(self, root: str):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.uri = self.root
        self._staging = os.path.join(self.root, ".staging")

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *_check_key(key).split("/"))

    def check_ready(self, *, for_write: bool) -> None:
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise DestinationError(f"push destination {self.root!r} exists and is not a directory")
        if not for_write:
            return
        try:
            os.makedirs(self._staging, exist_ok=True)
        except OSError as error:
            raise DestinationError(
                f"push destination {self.root!r} cannot be created: {error}"
            ) from error
        self.remove_stale_staging()

    def remove_stale_staging(self, older_than_s: float = STALE_STAGED_AFTER_S) -> list[str]:
        """Deletes staged files left by killed pushes; a running push's are too recent."""
        cutoff = time.time() - older_than_s
        removed = []
        try:
            entries = list(os.scandir(self._staging))
        except FileNotFoundError:
            return removed
        for entry in entries:
            if not entry.name.endswith(".partial"):
                continue
            with contextlib.suppress(FileNotFoundError):  # another push removed it
                if entry.stat().st_mtime < cutoff:
                    os.remove(entry.path)
                    removed.append(entry.path)
        return removed

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(
            os.path.relpath(os.path.join(folder, name), self.root).replace(os.sep, "/")
            for folder, _, names in os.walk(self._path(prefix.rstrip("/")))
            for name in names
        )

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        # Empty parent folders go too, up to (not including) the root.
        parent = os.path.dirname(path)
        while parent != self.root and parent.startswith(self.root + os.sep):
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)

    def list_children(self, prefix: str) -> list[str]:
        directory = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            entries = os.listdir(directory)
        except FileNotFoundError:
            return []
        return sorted(e for e in entries if os.path.isdir(os.path.join(directory, e)))

    def read_bytes(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def read_versioned(self, key: str) -> tuple[bytes | None, Token]:
        data = self.read_bytes(key)
        return data, data

    def _staged(self, write) -> str:
        """Writes a complete, fsynced file under .staging and returns its path."""
        os.makedirs(self._staging, exist_ok=True)
        staged = os.path.join(self._staging, f"{uuid.uuid4().hex}.partial")
        try:
            with open(staged, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(staged)
            raise
        return staged

    def _publish(self, staged: str, key: str) -> None:
        target = self._path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(staged, target)
        _fsync_directory(os.path.dirname(target))

    def write_bytes(self, key: str, data: bytes) -> None:
        self._publish(self._staged(lambda handle: handle.write(data)), key)

    def upload_file(self, local_path: str, key: str) -> None:
        def copy(handle):
            with open(local_path, "rb") as source:
                shutil.copyfileobj(source, handle, _CHUNK)

        self._publish(self._staged(copy), key)

    def download_file(self, key: str, local_path: str) -> None:
        source = self._path(key)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"{self.key_uri(key)} does not exist")
        shutil.copyfile(source, local_path)

    def object_info(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not os.path.isfile(path):
            return None
        _, md5_base64, size = file_digests(path)
        return ObjectInfo(size=size, md5_base64=md5_base64)

    def sha256(self, key: str) -> str | None:
        path = self._path(key)
        return file_digests(path)[0] if os.path.isfile(path) else None

    def create_if_absent(self, key: str, data: bytes) -> bool:
        staged = self._staged(lambda handle: handle.write(data))
        target = self._path(key)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            # link() publishes a complete file and fails if the name exists: O_EXCL with content.
            os.link(staged, target)
        except FileExistsError:
            return False
        finally:
            os.remove(staged)
        _fsync_directory(os.path.dirname(target))
        return True

    def compare_and_swap(self, key: str, data: bytes, expected: Token) -> bool:
        target = self._path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        lock_path = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.lock")
        with _exclusive_lock(lock_path):
            if self.read_bytes(key) != expected:
                return False
            self.write_bytes(key, data)
            return True


def _fsync_directory(directory: str) -> None:
    """Makes a rename or link durable; some file systems refuse, which is harmless."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _exclusive_lock(lock_path: str, timeout_s: float = LOCK_TIMEOUT_S):
    """An flock the kernel releases if the holder dies, so a crash leaves no stale lock."""
    with open(lock_path, "a+b") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"could not lock {lock_path} within {timeout_s:.0f}s"
                    ) from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class GcsStore(Store):
    """A gs://bucket/prefix, written with google-cloud-storage and generation preconditions.

    Without its own client it uses ``active_client()`` on first use (not at import or
    construction), so a ``gcs_client`` block or ``STORAGE_EMULATOR_HOST`` set by then is
    honoured and nothing authenticates until a push actually happens.
    """

    def __init__(
        self,
        uri: str,
        *,
        client: Any = None,
        timeout_s: float = 60.0,
        retry_deadline_s: float = 120.0,
    ):
        bucket, prefix = parse_gcs_uri(uri)
        self.bucket_name = bucket
        self.prefix = prefix
        self.uri = f"{GCS_SCHEME}{bucket}/{prefix}".rstrip("/")
        self._client = client
        self._bucket = None
        self.timeout_s = timeout_s
        self.retry_deadline_s = retry_deadline_s

    @property
    def client(self):
        return self._client or active_client()

    @property
    def bucket(self):
        if self._bucket is None:
            self._bucket = self.client.bucket(self.bucket_name)
        return self._bucket

    def _name(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _retry(self):
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.retry_deadline_s)

    def _blob(self, key: str):
        return self.bucket.blob(self._name(key))

    def check_ready(self, *, for_write: bool) -> None:
        from google.api_core import exceptions

        del for_write  # a bucket is the same for reading and writing
        # Listing needs only storage.objects.list, which push needs anyway; bucket.exists()
        # would also need storage.buckets.get, which object-level roles lack.
        try:
            blobs = self.client.list_blobs(
                self.bucket_name,
                prefix=self._name("LATEST"),
                max_results=1,
                timeout=self.timeout_s,
                retry=self._retry(),
            )
            list(blobs)
        except exceptions.NotFound:
            raise DestinationError(
                f"bucket {self.bucket_name!r} does not exist (push destination {self.uri}); "
                "create it or fix push.destination"
            ) from None

    def list_children(self, prefix: str) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        full_prefix = f"{base}{prefix.strip('/')}/" if prefix.strip("/") else base
        iterator = self.client.list_blobs(
            self.bucket_name,
            prefix=full_prefix,
            delimiter="/",
            timeout=self.timeout_s,
            retry=self._retry(),
        )
        for _ in iterator:  # prefixes fill in as pages are read
            pass
        names = (p[len(full_prefix) :].rstrip("/") for p in iterator.prefixes)
        return sorted(name for name in names if name)

    def read_bytes(self, key: str) -> bytes | None:
        return self.read_versioned(key)[0]

    def read_versioned(self, key: str) -> tuple[bytes | None, Token]:
        from google.api_core import exceptions

        for _ in range(_READ_ATTEMPTS):
            blob = self.bucket.get_blob(
                self._name(key), timeout=self.timeout_s, retry=self._retry()
            )
            if blob is None:
                return None, 0
            # Kept before downloading: the download refreshes blob properties from headers.
            generation = int(blob.generation)
            try:
                data = blob.download_as_bytes(
                    if_generation_match=generation, timeout=self.timeout_s, retry=self._retry()
                )
            except (exceptions.NotFound, exceptions.PreconditionFailed):
                continue  # replaced or deleted between the two calls: read again
            return data, generation
        raise RuntimeError(
            f"{self.key_uri(key)} kept changing while being read ({_READ_ATTEMPTS} attempts)"
        )

    def write_bytes(self, key: str, data: bytes) -> None:
        self._blob(key).upload_from_string(data, timeout=self.timeout_s, retry=self._retry())

    def upload_file(self, local_path: str, key: str) -> None:
        # Both simple and resumable uploads publish the object only when complete.
        self._blob(key).upload_from_filename(
            local_path, checksum="md5", timeout=self.timeout_s, retry=self._retry()
        )

    def download_file(self, key: str, local_path: str) -> None:
        from google.api_core import exceptions

        try:
            self._blob(key).download_to_filename(
                local_path, timeout=self.timeout_s, retry=self._retry()
            )
        except exceptions.NotFound:
            with contextlib.suppress(FileNotFoundError):
                os.remove(local_path)
            raise FileNotFoundError(f"{self.key_uri(key)} does not exist") from None

    def object_info(self, key: str) -> ObjectInfo | None:
        blob = self.bucket.get_blob(self._name(key), timeout=self.timeout_s, retry=self._retry())
        if blob is None:
            return None
        # Composite objects carry no MD5; the caller then verifies by downloading.
        return ObjectInfo(size=int(blob.size or 0), md5_base64=blob.md5_hash)

    def create_if_absent(self, key: str, data: bytes) -> bool:
        return self._conditional_write(key, data, generation=0)

    def compare_and_swap(self, key: str, data: bytes, expected: Token) -> bool:
        return self._conditional_write(key, data, generation=int(expected))

    def list_keys(self, prefix: str) -> list[str]:
        full_prefix = self._name(prefix.rstrip("/")) + "/"
        base = f"{self.prefix}/" if self.prefix else ""
        blobs = self.client.list_blobs(
            self.bucket_name, prefix=full_prefix, timeout=self.timeout_s, retry=self._retry()
        )
        return sorted(blob.name[len(base) :] for blob in blobs)

    def delete(self, key: str) -> None:
        from google.api_core import exceptions

        with contextlib.suppress(exceptions.NotFound):
            self._blob(key).delete(timeout=self.timeout_s, retry=self._retry())

    def _conditional_write(self, key: str, data: bytes, generation: int) -> bool:
        from google.api_core import exceptions

        if len(data) > CONDITIONAL_WRITE_MAX_BYTES:
            raise ValueError(
                f"{self.key_uri(key)}: a conditional write holds at most "
                f"{CONDITIONAL_WRITE_MAX_BYTES} bytes (one multipart request), not {len(data)}"
            )
        blob = self._blob(key)
        blob.chunk_size = None  # a chunk size would make the client upload resumably
        try:
            # With a generation precondition the default retry may resend safely.
            blob.upload_from_string(
                data, if_generation_match=generation, timeout=self.timeout_s, retry=self._retry()
            )
        except exceptions.PreconditionFailed:
            # A resend after a lost response also fails the precondition: if the bytes now
            # stored are ours, the write did succeed.
            return self.read_bytes(key) == data
        return True


def parse_gcs_uri(uri: str) -> tuple[str, str]:
    """Splits gs://bucket/prefix into (bucket, prefix without slashes at either end)."""
    if not uri.startswith(GCS_SCHEME):
        raise DestinationError(f"{uri!r} is not a gs:// URI")
    bucket, _, prefix = uri[len(GCS_SCHEME) :].partition("/")
    if not bucket:
        raise DestinationError(f"{uri!r} names no bucket; use gs://bucket/prefix")
    prefix = prefix.strip("/")
    if any(part in (".", "..") for part in prefix.split("/")) or "//" in prefix:
        raise DestinationError(f"{uri!r} has an invalid object prefix {prefix!r}")
    return bucket, prefix


def make_gcs_client():
    """A storage client: the emulator's when STORAGE_EMULATOR_HOST is set, else ADC's."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    emulator_host = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator_host:
        project = os.environ.get("GOOGLE_CLOUD_PROJECT", "test")
        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": emulator_host},
        )
    return storage.Client()


@contextlib.contextmanager
def gcs_client(client: Any) -> Iterator[None]:
    """gs:// calls in this block (this thread) go through ``client``; None keeps the current."""
    token = _CLIENT.set(client if client is not None else _CLIENT.get())
    try:
        yield
    finally:
        _CLIENT.reset(token)


def active_client() -> Any:
    """The storage client gs:// calls use here: the block's, else the emulator's or ADC's."""
    return _CLIENT.get() or _default_client(os.environ.get("STORAGE_EMULATOR_HOST"))


@functools.cache
def _default_client(emulator_host: str | None):
    del emulator_host  # only the cache key: make_gcs_client reads the environment itself
    return make_gcs_client()


def open_store(destination: str) -> Store:
    """The store for a push destination: gs://bucket/prefix, /gcs/bucket/prefix or a folder."""
    destination = (destination or "").strip()
    if not destination:
        raise DestinationError("push destination is empty; set push.destination")
    if destination.startswith(GCS_SCHEME):
        return GcsStore(destination)
    if destination.startswith(GCS_FUSE_ROOT):
        return GcsStore(GCS_SCHEME + destination[len(GCS_FUSE_ROOT) :])
    if "://" in destination:
        raise DestinationError(
            f"push destination {destination!r}: only gs:// URIs and local folders are supported"
        )
    return LocalStore(destination)
