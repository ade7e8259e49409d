"""One small file layer: the same calls for local paths and ``gs://``.

Local paths (Vertex AI's ``/gcs/`` mounts included) use Python's own file calls;
``gs://`` URIs go through the google-cloud-storage client, which also talks to the
test emulator (``STORAGE_EMULATOR_HOST``); a caller holding its own client (predict's
``gcs_client=``) runs its calls inside ``with files.gcs_client(client):``, and push's
Store uses that client too. Nothing here imports TensorFlow, so a step that reads a
local JSON file (the data-check gate) starts in a second.

Every write creates the parent folder and is atomic: a reader sees the old file or
the new one, never half of one. Locally the bytes go to a temporary name that is
renamed into place; on ``gs://`` one upload (the object appears when it completes)
is already atomic, and a rename there would be a copy and a delete.

Reads that fail say which file: a missing file is ``FileNotFoundError``, a JSON
file that is not a JSON object is ``FileFormatError`` (a ``ValueError``).
"""

from __future__ import annotations

import fnmatch
import glob as local_glob
import json
import os
import posixpath
import shutil
import uuid
from collections.abc import Callable, Mapping
from typing import Any

# A caller's storage client (``with files.gcs_client(client):``) reaches push's Store too.
from components.platform.storage import active_client, parse_gcs_uri
from components.platform.storage import gcs_client as gcs_client

join = posixpath.join


class FileFormatError(ValueError):
    """A file exists but does not hold what it should (not JSON, not an object)."""


def is_remote(path: str) -> bool:
    """True for an object-store URI (``gs://...``), where renames are copies."""
    return "://" in path


def _blobs(uri: str):
    """(bucket, object name) of a gs:// URI, through ``active_client()``.

    tf.io.gfile would not honour STORAGE_EMULATOR_HOST; the storage client does.
    """
    bucket, name = parse_gcs_uri(uri)
    return active_client().bucket(bucket), name


def _under(uri: str) -> list[str]:
    """Object names below a gs:// prefix (recursively), relative to it."""
    bucket, prefix = _blobs(uri)
    prefix = f"{prefix}/" if prefix else ""
    names = (blob.name for blob in bucket.client.list_blobs(bucket, prefix=prefix))
    return sorted(name[len(prefix) :] for name in names if not name.endswith("/"))


def exists(path: str) -> bool:
    """A file, or a folder (on gs://, a prefix with objects under it)."""
    if not is_remote(path):
        return os.path.exists(path)
    bucket, name = _blobs(path)
    return bucket.blob(name).exists() or bool(_under(path))


def is_file(path: str) -> bool:
    if not is_remote(path):
        return os.path.isfile(path)
    bucket, name = _blobs(path)
    return bool(name) and bucket.blob(name).exists()


def is_dir(path: str) -> bool:
    return bool(_under(path)) if is_remote(path) else os.path.isdir(path)


def list_files(root: str) -> list[str]:
    """Every file under ``root``, recursively, as sorted POSIX paths relative to it."""
    if is_remote(root):
        return _under(root)
    return sorted(
        os.path.relpath(os.path.join(directory, name), root).replace(os.sep, "/")
        for directory, _, names in os.walk(root)
        for name in names
    )


def listdir(path: str) -> list[str]:
    """Entry names in a folder, sorted (sub-folders without a trailing slash)."""
    if is_remote(path):
        return sorted({name.split("/", 1)[0] for name in _under(path)})
    return sorted(os.listdir(path))


def glob(pattern: str) -> list[str]:
    """Paths matching a pattern (``*``, ``?``, ``[...]``), sorted."""
    if not is_remote(pattern):
        return sorted(local_glob.glob(pattern))
    first = min((i for i in map(pattern.find, "*?[") if i >= 0), default=len(pattern))
    root = pattern[:first].rpartition("/")[0]  # the folder above the first wildcard
    return sorted(
        f"{root}/{name}" for name in _under(root) if fnmatch.fnmatchcase(f"{root}/{name}", pattern)
    )


def makedirs(path: str) -> None:
    """Creates a local folder; object stores have none to create."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
    """Removes a file, or a folder with everything under it; a missing path is fine."""
    if is_remote(path):
        bucket, name = _blobs(path)
        for relative in _under(path):
            bucket.blob(f"{name}/{relative}").delete()
        if bucket.blob(name).exists():
            bucket.blob(name).delete()
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def rename(source: str, target: str) -> None:
    """Moves a file onto ``target``, replacing it; on gs:// a copy, then a delete."""
    if not is_remote(source):
        os.replace(source, target)
        return
    bucket, name = _blobs(source)
    target_bucket, target_name = _blobs(target)
    bucket.copy_blob(bucket.blob(name), target_bucket, target_name)
    bucket.blob(name).delete()


def size(path: str) -> int:
    """The file's length in bytes."""
    if not is_remote(path):
        return os.path.getsize(path)
    bucket, name = _blobs(path)
    blob = bucket.get_blob(name)
    if blob is None:
        raise FileNotFoundError(f"{path} does not exist")
    return int(blob.size)


def read_bytes(path: str) -> bytes:
    """The whole file; ``FileNotFoundError`` naming it when it is not there."""
    if is_remote(path):
        from google.api_core import exceptions

        bucket, name = _blobs(path)
        try:
            return bucket.blob(name).download_as_bytes()
        except exceptions.NotFound:
            raise FileNotFoundError(f"{path} does not exist") from None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def parse_json(data: bytes | str, where: str) -> dict[str, Any]:
    """A JSON object from bytes or text; ``FileFormatError`` naming ``where`` otherwise."""
    try:
        payload = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FileFormatError(f"{where}: not JSON ({error})") from None
    if not isinstance(payload, dict):
        raise FileFormatError(f"{where}: expected a JSON object, got {type(payload).__name__}")
    return payload


def read_json(path: str) -> dict[str, Any]:
    """A JSON object from a file (local or gs://)."""
    return parse_json(read_bytes(path), path)


def to_json(
    payload: Mapping[str, Any],
    *,
    allow_nan: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """The project's JSON layout: indented, keys sorted, a newline at the end.

    ``allow_nan=False`` refuses NaN and infinities, which strict JSON readers reject;
    ``default`` turns values JSON has no type for into JSON (``str``, say).
    """
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=allow_nan, default=default)
    return text + "\n"


def write_bytes(path: str, data: bytes) -> None:
    """Writes the file whole or not at all, creating its folder."""
    parent = posixpath.dirname(path)
    if parent:
        makedirs(parent)
    if is_remote(path):
        bucket, name = _blobs(path)
        from google.cloud.storage.retry import DEFAULT_RETRY

        # One upload: all or nothing; retried, as writing the same bytes again is harmless.
        bucket.blob(name).upload_from_string(data, retry=DEFAULT_RETRY)
        return
    temporary = f"{path}.incomplete-{uuid.uuid4().hex[:8]}"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(
    path: str,
    payload: Mapping[str, Any],
    *,
    allow_nan: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Writes a JSON object atomically in the project's layout (see ``to_json``)."""
    write_text(path, to_json(payload, allow_nan=allow_nan, default=default))
